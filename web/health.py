"""Health endpoints: /healthz (the process is up), /readyz (frames are flowing), /metrics."""

from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from common.connection import CONNECTION_ERRORS, describe_error
from web import metrics as web_metrics
from web.app import state

bp = Blueprint("health", __name__)


@bp.route("/healthz")
def healthz():
    return jsonify(status="ok")


def last_entry_age_s(client, key: str) -> float | None:
    """Seconds since the newest entry of a stream was added (from its id; no payload is read)."""
    try:
        info = client.xinfo_stream(key)
    except Exception as exc:  # a missing stream answers with an error
        if isinstance(exc, CONNECTION_ERRORS):
            raise
        return None
    last = info.get("last-generated-id") or info.get("last_generated_id")
    if not last or info.get("length", 0) == 0:
        return None
    ms = int((last.decode() if isinstance(last, bytes) else last).split("-")[0])
    return max(0.0, time.time() - ms / 1000)


@bp.route("/readyz")
def readyz():
    """200 when Redis answers and every configured camera has a fresh annotated frame; else 503."""
    st = state()
    try:
        st.client.ping()
    except CONNECTION_ERRORS as exc:
        return jsonify(ready=False, redis=False, message=describe_error(exc)), 503
    cameras, ready = {}, True
    for cam in st.settings.cameras:
        age = last_entry_age_s(st.client, st.keys.annotated(cam.id))
        ok = age is not None and age <= st.settings.web.stale_after
        ready &= ok
        cameras[cam.id] = {"ok": ok, "last_frame_age_s": None if age is None else round(age, 3)}
    not_flowing = [cid for cid, c in cameras.items() if not c["ok"]]
    body = {"ready": ready and bool(cameras), "redis": True, "cameras": cameras}
    if not_flowing:
        body["message"] = "no fresh annotated frames for: " + ", ".join(not_flowing)
    elif not cameras:
        body["message"] = "no cameras configured"
    return jsonify(body), 200 if body["ready"] else 503


@bp.route("/metrics")
def metrics():
    return Response(generate_latest(web_metrics.registry()), mimetype=CONTENT_TYPE_LATEST)
