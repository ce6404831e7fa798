"""JSON APIs: cameras with their live figures, workers, and the detection history as NDJSON."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

from flask import Blueprint, Response, jsonify, request

from common.keys import DETECTIONS_FIELD
from common.registry import live_members
from common.stats import read_stats
from web import metrics as web_metrics
from web.query import flag
from web.stages import recent_stages
from web.state import WebState, state
from web.streams import last_entry_age_s

bp = Blueprint("api", __name__, url_prefix="/api")
PAGE = 500
MAX_LIMIT = 1_000_000
FOLLOW_BLOCK_MS = 1000  # short, so a follower notices shutdown promptly
KEEPALIVE_S = 5.0  # an idle follower gets a blank line this often (proxies close silent connections)
_STREAM_ID = re.compile(r"^(\d{1,20})(?:-(\d{1,20}))?$")
_ID_PART_END = 2**64  # each part of a Redis stream id is an unsigned 64-bit number


def _fps(members: list[dict], cam: str) -> float:
    """A camera's frames/s summed over the live producers or workers that serve it, as each measured
    its own rate for its heartbeat: cluster-wide, and the same in every web process."""
    total = 0.0
    for member in members:
        rates = member.get("fps")
        if isinstance(rates, dict) and isinstance(rates.get(cam), int | float):
            total += rates[cam]
    return round(total, 2)


def camera_summaries(st: WebState) -> list[dict]:
    """Each configured camera with its figures (for /api/cameras and the dashboard)."""
    workers = live_members(st.client, st.keys, "worker")
    producers = live_members(st.client, st.keys, "producer")
    viewers = web_metrics.viewers_per_camera(st.broadcaster.viewer_counts())
    out = []
    for camera in st.settings.cameras:
        stats = read_stats(st.client, st.keys, camera.id)
        # What viewers see: the age of the newest annotated frame, from its stream id (no payload read).
        age_s = last_entry_age_s(st.client, st.keys.annotated(camera.id))
        status = "live" if age_s is not None and age_s < st.settings.web.stale_after else (
            "stale" if age_s is not None else "waiting")
        out.append({
            "id": camera.id, "name": camera.display_name, "source_kind": camera.source_kind, "source": camera.source_display,
            "mode": camera.mode, "status": status,
            "fps_in": _fps(producers, camera.id), "fps_out": _fps(workers, camera.id),
            "latency_ms": stats.get("latency_ms"), "infer_ms": stats.get("infer_ms"),
            "last_frame_age_s": None if age_s is None else round(age_s, 3),
            "published": int(stats.get("published", 0)), "processed": int(stats.get("processed", 0)),
            "dropped": int(stats.get("dropped", 0)), "skipped_stale": int(stats.get("skipped_stale", 0)),
            "failed": int(stats.get("failed", 0)), "source_reconnects": int(stats.get("reconnects", 0)),
            "workers": [w["id"] for w in workers if camera.id in w.get("cameras", [])],
            "viewers": viewers.get(camera.id, 0),
            "stages": recent_stages(st.client, st.keys, camera.id),  # p50/p95 per stage, newest frames
            "send_ms": web_metrics.counts_for(camera.id).send_summary(),  # this process's viewers
        })
    return out


@bp.route("/cameras")
def cameras():
    """Every configured camera with its live figures."""
    return jsonify(cameras=camera_summaries(state()))


@bp.route("/workers")
def workers():
    """The live workers, from their heartbeats."""
    return jsonify(workers=live_members(state().client, state().keys, "worker"))


def _since(value: str | None) -> str | None:
    """The first stream id after `since` (a stream id, or epoch milliseconds meaning `<ms>-0`) as an
    XRANGE start: "-" without `since`, None when nothing can come after it (the largest id)."""
    if not value:
        return "-"
    match = _STREAM_ID.match(value)
    ms, seq = (int(match.group(1)), int(match.group(2) or 0)) if match else (_ID_PART_END, 0)
    if ms >= _ID_PART_END or seq >= _ID_PART_END:
        raise ValueError("since must be a stream id (1700000000000-0) or epoch milliseconds, "
                         f"each part below {_ID_PART_END}")
    if seq + 1 < _ID_PART_END:
        return f"{ms}-{seq + 1}"
    return f"{ms + 1}-0" if ms + 1 < _ID_PART_END else None


def _line(entry_id: bytes, record: bytes) -> bytes:
    """One NDJSON line: the stored JSON record with its stream id, without re-encoding it."""
    return b'{"id":"' + entry_id + b'",' + record[1:] + b"\n"


@bp.route("/cameras/<cam>/detections")
def detections(cam: str):
    """Detection history as NDJSON, paged from Redis so memory stays flat; `?follow=1` keeps going."""
    st = state()
    st.settings.camera(cam)
    try:
        start = _since(request.args.get("since"))
        limit = int(request.args.get("limit", MAX_LIMIT))
        if not 0 < limit <= MAX_LIMIT:
            raise ValueError(f"limit must be 1..{MAX_LIMIT}")
    except ValueError as exc:
        return jsonify(error="bad request", message=str(exc)), 400
    follow = flag("follow")
    key = st.keys.detections(cam)

    def generate() -> Iterator[bytes]:
        """Runs on the client's thread/greenlet: one XRANGE page at a time."""
        sent, cursor = 0, start
        last_id = b"0-0"
        while cursor is not None and sent < limit:
            page = st.client.xrange(key, min=cursor, max="+", count=min(PAGE, limit - sent))
            if not page:
                break
            for entry_id, fields in page:
                yield _line(entry_id, fields.get(DETECTIONS_FIELD, b"{}"))
                last_id = entry_id
            sent += len(page)
            cursor = b"(" + last_id
        if not follow:
            return
        if last_id == b"0-0":  # nothing in the history: follow from the stream's current end
            newest = st.client.xrevrange(key, count=1)
            last_id = newest[0][0] if newest else b"0-0"
        yield b"\n"  # the stream is open; blank lines are keep-alives and carry no record
        quiet_since = time.monotonic()
        while not st.stopping.is_set():
            reply = st.client.xread({key: last_id}, count=PAGE, block=FOLLOW_BLOCK_MS)
            if not reply:
                if time.monotonic() - quiet_since >= KEEPALIVE_S:
                    quiet_since = time.monotonic()
                    yield b"\n"
                continue
            quiet_since = time.monotonic()
            for _stream, entries in reply:
                for entry_id, fields in entries:
                    yield _line(entry_id, fields.get(DETECTIONS_FIELD, b"{}"))
                    last_id = entry_id

    return Response(generate(), mimetype="application/x-ndjson",
                    headers={"X-Accel-Buffering": "no", "Cache-Control": "no-cache"})


@bp.route("/cameras/<cam>")
def camera(cam: str):
    """One camera with its live figures."""
    st = state()
    st.settings.camera(cam)
    return jsonify(next(c for c in camera_summaries(st) if c["id"] == cam))
