"""Where event snapshots and clips live on disk, the thread that encodes clips, and retention.

Layout (common.event_files): `<events.dir>/framecast-events/<cam>/<event_id>.jpg` (the best snapshot)
and `<event_id>.mp4` (the clip), so any web process with the same volume serves any event, and
retention can delete an event's files together. Files appear atomically (written aside, then renamed).
framecast writes and deletes only inside the store folder it made (marked by `.framecast-store`), and
there only the names it gives; other files, folders and every symlink are left alone and logged once.
"""

from __future__ import annotations

import logging
import os
import queue
import stat
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from common.event_files import (
    EVENT_FILE_RE,
    MARKER_TEXT,
    PART_SUFFIX,
    STORE_MARKER,
    EventPaths,
    ForeignStoreError,
    is_camera_dir_name,
)
from common.logs import camera_logger
from common.threads import service_thread
from tracker.clips import ClipInfo, write_clip

log = logging.getLogger("framecast.events")

PART_GRACE = 3600.0  # seconds a `.part` file is taken to be still being written
MAX_REMEMBERED = 10_000  # foreign paths remembered so each is logged once (beyond: no more such logs)


def _logger(cam: str | None) -> logging.Logger | logging.LoggerAdapter:
    """The camera's logger; the stage's for what is no camera's (the store folder, a stray entry in it)."""
    return camera_logger("framecast.events", cam) if cam else log


class EventFiles(EventPaths):
    """Atomic writes and retention under one events directory (the paths come from
    common.event_files, which web processes share); safe to share between threads."""

    def __init__(self, root: str | os.PathLike):
        super().__init__(root)
        self.stats = {"retention_errors": 0, "foreign": 0}
        self._noted: set[str] = set()
        self._lock = threading.Lock()

    # --- writing ---------------------------------------------------------------------------------
    def prepare_camera_dir(self, cam: str) -> Path:
        """The camera's folder in the store, made if need be (the store too, with its marker).
        Raises ForeignStoreError when the store or the camera's folder is not framecast's."""
        folder = self.camera_dir(cam)
        self._make_store()
        try:
            os.mkdir(folder)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(folder).st_mode):  # a symlink or a file: not ours to write through
                self._note(folder, "not a folder framecast made", cam)
                raise ForeignStoreError(f"{folder} is not a folder framecast made (a symlink or a file); "
                                        "move it away so framecast can write this camera's events") from None
        return folder

    def _make_store(self) -> None:
        if self.owned():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        # Made aside with its marker, then renamed into place: another process never sees a store
        # without a marker, and a folder of someone else's by that name is never adopted.
        aside = self.root / f".{self.store.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        os.mkdir(aside)
        try:
            (aside / STORE_MARKER).write_text(MARKER_TEXT)
            os.rename(aside, self.store)
        except OSError:
            pass  # it exists: made by another framecast process just now, or someone else's
        finally:
            (aside / STORE_MARKER).unlink(missing_ok=True)
            try:
                aside.rmdir()
            except FileNotFoundError:
                pass
        if not self.owned():
            self._note(self.store, "a folder framecast did not make", None)
            raise ForeignStoreError(f"{self.store} exists but framecast did not make it (no {STORE_MARKER}); "
                                    "move it away, or choose another events.dir")

    def write_snapshot(self, cam: str, event_id: str, jpeg: bytes) -> Path:
        path = self.snapshot_path(cam, event_id)
        self.prepare_camera_dir(cam)
        part = path.with_name(path.name + PART_SUFFIX)
        # O_NOFOLLOW: a symlink planted at the part's name is refused (ELOOP), never written through.
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as out:
            out.write(jpeg)
        os.replace(part, path)
        return path

    def prepare_clip(self, cam: str, event_id: str) -> Path:
        """The clip's path, its folder made; raises ForeignStoreError for a symlink at its part name
        (the encoder opens that name and would write through it)."""
        path = self.clip_path(cam, event_id)
        self.prepare_camera_dir(cam)
        part = path.with_name(path.name + PART_SUFFIX)
        if part.is_symlink():
            self._note(part, "a symlink framecast did not make", cam)
            raise ForeignStoreError(f"{part} is a symlink framecast did not make; not written through")
        return path

    def delete_event(self, cam: str, event_id: str) -> int:
        """Delete an event's files (its record was trimmed); returns how many went. Errors are
        logged with the camera and counted, never raised: trimming goes on."""
        deleted = 0
        for path in (self.snapshot_path(cam, event_id), self.clip_path(cam, event_id)):
            try:
                if stat.S_ISREG(os.lstat(path).st_mode) and self.owned():
                    path.unlink()
                    deleted += 1
            except FileNotFoundError:
                pass
            except OSError as exc:
                self.stats["retention_errors"] += 1
                camera_logger("framecast.events", cam).warning("event file not deleted",
                                                               extra={"event": event_id, "error": str(exc)})
        return deleted

    # --- retention -------------------------------------------------------------------------------
    def enforce_retention(self, *, max_age: float, max_bytes: int, now: float | None = None) -> list[Path]:
        """Delete framecast's event files older than `max_age` seconds, then the oldest ones until
        the rest fit in `max_bytes`. Files of one event (`<id>.mp4`, `<id>.jpg`) go together, dated
        by their newest file. Returns what was deleted, oldest first.

        Only the store's camera folders are read, without following symlinks, and only names
        framecast writes are candidates. An entry that cannot be read or deleted (a read-only or
        foreign-owned folder, a symlink loop) is logged with its camera and counted; the pass goes
        on and never raises."""
        now = time.time() if now is None else now
        errors: dict[str | None, list[str]] = {}
        deleted: list[Path] = []
        try:
            if not self._store_present():
                return []
            groups = self._scan(now, errors)
            deleted = self._delete(groups, max_age, max_bytes, now, errors)
        except Exception as exc:  # noqa: BLE001 - a retention pass must never end its thread
            errors.setdefault(None, []).append(f"{type(exc).__name__}: {exc}")
        for cam, messages in errors.items():
            self.stats["retention_errors"] += len(messages)
            _logger(cam).warning("retention could not read or delete some entries; they are kept",
                                 extra={"errors": len(messages), "error": messages[0]})
        return deleted

    def _store_present(self) -> bool:
        try:
            os.lstat(self.store)  # not os.path.lexists: an ELOOP or EACCES is an error to report, not "absent"
        except FileNotFoundError:
            return False
        if self.owned():
            return True
        self._note(self.store, "a folder framecast did not make: retention leaves it alone", None)
        return False

    def _scan(self, now: float, errors: dict) -> list[list[tuple[Path, os.stat_result]]]:
        groups: dict[tuple[str, str], list[tuple[Path, os.stat_result]]] = {}
        with os.scandir(self.store) as entries:
            cams = []
            for entry in entries:
                if entry.name == STORE_MARKER:
                    continue
                if is_camera_dir_name(entry.name) and entry.is_dir(follow_symlinks=False):
                    cams.append(entry.name)
                else:
                    self._note(Path(entry.path), "not framecast's: left alone", None)
        for cam in cams:
            try:
                with os.scandir(self.store / cam) as entries:
                    for entry in entries:
                        match = EVENT_FILE_RE.match(entry.name)
                        if match is None or not entry.is_file(follow_symlinks=False):
                            self._note(Path(entry.path), "not framecast's: left alone", cam)
                            continue
                        try:
                            info = entry.stat(follow_symlinks=False)
                        except FileNotFoundError:
                            continue
                        except OSError as exc:
                            errors.setdefault(cam, []).append(f"{entry.path}: {exc}")
                            continue
                        if entry.name.endswith(PART_SUFFIX) and now - info.st_mtime < PART_GRACE:
                            continue  # being written
                        groups.setdefault((cam, match["event"]), []).append((Path(entry.path), info))
            except OSError as exc:
                errors.setdefault(cam, []).append(f"{self.store / cam}: {exc}")
        return sorted(groups.values(), key=lambda files: max(s.st_mtime for _, s in files))

    def _delete(self, ordered: list, max_age: float, max_bytes: int, now: float, errors: dict) -> list[Path]:
        total = sum(s.st_size for files in ordered for _, s in files)
        deleted: list[Path] = []
        for files in ordered:
            newest = max(s.st_mtime for _, s in files)
            if now - newest <= max_age and total <= max_bytes:
                break
            for file, info in files:
                try:
                    file.unlink()
                    deleted.append(file)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    errors.setdefault(file.parent.name, []).append(f"{file}: {exc}")
                # Counted as gone either way: a file that cannot be deleted must not make the size
                # cap take every other camera's events instead.
                total -= info.st_size
        return deleted

    def _note(self, path: Path, why: str, cam: str | None) -> None:
        """Log a foreign entry once per process (and count it)."""
        key = f"{path}\0{why}"
        with self._lock:
            if key in self._noted or len(self._noted) >= MAX_REMEMBERED:
                return
            self._noted.add(key)
            self.stats["foreign"] += 1
        _logger(cam).warning("event storage: entry left alone", extra={"path": str(path), "reason": why})


class ClipWriter:
    """Encodes clips on its own thread, so the tracking loop never waits for x264.

    `submit` queues a clip (bounded; when full the clip is dropped and counted) and returns at once.
    `on_done(cam, event_id, info_or_None)` runs on the writer's thread after each clip.
    """

    def __init__(self, files: EventFiles, *, fps: float = 10.0, preset: str = "veryfast", crf: int = 26,
                 queue_size: int = 8, on_done: Callable[[str, str, ClipInfo | None], None] | None = None):
        self.files, self.fps, self.preset, self.crf = files, fps, preset, crf
        self.on_done = on_done
        self.stats = {"written": 0, "failed": 0, "dropped": 0, "encode_ms": 0.0, "frames": 0}
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None

    def submit(self, cam: str, event_id: str, frames: Sequence[tuple[float, bytes]]) -> bool:
        try:
            self._queue.put_nowait((cam, event_id, list(frames)))
            return True
        except queue.Full:
            self.stats["dropped"] += 1
            camera_logger("framecast.events", cam).warning("clip queue full; clip dropped",
                                                           extra={"event": event_id})
            return False

    def start(self) -> ClipWriter:
        self._thread = service_thread(self._run, "clip-writer")
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the queued clips (up to `timeout`), then end the thread."""
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                self._write(*job)
            finally:
                self._queue.task_done()

    def _write(self, cam: str, event_id: str, frames: list[tuple[float, bytes]]) -> None:
        info = None
        try:
            path = self.files.prepare_clip(cam, event_id)
            info = write_clip(path, frames, fps=self.fps, preset=self.preset, crf=self.crf)
            self.stats["written"] += 1
            self.stats["frames"] += info.frames
            self.stats["encode_ms"] += info.encode_ms
        except Exception as exc:  # noqa: BLE001 - one bad clip must not end the writer
            self.stats["failed"] += 1
            camera_logger("framecast.events", cam).warning("clip not written",
                                                           extra={"event": event_id, "error": str(exc)})
        if self.on_done is not None:
            self.on_done(cam, event_id, info)
