"""Events: one tracked object's life as `new` / `update` / `end` messages with before/after state.

The shape follows Frigate's `frigate/events` (what Home Assistant and Node-RED automations are written
against): `{"type": ..., "before": {...}, "after": {...}}`, each state with id, camera, label, score,
top_score, box, start_time, end_time, current_zones, entered_zones, has_snapshot, has_clip, plus our
`lines_crossed` ([{line, direction, time}]) and `track_id`. Times are epoch seconds (capture time).

- `new` when a track of a kept label has been seen in `min_frames` frames and scored `min_score`;
  the frames before confirmation count for zones and lines, a one-frame flicker never becomes an event.
- `update` when the object enters or leaves a zone, crosses a line, or gives a better snapshot.
- `end` when the track has not been seen for `lost_after` seconds; end_time is when it was last seen.

Counts (line crossings per direction and label, zone occupancy, objects per label) are kept for
confirmed tracks only. Pure: no I/O; the tracking loop stores snapshots and publishes the messages.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from common.events_config import EventsConfig, LineConfig, ZoneConfig
from tracker import geometry

SCORE_MARGIN = 0.02  # a snapshot scoring within this of the best one wins only by being much larger
AREA_GAIN = 1.25


@dataclass
class Snapshot:
    """The best view of an object so far: its frame's JPEG (as given), box, score and time."""

    frame_time: float
    score: float
    box: list[int]
    area: int
    jpeg: bytes | None

    def better_than(self, other: Snapshot | None) -> bool:
        if other is None:
            return True
        if self.score > other.score + SCORE_MARGIN:
            return True
        return self.score >= other.score - SCORE_MARGIN and self.area > other.area * AREA_GAIN


@dataclass
class EventMessage:
    """One message for MQTT, webhooks and the event store. `snapshot` is set when it changed."""

    type: str
    before: dict
    after: dict
    snapshot: Snapshot | None = None

    def to_dict(self) -> dict:
        return {"type": self.type, "before": self.before, "after": self.after}


@dataclass
class _Track:
    track_id: int
    label: str
    first_seen: float
    last_seen: float
    score: float
    box: list[int]
    hits: int = 0
    top_score: float = 0.0
    current_zones: list[str] = field(default_factory=list)
    entered_zones: list[str] = field(default_factory=list)
    lines_crossed: list[dict] = field(default_factory=list)
    sides: dict[str, geometry.Point] = field(default_factory=dict)  # line -> last anchor strictly on a side
    snapshot: Snapshot | None = None
    event_id: str | None = None
    published: dict | None = None  # the state last sent: the next message's `before`


def default_event_id(start_time: float) -> str:
    """Frigate's form: capture time, then a random suffix (ids stay unique across hand-overs)."""
    return f"{start_time:.6f}-{secrets.token_hex(3)}"


class EventLifecycle:
    """One camera's events. Called from the camera's tracking loop only (not thread-safe)."""

    def __init__(self, cam: str, config: EventsConfig, zones: Sequence[ZoneConfig] = (),
                 lines: Sequence[LineConfig] = (), *, new_id: Callable[[float], str] = default_event_id):
        self.cam = cam
        self.config = config
        self.zones = list(zones)
        self.lines = list(lines)
        self._new_id = new_id
        self._tracks: dict[int, _Track] = {}
        self.line_counts: dict[str, dict[str, dict[str, int]]] = {
            line.name: {"in": defaultdict(int), "out": defaultdict(int)} for line in self.lines}
        self.flickers = 0  # tracks that were lost before they were confirmed

    # --- per frame -------------------------------------------------------------------------------
    def observe(self, ts: float, tracked: Sequence[Sequence], width: int, height: int,
                jpeg: bytes | None = None) -> list[EventMessage]:
        """Feed one frame's tracked detections `[label, score, x1, y1, x2, y2, class_id, track_id]`."""
        messages: list[EventMessage] = []
        for det in tracked:
            label, score, box, track_id = det[0], float(det[1]), [int(v) for v in det[2:6]], det[7]
            if track_id is None or (self.config.labels and label not in self.config.labels):
                continue
            track = self._tracks.get(track_id)
            if track is None:
                track = self._tracks[track_id] = _Track(track_id, label, ts, ts, score, box)
            message = self._see(track, ts, score, box, width, height, jpeg)
            if message is not None:
                messages.append(message)
        return messages + self.expire(ts)

    def _see(self, track: _Track, ts: float, score: float, box: list[int], width: int, height: int,
             jpeg: bytes | None) -> EventMessage | None:
        track.hits += 1
        track.last_seen, track.score, track.box = ts, score, box
        track.top_score = max(track.top_score, score)
        point = geometry.anchor(box, width, height)

        zones = [z.name for z in self.zones
                 if (not z.labels or track.label in z.labels) and geometry.point_in_polygon(point, z.points)]
        changed = zones != track.current_zones
        track.current_zones = zones
        for name in zones:
            if name not in track.entered_zones:
                track.entered_zones.append(name)

        for line in self.lines:
            if line.labels and track.label not in line.labels:
                continue
            a, b = line.points
            if geometry.side(point, a, b) == 0:
                continue  # on the line: keep the last position that was strictly on a side
            previous = track.sides.get(line.name)
            track.sides[line.name] = point
            if previous is None:
                continue
            direction = geometry.crossing(previous, point, a, b, line.in_side)
            if direction is not None:
                track.lines_crossed.append({"line": line.name, "direction": direction, "time": ts})
                changed = True
                if track.event_id is not None:
                    self.line_counts[line.name][direction][track.label] += 1

        new_snapshot = None
        if self.config.snapshots:
            candidate = Snapshot(ts, score, box, (box[2] - box[0]) * (box[3] - box[1]), jpeg)
            if candidate.better_than(track.snapshot):
                track.snapshot = new_snapshot = candidate
                changed = True

        if track.event_id is None:
            if track.hits < self.config.min_frames or track.top_score < self.config.min_score:
                return None
            track.event_id = self._new_id(track.first_seen)
            for crossed in track.lines_crossed:  # crossings before confirmation count now
                self.line_counts[crossed["line"]][crossed["direction"]][track.label] += 1
            after = self._state(track)
            track.published = after
            return EventMessage("new", after, after, track.snapshot)
        if not changed:
            return None
        return self._publish(track, "update", new_snapshot)

    # --- ends ------------------------------------------------------------------------------------
    def expire(self, now: float) -> list[EventMessage]:
        """End the events of tracks unseen for `lost_after` seconds; forget unconfirmed ones."""
        lost = [t for t in self._tracks.values() if now - t.last_seen > self.config.lost_after]
        return [m for m in (self._end(t) for t in lost) if m is not None]

    def end_all(self) -> list[EventMessage]:
        """End every open event now (a new producer run, or shutdown): their objects are gone."""
        return [m for m in (self._end(t) for t in list(self._tracks.values())) if m is not None]

    def _end(self, track: _Track) -> EventMessage | None:
        del self._tracks[track.track_id]
        if track.event_id is None:
            self.flickers += 1
            return None
        track.current_zones = []
        return self._publish(track, "end", None, end_time=track.last_seen)

    # --- state -----------------------------------------------------------------------------------
    def _publish(self, track: _Track, kind: str, snapshot: Snapshot | None,
                 end_time: float | None = None) -> EventMessage:
        after = self._state(track, end_time)
        message = EventMessage(kind, track.published or after, after, snapshot)
        track.published = after
        return message

    def _state(self, track: _Track, end_time: float | None = None) -> dict:
        snap = track.snapshot
        return {
            "id": track.event_id,
            "camera": self.cam,
            "label": track.label,
            "track_id": track.track_id,
            "score": round(track.score, 4),
            "top_score": round(track.top_score, 4),
            "box": list(track.box),
            "frame_time": track.last_seen,
            "start_time": track.first_seen,
            "end_time": end_time,
            "current_zones": list(track.current_zones),
            "entered_zones": list(track.entered_zones),
            "lines_crossed": [dict(c) for c in track.lines_crossed],
            "has_snapshot": snap is not None and snap.jpeg is not None,
            "has_clip": bool(self.config.clips) and end_time is not None,
            "snapshot": None if snap is None else {"frame_time": snap.frame_time, "box": list(snap.box),
                                                   "score": round(snap.score, 4)},
        }

    # --- counts ----------------------------------------------------------------------------------
    def counts(self) -> dict:
        """Line crossings so far, and objects now in each zone and in view, by label."""
        active = [t for t in self._tracks.values() if t.event_id is not None]
        objects: dict[str, int] = defaultdict(int)
        zones: dict[str, dict[str, int]] = {z.name: defaultdict(int) for z in self.zones}
        for track in active:
            objects[track.label] += 1
            for name in track.current_zones:
                zones[name][track.label] += 1
        return {
            "lines": {name: {d: dict(by_label) for d, by_label in dirs.items()}
                      for name, dirs in self.line_counts.items()},
            "zones": {name: dict(by_label) for name, by_label in zones.items()},
            "objects": dict(objects),
        }

    @property
    def open_events(self) -> list[str]:
        return [t.event_id for t in self._tracks.values() if t.event_id is not None]


def end_orphans(states: Sequence[dict]) -> list[EventMessage]:
    """`end` messages for events a previous owner opened and never ended (it died, or its camera's
    run changed): they end when they were last seen. A fresh tracker cannot continue them, because
    track state is not carried over; their objects start new events if they are still there."""
    out = []
    for before in states:
        after = {**before, "end_time": before["frame_time"], "current_zones": [],
                 "has_clip": False}
        out.append(EventMessage("end", before, after))
    return out
