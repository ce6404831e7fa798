"""The fan-out design framecast is measured against: every viewer polls Redis for the newest frame
itself (XREVRANGE COUNT 1 in a loop, as the Redis edge video-analytics demo does).

Served by: gunicorn -k gevent --timeout 0 bench.naive_web:app  (REDIS_URL in the environment)
"""

from __future__ import annotations

import os

import redis
from flask import Flask, Response

from common import envelope
from common.keys import FRAME_FIELD, Keys

app = Flask(__name__)
_client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))


@app.route("/video_feed/<cam>")
def video_feed(cam: str) -> Response:
    key = Keys("fc").annotated(cam)

    def frames():
        last = None
        while True:
            entries = _client.xrevrange(key, count=1)
            if entries and entries[0][0] != last:
                last = entries[0][0]
                jpeg = envelope.decode(entries[0][1][FRAME_FIELD]).jpeg
                yield (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(jpeg)).encode()
                       + b"\r\n\r\n" + jpeg + b"\r\n")

    return Response(frames(), mimetype="multipart/x-mixed-replace; boundary=frame")
