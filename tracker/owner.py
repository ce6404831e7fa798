"""The tracking owner of one camera: while this process holds the camera's lease, it reads the
camera's untracked stream in order, tracks, draws the boxes with their track ids, publishes the
annotated frames and detection records, and emits the camera's events.

Runs on its own thread (one per owned camera, started by `tracker.service.EventService`), so a
slow camera costs only itself. Hand-over: with each batch's frames the owner writes a checkpoint, in
the same script fenced by its lease (tracker/output.py): per input stream the last entry whose
frame, and every frame before it, has been published, the last (run, seq) released and the next track id. A
new owner resumes from there (so each frame is published once across a hand-over), ends
the events the previous owner left open (read from the event store: the source of truth, so an
event already ended is never ended twice), continues the line counts from the counts hash, and
starts fresh tracks (a track's Kalman state is not carried over: its object starts a new event).
Every event write is fenced by the lease too, so a former owner that hung past its TTL cannot emit.

The owner reads two streams in one XREAD: `keys.untracked(cam)`, and the same stream under its name of
the previous release (`keys.untracked_legacy(cam)`, `<prefix>:detected:{cam}`), which a worker of
that release may still write during a rolling upgrade; the reorderer puts their frames in (run, seq)
order. Both carry the camera's hash tag, so the read works on a Redis Cluster too. The old name is
read until the next release, then dropped.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import redis

from common import envelope, jpeg
from common.config import CameraConfig, Settings
from common.connection import CONNECTION_ERRORS, describe_error
from common.envelope import INSPECT_NONE, Detection, Frame
from common.errors import EnvelopeError
from common.keys import FRAME_FIELD, SKIPPED_FIELD, Keys
from common.logs import camera_logger
from common.stats import CameraAccount
from common.text import as_str
from tracker import metrics
from tracker.lease import Lease, LeaseLostError
from tracker.lifecycle import EventMessage, end_orphans
from tracker.mqtt import MqttPublisher
from tracker.output import FrameOutput
from tracker.recordings import ClipWriter, EventFiles
from tracker.stage import CameraEvents, ClipRequest, CountChanges, Emitted, Record, Released, Tracked
from tracker.store import EventStore
from tracker.webhooks import WebhookSender
from worker.detect.annotate import draw_detections, draw_overlay
from worker.detect.still import LastDrawing

BATCH = 16  # entries read at once from each input stream
BAD = (-1, -1)  # the frame of an entry that could not be parsed: it never holds the checkpoint back
SEEN = 2000  # frames remembered to drop a second copy (a frame reclaimed from a slow worker)


@dataclass
class Outputs:
    """What the owners of one process share: stores, files, the clip writer and delivery."""

    settings: Settings
    client: redis.Redis
    keys: Keys
    store: EventStore
    files: EventFiles
    clips: ClipWriter | None
    mqtt: MqttPublisher | None
    webhooks: WebhookSender | None
    name: str  # this process's id: the lease owner, and `tracker` in the frames' meta
    accounts: dict[str, CameraAccount] = field(default_factory=dict)

    def account(self, cam: str) -> CameraAccount:
        """The camera's figures in this process, one account for all its owners over time and the
        service's chores. Created on the service thread, which starts the owners."""
        if cam not in self.accounts:
            self.accounts[cam] = CameraAccount(self.client, self.keys, cam)
        return self.accounts[cam]


def parse(fields: dict) -> tuple[Record, Frame | None]:
    """An untracked entry (common/untracked.py) as the tracking stage's Record (a skip marker
    has `skipped`), and the frame it carried. Raises EnvelopeError on anything malformed."""
    marker = fields.get(SKIPPED_FIELD)
    if marker is not None:
        try:
            run, seq = (int(v) for v in bytes(marker).split(b":"))
        except ValueError:
            raise EnvelopeError("skip marker is not <run>:<seq>") from None
        return Record(run, seq, 0.0, 0, 0, [], skipped=True), None
    frame = envelope.decode(fields.get(FRAME_FIELD) or b"")
    if frame.detections is None:
        raise EnvelopeError("untracked entry has no detections")
    regions = tuple(tuple(box) for box in frame.meta.get("regions") or ()
                    if isinstance(box, list) and len(box) == 4)
    record = Record(frame.run, frame.seq, frame.ts / 1e9, frame.width, frame.height,
                    [d.to_list() for d in frame.detections], frame.jpeg, inspect=frame.inspect, regions=regions)
    return record, frame


def flatten_counts(counts: dict) -> dict[str, int]:
    """EventLifecycle.counts() as the fields of the camera's counts hash."""
    flat = {f"line:{line}:{direction}:{label}": n
            for line, dirs in counts["lines"].items() for direction, by_label in dirs.items()
            for label, n in by_label.items()}
    flat.update({f"zone:{zone}:{label}": n for zone, by_label in counts["zones"].items()
                 for label, n in by_label.items()})
    flat.update({f"objects:{label}": n for label, n in counts["objects"].items()})
    return flat


def tracked_record(frame: Frame, detections: list[list]) -> bytes:
    """The detection record of a tracked frame: the workers' record with each detection's `track_id`."""
    record = json.loads(envelope.detections_record(frame))
    for item, det in zip(record["detections"], detections, strict=True):
        item["track_id"] = det[7]
    return json.dumps(record, separators=(",", ":")).encode()


class CameraOwner:
    """One camera's tracking while `lease` is held. `run` is the body of the owner's thread."""

    def __init__(self, out: Outputs, camera: CameraConfig, lease: Lease, stop: threading.Event):
        self.out, self.camera, self.lease, self.stop = out, camera, lease, stop
        self.cam = camera.id
        self.log = camera_logger("framecast.events", camera.id)
        self.account = out.account(camera.id)
        self.still = LastDrawing(camera.motion.redraw_interval)  # frames nothing moved in: the last drawing
        keys = out.keys
        # Input streams by their names in the checkpoint's `ids`; `detected` until the next release.
        self.inputs = {"untracked": keys.untracked(camera.id), "detected": keys.untracked_legacy(camera.id)}
        self._input_of = {key: name for name, key in self.inputs.items()}
        self.checkpoint_key = keys.tracker_checkpoint(camera.id)
        streams = out.settings.streams
        self.output = FrameOutput(out.client, keys, camera.id, streams.annotated_maxlen, streams.detections_maxlen)
        self.storage = out.settings.events
        self.block_ms = max(10, min(200, int(self.storage.lease_ttl * 1000 / 6)))
        self.stage: CameraEvents | None = None
        self.last_ids = dict.fromkeys(self.inputs, "0-0")  # per input stream: the last entry read
        self.resume: tuple[int, int] | None = None  # frames up to here were published by a former owner
        self.published = 0
        self._frames: dict[tuple[int, int], Frame] = {}  # read, not yet published
        # per input stream: (entry id, frame) read, not yet released
        self._unsettled = {name: deque() for name in self.inputs}
        # per input stream: where a new owner would read from (no unreleased entry before it)
        self._resume_ids = dict(self.last_ids)
        self._checkpointed: tuple | None = None
        self._newest: tuple[float, float] | None = None  # (capture time, arrival) of the newest frame
        self._recent: deque[tuple[int, float]] = deque(maxlen=20)  # (seq, capture time): overlay fps
        self._crossings: dict[str, int] = {}  # line totals (counts hash fields) already counted
        self._count_changes = CountChanges()
        self._occupancy: set[str] = set()  # zone and object gauge fields set last
        self._renew_at = 0.0
        self._seen: set[tuple[int, int]] = set()  # frames taken lately: a reclaimed frame comes twice
        self._seen_order: deque[tuple[int, int]] = deque()
        self.failed = False  # run ended by an unexpected error: the service backs off before retaking

    # ---- the loop -------------------------------------------------------------------------------
    def run(self) -> None:
        """Own the camera until `stop` is set (then close cleanly and release the lease) or the lease
        is lost (then stop at once: the next owner emits from now on). Any other error (a disk that
        refuses the snapshots, a bug) gives the camera up too: the lease is released, so the next
        owner (another process at once, or this one after a backoff) resumes from the checkpoint,
        which is written only with the frames it covers."""
        self.account.set(metrics.OWNING, 1)
        self.account.count(metrics.TAKEN_OVER)
        try:
            self._take_over()
            self.log.info("tracking owner started", extra={"owner": self.out.name, "lease": self.lease.value,
                                                            "from": self.last_ids})
            while not self.stop.is_set() and self.lease.held:
                self.step()
            if self.lease.held:
                self._publish(self._output(self.stage.close()))
                self.lease.release()
                self.log.info("tracking owner stopped", extra={"published": self.published})
            else:
                self.log.warning("tracking lease lost; another process owns the camera now")
        except (*CONNECTION_ERRORS, redis.exceptions.ResponseError, redis.exceptions.RedisClusterException) as exc:
            # The lease runs out on its own; this process (or another) takes the camera again later.
            self.log.warning("tracking owner stopped by a redis error", extra={"error": describe_error(exc)})
            self.lease.token = None
        except Exception as exc:  # noqa: BLE001 - per ownership: logged, counted by the service, retaken
            self.failed = True
            self.log.error("tracking owner failed; giving the camera up to be taken again",
                           extra={"error": describe_error(exc)}, exc_info=True)
            try:
                self.lease.release()
            except (*CONNECTION_ERRORS, redis.exceptions.ResponseError):
                self.lease.token = None  # it runs out on its own
        finally:
            self.account.set(metrics.OWNING, 0)

    def step(self) -> None:
        """Read a batch of detected frames from the input streams, track and publish them,
        checkpoint, renew the lease."""
        streams = {self.inputs[name]: last_id for name, last_id in self.last_ids.items()}
        reply = self.out.client.xread(streams, count=BATCH, block=self.block_ms)
        now = time.monotonic()
        tracked: list[Tracked] = []
        for key, entries in (reply.items() if isinstance(reply, dict) else (reply or [])):
            name = self._input_of[as_str(key)]
            for entry_id, fields in entries:
                if not self.lease.held:
                    return
                tracked += self._take(name, as_str(entry_id), fields, now)
                self._renew()  # per frame: a slow batch on a loaded machine must not lose the lease
        tracked += self._output(self.stage.tick(now, self._clock(now)))
        self._publish(tracked)
        self._renew()

    def _renew(self) -> None:
        now = time.monotonic()
        if now >= self._renew_at and self.lease.held:
            self.lease.renew()
            self._renew_at = now + self.storage.lease_ttl / 3

    def _take(self, stream: str, entry_id: str, fields: dict, now: float) -> list[Tracked]:
        self.last_ids[stream] = entry_id
        try:
            record, frame = parse(fields)
        except EnvelopeError as exc:
            self.log.warning("bad untracked entry skipped", extra={"stream": self.inputs[stream], "entry": entry_id,
                                                                   "error": str(exc)})
            self._unsettled[stream].append((entry_id, BAD))
            return []
        ident = (record.run, record.seq)
        if (self.resume is not None and ident <= self.resume) or ident in self._seen:
            return []  # the former owner published it, or a worker detected it twice (reclaimed)
        if not record.skipped:
            self._seen.add(ident)
            self._seen_order.append(ident)
            if len(self._seen_order) > SEEN:
                self._seen.discard(self._seen_order.popleft())
        self._unsettled[stream].append((entry_id, ident))
        if frame is not None:
            self._frames[ident] = frame
            self._newest = (record.ts, now)
            self._recent.append((record.seq, record.ts))
        return self._output(self.stage.push(record, now))

    def _clock(self, now: float) -> float:
        """Capture time as the stream tells it: the newest frame's, advanced by the time since it
        arrived. Events of a backlog end by the clip's own timeline (the same on every run),
        and still end when the frames stop coming."""
        if self._newest is None:
            return time.time()
        ts, arrived = self._newest
        return ts + (now - arrived)

    # ---- taking over ----------------------------------------------------------------------------
    def _take_over(self) -> None:
        out = self.out
        raw = out.client.get(self.checkpoint_key)
        checkpoint = json.loads(raw) if raw else {}
        # A checkpoint of the previous release has one `id`: the old-named stream's.
        ids = checkpoint.get("ids") or {"detected": checkpoint.get("id", "0-0")}
        self.last_ids = {name: ids.get(name, "0-0") for name in self.inputs}
        self._resume_ids = dict(self.last_ids)
        self.resume = tuple(checkpoint["released"]) if checkpoint.get("released") else None
        self.stage = CameraEvents(self.camera, self.storage, reorder_window=self.storage.reorder_window,
                                  start_id=int(checkpoint.get("next_track_id", 1)), clips=out.clips is not None,
                                  render=self._render)
        if self.resume is not None:
            self.stage.reorder.released = self.resume  # so the next frame is released at once
        for name, n in out.store.counts(self.cam).items():
            kind, *rest = name.split(":")
            if kind == "line" and len(rest) == 3 and rest[0] in self.stage.lifecycle.line_counts:
                line, direction, label = rest
                self.stage.lifecycle.line_counts[line][direction][label] = n
                self._crossings[name] = n  # the former owner's crossings are counted already
        orphans = end_orphans(out.store.open_events(self.cam))
        for message in orphans:
            self._sink(message, self.stage.lifecycle.counts())
        if orphans:
            self.account.count(metrics.ORPHANS, len(orphans))
            self.log.info("ended the events a former owner left open", extra={"events": len(orphans)})
        self._renew_at = time.monotonic() + self.storage.lease_ttl / 3

    # ---- outputs --------------------------------------------------------------------------------
    def _render(self, record: Record, tracked: list[list]) -> bytes | None:
        """The annotated JPEG: boxes tagged `label #id score`, and the overlay when enabled. A frame
        that cannot be drawn on (its JPEG does not decode) is published as it came (None), counted
        and logged: one bad frame never stops the camera's tracking."""
        try:
            return self._draw(record, tracked)
        except Exception as exc:  # noqa: BLE001 - per frame
            self.account.count(metrics.FAILURE, chore="render")
            self.log.warning("frame published unannotated: it could not be drawn on",
                             extra={"run": record.run, "seq": record.seq, "error": describe_error(exc)})
            return None

    def _draw(self, record: Record, tracked: list[list]) -> bytes:
        if not tracked and not self.camera.overlay_enabled:
            return record.jpeg  # nothing to draw: the camera's JPEG, neither decoded nor re-encoded
        if record.inspect == INSPECT_NONE and not self.camera.overlay_enabled:
            still = self.still.reusable(tracked, record.ts)
            if still is not None:  # nothing moved: the same tracks on the same picture but for noise
                return still.jpeg
        image = jpeg.decode(record.jpeg)
        out = draw_detections(image, [Detection.from_list(d[:7]) for d in tracked], [d[7] for d in tracked])
        if self.camera.overlay_enabled:
            out = draw_overlay(out, self.cam, ts_ns=int(record.ts * 1e9), fps=self._fps())
        drawn = jpeg.encode(out, self.camera.jpeg_quality)
        self.still.keep(drawn, [list(d) for d in tracked], record.ts)
        return drawn

    def _fps(self) -> float | None:
        if len(self._recent) < 2:
            return None
        (seq0, ts0), (seq1, ts1) = self._recent[0], self._recent[-1]
        return (seq1 - seq0) / (ts1 - ts0) if ts1 > ts0 and seq1 > seq0 else None

    def _publish(self, tracked: list[Tracked]) -> None:
        """Publish the released frames (annotated envelope and detection record each), in order, and
        move the checkpoint past them: one fenced script, so all of it or none of it is written."""
        frames = []
        for item in tracked:
            record = item.record
            frame = self._frames.pop((record.run, record.seq), None)
            if frame is None:
                continue
            # what the frame shows: its detections, and on a frame not (or partly) inspected the
            # tracks held from earlier frames
            shown = [Detection.from_list(det[:7]) for det in item.detections]
            done = frame.annotated(item.jpeg or frame.jpeg, shown, tracker=self.out.name, published_ns=time.time_ns())
            frames.append((envelope.encode(done), tracked_record(done, item.detections)))
        # `released` moves with every frame published, even when `ids` cannot (an earlier entry still
        # waits in the reorderer): the next owner skips up to `released`, so it must never lag.
        self._resume_ids.update(self._settled())
        released = self.stage.reorder.released
        state = (tuple(self._resume_ids.values()), released, self.stage.tracker.next_id)
        checkpoint = None
        if state != self._checkpointed:
            checkpoint = json.dumps({"ids": self._resume_ids, "released": list(released) if released else None,
                                     "next_track_id": self.stage.tracker.next_id, "owner": self.out.name})
        if not self.lease.held:
            return
        try:
            written = self.output.publish(self.lease.value, frames, checkpoint)
        except LeaseLostError:
            self.lease.token = None  # the next owner publishes these frames from its checkpoint
            return
        self._checkpointed = state
        self.account.count(metrics.PUBLISHED, written)
        self.published += written

    def _settled(self) -> dict[str, str]:
        """Per input stream with a new one: the last entry id whose frame, and every frame read
        before it from that stream, is released (published or given up), taken off its unsettled list."""
        released = self.stage.reorder.released
        settled = {}
        for stream, unsettled in self._unsettled.items():
            while unsettled and (unsettled[0][1] == BAD or (released is not None and unsettled[0][1] <= released)):
                settled[stream] = unsettled.popleft()[0]
        return settled

    def _output(self, released: Released) -> list[Tracked]:
        """Do what the stage released, in the order it arose: an event's snapshot, then the event
        (`_sink`); an ended event's clip to the ClipWriter thread. The frames are left to `_publish`.
        A snapshot the disk refuses, or a sink that fails, is logged and tracking goes on."""
        for item in released.outputs:
            if isinstance(item, ClipRequest):
                self.out.clips.submit(self.cam, item.event_id, item.frames)
                continue
            self._emit(item)
        return released.tracked

    def _emit(self, emitted: Emitted) -> None:
        message = emitted.message
        if emitted.snapshot:
            try:
                self.out.files.write_snapshot(self.cam, message.after["id"], emitted.snapshot)
            except OSError as exc:
                self.log.warning("snapshot not written", extra={"event": message.after["id"], "error": str(exc)})
        try:
            self._sink(message, emitted.counts)
        except Exception as exc:  # noqa: BLE001 - a broken sink must not stop tracking
            self.log.warning("event sink failed", extra={"error": str(exc)})

    def _sink(self, message: EventMessage, lifecycle_counts: dict) -> None:
        """Store (fenced; the feed and `lifecycle_counts`, as they were when the message was emitted,
        in the same step), then MQTT and webhooks."""
        if not self.lease.held:
            return
        counts = flatten_counts(lifecycle_counts)
        try:
            trimmed = self.out.store.save(message, self.lease, counts=counts)
        except LeaseLostError:
            self.log.warning("event not emitted: the tracking lease moved on",
                             extra={"event": message.after["id"]})
            return
        for event_id in trimmed:
            self.out.files.delete_event(self.cam, event_id)
        self._count(message, counts)
        body = message.to_dict()
        if self.out.mqtt is not None:
            self.out.mqtt.publish_event(body)
            for label, n in self._count_changes.since_last(lifecycle_counts["objects"]).items():
                self.out.mqtt.publish_count(self.cam, label, n)
        if self.out.webhooks is not None:
            self.out.webhooks.send(body)

    def _count(self, message: EventMessage, counts: dict[str, int]) -> None:
        """Count an emitted event, and `counts` (the counts hash's fields as of it) as figures: the
        line totals' growth as crossings, and every zone and object gauge (0 for one now gone)."""
        account = self.account
        account.count(metrics.EVENT, label=message.after["label"], type=message.type)
        for name, n in counts.items():
            kind, *rest = name.split(":")
            if kind == "line":
                line, direction, label = rest
                account.count(metrics.CROSSING, n - self._crossings.get(name, 0), line=line, direction=direction,
                              label=label)
                self._crossings[name] = n
        occupancy = {f for f in counts if not f.startswith("line:")}
        for name in self._occupancy | occupancy:
            kind, *rest = name.split(":")
            if kind == "zone":
                account.set(metrics.IN_ZONE, counts.get(name, 0), zone=rest[0], label=rest[1])
            else:
                account.set(metrics.IN_VIEW, counts.get(name, 0), label=rest[0])
        self._occupancy = occupancy
