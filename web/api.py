"""JSON APIs: cameras with their live figures, workers, and the detection history as NDJSON."""

from __future__ import annotations

import re
import time

from flask import Blueprint, Response, jsonify, request

from common.keys import DETECTIONS_FIELD
from common.registry import live_members
from common.stats import read_stats
from web import metrics as web_metrics
from web.app import WebState, state
from web.health import last_entry_age_s

bp = Blueprint("api", __name__, url_prefix="/api")
PAGE = 500
MAX_LIMIT = 1_000_000
FOLLOW_BLOCK_MS = 1000  # short, so a follower notices shutdown promptly
KEEPALIVE_S = 5.0  # an idle follower gets a blank line this often (proxies close silent connections)
_STREAM_ID = re.compile(r"^\d{1,20}(-\d{1,20})?$")


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
    # With several web processes, each only knows its own viewers; the metrics files know them all.
    viewers = web_metrics.viewers_of_all_processes() if web_metrics.multiprocess() else None
    out = []
    for cam in st.settings.cameras:
        stats = read_stats(st.client, st.keys, cam.id)
        # What viewers see: the age of the newest annotated frame, from its stream id (no payload read).
        age_s = last_entry_age_s(st.client, st.keys.annotated(cam.id))
        status = "live" if age_s is not None and age_s < st.settings.web.stale_after else (
            "stale" if age_s is not None else "waiting")
        out.append({
            "id": cam.id, "name": cam.display_name, "source_kind": cam.source_kind, "source": cam.source_display,
            "mode": cam.mode, "status": status,
            "fps_in": _fps(producers, cam.id), "fps_out": _fps(workers, cam.id),
            "latency_ms": stats.get("latency_ms"), "infer_ms": stats.get("infer_ms"),
            "last_frame_age_s": None if age_s is None else round(age_s, 3),
            "published": int(stats.get("published", 0)), "processed": int(stats.get("processed", 0)),
            "dropped": int(stats.get("dropped", 0)), "skipped_stale": int(stats.get("skipped_stale", 0)),
            "failed": int(stats.get("failed", 0)), "source_reconnects": int(stats.get("reconnects", 0)),
            "workers": [w["id"] for w in workers if cam.id in w.get("cameras", [])],
            "viewers": st.broadcaster.viewer_count(cam.id) if viewers is None else viewers.get(cam.id, 0),
        })
    return out


@bp.route("/cameras")
def cameras():
    return jsonify(cameras=camera_summaries(state()))


@bp.route("/workers")
def workers():
    return jsonify(workers=live_members(state().client, state().keys, "worker"))


def _since(value: str | None) -> str:
    """`since` as an exclusive XRANGE start: a stream id, or epoch milliseconds."""
    if not value:
        return "-"
    if not _STREAM_ID.match(value):
        raise ValueError("since must be a stream id (1700000000000-0) or epoch milliseconds")
    return "(" + (value if "-" in value else f"{value}-0")


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
    follow = request.args.get("follow") in ("1", "true", "yes")
    key = st.keys.detections(cam)

    def generate():
        """Runs on the client's thread/greenlet: one XRANGE page at a time."""
        sent, cursor = 0, start
        last_id = b"0-0"
        while sent < limit:
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
    st = state()
    st.settings.camera(cam)
    return jsonify(next(c for c in camera_summaries(st) if c["id"] == cam))
