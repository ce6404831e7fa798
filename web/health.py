"""Health endpoints: /healthz (the process is up), /readyz (frames are flowing), /metrics."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from common.connection import CONNECTION_ERRORS, describe_error, is_writable_primary
from web import metrics as web_metrics
from web.state import state
from web.streams import last_entry_age_s

bp = Blueprint("health", __name__)


@bp.route("/healthz")
def healthz():
    """200 while the process is up (no Redis call: liveness, not readiness)."""
    return jsonify(status="ok")


@bp.route("/readyz")
def readyz():
    """200 when Redis answers and every configured camera has a fresh annotated frame; else 503."""
    st = state()
    try:
        st.client.ping()
    except CONNECTION_ERRORS as exc:
        return jsonify(ready=False, redis=False, message=describe_error(exc)), 503
    if not is_writable_primary(st.client):  # a demoted primary answers PING but takes no frames
        return jsonify(ready=False, redis=False, message="Redis is not a writable primary (a replica, "
                       "or a cluster that is failing over)"), 503
    cameras, ready = {}, True
    for camera in st.settings.cameras:
        age = last_entry_age_s(st.client, st.keys.annotated(camera.id))
        ok = age is not None and age <= st.settings.web.stale_after
        ready &= ok
        cameras[camera.id] = {"ok": ok, "last_frame_age_s": None if age is None else round(age, 3)}
    not_flowing = [cam for cam, figures in cameras.items() if not figures["ok"]]
    body = {"ready": ready and bool(cameras), "redis": True, "cameras": cameras}
    if not_flowing:
        body["message"] = "no fresh annotated frames for: " + ", ".join(not_flowing)
    elif not cameras:
        body["message"] = "no cameras configured"
    return jsonify(body), 200 if body["ready"] else 503


@bp.route("/metrics")
def metrics():
    """Prometheus metrics of this process, or of all web processes with several."""
    return Response(generate_latest(web_metrics.registry()), mimetype=CONTENT_TYPE_LATEST)
