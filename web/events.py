"""Events API: event records from Redis (common.events_store) and their snapshots and clips from
the events directory (common.event_files); the live feed of event messages is web/eventfeed.py.

Ids are checked against EVENT_ID_RE before they touch Redis or the disk. Files are found by
camera directory, not through Redis, so a browser seeking in a clip (many Range requests) costs no
Redis round trip.
"""

from __future__ import annotations

import base64
import binascii
import json
import math

from flask import Blueprint, Response, jsonify, request, send_file

from common.event_files import EventPaths, events_root
from common.events_store import Cursor, EventReader, InvalidEventIdError, validate_event_id
from web.query import bounded_int, epoch_seconds
from web.refused_keys import RefusedKeyError, reading
from web.state import WebState, state

bp = Blueprint("events", __name__, url_prefix="/api/events")
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
MAX_FILTER_LEN = 128
NDJSON = "application/x-ndjson"
SSE = "text/event-stream"


class BadRequest(ValueError):
    """A query the client can fix: answered 400 with the message."""


def cameras_asked(st: WebState) -> list[str]:
    """The cameras a request asks about: `?camera=` (404 unknown, 400 invalid) or all configured."""
    cam = request.args.get("camera")
    if cam:
        st.settings.camera(cam)
        return [cam]
    return [c.id for c in st.settings.cameras]


def response_format(choices: dict[str, str]) -> str:
    """The response format: `?format=` (one of `choices`, name -> media type; 400 otherwise), else the
    Accept header's preferred one of them, else the first (what a plain `Accept: */*` gets)."""
    name = request.args.get("format")
    if name:
        if name not in choices:
            raise BadRequest(f"format must be one of {', '.join(choices)}")
        return name
    accept = request.accept_mimetypes
    first = next(iter(choices))
    best = max(choices, key=lambda n: (accept.quality(choices[n]) if accept.provided else 0, n == first))
    return best


# --- the list, paged across cameras -----------------------------------------------------------------
# A page cursor holds, per camera still to read, where that camera's index continues: null (from its
# newest event) or [start time, id] of the last event it gave. Cameras absent from it are done.

def encode_cursor(positions: dict[str, Cursor | None]) -> str:
    raw = json.dumps({cam: None if p is None else [p[0], p[1]] for cam, p in positions.items()},
                     separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(value: str, cams: list[str]) -> dict[str, Cursor | None]:
    """A cursor from `encode_cursor`, checked: only the cameras asked for, ids that are event ids."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError):
        raise BadRequest("cursor is not one this API gave (pass `next` from the previous page)") from None
    if not isinstance(data, dict):
        raise BadRequest("cursor is not one this API gave")
    out: dict[str, Cursor | None] = {}
    for cam, position in data.items():
        if cam not in cams:
            raise BadRequest(f"cursor names camera {cam[:64]!r}, which this query does not ask for")
        if position is None:
            out[cam] = None
            continue
        if (not isinstance(position, list) or len(position) != 2 or not isinstance(position[0], int | float)
                or isinstance(position[0], bool) or not math.isfinite(position[0])):
            raise BadRequest("cursor is not one this API gave")
        try:
            out[cam] = (float(position[0]), validate_event_id(position[1]))
        except InvalidEventIdError:
            raise BadRequest("cursor is not one this API gave") from None
    return out


def _filters() -> dict:
    filters: dict = {"since": epoch_seconds("after"), "until": epoch_seconds("before")}
    for name in ("label", "zone"):
        value = request.args.get(name) or None
        if value is not None and len(value) > MAX_FILTER_LEN:
            raise BadRequest(f"{name} is longer than {MAX_FILTER_LEN} characters")
        filters[name] = value
    if filters["since"] is not None and filters["until"] is not None and filters["since"] > filters["until"]:
        raise BadRequest("after is later than before: nothing can match")
    return filters


def list_events(st: WebState, positions: dict[str, Cursor | None], filters: dict,
                limit: int) -> tuple[list[dict], dict[str, Cursor | None], dict[str, str]]:
    """Up to `limit` events of the cameras in `positions`, newest first across cameras, where to
    continue (cameras done are left out) and the cameras whose keys Redis refused (cam -> reason)."""
    reader = EventReader(st.client, st.keys)
    found: dict[str, tuple[list[dict], Cursor | None]] = {}
    errors: dict[str, str] = {}
    for cam, position in positions.items():
        try:
            with reading(st.keys.events(cam), cam):
                found[cam] = reader.query(cam, before=position, limit=limit, **filters)
        except RefusedKeyError as exc:
            errors[cam] = str(exc)
    # Within a camera the index orders by (start time, id), newest first; the same key merges cameras.
    merged = sorted(((event, cam) for cam, (events, _) in found.items() for event in events),
                    key=lambda pair: (pair[0]["start_time"], pair[1], pair[0]["id"]), reverse=True)[:limit]
    taken = {cam: 0 for cam in found}
    for _, cam in merged:
        taken[cam] += 1
    following: dict[str, Cursor | None] = {}
    for cam, (events, after_last) in found.items():
        if taken[cam] == len(events):
            if after_last is not None:
                following[cam] = after_last
        elif taken[cam]:
            last = events[taken[cam] - 1]
            following[cam] = (float(last["start_time"]), last["id"])
        else:
            following[cam] = positions[cam]
    return [event for event, _ in merged], following, errors


@bp.route("")
def events():
    """Events newest first across cameras: filters camera, label, zone, after/before (epoch s or
    ms), limit, cursor; JSON, or NDJSON (`?format=ndjson` / Accept) with the cursor in X-Next-Cursor."""
    st = state()
    cams = cameras_asked(st)
    try:
        ndjson = response_format({"json": "application/json", "ndjson": NDJSON}) == "ndjson"
        filters = _filters()
        limit = bounded_int("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        cursor = request.args.get("cursor")
        positions = decode_cursor(cursor, cams) if cursor else dict.fromkeys(cams)
    except ValueError as exc:
        return jsonify(error="bad request", message=str(exc)), 400
    found, following, errors = list_events(st, positions, filters, limit)
    next_cursor = encode_cursor(following) if following else None
    if ndjson:
        body = "".join(json.dumps(event, separators=(",", ":")) + "\n" for event in found)
        response = Response(body, mimetype=NDJSON)
        if next_cursor:
            response.headers["X-Next-Cursor"] = next_cursor
        if errors:
            response.headers["X-Camera-Errors"] = json.dumps(errors, separators=(",", ":"))
        return response
    body = {"events": found, "next": next_cursor}
    if errors:
        body["camera_errors"] = errors
    return jsonify(body)


# --- one event, its files -----------------------------------------------------------------------------

def _bad_id(event_id: str):
    try:
        validate_event_id(event_id)
    except InvalidEventIdError as exc:
        return jsonify(error="invalid event id", message=str(exc)), 400
    return None


@bp.route("/<event_id>")
def event(event_id: str):
    """One event's latest state, from whichever camera has it; 404 when none does."""
    if (bad := _bad_id(event_id)) is not None:
        return bad
    st = state()
    reader = EventReader(st.client, st.keys)
    refused: RefusedKeyError | None = None
    for cam in cameras_asked(st):
        key = st.keys.event(cam, event_id)
        try:
            with reading(key, cam):
                found = reader.get(cam, event_id)
        except RefusedKeyError as exc:
            refused = exc
            continue
        if found is not None:
            return jsonify(found)
    if refused is not None:
        raise refused  # it may be the one asked for: 503 naming the key, not a misleading 404
    return jsonify(error="unknown event", event=event_id, message=f"no event {event_id!r} (it may have been "
                                                                   "trimmed or never existed)"), 404


def _send_event_file(event_id: str, kind: str, mimetype: str):
    """The event's snapshot or clip with conditional and Range answers (206, 416), or 404 JSON."""
    if (bad := _bad_id(event_id)) is not None:
        return bad
    st = state()
    paths = EventPaths(events_root(st.settings))
    for cam in cameras_asked(st):
        path = paths.snapshot_path(cam, event_id) if kind == "snapshot" else paths.clip_path(cam, event_id)
        if paths.readable(path):  # framecast's own file: never a symlink planted in the store
            try:
                response = send_file(path, mimetype=mimetype, conditional=True, etag=True, max_age=0)
            except FileNotFoundError:  # retention deleted it just now
                break
            response.headers["Cache-Control"] = "no-cache"  # a snapshot improves while its event runs
            return response
    return jsonify(error=f"no {kind}", event=event_id,
                   message=f"event {event_id!r} has no {kind} (not written yet, not kept, or deleted by "
                           "retention)"), 404


@bp.route("/<event_id>/snapshot.jpg")
def snapshot(event_id: str):
    """The event's best snapshot (JPEG)."""
    return _send_event_file(event_id, "snapshot", "image/jpeg")


@bp.route("/<event_id>/clip.mp4")
def clip(event_id: str):
    """The event's H.264 clip; Range requests get 206 (browsers seek with them), bad ranges 416."""
    return _send_event_file(event_id, "clip", "video/mp4")
