"""GET /video/<cam>.mp4: a camera's annotated H.264 live view as one fragmented MP4 over chunked HTTP.

The body is the current generation's init segment (ftyp + moov) and then its fragments (moof +
mdat) from the next keyframe on, as the encoder wrote them (common/video.py): a plain fMP4 that
MSE players, ffprobe/ffplay and VLC open alike. The fragments come from the process's one reader
of the camera (web.video_broadcaster) through the viewer's bounded queue (web.fragment_queue).

A generation change (another encoder took over, or the frame size changed) ends the response after
the old generation's last fragment, and the player reconnects to get the new init segment. The
alternative, appending the new init mid-stream, is accepted by MSE but not by ffprobe/ffmpeg's mp4
demuxer (a second moov in one file), so a plain-fMP4 client would break on it: one generation per
response is the shape every client reads. A stream that gets no fragment for STALL_S (its encoder
died) ends too, so the player asks again and waits for the next encoder.

With no init segment yet (nobody was encoding the camera), the request waits up to INIT_WAIT_S for
one (the feed has already announced the viewer, so an encoder starts), then answers 503 with a JSON
status and Retry-After. Token auth and CSP apply as to every route; the stream counts against
`web.max_streams_per_client` together with the MJPEG streams (both hold a connection).
Response headers name the codec (`X-Video-Codec`, `X-Video-Mime`) so a player can ask
`MediaSource.isTypeSupported` before it appends anything.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from flask import Blueprint, Response, jsonify, request
from werkzeug.wsgi import ClosingIterator

from common.video import MIME, Init
from web.state import state

bp = Blueprint("live_video", __name__)
INIT_WAIT_S = 8.0  # how long a request waits for a first encoder's init segment
STALL_S = 6.0  # no fragment for this long: the encoder is gone, the response ends
GET_TIMEOUT_S = 1.0
RETRY_AFTER_S = 2


def _headers(init: Init) -> dict[str, str]:
    return {"X-Accel-Buffering": "no", "Cache-Control": "no-cache, no-store", "X-Video-Codec": init.codec,
            "X-Video-Mime": init.mime, "X-Video-Generation": str(init.generation),
            "X-Video-Size": f"{init.width}x{init.height}"}


@bp.route("/video/<cam>.mp4")
def video_mp4(cam: str) -> Response:
    """The camera's annotated H.264 live view, fragmented MP4 (one generation per response)."""
    st = state()
    st.settings.camera(cam)
    if not st.settings.video.enabled:
        return jsonify(error="video disabled", camera=cam, message="the H.264 live view is off (video.enabled: "
                       f"false); watch /video_feed/{cam} (MJPEG) instead"), 404
    release = st.stream_limit.acquire(request.remote_addr or "")
    if release is None:
        limit = st.stream_limit.per_client
        return jsonify(error="too many streams", message=f"at most {limit} video streams per client at once; "
                                                          "close one and retry"), 429
    videos = st.video
    queue, feed = videos.subscribe(cam)
    done = []

    def leave() -> None:
        if not done:
            done.append(True)
            videos.unsubscribe(queue, feed)
            release()

    init = feed.init(INIT_WAIT_S)
    if init is None:
        leave()
        queue.counts.no_video()
        response = jsonify(error="no video", camera=cam, message=f"no encoder has published H.264 video of "
                           f"{cam!r} yet (it starts while someone watches; is an encoder running?); retry, "
                           f"or watch /video_feed/{cam} (MJPEG)")
        response.status_code = 503
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response
    # A viewer that stops reading blocks our writes once its socket buffers fill; the timeout ends
    # the response then (as for MJPEG, web.video).
    sock = request.environ.get("gunicorn.socket") or request.environ.get("werkzeug.socket")
    if sock is not None:
        sock.settimeout(st.settings.web.write_timeout)

    def generate() -> Iterator[bytes]:
        """Runs on the viewer's own thread/greenlet: the init segment, then its generation's fragments."""
        queue.counts.sent(len(init.data), fragment=False)
        yield init.data
        last = time.monotonic()
        while not queue.closed:
            fragment = queue.get(GET_TIMEOUT_S)
            if fragment is None:
                if time.monotonic() - last > STALL_S:
                    return
                continue
            if fragment.generation != init.generation:
                return  # the player reconnects for the new generation's init segment
            last = time.monotonic()
            queue.counts.sent(len(fragment.data))
            yield fragment.data

    # The server closes the response however it ends, started or not: that unsubscribes the viewer
    # and releases its stream slot.
    body = ClosingIterator(generate(), [leave])
    return Response(body, mimetype=MIME, headers=_headers(init), direct_passthrough=True)
