"""GET /video/<cam>.mp4 on a real redis-server with the real encoder (EncoderService) in this process:
a viewer gets the init segment and then fragments from a keyframe, which decode with PyAV as the
codec the headers announce, timestamps increasing; the request itself announces the viewer, so the
encoder starts and stops with it; one Redis reader per camera whatever the viewers; a viewer that
stops reading does not hold back one that reads; a new generation ends the response; no encoder
answers 503 with Retry-After, video off 404, the per-client stream cap 429, tokens as for MJPEG."""

from __future__ import annotations

import http.client
import io
import struct
import threading
import time

import av
import pytest

from common.config import load_config
from encoder.service import EncoderService
from tests.encoder.feed import KEYS, Feeder, wait_for
from tests.web.conftest import LiveServer
from web import live_video
from web.fragment_queue import FragmentQueue
from web.video_metrics import video_counts_for
from common.video import Fragment

VIDEO = {"lease_ttl": 1.0, "viewer_ttl": 1.5, "keyframe_interval": 0.5, "preset": "ultrafast", "viewer_queue": 10}
CAM = "lobby"


@pytest.fixture
def stack(write_config, redis_url, redis_client):
    """stack(web=..., video=..., encoder=True) -> a LiveServer (and an EncoderService) for CAM."""
    started = []

    def _start(web: dict | None = None, video: dict | None = None, encoder: bool = True, **settings):
        path = write_config([{"id": CAM, "source": "pattern", "fps": 10}], redis_url=redis_url,
                            web={"reader_linger": 0.5, **(web or {})}, video={**VIDEO, **(video or {})}, **settings)
        config = load_config(path, env={})
        server = LiveServer(config)
        started.append(server.close)
        if encoder:
            service = EncoderService(config, config.cameras, redis_client, "enc-web").start()
            started.append(service.stop)
        return server

    yield _start
    for stop in reversed(started):
        stop()


def hang_up(conn, response) -> None:
    """Close the viewer's socket (the response holds it open after conn.close() alone)."""
    response.close()
    conn.close()


def open_video(port: int, path: str = f"/video/{CAM}.mp4", headers=None, timeout: float = 15.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("GET", path, headers=headers or {})
    return conn, conn.getresponse()


class Boxes:
    """The top-level MP4 boxes of a streaming response, read as they arrive."""

    def __init__(self, response):
        self.response = response
        self.buffer = b""
        self.raw = b""
        self.ended = False

    def next(self) -> tuple[str, bytes] | None:
        while True:
            if len(self.buffer) >= 8:
                size, kind = struct.unpack(">I4s", self.buffer[:8])
                if len(self.buffer) >= size:
                    box, self.buffer = self.buffer[:size], self.buffer[size:]
                    return kind.decode(), box
            chunk = self.response.read1(65536)
            if not chunk:
                self.ended = True
                return None
            self.buffer += chunk
            self.raw += chunk

    def fragments(self, count: int) -> list[bytes]:
        """The next `count` moof+mdat pairs."""
        out = []
        while len(out) < count:
            box = self.next()
            assert box is not None, f"the response ended after {len(out)} fragments"
            if box[0] == "moof":
                mdat = self.next()
                assert mdat is not None and mdat[0] == "mdat"
                out.append(box[1] + mdat[1])
        return out


def test_a_viewer_gets_the_init_then_fragments_that_decode_as_the_codec_announced(stack, redis_client):
    server = stack()
    with Feeder(redis_client, CAM, fps=10):
        conn, response = open_video(server.port)
        assert response.status == 200, response.read()
        assert response.headers["Content-Type"] == "video/mp4"
        codec = response.headers["X-Video-Codec"]
        assert codec.startswith("avc1.") and f'codecs="{codec}"' in response.headers["X-Video-Mime"]
        assert response.headers["X-Video-Size"] == "320x240"
        boxes = Boxes(response)
        assert [boxes.next()[0], boxes.next()[0]] == ["ftyp", "moov"]
        boxes.fragments(15)
        hang_up(conn, response)
    container = av.open(io.BytesIO(boxes.raw), format="mp4")
    stream = container.streams.video[0]
    assert stream.codec_context.name == "h264" and stream.codec_context.profile  # what avc1.PPCCLL says
    frames = list(container.decode(stream))
    container.close()
    assert len(frames) >= 15 and frames[0].key_frame  # joins at a keyframe: every fragment decodes
    pts = [f.pts for f in frames]
    assert pts == sorted(pts) and len(set(pts)) == len(pts)
    assert (frames[0].width, frames[0].height) == (320, 240)


def test_the_request_announces_the_viewer_and_the_encoder_stops_after_it_leaves(stack, redis_client):
    server = stack()
    with Feeder(redis_client, CAM, fps=10):
        assert redis_client.zcard(KEYS.video_viewers(CAM)) == 0
        time.sleep(1.0)
        assert redis_client.xlen(KEYS.video(CAM)) == 0  # nobody watches: nothing encoded
        conn, response = open_video(server.port)
        assert response.status == 200
        Boxes(response).fragments(5)
        assert redis_client.zcard(KEYS.video_viewers(CAM)) == 1
        hang_up(conn, response)
        # the feed retires reader_linger after the viewer left and withdraws the announcement
        wait_for(lambda: redis_client.zcard(KEYS.video_viewers(CAM)) == 0, 10, "the viewer withdrawn")
        wait_for(lambda: redis_client.get(KEYS.encoder_lease(CAM)) is None, 10, "the encoder stopped")
        written = redis_client.xlen(KEYS.video(CAM))
        time.sleep(1.0)
        assert redis_client.xlen(KEYS.video(CAM)) == written


def test_many_viewers_share_one_reader_and_a_stalled_one_does_not_hold_back_the_others(stack, redis_client):
    server = stack()
    with Feeder(redis_client, CAM, fps=10, width=640, height=480):
        stalled_conn, stalled = open_video(server.port)  # never read after the headers
        assert stalled.status == 200
        viewers = [open_video(server.port) for _ in range(3)]
        assert all(r.status == 200 for _, r in viewers)
        got: dict[int, int] = {}

        def watch(i, response):
            boxes = Boxes(response)
            got[i] = len(boxes.fragments(40))

        threads = [threading.Thread(target=watch, args=(i, r), daemon=True) for i, (_, r) in enumerate(viewers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert got == {0: 40, 1: 40, 2: 40}
        feeds = server.state.video.feeds()
        assert list(feeds) == [CAM] and feeds[CAM].viewers() == 4
        assert server.state.video.readers_started == 1
        for conn, response in viewers:
            hang_up(conn, response)
        hang_up(stalled_conn, stalled)


def test_a_viewer_that_falls_a_queue_behind_skips_to_the_next_keyframe():
    """The queue itself: the reader never waits for a viewer; an overflowing one restarts at a keyframe."""
    counts = video_counts_for("unit")
    slow, fast = FragmentQueue("unit", 5, counts), FragmentQueue("unit", 5, counts)
    sent = []
    for i in range(23):  # ends three fragments after the keyframe at 20
        fragment = Fragment(1, i % 10 == 0, bytes([i]), i, f"1:{i}".encode())
        for queue in (slow, fast):
            queue.put(fragment)
        sent.append(fragment)
        assert fast.get(0) is fragment
    kept = [slow.get(0) for _ in range(slow.pending())]
    assert kept and kept[0].keyframe and kept == sent[-len(kept):]
    assert slow.skipped == 20 and fast.skipped == 0  # 0-9 and 10-19: the queued five and the five after each overflow


def test_a_new_generation_ends_the_response_and_the_next_request_gets_its_init(stack, redis_client):
    server = stack()
    feeder = Feeder(redis_client, CAM, fps=10)
    with feeder:
        conn, response = open_video(server.port)
        generation = int(response.headers["X-Video-Generation"])
        boxes = Boxes(response)
        boxes.fragments(5)
        feeder.frame.update(width=480, height=360)  # a new size: the encoder starts a new generation
        deadline = time.monotonic() + 20
        while boxes.next() is not None:
            assert time.monotonic() < deadline, "the response did not end at the generation change"
        hang_up(conn, response)
        conn, response = open_video(server.port)
        assert response.status == 200
        assert int(response.headers["X-Video-Generation"]) > generation
        assert response.headers["X-Video-Size"] == "480x360"
        hang_up(conn, response)


def test_no_encoder_answers_503_with_retry_after(stack, redis_client, monkeypatch):
    monkeypatch.setattr(live_video, "INIT_WAIT_S", 1.0)
    server = stack(encoder=False)
    conn, response = open_video(server.port)
    body = response.read()
    assert response.status == 503 and response.headers["Retry-After"] == str(live_video.RETRY_AFTER_S)
    assert b"no encoder" in body and f"/video_feed/{CAM}".encode() in body
    hang_up(conn, response)
    assert server.state.video.feeds()[CAM].viewers() == 0  # the slot and the subscription are released


def test_video_off_is_404_and_unknown_cameras_404(stack):
    server = stack(video={"enabled": False}, encoder=False)
    conn, response = open_video(server.port)
    assert response.status == 404 and b"video.enabled" in response.read()
    hang_up(conn, response)
    conn, response = open_video(server.port, "/video/nosuchcam.mp4")
    assert response.status == 404
    hang_up(conn, response)


def test_the_stream_cap_counts_video_and_mjpeg_together(stack, redis_client):
    server = stack(web={"max_streams_per_client": 1})
    with Feeder(redis_client, CAM, fps=10):
        conn, response = open_video(server.port)
        assert response.status == 200
        second, refused = open_video(server.port)
        assert refused.status == 429 and b"at most 1" in refused.read()
        hang_up(second, refused)
        mjpeg, refused = open_video(server.port, f"/video_feed/{CAM}")
        assert refused.status == 429
        hang_up(mjpeg, refused)
        hang_up(conn, response)


def test_the_video_needs_the_token_when_one_is_set(stack, redis_client):
    server = stack(web={"token": "s3cret-token-value"})
    with Feeder(redis_client, CAM, fps=10):
        conn, response = open_video(server.port)
        assert response.status == 401
        hang_up(conn, response)
        conn, response = open_video(server.port, f"/video/{CAM}.mp4?token=s3cret-token-value")
        assert response.status == 200 and Boxes(response).next()[0] == "ftyp"
        hang_up(conn, response)
        conn, response = open_video(server.port, headers={"Authorization": "Bearer s3cret-token-value"})
        assert response.status == 200
        hang_up(conn, response)
