"""SIGINT and SIGTERM during `framecast process`: the run is given up and its temporary files removed.

The handler only records the signal; the run `check`s the record before every frame it writes and
before it puts its outputs in place, and raises `Interrupted` there, at a point where the main thread
holds no lock and runs no clean-up. A handler that raised by itself (as this one did before) raised
wherever the main thread happened to be, and that failed three ways, all found by sending SIGTERM at
each Python call of a run in turn:
- CPython drops an exception raised in a weakref callback or a `__del__` ("Exception ignored in ..."):
  a signal that landed in importlib's module-lock callback or zipfile's `__del__` while the model's
  modules were imported (just when the detections' temporary file has appeared) let the run go on to
  the end, replace the outputs and exit 0 (the CI flake);
- raised inside a `Condition` while it was taking its lock back, it became "release unlocked lock",
  which tqdm caught and turned into a warning: the same exit 0;
- raised between a lock's acquire and the `with` that releases it, or while the pool's threads were
  starting, it left a lock taken or the pool's clean-up skipped: one run hung, another segfaulted when
  the capture was released under a reader thread that nothing had stopped.

`main` installs the handler on its first line; a signal before that (the interpreter starting, the
command's modules importing) has its default effect, and nothing has been opened yet.
"""

from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: a BaseException, so no `except Exception` on the way swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class Interrupt:
    """For the duration of a `with` on the main thread, SIGINT and SIGTERM are recorded in `signum`
    (the first one) instead of ending the process; on another thread the handlers are left alone."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Interrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
        return self

    def __exit__(self, *_exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum: int, _frame) -> None:
        if self.signum is None:
            self.signum = signum

    def check(self) -> None:
        """Raise `Interrupted` if a signal has arrived."""
        if self.signum is not None:
            raise Interrupted(self.signum)

    def guarded(self, writer_factory):
        """`writer_factory` (width, height) -> video writer, whose writers `check` before each frame and
        before finishing the file."""

        def factory(width: int, height: int) -> _CheckedWriter:
            self.check()
            return _CheckedWriter(writer_factory(width, height), self.check)

        return factory


class _CheckedWriter:
    """A video writer that calls `check` before each frame and before it finishes its file."""

    def __init__(self, writer, check):
        self._writer = writer
        self._check = check

    def write(self, image, *args) -> None:
        self._check()
        self._writer.write(image, *args)

    def release(self):
        try:
            self._check()
        except Interrupted:
            self.abort()  # the run is given up: its partial file is thrown away, not finished
            raise
        return self._writer.release()

    def abort(self) -> None:
        getattr(self._writer, "abort", self._writer.release)()
