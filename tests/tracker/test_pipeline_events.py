"""The events stage in the running pipeline: a real producer playing the sample clip once (backlog),
real worker processes (two detect and race for the camera's tracking lease), a real redis-server,
and a real mosquitto. Every process is started here and ended by its PID."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
import redis
import yaml

from common.event_files import EventPaths
from common.keys import DETECTIONS_FIELD, EVENT_FIELD, FRAME_FIELD, Keys
from common.text import as_str
from tests.ledger import detection_ids, stream_entries

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CAM = "walk"
LINE = {"name": "walkway", "points": [[0.62, 0.30], [0.62, 0.80]], "in_side": "left"}
ZONE = {"name": "path", "points": [[0.25, 0.36], [0.78, 0.42], [0.78, 0.70], [0.25, 0.52]], "labels": ["person"]}
FRAMES = 150  # of the sample clip's 795 (played at its 10 fps: all of it would take 80 s a run)
PRE, POST = 1.0, 1.0
# The clip at 480x360 (from 768x576): every stage (JPEG decode and encode, drawing, clip encoding)
# costs less than half on this loaded test machine; detection sees a 300x300 input either way.
WIDTH, HEIGHT = 480, 360


class Pipeline:
    """The framecast services as child processes, each with its own log file, ended by PID."""

    def __init__(self, tmp: Path, redis_url: str, clip: Path, camera_events: dict | None = None, **settings):
        self.tmp, self.clip = tmp, clip
        tmp.mkdir(parents=True, exist_ok=True)
        self.config = tmp / "cameras.yaml"
        camera = {"id": CAM, "source": str(clip), "mode": "backlog", "loop": False, "fps": 10,
                  "max_width": WIDTH, "overlay": False, "lines": [LINE], "zones": [ZONE],
                  "events": {"lost_after": 1.5, **(camera_events or {})}}
        doc = {"redis_url": redis_url, "log_format": "text",
               "events": {"dir": "events", "pre_roll": PRE, "post_roll": POST, "lease_ttl": 5.0,
                          "preset": "ultrafast"},
               **settings, "cameras": [camera]}
        self.config.write_text(yaml.safe_dump(doc, sort_keys=False))
        self.procs: dict[str, subprocess.Popen] = {}
        self.client = redis.Redis.from_url(redis_url)

    def start(self, name: str, role: str, *args: str) -> subprocess.Popen:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "FRAMECAST_INSTANCE_ID": f"{name}-{os.getpid()}"}
        with open(self.tmp / f"{name}.log", "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "framecast", role, "--config", str(self.config), *args],
                                    cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def stop(self, name: str, timeout: float = 20.0) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)
        self.client.close()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.tmp.glob("*.log"))

    def wait(self, condition, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            for name, proc in self.procs.items():
                if proc.poll() is not None and name != "producer":
                    pytest.fail(f"{name} exited ({proc.returncode}) while waiting for {what}\n{self.logs()}")
            time.sleep(0.1)
        pytest.fail(f"timed out waiting for {what}\n{self.logs()}")

    def published(self, cam: str = CAM) -> int:
        """Frames the producer published (the frames stream itself is trimmed to 100)."""
        return int(self.client.hget(Keys().stats(cam), "published") or 0)

    def run_clip(self, workers: int = 2) -> None:
        """Workers first (backlog groups read from the start), then the producer plays the clip once."""
        for n in range(workers):
            self.start(f"worker{n}", "worker")
        self.wait(lambda: self.client.get(Keys().tracker_lease(CAM)), 60, "a tracking owner")
        self.start("producer", "producer", "--once")

    def owner(self) -> str:
        """The worker process name holding the camera's lease (the value is `<owner>:<token>`)."""
        value = as_str(self.client.get(Keys().tracker_lease(CAM)) or b"")
        return value.rsplit(":", 1)[0].rsplit("-", 1)[0] if value else ""


def records(client, cam: str = CAM) -> list[dict]:
    return [json.loads(f[DETECTIONS_FIELD]) for _, f in stream_entries(client, Keys().detections(cam))]


def feed(client, cam: str = CAM) -> list[dict]:
    return [json.loads(f[EVENT_FIELD]) for _, f in stream_entries(client, Keys().eventfeed(cam))]


def events(client, cam: str = CAM) -> list[dict]:
    ids = [as_str(m) for m in client.zrange(Keys().events(cam), 0, -1)]
    return [json.loads(client.hget(Keys().event(cam, i), "state")) for i in ids]


def settled(pipeline: Pipeline):
    """Every published frame has its detection record and every event has ended."""
    def check():
        if pipeline.procs.get("producer") and pipeline.procs["producer"].poll() is None:
            return False
        done = len({(r["run"], r["seq"]) for r in records(pipeline.client)}) >= pipeline.published() > 0
        evs = events(pipeline.client)
        return done and evs and all(e["end_time"] is not None for e in evs)
    return check


def assert_exactly_once(pipeline: Pipeline, cam: str = CAM) -> list[dict]:
    """Every frame the producer published has exactly one detection record (the owner publishes a
    frame and the checkpoint past it in one fenced script, so a hand-over replays none)."""
    recs = records(pipeline.client, cam)
    ids = [(r["run"], r["seq"]) for r in recs]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicates, (cam, duplicates)
    assert len(ids) == pipeline.published(cam), (cam, len(ids), pipeline.published(cam))
    assert ids == detection_ids(pipeline.client, Keys(), cam)
    return recs


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """The sample clip's first FRAMES frames at WIDTH x HEIGHT (MJPEG at the clip's 10 fps)."""
    from common import assets

    path = tmp_path_factory.mktemp("clip") / "walk.avi"
    cap = cv2.VideoCapture(str(assets.sample_path()))
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (WIDTH, HEIGHT))
    for _ in range(FRAMES):
        ok, image = cap.read()
        assert ok
        out.write(cv2.resize(image, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA))
    out.release()
    cap.release()
    return path


@pytest.fixture
def pipeline(tmp_path, redis_url, clip):
    p = Pipeline(tmp_path, redis_url, clip)
    yield p
    p.stop_all()


def check_unique(client, cam: str = CAM) -> tuple[list[dict], list[dict]]:
    """Event ids unique; each event has exactly one `new` and at most one `end` in the feed."""
    evs, messages = events(client, cam), feed(client, cam)
    ids = [e["id"] for e in evs]
    assert len(ids) == len(set(ids))
    for event_id in ids:
        kinds = [m["type"] for m in messages if m["after"]["id"] == event_id]
        assert kinds.count("new") == 1, (event_id, kinds)
        assert kinds.count("end") <= 1, (event_id, kinds)
        assert kinds[0] == "new"
    return evs, messages


def test_sample_clip_events_snapshots_clips_and_stable_counts(pipeline, redis_url):
    started = time.monotonic()
    pipeline.run_clip()
    pipeline.wait(settled(pipeline), 80, "every frame tracked and every event ended")
    evs, messages = check_unique(pipeline.client)
    counts_first = pipeline.client.hgetall(Keys().counts(CAM))
    assert any(k.startswith(b"line:walkway:") for k in counts_first), counts_first

    # Annotated frames' detection records carry track ids; every published frame has one record.
    recs = assert_exactly_once(pipeline)
    tracked = [d["track_id"] for r in recs for d in r["detections"]]
    assert tracked and sum(t is not None for t in tracked) > 0.8 * len(tracked)
    assert all(f[FRAME_FIELD] for _, f in stream_entries(pipeline.client, Keys().annotated(CAM)))

    # Snapshots decode; clips are H.264 and span the frames captured from pre-roll before the event
    # to post-roll after it (timestamps are capture times: a loaded machine's uneven gaps show as such).
    root = EventPaths(pipeline.tmp / "events").camera_dir(CAM)
    pipeline.wait(lambda: all((root / f"{e['id']}.mp4").exists() for e in evs), 60, "every ended event's clip")
    captured = sorted(r["ts"] / 1e9 for r in recs)
    for event in evs:
        snap = cv2.imdecode(np.frombuffer((root / f"{event['id']}.jpg").read_bytes(), np.uint8), cv2.IMREAD_COLOR)
        assert snap is not None and snap.shape[:2] == (HEIGHT, WIDTH)
        with av.open(str(root / f"{event['id']}.mp4")) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264"
            frames = [f for f in container.decode(stream)]
            duration = float((frames[-1].pts - frames[0].pts) * stream.time_base)
        shown = [t for t in captured if event["start_time"] - PRE <= t <= event["end_time"] + POST]
        assert duration >= event["end_time"] - event["start_time"] - 0.01, (event["id"], duration)
        assert abs(duration - (shown[-1] - shown[0])) <= 0.01, (event["id"], duration, shown[-1] - shown[0])
    first_run = time.monotonic() - started

    # The same clip again, from an empty Redis, without snapshots and clips (the counts come from
    # detection and tracking alone, and encoding would only slow this loaded machine): the same counts.
    pipeline.stop_all()
    again = Pipeline(pipeline.tmp / "again", redis_url, pipeline.clip,
                     camera_events={"snapshots": False, "clips": False})
    try:
        again.client.flushall()
        again.run_clip()
        again.wait(settled(again), 80, "the second run")
        counts_second = again.client.hgetall(Keys().counts(CAM))
        events_second = len(events(again.client))
        assert_exactly_once(again)
    finally:
        again.stop_all()
    print(f"\nrun 1: {len(evs)} events, {len(messages)} messages, counts {counts_first}, {first_run:.1f} s"
          f"\nrun 2: {events_second} events, counts {counts_second}, "
          f"{time.monotonic() - started - first_run:.1f} s")
    assert counts_second == counts_first


def test_killing_the_tracking_owner_hands_the_camera_over(tmp_path, redis_url, clip):
    # No clips: this is about the lease, and encoding would only compete for the machine's cores.
    pipeline = Pipeline(tmp_path, redis_url, clip, camera_events={"clips": False})
    try:
        hand_over(pipeline)
    finally:
        pipeline.stop_all()


def hand_over(pipeline: Pipeline) -> None:
    pipeline.run_clip(workers=2)
    # Killed once it has emitted an event and published frames, so the heir resumes from a checkpoint.
    pipeline.wait(lambda: len(events(pipeline.client)) >= 1 and pipeline.client.xlen(Keys().detections(CAM)) >= 30,
                  40, "a first event and 30 published frames")
    owner = pipeline.owner()
    assert owner in ("worker0", "worker1"), owner
    before = pipeline.client.get(Keys().tracker_lease(CAM))
    killed = time.monotonic()
    pipeline.kill(owner)
    assert pipeline.client.get(Keys().tracker_checkpoint(CAM))  # written with the frames it published
    heir = "worker1" if owner == "worker0" else "worker0"
    pipeline.wait(lambda: pipeline.owner() == heir, 15, "the other worker to take the lease")
    handover = time.monotonic() - killed
    assert pipeline.client.get(Keys().tracker_lease(CAM)) != before
    pipeline.wait(settled(pipeline), 80, "every frame tracked after the hand-over")
    evs, messages = check_unique(pipeline.client)
    print(f"\nhand-over after SIGKILL of {owner}: {handover:.2f} s (lease ttl 5 s); "
          f"{len(evs)} events, {len(messages)} messages")
    assert handover < 5.0 + 1.0 + 2.0  # ttl + the heir's polling interval + slack (a loaded machine)
    # Every published frame has exactly one detection record: the heir resumes from the checkpoint,
    # which was written with the frames the killed owner published, and skips those.
    assert_exactly_once(pipeline)


class FeedSubscriber:
    """The test's MQTT client: a persistent session (QoS 1, clean_session=False, a fixed client id)
    subscribed before the outage, so the broker keeps what is published while it is away. It
    reconnects 2 s after losing the broker, after the worker's publisher, so the broker's saved
    session has to hold messages for it."""

    def __init__(self, port: int, topic: str):
        self.payloads: list[bytes] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-sub", clean_session=False)
        self.client.reconnect_delay_set(2, 2)
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = lambda c, u, m: self.payloads.append(m.payload)
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()
        assert self.subscribed.wait(10), "no SUBACK from mosquitto"

    def messages(self) -> list[dict]:
        """What arrived, in order, each once (QoS 1 is at least once: a message the broker had sent
        when it went down comes again, flagged DUP)."""
        seen, out = set(), []
        for payload in list(self.payloads):
            if payload not in seen:
                seen.add(payload)
                out.append(json.loads(payload))
        return out

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_mqtt_new_update_end_in_order_and_a_broker_outage_loses_no_frames(tmp_path, redis_url, mosquitto, clip):
    sub = FeedSubscriber(mosquitto.port, "fc-test/events")
    # No clips: encoding them would only compete with detection for this loaded test machine's cores.
    p = Pipeline(tmp_path, redis_url, clip, camera_events={"clips": False},
                 mqtt={"enabled": True, "host": "127.0.0.1", "port": mosquitto.port, "topic_prefix": "fc-test",
                       "keepalive": 5})
    try:
        p.run_clip(workers=1)
        p.wait(lambda: sub.payloads, 40, "a first MQTT event")
        mosquitto.stop()  # events go on meanwhile: they wait in the worker's queue
        time.sleep(3.0)
        mosquitto.start()  # same port; the subscriber's session comes back from the broker's save
        p.wait(settled(p), 80, "every frame tracked")
        # The broker's outage cost the pipeline no frame: each published frame has one record.
        assert_exactly_once(p)
        # Every message the store recorded reached the subscriber, in the order it was recorded
        # (the owner publishes to MQTT in that order, and resends come before newer messages).
        expected = feed(p.client)
        p.wait(lambda: len(sub.messages()) >= len(expected), 30, "every event message on MQTT")
        got = sub.messages()
        assert got == expected, [(m["type"], m["after"]["id"]) for m in got]
        # One object's messages in order: new, then updates, then end.
        by_id: dict[str, list[str]] = {}
        for m in got:
            by_id.setdefault(m["after"]["id"], []).append(m["type"])
        assert by_id and all(k[0] == "new" and k[-1] == "end" and set(k[1:-1]) <= {"update"} and
                             k.count("new") == k.count("end") == 1 for k in by_id.values()), by_id
        print(f"\n{len(got)} MQTT messages for {len(by_id)} events, "
              f"{len(sub.payloads) - len(got)} delivered twice (QoS 1)")
    finally:
        sub.stop()
        p.stop_all()
