"""The EncoderService and a camera's encoder on a real redis-server, in this process: a watched camera
is encoded once into fragments that decode, an unwatched one not at all, the encoder stops when the
viewers leave, a new frame size starts a new generation, a deposed owner cannot write, and a
camera that falls behind skips to its newest frame."""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client import REGISTRY

from common.config import load_config
from encoder.camera import CameraEncoder, FencedVideo
from encoder.fmp4 import Fragmenter
from encoder.service import POLL_INTERVAL, EncoderService
from tests.encoder.feed import KEYS, Feeder, add_frame, announce, decode, picture, playable, video, wait_for
from tracker.lease import Lease

VIDEO = {"lease_ttl": 1.0, "viewer_ttl": 1.0, "keyframe_interval": 0.5, "preset": "ultrafast"}


def sample(name: str, cam: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, {"camera": cam, **labels}) or 0.0


@pytest.fixture
def service(write_config, redis_url, redis_client):
    """service(cam, **video) -> a started EncoderService for camera `cam` (stopped after the test)."""
    started = []

    def _start(cam: str, **video) -> EncoderService:
        path = write_config([{"id": cam, "source": "pattern", "fps": 10}], redis_url=redis_url,
                            video={**VIDEO, **video})
        settings = load_config(path, env={})
        encoder = EncoderService(settings, settings.cameras, redis_client, f"enc-{cam}").start()
        started.append(encoder)
        return encoder

    yield _start
    for encoder in started:
        encoder.stop()


def test_a_watched_camera_is_encoded_into_fragments_that_decode(service, redis_client):
    cam = "watched"
    encoder = service(cam)
    announce(redis_client, cam)
    with Feeder(redis_client, cam, fps=10):
        wait_for(lambda: redis_client.xlen(KEYS.video(cam)) >= 20, 20, "20 fragments")
    init, fragments = video(redis_client, cam)
    lease = redis_client.get(KEYS.encoder_lease(cam)).decode()
    assert lease == f"enc-{cam}:{init.generation}"  # the generation is the lease's fencing token
    assert (init.width, init.height) == (320, 240) and init.codec.startswith("avc1.")
    assert fragments[0].keyframe and {f.generation for f in fragments} == {init.generation}
    assert sum(f.keyframe for f in fragments) >= 3  # every 0.5 s at 10 fps
    frames = decode(init, playable(init, fragments))
    assert len(frames) == len(fragments)
    pts = [f.pts for f in frames]
    assert pts == sorted(set(pts))
    seqs = [int(f.seq.split(b":")[1]) for f in fragments]
    assert seqs == sorted(seqs)  # in stream order
    assert encoder.encoding() == [cam]
    assert sample("framecast_video_frames_encoded_total", cam) >= len(fragments)
    assert sample("framecast_video_bytes_total", cam) >= sum(len(f.data) for f in fragments) + len(init.data)
    assert REGISTRY.get_sample_value("framecast_video_encode_seconds_count", {"camera": cam}) >= len(fragments)


def test_nothing_is_encoded_while_nobody_watches(service, redis_client):
    cam = "unwatched"
    encoder = service(cam)
    announce(redis_client, cam, viewer="web-gone", seconds=-1)  # what a web process that died leaves
    with Feeder(redis_client, cam, fps=10) as feeder:
        wait_for(lambda: feeder.sent >= 20, 10, "20 frames fed")
        time.sleep(4 * POLL_INTERVAL)
    assert redis_client.exists(KEYS.video(cam), KEYS.video_init(cam), KEYS.encoder_lease(cam)) == 0
    assert redis_client.zscore(KEYS.watched_cameras, cam) is None  # the lapsed camera was dropped
    assert encoder.encoding() == []
    assert sample("framecast_video_frames_encoded_total", cam) == 0
    assert sample("framecast_video_generations_total", cam) == 0


def test_the_encoder_stops_and_releases_the_camera_when_the_viewers_leave(service, redis_client):
    cam = "left"
    encoder = service(cam)
    announce(redis_client, cam, seconds=1.5)
    with Feeder(redis_client, cam, fps=10):
        wait_for(lambda: redis_client.xlen(KEYS.video(cam)) >= 5, 20, "fragments")
        wait_for(lambda: redis_client.get(KEYS.encoder_lease(cam)) is None, 10, "the lease released")
        wait_for(lambda: encoder.encoding() == [], 5, "the encoder thread ended")
        written = redis_client.xlen(KEYS.video(cam))
        time.sleep(4 * POLL_INTERVAL)
        assert redis_client.xlen(KEYS.video(cam)) == written  # nothing more once nobody watches

        announce(redis_client, cam)  # someone watches again: a new generation, with its own init
        first = int(redis_client.hget(KEYS.video_init(cam), "g"))
        wait_for(lambda: int(redis_client.hget(KEYS.video_init(cam), "g")) > first, 10, "a new generation")
    init, fragments = video(redis_client, cam)
    own = [f for f in fragments if f.generation == init.generation]
    assert own[0].keyframe


def test_a_new_frame_size_starts_a_new_generation(service, redis_client):
    cam = "resized"
    service(cam)
    announce(redis_client, cam)
    with Feeder(redis_client, cam, fps=10):
        wait_for(lambda: redis_client.xlen(KEYS.video(cam)) >= 5, 20, "fragments")
    small, _ = video(redis_client, cam)
    with Feeder(redis_client, cam, fps=10, width=480, height=360):
        wait_for(lambda: int(redis_client.hget(KEYS.video_init(cam), "w")) == 480, 10, "the new size's init")
        wait_for(lambda: len(playable(video(redis_client, cam)[0], video(redis_client, cam)[1])) >= 5, 10,
                 "fragments of the new size")
    init, fragments = video(redis_client, cam)
    assert init.generation > small.generation and (init.width, init.height) == (480, 360)
    assert redis_client.get(KEYS.encoder_lease(cam)).decode().endswith(f":{init.generation}")
    own = [f for f in fragments if f.generation == init.generation]
    assert own[0].keyframe
    assert {f.generation for f in fragments} == {small.generation, init.generation}
    assert all(f.width == 480 for f in decode(init, own))


def test_a_deposed_owner_cannot_write(redis_client):
    cam = "deposed"
    settings = load_config(None, env={}, require_file=False)
    old = Lease(redis_client, KEYS.encoder_lease(cam), "old", ttl=0.3)
    assert old.acquire()
    out = FencedVideo(redis_client, KEYS, cam, old, settings.video)
    fragmenter = Fragmenter(old.token, preset="ultrafast")
    init, fragment = fragmenter.add(picture(0), time.time_ns())
    assert out.write(fragment, init)
    time.sleep(0.4)  # it hung past its TTL
    new = Lease(redis_client, KEYS.encoder_lease(cam), "new", ttl=5)
    assert new.acquire() and new.token > old.token
    _, late = fragmenter.add(picture(1), time.time_ns())
    assert not out.write(late) and not old.held
    assert redis_client.xlen(KEYS.video(cam)) == 1
    assert redis_client.get(KEYS.encoder_lease(cam)).decode() == f"new:{new.token}"
    fragmenter.close()


def test_an_encoder_behind_skips_to_the_newest_frame_and_reuses_a_repeated_picture(redis_client):
    cam = "behind"
    settings = load_config(None, env={}, require_file=False)
    lease = Lease(redis_client, KEYS.encoder_lease(cam), "enc", ttl=5)
    assert lease.acquire()
    encoder = CameraEncoder(redis_client, KEYS, cam, lease, settings.video, threading.Event(), time.monotonic)
    add_frame(redis_client, cam, 0)
    encoder.step()  # the first step takes the newest frame at once
    assert redis_client.xlen(KEYS.video(cam)) == 1
    skipped = sample("framecast_video_frames_skipped_total", cam, reason="behind")
    for seq in range(1, 11):
        add_frame(redis_client, cam, seq)
    encoder.step()
    assert sample("framecast_video_frames_skipped_total", cam, reason="behind") == skipped + 9
    _, fragments = video(redis_client, cam)
    assert [f.seq for f in fragments] == [b"1:0", b"1:10"]

    repeated = add_frame(redis_client, cam, 11)
    encoder.step()
    image = encoder._image
    add_frame(redis_client, cam, 12, data=repeated)  # the same drawing again: no second decode
    encoder.step()
    assert encoder._image is image
    assert redis_client.xlen(KEYS.video(cam)) == 4
    encoder.fragmenter.close()
