"""Token auth: when `web.token` is set (web.access generates one for non-loopback addresses), every endpoint but /healthz requires it, as
`Authorization: Bearer <token>` or `?token=` (for <img> tags, which cannot send headers)."""

from __future__ import annotations

import hmac

from flask import Flask, Request, jsonify, request

from common.config import Settings

OPEN_PATHS = {"/healthz"}


def given_token(req: Request) -> str:
    """The token a request carries: the Bearer header wins over `?token=`; '' when there is none."""
    header = req.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return req.args.get("token", "")


def install(app: Flask, settings: Settings) -> None:
    """Require the token on every request but OPEN_PATHS; a no-op when no token is configured (or
    `web.auth: none`). `framecast web` fills in a generated token first (web.access)."""
    if settings.web.token is None or settings.web.auth == "none":
        return
    token = settings.web.token.get_secret_value().strip()
    if not token:  # WebConfig refuses one; settings built around it must not serve openly either
        raise ValueError("web.token is empty: it would let every request in")
    expected = token.encode()

    @app.before_request
    def _require_token():
        if request.path in OPEN_PATHS:
            return None
        given = given_token(request)
        if given and hmac.compare_digest(given.encode(), expected):
            return None
        return jsonify(error="unauthorized", message="send the token as 'Authorization: Bearer <token>' "
                                                       "or ?token="), 401
