"""Where an event's snapshot and clip live on disk: `<events.dir>/<cam>/<event_id>.jpg` and
`<event_id>.mp4`, so any process with the same volume (a web process, the tracking owner, retention)
finds them. Camera and event ids are validated before they become a path: no traversal."""

from __future__ import annotations

import os
from pathlib import Path

from common.config import Settings, validate_camera_id
from common.events_store import validate_event_id

SNAPSHOT_SUFFIX = ".jpg"
CLIP_SUFFIX = ".mp4"


def events_root(settings: Settings) -> Path:
    """`events.dir` as a path: a relative one is relative to the config file (as file sources are),
    or to the working directory when there is no file."""
    root = Path(settings.events.dir).expanduser()
    if root.is_absolute() or not settings.config_path:
        return root
    return Path(settings.config_path).resolve().parent / root


class EventPaths:
    """Paths of event files under one events directory (nothing is read or written here)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def _path(self, cam: str, event_id: str, suffix: str) -> Path:
        validate_camera_id(cam)
        return self.root / cam / f"{validate_event_id(event_id)}{suffix}"

    def snapshot_path(self, cam: str, event_id: str) -> Path:
        return self._path(cam, event_id, SNAPSHOT_SUFFIX)

    def clip_path(self, cam: str, event_id: str) -> Path:
        return self._path(cam, event_id, CLIP_SUFFIX)
