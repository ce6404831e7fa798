"""The Flask application factory and the state shared by its routes."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import redis
from flask import Flask, current_app, jsonify

from common.config import Settings
from common.connection import CONNECTION_ERRORS, connect, describe_error
from common.errors import InvalidCameraIdError, UnknownCameraError
from common.keys import Keys
from web.broadcaster import Broadcaster


@dataclass
class WebState:
    """Everything the routes of one web process share."""

    settings: Settings
    client: redis.Redis
    keys: Keys
    broadcaster: Broadcaster
    started: float = field(default_factory=time.time)
    stopping: threading.Event = field(default_factory=threading.Event)

    def shutdown(self) -> None:
        """End every stream (MJPEG viewers, followed detections) so the process can exit promptly.

        Invoked by the gunicorn worker on SIGTERM, and by tests."""
        self.stopping.set()
        self.broadcaster.close()


def state() -> WebState:
    """The WebState of the app handling the current request."""
    return current_app.extensions["framecast"]


def create_app(settings: Settings, client: redis.Redis | None = None) -> Flask:
    """Build the web app; called once per web process (by gunicorn's worker, or the dev server)."""
    from web import api, auth, health, pages, video

    app = Flask(__name__)
    client = client or connect(settings.redis_url)
    keys = Keys(settings.key_prefix)
    app.extensions["framecast"] = WebState(
        settings, client, keys,
        Broadcaster(client, keys, settings.web.no_signal_after, settings.web.reader_linger),
    )
    auth.install(app, settings)
    for module in (pages, video, api, health):
        app.register_blueprint(module.bp)

    @app.errorhandler(UnknownCameraError)
    def _unknown(exc: UnknownCameraError):
        return jsonify(error="unknown camera", camera=exc.camera_id, message=str(exc)), 404

    @app.errorhandler(InvalidCameraIdError)
    def _invalid(exc: InvalidCameraIdError):
        return jsonify(error="invalid camera id", message=str(exc)), 400

    def _redis_down(exc: Exception):
        return jsonify(error="redis unavailable", message=f"cannot reach Redis ({describe_error(exc)}); "
                                                           "retry shortly"), 503

    for error_type in CONNECTION_ERRORS:
        app.register_error_handler(error_type, _redis_down)
    return app
