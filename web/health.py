"""Health endpoints: /healthz (the process is up), /readyz (frames are flowing), /metrics."""

from __future__ import annotations

import time

from flask import Blueprint, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from common import threads
from common.connection import CONNECTION_ERRORS, describe_error, is_writable_primary
from web import metrics as web_metrics
from web.state import state

bp = Blueprint("health", __name__)


@bp.route("/healthz")
def healthz():
    """200 while the process is up (no Redis call: liveness, not readiness)."""
    return jsonify(status="ok")


@bp.route("/readyz")
def readyz():
    """200 when Redis answers and every configured camera has a fresh annotated frame (fresh for its
    own rate, web.figures.stale_after) and readable keys, from the process's shared figures; else 503 naming the cameras and, for a camera out of service (a key Redis refuses), the key
    and Redis's reply. A service thread of this process that died (it is exiting with 70) makes it 503
    at once, whatever else holds."""
    st = state()
    if not threads.healthy():
        dead = threads.dead()
        return jsonify(ready=False, dead_threads=dead, message="a service thread died ("
                       + ", ".join(d["thread"] for d in dead) + "); this web process is exiting to be restarted"), 503
    try:
        st.client.ping()
    except CONNECTION_ERRORS as exc:
        return jsonify(ready=False, redis=False, message=describe_error(exc)), 503
    if not is_writable_primary(st.client):  # a demoted primary answers PING but takes no frames
        return jsonify(ready=False, redis=False, message="Redis is not a writable primary (a replica, "
                       "or a cluster that is failing over)"), 503
    figures = st.figures.current()
    now_ms = time.time() * 1000
    cameras, ready = {}, True
    for camera in st.settings.cameras:
        summary, frame_ms = figures.camera(camera.id), figures.frame_ms[camera.id]
        age = None if frame_ms is None else max(0.0, (now_ms - frame_ms) / 1000)  # as of now
        threshold = figures.stale_after[camera.id]
        ok = age is not None and age <= threshold and "error" not in summary
        ready &= ok
        cameras[camera.id] = {"ok": ok, "last_frame_age_s": None if age is None else round(age, 3),
                              "stale_after_s": round(threshold, 3)}
        if "error" in summary:
            cameras[camera.id]["error"] = summary["error"]
    out_of_service = [cam for cam, figures in cameras.items() if "error" in figures]
    not_flowing = [cam for cam, figures in cameras.items() if not figures["ok"] and cam not in out_of_service]
    body = {"ready": ready and bool(cameras), "redis": True, "cameras": cameras}
    problems = ([f"out of service (Redis refuses a key) for: {', '.join(out_of_service)}"]
                if out_of_service else []) + (
        [f"no fresh annotated frames for: {', '.join(not_flowing)}"] if not_flowing else [])
    if problems:
        body["message"] = "; ".join(problems)
    elif not cameras:
        body["message"] = "no cameras configured"
    return jsonify(body), 200 if body["ready"] else 503


@bp.route("/metrics")
def metrics():
    """Prometheus metrics of this process, or of all web processes with several."""
    return Response(generate_latest(web_metrics.registry()), mimetype=CONTENT_TYPE_LATEST)
