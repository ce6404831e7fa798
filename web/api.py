"""JSON APIs: cameras with their live figures, workers, and the detection history as NDJSON."""

from __future__ import annotations

import re
from collections.abc import Iterator

from flask import Blueprint, Response, jsonify, request
from werkzeug.wsgi import ClosingIterator

from common.keys import DETECTIONS_FIELD
from common.registry import Kind, live_members
from common.stats import StatsField
from web import metrics as web_metrics
from web.eventfeed import too_many_feeds
from web.events import event_overlay
from web.query import flag
from web.refused_keys import RefusedKeyError, reading
from web.stages import recent_stages
from web.state import WebState, state
from web.streams import camera_figures

bp = Blueprint("api", __name__, url_prefix="/api")
PAGE = 500
MAX_LIMIT = 1_000_000
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


def _members(st: WebState, kind: Kind) -> tuple[list[dict], RefusedKeyError | None]:
    """The live members of a registry, or none and the error when Redis refuses to read it."""
    try:
        with reading(st.keys.workers if kind == "worker" else st.keys.producers):
            return live_members(st.client, st.keys, kind), None
    except RefusedKeyError as exc:
        return [], exc


def camera_summaries(st: WebState) -> tuple[list[dict], dict[str, str]]:
    """Each configured camera with its figures (for /api/cameras and the dashboard), and the
    registries Redis refused to read (kind -> reason)."""
    workers, workers_error = _members(st, "worker")
    producers, producers_error = _members(st, "producer")
    registry_errors = {kind: str(exc) for kind, exc in (("workers", workers_error), ("producers", producers_error))
                       if exc is not None}
    viewers = web_metrics.viewers_per_camera(st.broadcaster.viewer_counts())
    out = []
    for camera in st.settings.cameras:
        stats, age_s, errors = camera_figures(st.client, st.keys, camera.id)
        status = "live" if age_s is not None and age_s < st.settings.web.stale_after else (
            "stale" if age_s is not None else "waiting")
        summary = {
            "id": camera.id, "name": camera.display_name, "source_kind": camera.source_kind, "source": camera.source_display,
            "mode": camera.mode, "status": "out_of_service" if errors else status,
            "fps_in": None if producers_error else _fps(producers, camera.id),
            "fps_out": None if workers_error else _fps(workers, camera.id),
            "latency_ms": stats.get(StatsField.LATENCY_MS), "infer_ms": stats.get(StatsField.INFER_MS),
            "last_frame_age_s": None if age_s is None else round(age_s, 3),
            "published": int(stats.get(StatsField.PUBLISHED, 0)), "processed": int(stats.get(StatsField.PROCESSED, 0)),
            "dropped": int(stats.get(StatsField.DROPPED, 0)), "lost": int(stats.get(StatsField.LOST, 0)),
            "skipped_stale": int(stats.get(StatsField.SKIPPED_STALE, 0)),
            "failed": int(stats.get(StatsField.FAILED, 0)), "source_reconnects": int(stats.get(StatsField.RECONNECTS, 0)),
            "motion": _motion_figures(camera.motion_enabled, stats),
            "workers": [w["id"] for w in workers if camera.id in w.get("cameras", [])],
            "viewers": viewers.get(camera.id, 0),
            "stages": recent_stages(st.client, st.keys, camera.id),  # p50/p95 per stage, newest frames
            "send_ms": web_metrics.counts_for(camera.id).send_summary(),  # this process's viewers
        }
        if errors:
            summary["error"] = "; ".join(errors)
        summary.update(event_overlay(st, camera))  # zones, lines, live counts
        out.append(summary)
    return out, registry_errors


def _motion_figures(enabled: bool, stats: dict) -> dict:
    """Motion gating of one camera: whether it is on, frames by how the model saw them, model runs."""
    fields = {"inspected_full": StatsField.INSPECTED_FULL, "inspected_regions": StatsField.INSPECTED_REGIONS,
              "not_inspected": StatsField.NOT_INSPECTED, "inference_calls": StatsField.INFERENCE_CALLS}
    return {"enabled": enabled, **{name: int(stats.get(field, 0)) for name, field in fields.items()}}


@bp.route("/cameras")
def cameras():
    """Every configured camera with its live figures; `registry_errors` when Redis refuses a registry."""
    summaries, registry_errors = camera_summaries(state())
    body: dict = {"cameras": summaries}
    if registry_errors:
        body["registry_errors"] = registry_errors
    return jsonify(body)


@bp.route("/workers")
def workers():
    """The live workers, from their heartbeats; 503 JSON naming the key when Redis refuses the registry."""
    members, error = _members(state(), "worker")
    if error is not None:
        return jsonify(error="refused key", key=error.key, reason=error.reason, workers=[],
                       message=f"Redis refuses the worker registry ({error}); fix or delete the key"), 503
    return jsonify(workers=members)


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

    def page(cursor: str | bytes, count: int) -> list:
        with reading(key, cam):
            return st.client.xrange(key, min=cursor, max="+", count=count)

    # The first page is read before the response starts, so a refused key is a 503 JSON answer
    # (RefusedKeyError) rather than a stream that breaks after its headers.
    first = page(start, min(PAGE, limit)) if start is not None else []

    def generate() -> Iterator[bytes]:
        """Runs on the client's thread/greenlet: one XRANGE page at a time."""
        entries, sent, last_id = first, 0, b"0-0"
        try:
            while entries:
                for entry_id, fields in entries:
                    yield _line(entry_id, fields.get(DETECTIONS_FIELD, b"{}"))
                    last_id = entry_id
                sent += len(entries)
                if sent >= limit:
                    break
                entries = page(b"(" + last_id, min(PAGE, limit - sent))
            if follow:
                yield from _follow(last_id)
        except RefusedKeyError:
            return  # logged by `reading`; the client sees the stream end

    def _follow(last_id: bytes) -> Iterator[bytes]:
        """What the process's shared reader of the key (web.followers) hands this follower."""
        if last_id == b"0-0":  # nothing in the history: follow from the stream's current end
            with reading(key, cam):
                newest = st.client.xrevrange(key, count=1)
            last_id = newest[0][0] if newest else b"0-0"
        yield b"\n"  # the stream is open; blank lines are keep-alives and carry no record
        yield from st.followers.lines({key: last_id}, {key: cam},
                                      lambda entry: _line(entry[1], entry[2].get(DETECTIONS_FIELD, b"{}")),
                                      b"\n", st.stopping)

    release = None
    if follow:
        release = st.feed_limit.acquire(request.remote_addr or "")
        if release is None:
            return too_many_feeds(st.feed_limit.per_client)
    # The server closes the response however it ends, started or not: that releases the feed's slot.
    body = ClosingIterator(generate(), [release] if release else [])
    return Response(body, mimetype="application/x-ndjson", direct_passthrough=True,
                    headers={"X-Accel-Buffering": "no", "Cache-Control": "no-cache"})


@bp.route("/cameras/<cam>")
def camera(cam: str):
    """One camera with its live figures."""
    st = state()
    st.settings.camera(cam)
    return jsonify(next(c for c in camera_summaries(st)[0] if c["id"] == cam))
