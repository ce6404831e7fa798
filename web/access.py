"""Secure by default: which token, if any, the web tier requires.

A web tier listening on a non-loopback address shows private cameras to its whole network, so it
never runs open there by accident: without `web.token` it generates a random token on first start and
keeps it in a file (`web.token_file`, mode 0600). A file, not Redis: the web role's Redis user is
read-only, a Redis without persistence (the compose file's) would lose it on restart, and gunicorn's
processes share it anyway because the master resolves it before forking. Several web hosts behind
one address need one token: set `web.token` there. Loopback (`framecast up`, `make run`) stays open,
and `web.auth: none` opts out everywhere.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path

from pydantic import SecretStr

from common.config import Settings
from common.errors import ConfigError

TOKEN_BYTES = 24  # 32 URL-safe characters


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost: assume the network can reach it


def default_token_file() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "framecast" / "web-token"


def token_file(settings: Settings) -> Path:
    return Path(settings.web.token_file).expanduser() if settings.web.token_file else default_token_file()


def stored_token(path: Path) -> str | None:
    """The token kept in `path`, or None when there is none yet. A file that holds no token (empty,
    or only whitespace) is a ConfigError: this module never writes one (the file appears whole), so
    someone else put it there, meaning a token, and it is neither served without nor overwritten."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    if not token:
        raise ConfigError(f"web.token_file {path} holds no token (it is empty): write the token in it, "
                          "or delete the file to have one generated")
    return token


def _create_token(path: Path) -> tuple[str, bool]:
    """A new random token written to `path` (0600), or the one another process wrote first: the
    file appears whole or not at all (written aside, then hard-linked into place)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(token + "\n")
        os.link(scratch, path)
    except FileExistsError:
        existing = stored_token(path)
        if existing is None:
            raise
        return existing, False
    finally:
        scratch.unlink(missing_ok=True)
    return token, True


def resolve_access(settings: Settings) -> tuple[Settings, str | None]:
    """`settings` with the token the web tier must require (None: open), and the token when it was
    generated just now (the one time it may be shown). Runs once in `framecast web` before serving."""
    web = settings.web
    if web.auth == "none":
        return settings.model_copy(update={"web": web.model_copy(update={"token": None})}), None
    if web.token is not None or is_loopback(web.host):
        return settings, None
    path = token_file(settings)
    token, created = (stored_token(path), False)
    if token is None:
        token, created = _create_token(path)
    secured = settings.model_copy(update={"web": web.model_copy(update={"token": SecretStr(token)})})
    return secured, token if created else None
