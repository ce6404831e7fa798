"""Removing credentials from URLs and text before they reach logs, metrics, APIs or pages."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

# scheme://user:password@host or scheme://token@host: everything between '//' and the last '@'
# before the host is a credential.
_CREDENTIALS_IN_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<cred>[^/\s@]+)@")
# ?password=..., &token=..., etc.
_SECRET_QUERY = re.compile(r"(?i)([?&](?:\w+_)?(?:password|passwd|pwd|pass|token|key|secret|auth)=)[^&\s#]+")

REDACTED = "***"


def redact_url(url: str) -> str:
    """Return `url` with any user/password and secret query parameters replaced by ***."""
    if not isinstance(url, str):
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if parts.scheme and (parts.username is not None or parts.password is not None):
        # the netloc after the credentials as written: one host, or a cluster's host,host list
        parts = parts._replace(netloc=f"{REDACTED}@{parts.netloc.rpartition('@')[2]}")
        url = urlunsplit(parts)
    return _SECRET_QUERY.sub(lambda m: m.group(1) + REDACTED, url)


def redact_text(text: str) -> str:
    """Redact every URL credential found anywhere in free text (log messages, exception text)."""
    if not isinstance(text, str):
        return text
    text = _CREDENTIALS_IN_URL.sub(lambda m: m.group("scheme") + REDACTED + "@", text)
    return _SECRET_QUERY.sub(lambda m: m.group(1) + REDACTED, text)


def url_origin(url: str) -> str:
    """`scheme://host[:port]` only: no credentials, path or query. How a URL that is itself a secret
    (a webhook's, whose path or query often holds the token) is named in logs and metric labels."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "?"
    host = parts.hostname or "?"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}"
