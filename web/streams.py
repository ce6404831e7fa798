"""Which of a camera's streams a request means."""

from __future__ import annotations

from common.keys import Keys


def stream_key(keys: Keys, cam: str, raw: bool) -> str:
    """The annotated frames of `cam`, or with `raw` the producer's."""
    return keys.frames(cam) if raw else keys.annotated(cam)
