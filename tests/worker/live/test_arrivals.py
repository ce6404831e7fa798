"""Reading by arrivals (worker/live/arrivals.py): a real worker on a real redis-server names only the
announced streams in its reads, still finds frames nobody announced, and reads every stream when the
arrivals stream cannot be read. What the worker sends is seen with MONITOR, counted, not timed."""

import re
import threading
import time

import redis

from common import envelope
from common.config import load_config
from common.connection import connect
from common.keys import ARRIVALS_FIELD, FRAME_FIELD, Keys
from tests.worker.conftest import make_frame
from tests.worker.live.test_consumer import InProcessWorker, wait_until

KEYS = Keys("fc")
SILENT = 40  # configured cameras that send nothing


class Feeder:
    """Adds a frame to each of `cams` every `period` s, announcing the round on the arrivals stream
    (as the producer's SendLoop does) when `announce`, until stopped; counts what it added."""

    def __init__(self, client, images, cams, period=0.2, announce=True):
        self.client, self.images, self.cams, self.period, self.announce = client, images, cams, period, announce
        self.added = {cam: 0 for cam in cams}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        seq = 0
        while not self.stop.wait(self.period):
            pipe = self.client.pipeline(transaction=False)
            for cam in self.cams:
                frame = make_frame(self.images[seq % len(self.images)], cam=cam, seq=seq)
                pipe.xadd(KEYS.frames(cam), {FRAME_FIELD: envelope.encode(frame)}, maxlen=500, approximate=True)
            if self.announce:
                pipe.xadd(KEYS.arrivals, {ARRIVALS_FIELD: ",".join(self.cams)})
            pipe.execute(raise_on_error=False)  # a refused announcement leaves the frames in
            for cam in self.cams:
                self.added[cam] += 1
            seq += 1

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=10)


def monitor(redis_url, seconds):
    """The commands Redis executed for `seconds` (MONITOR), as strings."""
    client = redis.Redis.from_url(redis_url, socket_timeout=0.5)
    commands = []
    deadline = time.monotonic() + seconds
    with client.monitor() as m:
        while time.monotonic() < deadline:
            try:
                commands.append(m.next_command()["command"])
            except redis.exceptions.TimeoutError:
                continue
    client.close()
    return commands


def streams_named(command: str) -> int:
    return len(re.findall(r"fc:frames:\{", command))


def settings_for(write_config, redis_url, cams):
    config = [{"id": cam, "source": "pattern", "mode": "live", "fps": 5, "max_width": 160} for cam in cams]
    return load_config(write_config(config, redis_url=redis_url, worker={"max_frame_age": 5.0}), env={})


def processed(worker, cam):
    return worker.cams[cam].processed


def test_reads_name_only_the_announced_streams(write_config, redis_url, redis_client, sample_images):
    busy = ["a0", "a1"]
    settings = settings_for(write_config, redis_url, busy + [f"s{i:02d}" for i in range(SILENT)])
    with InProcessWorker(settings, connect(settings.redis_url)) as worker, \
            Feeder(redis_client, sample_images, busy) as feeder:
        assert wait_until(lambda: all(processed(worker, cam) >= 5 for cam in busy), 90)
        time.sleep(4.0)  # the silent cameras' empty sweeps have backed off to 2 s (0.25 + 0.5 + 1 + 2 s)
        commands = monitor(redis_url, 4.0)
        seen = {cam: processed(worker, cam) for cam in busy}
    reads = [c for c in commands if c.startswith("XREADGROUP")]
    wide = [c for c in reads if streams_named(c) > len(busy)]
    narrow = [c for c in reads if streams_named(c) <= len(busy)]
    blocking_everywhere = [c for c in wide if " BLOCK " in c]
    # ~20 rounds announced in 4 s, each read by name; the sweeps: every stream every 2 s, and each
    # silent camera at most every 2 s once its empty sweeps backed off
    assert len(narrow) >= 10, reads[:5]
    assert len(wide) <= 6, [streams_named(c) for c in wide]
    assert not blocking_everywhere
    assert any(c.startswith("XREAD ") and KEYS.arrivals in c and " BLOCK " in c for c in commands)
    assert all(seen[cam] >= feeder.added[cam] - 25 for cam in busy), (seen, feeder.added)


def test_frames_nobody_announced_are_still_processed(write_config, redis_url, redis_client, sample_images):
    """A camera whose frames come without announcements, beside announced ones: swept and processed;
    and an announced camera whose announcements stop is found by the safety sweep."""
    settings = settings_for(write_config, redis_url, ["a0", "u0", "late"] + [f"s{i:02d}" for i in range(SILENT)])
    with InProcessWorker(settings, connect(settings.redis_url)) as worker:
        with Feeder(redis_client, sample_images, ["a0"]), \
                Feeder(redis_client, sample_images, ["u0"], announce=False) as quiet, \
                Feeder(redis_client, sample_images, ["late"]) as late:
            assert wait_until(lambda: processed(worker, "a0") >= 10 and processed(worker, "late") >= 10, 90)
            assert worker.reader.announced >= {KEYS.frames("a0"), KEYS.frames("late")}
            late.announce = False  # its producer stops announcing
            mark = processed(worker, "late")
            assert wait_until(lambda: processed(worker, "late") >= mark + 10, 30)
            assert KEYS.frames("late") not in worker.reader.announced
            assert wait_until(lambda: processed(worker, "u0") >= 10, 30)
        assert KEYS.frames("u0") not in worker.reader.announced
        skipped = worker.cams["u0"].skipped
    # swept every 0.25 s at 5 fps: a sweep finds one or two frames, the older superseded (live)
    assert skipped <= quiet.added["u0"] // 2


def test_an_unreadable_arrivals_stream_falls_back_to_reading_every_stream(write_config, redis_url, redis_client,
                                                                          sample_images):
    settings = settings_for(write_config, redis_url, ["a0"] + [f"s{i:02d}" for i in range(SILENT)])
    with InProcessWorker(settings, connect(settings.redis_url)) as worker, \
            Feeder(redis_client, sample_images, ["a0"]):
        assert wait_until(lambda: processed(worker, "a0") >= 5, 90)
        redis_client.delete(KEYS.arrivals)
        redis_client.set(KEYS.arrivals, "not a stream")  # the feeder's XADD now fails too: frames unannounced
        mark = processed(worker, "a0")
        assert wait_until(lambda: processed(worker, "a0") >= mark + 10, 30)
        assert not worker.reader.arrivals.usable(time.monotonic())
        commands = monitor(redis_url, 1.5)
    assert any(c.startswith("XREADGROUP") and " BLOCK " in c and streams_named(c) == SILENT + 1 for c in commands)
