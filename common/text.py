"""Small conversions of what Redis replies with (bytes or str, depending on the client's options)."""

from __future__ import annotations


def as_str(value: bytes | str) -> str:
    """A reply value as text (Redis gives bytes unless the client decodes responses)."""
    return value.decode() if isinstance(value, bytes) else value
