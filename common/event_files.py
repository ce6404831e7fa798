"""Where an event's snapshot and clip live on disk, and which files there are framecast's own.

Layout: `<events.dir>/framecast-events/<cam>/<event_id>.jpg` and `<event_id>.mp4`, so any process with
the same volume (a web process, the tracking owner, retention) finds them. framecast writes, and
retention deletes, only inside that store folder, which it makes itself and marks with a
`.framecast-store` file: `events.dir` may hold other programs' files, and a `framecast-events` folder
without the marker (someone else's) is never written to or cleaned. Inside the store only names
framecast writes (EVENT_FILE_RE) are its files; anything else, and every symlink, is left alone.
Camera and event ids are validated before they become a path: no traversal.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from common.camera_id import CAMERA_ID_RE, validate_camera_id
from common.config import Settings
from common.events_config import EVENT_ID_RE, resolve_events_dir
from common.events_store import validate_event_id

SNAPSHOT_SUFFIX = ".jpg"
CLIP_SUFFIX = ".mp4"
PART_SUFFIX = ".part"  # a file being written, renamed to its final name when complete
STORE_DIR = "framecast-events"
STORE_MARKER = ".framecast-store"
MARKER_TEXT = ("framecast made this folder for event snapshots and clips; its retention deletes the "
               "files it wrote here, and nothing else.\n")
# The names framecast gives files in a camera's folder: `<event id>.jpg|.mp4`, `.part` while written.
EVENT_FILE_RE = re.compile(rf"^(?P<event>{EVENT_ID_RE.pattern[1:-1]})(?:\.jpg|\.mp4)(?:\.part)?$")


class ForeignStoreError(PermissionError):
    """A place framecast would write to is not its own (a folder it did not make, a symlink)."""


def events_root(settings: Settings) -> Path:
    """`events.dir` as a path: a relative one is relative to the config file (as file sources are),
    or to the working directory when there is no file."""
    return resolve_events_dir(settings.events.dir, settings.config_path)


def is_camera_dir_name(name: str) -> bool:
    return bool(CAMERA_ID_RE.match(name))


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


class EventPaths:
    """Paths of event files under one events directory (nothing is read or written here)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.store = self.root / STORE_DIR

    def owned(self) -> bool:
        """Whether the store folder is framecast's: a real folder (not a symlink) holding the marker
        file framecast wrote when it made it. Raises OSError when it cannot be looked at (ELOOP, EACCES)."""
        if not _is_real_dir(self.store):
            return False
        try:
            return stat.S_ISREG(os.lstat(self.store / STORE_MARKER).st_mode)
        except FileNotFoundError:
            return False

    def camera_dir(self, cam: str) -> Path:
        return self.store / validate_camera_id(cam)

    def _path(self, cam: str, event_id: str, suffix: str) -> Path:
        return self.camera_dir(cam) / f"{validate_event_id(event_id)}{suffix}"

    def snapshot_path(self, cam: str, event_id: str) -> Path:
        return self._path(cam, event_id, SNAPSHOT_SUFFIX)

    def clip_path(self, cam: str, event_id: str) -> Path:
        return self._path(cam, event_id, CLIP_SUFFIX)

    def readable(self, path: Path) -> bool:
        """Whether `path` (one of the paths above) is a file framecast wrote that can be served: a
        regular file, not a symlink, in a camera folder that is a real folder of an owned store."""
        try:
            return (stat.S_ISREG(os.lstat(path).st_mode) and _is_real_dir(path.parent)
                    and self.owned())
        except OSError:
            return False
