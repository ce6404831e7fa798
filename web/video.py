"""MJPEG feeds and snapshots."""

from __future__ import annotations

import time
from collections.abc import Iterator

from flask import Blueprint, Response, jsonify, request
from werkzeug.wsgi import ClosingIterator

from common import envelope
from common.errors import EnvelopeError
from common.keys import FRAME_FIELD
from web import mjpeg
from web.figures import stale_after
from web.query import flag
from web.refused_keys import reading
from web.state import state
from web.streams import stream_key

bp = Blueprint("video", __name__)
STREAM_HEADERS = {"X-Accel-Buffering": "no", "Cache-Control": "no-cache, no-store"}


@bp.route("/video_feed/<cam>")
def video_feed(cam: str) -> Response:
    """multipart/x-mixed-replace MJPEG of a camera's annotated frames (`?raw=1`: the producer's;
    `?motion=1`: the annotated frames with the motion boxes and inspected regions drawn)."""
    st = state()
    st.settings.camera(cam)
    view = "raw" if flag("raw") else "motion" if flag("motion") else "annotated"
    release = st.stream_limit.acquire(request.remote_addr or "")
    if release is None:
        limit = st.stream_limit.per_client
        return jsonify(error="too many streams", message=f"at most {limit} video streams per client at once; "
                                                          "close one and retry"), 429
    # A viewer that stops reading blocks our writes once its socket buffers fill: a timeout on the
    # connection ends the response then, and the viewer is dropped (gunicorn and werkzeug expose it).
    sock = request.environ.get("gunicorn.socket") or request.environ.get("werkzeug.socket")
    if sock is not None:
        sock.settimeout(st.settings.web.write_timeout)

    def generate() -> Iterator[bytes]:
        """Runs on the viewer's own thread/greenlet: send whatever its mailbox holds, newest first.

        It subscribes when the server starts sending, not before: a client gone before then never
        starts the generator, and an unstarted generator's `finally` would never unsubscribe it."""
        mailbox = st.broadcaster.subscribe(cam, view)
        try:
            yield mjpeg.OPENING
            while not mailbox.closed:
                part = mailbox.get(timeout=5.0)
                if part is not None:
                    yield part
        finally:
            st.broadcaster.unsubscribe(mailbox, view)

    # The server closes the response however it ends, started or not: that releases the stream's slot.
    body = ClosingIterator(generate(), [release])
    return Response(body, mimetype=mjpeg.MIMETYPE, headers=STREAM_HEADERS, direct_passthrough=True)


@bp.route("/snapshot/<cam>.jpg")
def snapshot(cam: str) -> Response:
    """The newest annotated frame (one Redis read), or 503 when there is none fresh for the camera's
    rate (web.figures.stale_after)."""
    st = state()
    st.settings.camera(cam)
    key = stream_key(st.keys, cam, flag("raw"))
    with reading(key, cam):  # a refused key: 503 JSON naming it (web.app)
        entries = st.client.xrevrange(key, count=1)
    frame = None
    if entries:
        try:
            frame = envelope.decode(entries[0][1].get(FRAME_FIELD, b""))
        except EnvelopeError:
            frame = None
    if frame is None:
        return jsonify(error="no frame", camera=cam, message=f"camera {cam!r} has published no frame yet"), 503
    age_ms = (time.time_ns() - frame.ts) / 1e6
    # Stale for the camera's own rate: its measured rate from the latest shared figures, when this
    # process has some (a snapshot never costs a refresh), else its configured fps.
    figures = st.figures.latest()
    limit_s = (figures.stale_after[cam] if figures is not None
               else stale_after(st.settings.web.stale_after, st.settings.camera(cam), None))
    if age_ms > limit_s * 1000:
        return jsonify(error="stale", camera=cam, age_ms=round(age_ms),
                       message=f"newest frame of {cam!r} is {age_ms / 1000:.1f} s old"), 503
    return Response(frame.jpeg, mimetype="image/jpeg", headers={
        "X-Frame-Age-Ms": f"{age_ms:.0f}", "X-Frame-Seq": str(frame.seq), "Cache-Control": "no-store"})
