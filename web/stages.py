"""Where a camera's time goes: p50/p95 of each pipeline stage over its newest frames, for /api/cameras
and the dashboard's per-stage bars.

Read from the newest records of the camera's detections stream (one bounded XREVRANGE), which the
workers write anyway with each frame's stage durations (`stages_ms`, see common/envelope.py): every
web process on every host gives the same answer, and the workers' hot path writes nothing more.
"""

from __future__ import annotations

import json

import redis

from common.envelope import STAGES
from common.keys import DETECTIONS_FIELD, Keys

WINDOW = 100  # the newest frames summarised: ~10 s of a 10 fps camera


def percentile(values: list[float], pct: float) -> float | None:
    """The nearest-rank percentile of `values` (ms, rounded to the microsecond); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))], 3)


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def recent_stages(client: redis.Redis, keys: Keys, cam: str, window: int = WINDOW) -> dict | None:
    """{"frames": n, "p50": {stage: ms}, "p95": {stage: ms}} over the camera's newest `window`
    detection records that carry stage durations, with `end_to_end` (capture to annotated frame
    handed to Redis) as one more entry; None when Redis refuses to read its detections stream (a
    key of the wrong type: /api/cameras/<cam>/detections reports it). Stages no recent frame
    carries are left out. Outages propagate, as for the camera's other figures."""
    try:
        entries = client.xrevrange(keys.detections(cam), count=window)
    except redis.exceptions.ResponseError:
        return None
    samples: dict[str, list[float]] = {stage: [] for stage in (*STAGES, "end_to_end")}
    frames = 0
    for _entry_id, fields in entries:
        try:
            record = json.loads(fields.get(DETECTIONS_FIELD, b"{}"))
        except ValueError:
            continue
        stages = record.get("stages_ms") if isinstance(record, dict) else None
        if not isinstance(stages, dict):
            continue
        frames += 1
        for stage in STAGES:
            if _number(stages.get(stage)):
                samples[stage].append(float(stages[stage]))
        if _number(record.get("published_ns")) and _number(record.get("ts")):
            samples["end_to_end"].append((record["published_ns"] - record["ts"]) / 1e6)
    present = [stage for stage, values in samples.items() if values]
    return {"frames": frames,
            "p50": {stage: percentile(samples[stage], 50) for stage in present},
            "p95": {stage: percentile(samples[stage], 95) for stage in present}}
