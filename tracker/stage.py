"""One camera's tracking stage, without Redis: detection records in, track ids and events out.

The camera's owner (the process holding its lease) feeds it every processed frame's record as it is
read from the detections stream; the stage puts records back in (run, seq) order, tracks, runs the
event lifecycle and keeps the recent frames for clips. It does no I/O: each call returns what it
released as data (`Released`): the tracked frames, and in order the event messages (with the counts
as they stood when each was emitted) and the clips whose frames are all in. The owner does every
output (snapshots, the Redis event store, MQTT, webhooks, the ClipWriter thread) and every count.
Everything here runs on the owner's loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from common.config import CameraConfig
from common.envelope import INSPECT_FULL, INSPECT_NONE, INSPECT_REGIONS
from common.events_config import EventStorageConfig
from tracker.clips import FrameBuffer, clip_window
from tracker.lifecycle import EventLifecycle, EventMessage
from tracker.ordering import Reorderer
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
    inspect: str = INSPECT_FULL  # what the workers did: full, regions (only `regions`) or none
    regions: tuple[tuple[int, int, int, int], ...] = ()


@dataclass(frozen=True)
class Tracked:
    """A record in order (or refused as late or stale: then every track id is None), with a track
    id appended to each detection, and its rendered JPEG when the stage has a `render`."""

    record: Record
    detections: list[list]
    jpeg: bytes | None = None


@dataclass(frozen=True)
class Emitted:
    """An event message, the lifecycle's counts when it was emitted (`EventLifecycle.counts()`), and
    the snapshot JPEG to write when the camera keeps snapshots."""

    message: EventMessage
    counts: dict
    snapshot: bytes | None = None


@dataclass(frozen=True)
class ClipRequest:
    """An ended event's clip, its post-roll received: the frames (capture time, JPEG) to encode."""

    event_id: str
    frames: list[tuple[float, bytes]]


@dataclass
class Released:
    """What one call of the stage released: frames in order, and the outputs in the order they arose."""

    tracked: list[Tracked] = field(default_factory=list)
    outputs: list[Emitted | ClipRequest] = field(default_factory=list)


# Draws a record's tracked detections on its frame: the annotated JPEG that snapshots, clips and
# the camera's annotated stream show, so the ids drawn are the tracked ones.
Render = Callable[[Record, list[list]], bytes]


class CountChanges:
    """Objects in view per label as the owner last published them: MQTT's retained
    `<prefix>/<cam>/<label>` counts."""

    def __init__(self) -> None:
        self._published: dict[str, int] = {}

    def since_last(self, objects: dict[str, int]) -> dict[str, int]:
        """The labels of `objects` (counts()["objects"]) that changed since the last call, 0 for a
        label now gone."""
        changed = {label: n for label, n in objects.items() if self._published.get(label) != n}
        changed.update({label: 0 for label in self._published if label not in objects})
        self._published = dict(objects)
        return changed


class CameraEvents:
    def __init__(self, camera: CameraConfig, storage: EventStorageConfig, *, fps: float | None = None,
                 reorder_window: float = 0.5, start_id: int = 1, clips: bool = False,
                 render: Render | None = None):
        """`clips`: ended events' clips are wanted (the owner has a ClipWriter), when the camera keeps
        them: the stage then buffers the frames and returns ClipRequests."""
        events = camera.events
        self.cam = camera.id
        self.storage = storage
        self.tracker = CameraTracker(max_missed=max(2, math.ceil(events.lost_after * (fps or camera.fps))),
                                     min_iou=events.track_iou, start_id=start_id)
        self.lifecycle = EventLifecycle(camera.id, events, camera.zones, camera.lines)
        self.reorder = Reorderer(reorder_window)
        self.snapshots = events.snapshots
        self.clips = clips and events.clips
        buffered = storage.max_clip_seconds + storage.pre_roll + storage.post_roll + events.lost_after
        self.frames = FrameBuffer(buffered) if self.clips else None
        self.render = render
        self.stale = 0
        self.late = 0  # records that came after their place in the order was given up
        self._pending_clips: list[tuple[str, float, float]] = []  # (event id, from, to)
        self._out: Released = Released()  # what the current call releases

    def push(self, record: Record, arrived: float) -> Released:
        """Take one record or skip marker (`arrived`: monotonic seconds); return the records now
        released, tracked, and the outputs they made. A record whose place was already given up comes
        back at once, untracked, so its frame is still published."""
        self._out = Released()
        released = self.reorder.released
        if released is not None and (record.run, record.seq) <= released:
            if not record.skipped:
                self.late += 1
                self._out.tracked.append(self._untracked(record))
            return self._out
        self._all(self.reorder.push(record.run, record.seq, arrived, record))
        return self._out

    def tick(self, now: float, wall: float) -> Released:
        """Called when idle: release records that waited long enough, end lost objects' events
        (`wall`: epoch seconds, compared with capture times), cut clips whose post-roll never came."""
        self._out = Released()
        self._all(self.reorder.pop_due(now))
        self._emit(self.lifecycle.expire(wall))
        self._cut_clips(wall - CLIP_GRACE)
        return self._out

    def close(self) -> Released:
        """Shutdown or hand-over: process what is held, end open events, cut their clips now."""
        self._out = Released()
        self._all(self.reorder.flush())
        self._emit(self.lifecycle.end_all())
        self._cut_clips(math.inf)
        return self._out

    @property
    def held(self) -> int:
        """Records (and markers) waiting in the reorderer."""
        return len(self.reorder)

    def _all(self, records: list[Record]) -> None:
        for record in records:
            tracked = self._process(record)
            if tracked is not None:
                self._out.tracked.append(tracked)

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
            tracked = self._track(record)
        except StaleFrameError:
            self.stale += 1
            return self._untracked(record)
        jpeg = self._render(record, tracked)
        if self.frames is not None and jpeg is not None:
            self.frames.add(record.ts, jpeg)
        self._emit(self.lifecycle.observe(record.ts, tracked, record.width, record.height, jpeg))
        self._cut_clips(record.ts)
        return Tracked(record, tracked, jpeg)

    def _track(self, record: Record) -> list[list]:
        """The record's tracked detections. A frame not inspected holds the tracks as they were; a
        regions frame is told the tracks outside its regions are where they were (they were not
        looked at, so they did not vanish)."""
        if record.inspect == INSPECT_NONE:
            return self.tracker.hold(record.run, record.seq)
        detections = record.detections
        if record.inspect == INSPECT_REGIONS:
            unseen = [det[:7] for det in self.tracker.last
                      if not any(_overlaps(det[2:6], region) for region in record.regions)]
            detections = [*detections, *unseen]
        return self.tracker.update(record.run, record.seq, detections)

    def _emit(self, messages: list[EventMessage]) -> None:
        for message in messages:
            snapshot = message.snapshot.jpeg if message.snapshot is not None and self.snapshots else None
            if message.type == "end" and self.clips:
                start, end = clip_window(message.after["start_time"], message.after["end_time"],
                                         self.storage.pre_roll, self.storage.post_roll,
                                         self.storage.max_clip_seconds)
                self._pending_clips.append((message.after["id"], start, end))
            self._out.outputs.append(Emitted(message, self.lifecycle.counts(), snapshot or None))

    def _cut_clips(self, newest: float) -> None:
        """Release the clips whose post-roll has been received (capture time `newest`)."""
        if not self._pending_clips or self.frames is None:
            return
        waiting = []
        for event_id, start, end in self._pending_clips:
            if newest < end:
                waiting.append((event_id, start, end))
                continue
            frames = self.frames.between(start, end)
            if frames:
                self._out.outputs.append(ClipRequest(event_id, list(frames)))
        self._pending_clips = waiting


def _overlaps(box, region) -> bool:
    return box[0] < region[2] and region[0] < box[2] and box[1] < region[3] and region[1] < box[3]
