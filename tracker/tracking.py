"""Track ids for one camera's detections, frame after frame, over norfair's Kalman tracker.

Input is one frame's detections in the envelope's format, `[label, score, x1, y1, x2, y2, class_id]`
(pixel coordinates), with the frame's `(run, seq)`; output is the same lists with a track id appended
(None while a track is still being confirmed by the tracker). Boxes only, no pixels: the tracking
stage is cheap enough to run for a camera in one process while any worker detects its frames.

- Gaps: frames skipped upstream (stale live frames, dead-lettered ones) leave holes in `seq`. Each
  missing frame advances the Kalman filters one step without detections, so a track's prediction
  keeps moving and it survives as long as the hole is shorter than `max_missed` frames.
- A new producer run (a higher `run`) starts a fresh tracker: sequence numbers and positions of the
  old run mean nothing for the new one. Track ids keep counting up, so an id is never reused within
  a tracking process (`next_id` can be stored and passed back in on a hand-over).
- Frames at or before the last one seen are refused with StaleFrameError (the caller counts them).
- A frame the workers did not inspect (motion gating: nothing moved) is `hold`: the tracks stay as
  last seen, with their boxes and ids, and the filters do not take a step, so still objects keep
  their tracks however long the scene stays still.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from norfair import Detection as NorfairDetection
from norfair import Tracker

from common.errors import FramecastError


class StaleFrameError(FramecastError):
    """A frame arrived at or before the last (run, seq) tracked for its camera; it is not tracked."""


class CameraTracker:
    """Tracks one camera's objects. Not thread-safe: one tracking loop owns it."""

    def __init__(self, *, max_missed: int = 20, min_iou: float = 0.1, start_id: int = 1):
        if max_missed < 2:
            raise ValueError("max_missed must be at least 2 frames")
        self.max_missed = max_missed
        self.min_iou = min_iou
        self.next_id = start_id
        self.run: int | None = None
        self.seq: int | None = None
        self.frames = 0
        self.gaps = 0  # frames missing between tracked frames, summed
        self.resets = 0
        self._tracker: Tracker | None = None
        self._ids: dict[int, int] = {}  # norfair's id -> ours
        self.last: list[list] = []  # the last inspected frame's detections that had a track id

    def _fresh(self) -> Tracker:
        # initialization_delay=1: two consecutive hits give a track its id, so a one-frame flicker never
        # gets one; events confirm on top of that (EventsConfig.min_frames).
        return Tracker(distance_function="iou", distance_threshold=1.0 - self.min_iou,
                       hit_counter_max=self.max_missed, initialization_delay=1, pointwise_hit_counter_max=2)

    def reset(self) -> None:
        """Forget every track (a new run, or a hand-over whose state was lost)."""
        self._tracker = self._fresh()
        self._ids.clear()
        self.last = []
        self.resets += 1

    def hold(self, run: int, seq: int) -> list[list]:
        """A frame not inspected: the tracked detections of the last inspected frame, unchanged; the
        filters take no step and no track counts a miss."""
        if self.run is not None and (run, seq) <= (self.run, self.seq):
            raise StaleFrameError(f"frame ({run}, {seq}) is not after ({self.run}, {self.seq})")
        if self._tracker is None or run != self.run:
            self.reset()
        self.run, self.seq = run, seq
        self.frames += 1
        return [list(det) for det in self.last]

    def update(self, run: int, seq: int, detections: Sequence[Sequence]) -> list[list]:
        """The frame's detections with a track id (or None) appended, in the order given."""
        if self.run is not None and (run, seq) <= (self.run, self.seq):
            raise StaleFrameError(f"frame ({run}, {seq}) is not after ({self.run}, {self.seq})")
        if self._tracker is None or run != self.run:
            self.reset()
        else:
            missed = seq - self.seq - 1
            self.gaps += missed
            # One empty step per missing frame keeps predictions moving; past max_missed every track
            # is dead anyway, so one more step than that is enough.
            for _ in range(min(missed, self.max_missed + 1)):
                self._tracker.update(None)
        self.run, self.seq = run, seq
        self.frames += 1

        inputs = []
        for index, det in enumerate(detections):
            x1, y1, x2, y2 = (float(v) for v in det[2:6])
            inputs.append(NorfairDetection(points=np.array([[x1, y1], [x2, y2]]),
                                           scores=np.array([float(det[1])] * 2),
                                           label=det[0], data=(self.frames, index)))
        track_ids: list[int | None] = [None] * len(detections)
        for obj in self._tracker.update(inputs):
            data = obj.last_detection.data
            if data is None or data[0] != self.frames:
                continue  # coasting on its prediction this frame: no box to label
            if obj.id not in self._ids:
                self._ids[obj.id] = self.next_id
                self.next_id += 1
            track_ids[data[1]] = self._ids[obj.id]
        live = {obj.id for obj in self._tracker.tracked_objects if obj.id is not None}
        for stale in set(self._ids) - live:
            del self._ids[stale]
        tracked = [[*det[:7], track_id] for det, track_id in zip(detections, track_ids, strict=True)]
        self.last = [det for det in tracked if det[7] is not None]
        return tracked
