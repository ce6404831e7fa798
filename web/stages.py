"""Where a camera's time goes: p50/p95 of each pipeline stage over its newest frames, for /api/cameras
and the dashboard's per-stage bars.

Read from the newest records of the camera's detections stream, which the workers write anyway with
each frame's stage durations (`stages_ms`, see common/envelope.py): every web process on every host
gives the same answer, and the workers' hot path writes nothing more. The figures (web.figures) read
only the records added since their last refresh (one bounded XREVRANGE after the newest id taken).
"""

from __future__ import annotations

import json
from collections import deque

from common.envelope import STAGES
from common.keys import DETECTIONS_FIELD

WINDOW = 100  # the newest frames summarised: ~10 s of a 10 fps camera


def percentile(values: list[float], pct: float) -> float | None:
    """The nearest-rank percentile of `values` (ms, rounded to the microsecond); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))], 3)


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _samples(fields: dict) -> dict[str, float] | None:
    """The stage durations (ms) of one detection record, with `end_to_end`; None for an entry that
    is not a record with stage durations."""
    try:
        record = json.loads(fields.get(DETECTIONS_FIELD, b"{}"))
    except ValueError:
        return None
    stages = record.get("stages_ms") if isinstance(record, dict) else None
    if not isinstance(stages, dict):
        return None
    out = {stage: float(stages[stage]) for stage in STAGES if _number(stages.get(stage))}
    if _number(record.get("published_ns")) and _number(record.get("ts")):
        out["end_to_end"] = (record["published_ns"] - record["ts"]) / 1e6
    return out


class StageWindow:
    """One camera's newest `window` detection entries, kept up to date from the entries added since
    the last read (so a refresh parses only new records, however long the window), and their summary.
    Used under the lock of the figures that own it."""

    def __init__(self, window: int = WINDOW):
        self.window = window
        self.last_id: bytes | None = None  # the newest entry taken: the next read starts after it
        self._entries: deque[dict[str, float] | None] = deque(maxlen=window)  # oldest first
        self._summary: dict | None = None

    def take(self, entries: list) -> None:
        """Add entries read newest first (XREVRANGE) after `last_id`."""
        if not entries:
            return
        self.last_id = entries[0][0]
        for _entry_id, fields in reversed(entries[:self.window]):
            self._entries.append(_samples(fields))
        self._summary = None

    def summary(self) -> dict:
        """{"frames": n, "p50": {stage: ms}, "p95": {stage: ms}} over the window's records that carry
        stage durations, with `end_to_end` (capture to annotated frame handed to Redis) as one more
        entry; stages no recent frame carries are left out."""
        if self._summary is None:
            values: dict[str, list[float]] = {stage: [] for stage in (*STAGES, "end_to_end")}
            records = [samples for samples in self._entries if samples is not None]
            for samples in records:
                for stage, ms in samples.items():
                    values[stage].append(ms)
            present = [stage for stage, found in values.items() if found]
            self._summary = {"frames": len(records),
                             "p50": {stage: percentile(values[stage], 50) for stage in present},
                             "p95": {stage: percentile(values[stage], 95) for stage in present}}
        return self._summary
