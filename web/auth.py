"""Optional token auth: when `web.token` is set, every endpoint but /healthz requires it, as
`Authorization: Bearer <token>` or `?token=` (for <img> tags, which cannot send headers)."""

from __future__ import annotations

import hmac

from flask import Flask, jsonify, request

from common.config import Settings

OPEN_PATHS = {"/healthz"}


def install(app: Flask, settings: Settings) -> None:
    token = settings.web.token.get_secret_value() if settings.web.token else None
    if not token:
        return
    expected = token.encode()

    @app.before_request
    def _require_token():
        if request.path in OPEN_PATHS:
            return None
        given = request.args.get("token", "")
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("bearer "):
            given = header[7:].strip()
        if given and hmac.compare_digest(given.encode(), expected):
            return None
        return jsonify(error="unauthorized", message="send the token as 'Authorization: Bearer <token>' "
                                                       "or ?token="), 401
