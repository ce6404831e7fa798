"""One camera's tracking stage, without Redis: detection records in, track ids and events out.

The camera's owner (the process holding its lease) feeds it every processed frame's record as it is
read from the detections stream; the stage puts records back in (run, seq) order, tracks, runs the
event lifecycle, keeps the recent frames for clips, writes snapshots, hands ended events' clips to the
ClipWriter thread, and passes every event message to its sinks (MQTT, webhooks, the Redis event
store). Everything here runs on the owner's loop; only clip encoding and delivery have threads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from common.config import CameraConfig
from common.events_config import EventStorageConfig
from common.logs import camera_logger
from tracker.clips import FrameBuffer, clip_window
from tracker.lifecycle import EventLifecycle, EventMessage
from tracker.ordering import Reorderer
from tracker.recordings import ClipWriter, EventFiles
from tracker.tracking import CameraTracker, StaleFrameError

CLIP_GRACE = 2.0  # seconds past a clip's post-roll after which it is cut with the frames there are


@dataclass(frozen=True)
class Record:
    """One processed frame as the tracking stage sees it; `ts` is the capture time in seconds."""

    run: int
    seq: int
    ts: float
    width: int
    height: int
    detections: list[list]
    jpeg: bytes | None = None  # the frame: snapshots and clips are cut from it (after `render`)
    skipped: bool = False  # a marker for a frame the workers skipped: it holds the frame's place only


@dataclass(frozen=True)
class Tracked:
    """A record in order (or refused as late or stale: then every track id is None), with a track
    id appended to each detection, and its rendered JPEG when the stage has a `render`."""

    record: Record
    detections: list[list]
    jpeg: bytes | None = None

# Draws a record's tracked detections on its frame: the annotated JPEG that snapshots, clips and
# the camera's annotated stream show, so the ids drawn are the tracked ones.
Render = Callable[[Record, list[list]], bytes]


class CameraEvents:
    def __init__(self, camera: CameraConfig, storage: EventStorageConfig, *, fps: float | None = None,
                 reorder_window: float = 0.5, start_id: int = 1, files: EventFiles | None = None,
                 clips: ClipWriter | None = None, sinks: Iterable[Callable[[EventMessage], None]] = (),
                 render: Render | None = None):
        events = camera.events
        self.cam = camera.id
        self.log = camera_logger("framecast.events", camera.id)
        self.storage = storage
        self.tracker = CameraTracker(max_missed=max(2, math.ceil(events.lost_after * (fps or camera.fps))),
                                     min_iou=events.track_iou, start_id=start_id)
        self.lifecycle = EventLifecycle(camera.id, events, camera.zones, camera.lines)
        self.reorder = Reorderer(reorder_window)
        self.files = files if events.snapshots else None
        self.clips = clips if events.clips else None
        buffered = storage.max_clip_seconds + storage.pre_roll + storage.post_roll + events.lost_after
        self.frames = FrameBuffer(buffered) if self.clips is not None else None
        self.sinks = list(sinks)
        self.render = render
        self.stale = 0
        self.late = 0  # records that came after their place in the order was given up
        self._pending_clips: list[tuple[str, float, float]] = []  # (event id, from, to)
        self._published_counts: dict[str, int] = {}

    def changed_counts(self) -> dict[str, int]:
        """Objects in view per label that changed since the last call (0 for a label now gone): what
        the owner publishes as retained `<prefix>/<cam>/<label>` counts."""
        now = self.lifecycle.counts()["objects"]
        changed = {label: n for label, n in now.items() if self._published_counts.get(label) != n}
        changed.update({label: 0 for label in self._published_counts if label not in now})
        self._published_counts = now
        return changed

    def push(self, record: Record, arrived: float) -> list[Tracked]:
        """Take one record or skip marker (`arrived`: monotonic seconds); return the records now
        released, tracked. A record whose place was already given up comes back at once, untracked,
        so its frame is still published."""
        released = self.reorder.released
        if released is not None and (record.run, record.seq) <= released:
            if record.skipped:
                return []
            self.late += 1
            return [self._untracked(record)]
        return self._all(self.reorder.push(record.run, record.seq, arrived, record))

    def tick(self, now: float, wall: float) -> list[Tracked]:
        """Called when idle: release records that waited long enough, end lost objects' events
        (`wall`: epoch seconds, compared with capture times), cut clips whose post-roll never came."""
        out = self._all(self.reorder.pop_due(now))
        self._emit(self.lifecycle.expire(wall))
        self._cut_clips(wall - CLIP_GRACE)
        return out

    def close(self) -> list[Tracked]:
        """Shutdown or hand-over: process what is held, end open events, cut their clips now."""
        out = self._all(self.reorder.flush())
        self._emit(self.lifecycle.end_all())
        self._cut_clips(math.inf)
        return out

    @property
    def held(self) -> int:
        """Records (and markers) waiting in the reorderer."""
        return len(self.reorder)

    def _all(self, records: list[Record]) -> list[Tracked]:
        return [t for t in (self._process(r) for r in records) if t is not None]

    def _untracked(self, record: Record) -> Tracked:
        detections = [[*d[:7], None] for d in record.detections]
        return Tracked(record, detections, self._render(record, detections))

    def _render(self, record: Record, detections: list[list]) -> bytes | None:
        return record.jpeg if self.render is None or record.jpeg is None else self.render(record, detections)

    def _process(self, record: Record) -> Tracked | None:
        if self.tracker.run is not None and record.run > self.tracker.run:
            self._emit(self.lifecycle.end_all())  # a new producer run: its objects are new objects
        if record.skipped:
            return None  # its place is taken; the tracker sees the gap when the next frame comes
        try:
            tracked = self.tracker.update(record.run, record.seq, record.detections)
        except StaleFrameError:
            self.stale += 1
            return self._untracked(record)
        jpeg = self._render(record, tracked)
        if self.frames is not None and jpeg is not None:
            self.frames.add(record.ts, jpeg)
        self._emit(self.lifecycle.observe(record.ts, tracked, record.width, record.height, jpeg))
        self._cut_clips(record.ts)
        return Tracked(record, tracked, jpeg)

    def _emit(self, messages: list[EventMessage]) -> None:
        for message in messages:
            event_id = message.after["id"]
            if message.snapshot is not None and message.snapshot.jpeg and self.files is not None:
                try:
                    self.files.write_snapshot(self.cam, event_id, message.snapshot.jpeg)
                except OSError as exc:
                    self.log.warning("snapshot not written", extra={"event": event_id, "error": str(exc)})
            if message.type == "end" and self.clips is not None:
                start, end = clip_window(message.after["start_time"], message.after["end_time"],
                                         self.storage.pre_roll, self.storage.post_roll,
                                         self.storage.max_clip_seconds)
                self._pending_clips.append((event_id, start, end))
            for sink in self.sinks:
                try:
                    sink(message)
                except Exception as exc:  # noqa: BLE001 - a broken sink must not stop tracking
                    self.log.warning("event sink failed", extra={"error": str(exc)})

    def _cut_clips(self, newest: float) -> None:
        """Hand over the clips whose post-roll has been received (capture time `newest`)."""
        if not self._pending_clips or self.frames is None or self.clips is None:
            return
        waiting = []
        for event_id, start, end in self._pending_clips:
            if newest < end:
                waiting.append((event_id, start, end))
                continue
            frames = self.frames.between(start, end)
            if frames:
                self.clips.submit(self.cam, event_id, frames)
        self._pending_clips = waiting
