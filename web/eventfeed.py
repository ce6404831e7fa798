"""The live feed of event messages (`new` / `update` / `end`): the cameras' `eventfeed` streams,
followed from the moment of the request, as NDJSON or Server-Sent Events. The process reads each
stream once for all its followers (web.followers), so followers hold no Redis connection of their own;
a client may follow `web.max_streams_per_client` feeds at once."""

from __future__ import annotations

import json
from collections.abc import Iterator

from flask import Blueprint, Response, jsonify, request
from werkzeug.wsgi import ClosingIterator

from common.keys import EVENT_FIELD
from common.text import as_str
from web.events import NDJSON, SSE, BadRequest, cameras_asked, response_format
from web.refused_keys import RefusedKeyError, reading
from web.state import state

bp = Blueprint("eventfeed", __name__, url_prefix="/api/events")


def _feed_line(cam: str, entry_id: bytes | str, fields: dict, sse: bool) -> bytes:
    """One feed entry as an NDJSON line or an SSE event: the stored message with its camera and
    stream id (`feed_id`); an entry that is not a JSON object is passed on as `raw`."""
    raw = fields.get(EVENT_FIELD) or fields.get(as_str(EVENT_FIELD)) or b"{}"
    try:
        message = json.loads(raw)
    except ValueError:
        message = None
    if not isinstance(message, dict):
        message = {"raw": as_str(raw)}
    line = json.dumps({"camera": cam, "feed_id": as_str(entry_id), **message}, separators=(",", ":"))
    if sse:
        kind = message.get("type") if message.get("type") in ("new", "update", "end") else "message"
        return f"event: {kind}\nid: {cam}/{as_str(entry_id)}\ndata: {line}\n\n".encode()
    return line.encode() + b"\n"


@bp.route("/feed")
def feed():
    """New event messages (new/update/end) as they are written, from now on: NDJSON, or Server-Sent
    Events with `Accept: text/event-stream` or `?format=sse`. Keep-alives after 5 s of silence; ends
    when the process shuts down. Cameras whose feed key Redis refuses are named in X-Camera-Errors."""
    st = state()
    cams = cameras_asked(st)
    try:
        sse = response_format({"ndjson": NDJSON, "sse": SSE}) == "sse"
    except BadRequest as exc:
        return jsonify(error="bad request", message=str(exc)), 400
    keys = {st.keys.eventfeed(cam): cam for cam in cams}
    last: dict[str, bytes | str] = {}
    errors: dict[str, str] = {}
    # Positions are read before the response starts, so every entry written after this request was
    # answered is delivered, and a refused key is reported in the headers.
    for key, cam in keys.items():
        try:
            with reading(key, cam):
                newest = st.client.xrevrange(key, count=1)
            last[key] = newest[0][0] if newest else b"0-0"
        except RefusedKeyError as exc:
            errors[cam] = str(exc)
    release = st.feed_limit.acquire(request.remote_addr or "")
    if release is None:
        return too_many_feeds(st.feed_limit.per_client)
    keepalive = b": keep-alive\n\n" if sse else b"\n"

    def generate() -> Iterator[bytes]:
        """Runs on the client's thread/greenlet: what the process's shared readers (web.followers) hand
        this follower; a keep-alive after web.followers.KEEPALIVE_S seconds of silence."""
        yield keepalive  # the stream is open (with no readable camera: keep-alives until shutdown)
        try:
            yield from st.followers.lines(last, {key: keys[key] for key in last},
                                          lambda entry: _feed_line(keys[entry[0]], entry[1], entry[2], sse),
                                          keepalive, st.stopping)
        except RefusedKeyError:
            return  # logged by `reading`; the client sees the feed end and reconnects

    headers = {"X-Accel-Buffering": "no", "Cache-Control": "no-cache"}
    if errors:
        headers["X-Camera-Errors"] = json.dumps(errors, separators=(",", ":"))
    # The server closes the response however it ends, started or not: that releases the feed's slot.
    return Response(ClosingIterator(generate(), [release]), mimetype=SSE if sse else NDJSON, headers=headers,
                    direct_passthrough=True)


def too_many_feeds(limit: int):
    """The 429 answer for a client at `web.max_streams_per_client` followed feeds."""
    return jsonify(error="too many feeds", message=f"at most {limit} followed feeds per client at once; "
                                                    "close one and retry"), 429
