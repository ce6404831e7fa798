"""The producer's camera pool: a fixed number of threads run every camera's steps, earliest deadline
first, so a producer's threads do not grow with its cameras.

A camera is a task whose `step()` does one unit of its work (try to open its source, read and publish
one frame) and returns when it wants to run next: a `time.monotonic()` deadline, WAIT_FOR_FRAME (a
live camera waiting for its capture thread, which calls the task's `wake` when a frame is there), or
None (finished; `finish()` is then called once, on the same thread). A step never sleeps: waiting is a
deadline in the heap, not a blocked thread.

A task is in the heap at most once and never while a thread runs it, so one camera's steps run one
after the other, never two at once, and its frames are processed in capture order (its motion
background model is sequential), however many threads there are. A camera whose step is late (the
threads were busy) runs as soon as a thread is free, and its paced source then skips the frames it
missed, counted as `late`, instead of building latency.

An exception a step does not handle is a bug: it ends its thread, which is a service thread
(common.threads), so the process exits 70 and its supervisor restarts it.
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
from collections.abc import Iterable

from common.threads import service_thread

WAIT_FOR_FRAME = -1.0  # a step's answer: run me again when `wake` is called
IDLE_WAIT_S = 0.25  # how often an idle thread looks at the stop event
# Threads running camera steps: per-frame work is CPU (motion, resize, encode; OpenCV releases the
# GIL), so more threads than cores only add switching. Independent of the number of cameras.
POOL_THREADS = max(2, min(4, os.cpu_count() or 2))


class Scheduler:
    """Runs camera tasks on `threads` threads until each has finished (`stop` finishes them all)."""

    def __init__(self, stop: threading.Event, threads: int = POOL_THREADS, name: str = "camera-pool"):
        self.stop = stop
        self.threads = threads
        self.name = name
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, object]] = []
        self._order = itertools.count()  # ties in the heap go in the order they were scheduled
        self._parked: set[int] = set()  # tasks waiting for `wake`, by id
        self._woken: set[int] = set()  # tasks woken while running or due
        self._tasks: dict[int, object] = {}
        self._stopping = False
        self._running: list[threading.Thread] = []

    def add(self, task) -> None:
        """Schedule a task to run now; its `wake` is set to this scheduler's."""
        task.wake = lambda: self.wake(task)
        with self._cond:
            self._tasks[id(task)] = task
            self._push(time.monotonic(), task)

    def add_all(self, tasks: Iterable) -> None:
        for task in tasks:
            self.add(task)

    def wake(self, task) -> None:
        """A live camera has a frame (or its capture thread ended): run its step. Called from any thread."""
        with self._cond:
            key = id(task)
            if key in self._parked:
                self._parked.discard(key)
                self._push(time.monotonic(), task)
            elif key in self._tasks:
                self._woken.add(key)

    def start(self) -> None:
        """Run the tasks on `threads` service threads."""
        for i in range(self.threads):
            thread = service_thread(self._work, f"{self.name}-{i}")
            thread.start()
            self._running.append(thread)

    def run(self) -> None:
        """Run the tasks on the calling thread until every one has finished."""
        self._work()

    def alive(self) -> bool:
        """Whether any task is unfinished (and so a thread is still at work)."""
        with self._cond:
            return bool(self._tasks) and any(t.is_alive() for t in self._running)

    def join(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            self._cond.notify_all()
        for thread in self._running:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _push(self, due: float, task) -> None:
        heapq.heappush(self._heap, (due, next(self._order), task))
        self._cond.notify()

    def _next(self):
        """The next task due (waiting for it), or None once every task has finished."""
        with self._cond:
            while True:
                if not self._tasks:
                    self._cond.notify_all()
                    return None
                now = time.monotonic()
                if self.stop.is_set() and not self._stopping:
                    # Every task runs once more now, to finish: none waits out a backoff or a frame.
                    self._stopping = True
                    self._heap = [(now, next(self._order), task) for _, _, task in self._heap]
                    self._heap += [(now, next(self._order), self._tasks[key]) for key in self._parked]
                    self._parked.clear()
                    heapq.heapify(self._heap)
                    self._cond.notify_all()
                if self._heap and self._heap[0][0] <= now:
                    task = heapq.heappop(self._heap)[2]
                    self._woken.discard(id(task))
                    if self._heap and self._heap[0][0] <= now:
                        self._cond.notify()  # more is due: another thread may take it
                    return task
                wait = IDLE_WAIT_S if not self._heap else min(IDLE_WAIT_S, self._heap[0][0] - now)
                self._cond.wait(wait)

    def _work(self) -> None:
        while (task := self._next()) is not None:
            due = task.step()
            if due is None:
                try:
                    task.finish()
                finally:
                    with self._cond:
                        self._tasks.pop(id(task), None)
                        self._cond.notify_all()
                continue
            with self._cond:
                key = id(task)
                if due == WAIT_FOR_FRAME:
                    if key in self._woken or self._stopping:
                        self._woken.discard(key)
                        self._push(time.monotonic(), task)
                    else:
                        self._parked.add(key)
                else:
                    self._push(due, task)
