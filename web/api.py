"""JSON APIs: cameras with their live figures (filtered and paged), workers, and the detection
history as NDJSON."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from flask import Blueprint, Response, jsonify, request
from werkzeug.wsgi import ClosingIterator

from common.keys import DETECTIONS_FIELD
from common.registry import Kind, live_members
from web.answers import FIGURES_KEY
from web.eventfeed import too_many_feeds
from web.figures import STATUSES, Figures
from web.query import bounded_int, flag
from web.refused_keys import RefusedKeyError, reading
from web.state import WebState, state

bp = Blueprint("api", __name__, url_prefix="/api")
PAGE = 500
MAX_LIMIT = 1_000_000
MAX_CAMERAS_PAGE = 10_000
_STREAM_ID = re.compile(r"^(\d{1,20})(?:-(\d{1,20}))?$")
_ID_PART_END = 2**64  # each part of a Redis stream id is an unsigned 64-bit number


def _members(st: WebState, kind: Kind) -> tuple[list[dict], RefusedKeyError | None]:
    """The live members of a registry, or none and the error when Redis refuses to read it."""
    try:
        with reading(st.keys.workers if kind == "worker" else st.keys.producers):
            return live_members(st.client, st.keys, kind), None
    except RefusedKeyError as exc:
        return [], exc


def _listed(name: str) -> list[str]:
    """A query parameter given repeated and/or as a comma list (`?camera=a&camera=b,c`), in order,
    each value once."""
    values = [v.strip() for given in request.args.getlist(name) for v in given.split(",")]
    return list(dict.fromkeys(v for v in values if v))


def _selected(st: WebState, figures: Figures) -> list[int]:
    """The positions of the cameras a request asks for, in config order: `?camera=` (404 unknown,
    400 invalid) and `?status=` (400 for a status that is not one of STATUSES)."""
    cams = _listed("camera")
    for cam in cams:
        st.settings.camera(cam)
    statuses = _listed("status")
    unknown = [s for s in statuses if s not in STATUSES]
    if unknown:
        raise ValueError(f"unknown status {unknown[0][:40]!r}: status must be one of {', '.join(STATUSES)}")
    wanted = set(cams)
    return [i for i, summary in enumerate(figures.cameras)
            if (not wanted or summary["id"] in wanted) and (not statuses or summary["status"] in statuses)]


@bp.route("/cameras")
def cameras():
    """Every configured camera with its live figures from this process's shared figures (web.figures):
    `?camera=` and `?status=` filter, `?limit=` and `?offset=` page; `total` counts the cameras that
    match, `next_offset` (with a limit) where the next page starts (null on the last),
    `workers_live` the live workers; `registry_errors` when Redis refuses a registry."""
    st = state()
    try:
        limit = bounded_int("limit", 0, 1, MAX_CAMERAS_PAGE) or None
        offset = bounded_int("offset", 0, 0, MAX_LIMIT)
        figures = st.figures.current()
        chosen = _selected(st, figures)
    except ValueError as exc:
        return jsonify(error="bad request", message=str(exc)), 400
    page = chosen[offset:] if limit is None else chosen[offset:offset + limit]
    # Ready JSON joined in the order jsonify would write the keys (sorted).
    body = [b'{"cameras":[', b",".join(figures.fragments[i] for i in page), b'],"figures_at":',
            json.dumps(round(figures.at, 3)).encode()]
    if limit is not None:
        following = offset + limit if offset + limit < len(chosen) else None
        body += [b',"next_offset":', json.dumps(following).encode()]
    if figures.registry_errors:
        body += [b',"registry_errors":', json.dumps(figures.registry_errors, sort_keys=True).encode()]
    body += [b',"total":', str(len(chosen)).encode(), b',"workers_live":', str(figures.workers_live).encode(), b"}"]
    request.environ[FIGURES_KEY] = figures  # web.answers keeps this answer with them
    return Response(b"".join(body), mimetype="application/json")


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
    """One camera with its live figures (the shared figures, as /api/cameras)."""
    st = state()
    st.settings.camera(cam)
    return Response(st.figures.current().fragment(cam), mimetype="application/json")
