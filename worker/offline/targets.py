"""The files `framecast process` writes, kept from harming the input or an earlier result.

Each target is checked before anything is opened: it must not be the input (by any path, symlink or
hard link) nor another target, nor a directory. Each is written beside itself under a temporary name
and renamed into place only once the whole run has succeeded; a refused, failed or interrupted run
removes its temporary files, so the input and whatever was at the target before are left as they were.
"""

from __future__ import annotations

import os
import secrets
import stat
from contextlib import suppress
from pathlib import Path

from common.errors import FramecastError


class TargetError(FramecastError):
    """An output path that would destroy the input or another output, or cannot be written."""


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of what `path` names, following symlinks; None when there is nothing there."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def same_file(a: Path, b: Path) -> bool:
    """Whether `a` and `b` are one file: the same inode when it exists (hard links, symlinks), else the
    same path once `..` and symlinked directories are resolved."""
    ia, ib = _identity(a), _identity(b)
    if ia is not None or ib is not None:
        return ia == ib
    return os.path.realpath(a) == os.path.realpath(b)


class Target:
    """One output file: `path` is what to open for writing, `commit` moves it into place, `discard`
    (below) removes it. A regular file (or nothing yet) is written as `<name>.<random>.tmp` beside the
    file a symlink points at, so the link is kept; a FIFO or character device (`/dev/stdout`) is written
    directly, when `streamable`, since there is nothing there to protect and nothing to rename over."""

    def __init__(self, option: str, path: Path, *, streamable: bool):
        self.option = option
        try:
            mode = path.stat().st_mode
        except OSError:
            mode = None
        self.direct = mode is not None and not stat.S_ISREG(mode)
        # /dev/stdout resolves to a pipe's pseudo-name: a direct target keeps the path it was given
        self.final = path if self.direct else Path(os.path.realpath(path))
        if mode is not None and stat.S_ISDIR(mode):
            raise TargetError(f"{option} {path} is a directory: give a file name inside it")
        if self.direct and not streamable:
            raise TargetError(f"{option} {path} is not a regular file: an MP4 is written to a file it can "
                              "seek in and rename into place")
        if not self.direct and self.final.parent.exists() and not self.final.parent.is_dir():
            raise TargetError(f"{option} {path}: {self.final.parent} is not a directory")
        self.path = self.final if self.direct else self.final.with_name(
            f"{self.final.name}.{secrets.token_hex(4)}.tmp")
        self._made_dirs: list[Path] = []
        self._committed = False

    def prepare(self) -> None:
        """Create the target's missing directories (removed again by `discard` if still empty)."""
        missing = [d for d in (self.final.parent, *self.final.parent.parents) if not d.exists()]
        try:
            for directory in reversed(missing):
                directory.mkdir()
                self._made_dirs.insert(0, directory)
        except OSError as exc:
            raise TargetError(f"cannot create the directory of {self.option} {self.final}: "
                              f"{exc.strerror or exc}") from None

    def commit(self) -> None:
        """Move the finished file into place (the run succeeded)."""
        if not self.direct:
            if not self.path.exists():
                raise TargetError(f"nothing was written for {self.option} {self.final}")
            os.replace(self.path, self.final)
        self._committed = True

    def discard_files(self) -> None:
        """Remove what this run wrote: its temporary file and a video writer's `.part` of it (nothing
        after `commit`)."""
        if not self._committed and not self.direct:
            for leftover in (self.path, self.path.with_name(self.path.name + ".part")):
                with suppress(FileNotFoundError, NotADirectoryError):  # never made, or no directory for it
                    leftover.unlink()

    def discard_dirs(self) -> None:
        """Remove the directories `prepare` created, innermost first, while they are empty."""
        if self._committed:
            return
        for directory in self._made_dirs:
            try:
                directory.rmdir()
            except OSError:
                break
        self._made_dirs = []


def discard(targets: list[Target]) -> None:
    """Undo what a run that did not commit left: every temporary file first, then the directories made
    for them (one target's directory may hold another's file)."""
    for target in targets:
        target.discard_files()
    for target in targets:
        target.discard_dirs()


def check_targets(source: Path, output: str, detections: str | None) -> tuple[Target, Target | None]:
    """The video and (optional) detections targets, or TargetError naming the option at fault."""
    named = [("-o/--output", Path(output))] + ([("--detections", Path(detections))] if detections else [])
    for option, path in named:
        if same_file(path, source):
            raise TargetError(f"{option} {path} is the input video {source}: writing it would destroy the "
                              "input; choose another file")
    if detections and same_file(Path(output), Path(detections)):
        raise TargetError(f"--detections {detections} is the same file as -o/--output {output}: give each "
                          "its own file")
    video = Target("-o/--output", Path(output), streamable=False)
    jsonl = Target("--detections", Path(detections), streamable=True) if detections else None
    return video, jsonl
