"""The Flask application factory: one app per web process, its state, routes, error answers and
the headers every response carries."""

from __future__ import annotations

import threading

import redis
from flask import Flask, Response, jsonify

from common.config import Settings
from common.connection import CONNECTION_ERRORS, connect_to, describe_error
from common.errors import InvalidCameraIdError, UnknownCameraError
from common.keys import Keys
from web import api, auth, eventfeed, events, health, live_video, pages, video
from web import metrics as web_metrics
from web.answers import ReplayedAnswers
from web.broadcaster import Broadcaster, no_signal_threshold
from web.figures import SharedFigures
from web.followers import Followers
from web.limits import StreamLimit
from web.refused_keys import RefusedKeyError
from web.state import EXTENSION, WebState
from web.video_broadcaster import VideoBroadcaster

# The dashboard loads its own script and stylesheet, fetches the APIs, shows MJPEG and snapshot
# pictures from this origin (snapshots as blob: URLs), plays event clips from it and the H.264 live
# view (a MediaSource behind a blob: URL), and nothing else;
# nobody may frame it.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
                           "media-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _add_security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def create_app(settings: Settings, client: redis.Redis | None = None) -> Flask:
    """Build the web app of one web process (gunicorn's process after gevent patched it, or the dev server)."""
    app = Flask(__name__)
    client = client or connect_to(settings)
    keys = Keys(settings.key_prefix)
    stopping = threading.Event()
    broadcaster = Broadcaster(client, keys, lambda cam: no_signal_threshold(settings.web.no_signal_after,
                                                                       settings.camera(cam).fps),
                              settings.web.reader_linger)
    app.extensions[EXTENSION] = WebState(
        settings, client, keys, broadcaster,
        Followers(client, stopping, settings.web.reader_linger),
        StreamLimit(settings.web.max_streams_per_client),
        StreamLimit(settings.web.max_streams_per_client),
        SharedFigures(settings, client, keys,
                      lambda: web_metrics.viewers_per_camera(broadcaster.viewer_counts()), stopping),
        stopping,
        VideoBroadcaster(client, keys, settings.video, settings.web.reader_linger),
    )
    auth.install(app, settings)
    for module in (pages, video, live_video, api, events, eventfeed, health):
        app.register_blueprint(module.bp)
    app.after_request(_add_security_headers)

    @app.errorhandler(UnknownCameraError)
    def _unknown(exc: UnknownCameraError):
        return jsonify(error="unknown camera", camera=exc.camera_id, message=str(exc)), 404

    @app.errorhandler(InvalidCameraIdError)
    def _invalid(exc: InvalidCameraIdError):
        return jsonify(error="invalid camera id", message=str(exc)), 400

    @app.errorhandler(RefusedKeyError)
    def _refused_key(exc: RefusedKeyError):
        whose = "" if exc.cam is None else f"camera {exc.cam!r} is out of service: "
        return jsonify(error="refused key", camera=exc.cam, key=exc.key, reason=exc.reason,
                       message=f"{whose}Redis refuses {exc} (fix or delete the key)"), 503

    def _redis_down(exc: Exception):
        return jsonify(error="redis unavailable", message=f"cannot reach Redis ({describe_error(exc)}); "
                                                           "retry shortly"), 503

    for error_type in CONNECTION_ERRORS:
        app.register_error_handler(error_type, _redis_down)
    # Identical /api/cameras polls between two refreshes get the app's first answer again (web.answers).
    app.wsgi_app = ReplayedAnswers(app.wsgi_app, app.extensions[EXTENSION].figures)
    return app
