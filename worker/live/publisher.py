"""The worker's publishing thread: it writes what the loop did with each entry (an annotated frame and
its detection record, a dead-letter copy, or nothing for a skipped frame), acknowledges the entry and
counts it, while the loop goes on to the next frame. On a slow link the round trips overlap the
detection work instead of adding to it.

Everything queued when the thread comes round is written together: on a single server in one MULTI,
on a cluster in one MULTI per camera (one camera is one slot). An entry is acknowledged in the same
transaction as its results and its count, so nothing is acked unwritten and the counts stay exact.
The queue is bounded (PUBLISH_QUEUE): when Redis cannot keep up the loop waits, the live streams
grow meanwhile, and their next read skips the stale frames as it always did.

Redis runs the rest of a MULTI after a command fails at run time (a key of the wrong type): such a
failure is reported per camera (`faults`) for the loop to take the camera out of service. On a
cluster, a camera whose master does not answer is reported the same way (the loop
pauses it) rather than as an outage, so the cameras of the other masters keep flowing.
"""

from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from common.connection import CONNECTION_ERRORS, is_cluster
from common.keys import WORKER_GROUP
from common.stats import Figure
from worker.live.cameras import ServedCamera

PUBLISH_QUEUE = 32  # handled entries waiting to be written; a full queue holds the loop back


@dataclass
class Publication:
    """What to write for some entries of one camera, then ack and count them as `figure`."""

    served: ServedCamera
    entry_ids: list[str]
    figure: Figure
    labels: dict[str, str] = field(default_factory=dict)
    writes: list[tuple[str, dict, int]] = field(default_factory=list)  # (stream, fields, maxlen) to XADD
    done: Callable[[], None] | None = None  # run on the publishing thread once written


class Publisher:
    """One worker's publishing thread and its bounded queue. `put` is called by the worker loop;
    the loop collects `take_error()` (an outage or a refused transaction) and `faults` from it."""

    def __init__(self, client, name: str = "framecast-publisher"):
        self.client = client
        self._per_camera = is_cluster(client)  # a cluster transaction stays within one slot
        self._queue: queue.Queue[Publication | None] = queue.Queue(maxsize=PUBLISH_QUEUE)
        self._error: BaseException | None = None
        self._closing = False
        # (camera, key, error) when a key refused a write or its node did not answer; (camera, None,
        # None) when a broken camera's write went through again
        self.faults: collections.deque[tuple[ServedCamera, str | None, Exception | None]] = collections.deque()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, publication: Publication) -> None:
        """Queue `publication`; waits while PUBLISH_QUEUE others are waiting."""
        self._queue.put(publication)

    @property
    def idle(self) -> bool:
        """Nothing queued or being written."""
        return self._queue.unfinished_tasks == 0

    def take_error(self) -> BaseException | None:
        """The last transaction failure since the previous call (its entries stay pending, to be
        reclaimed), or None."""
        error, self._error = self._error, None
        return error

    def close(self, timeout: float = 15.0) -> bool:
        """Write what is queued, then end the thread; True if it ended within `timeout`. After a
        failure while closing the rest is dropped unwritten (pending, for another worker)."""
        self._closing = True
        self._queue.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # ---- the publishing thread -------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < PUBLISH_QUEUE and batch[-1] is not None:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = batch[-1] is None
            work = [p for p in batch if p is not None]
            try:
                if work and not (self._closing and self._error is not None):
                    self._write(work)
            except BaseException as exc:  # noqa: BLE001 - reported to the loop, which backs off
                self._error = exc
            finally:
                for _ in batch:
                    self._queue.task_done()
            if stop:
                return

    def _write(self, work: list[Publication]) -> None:
        by_cam: dict[str, list[Publication]] = {}
        for publication in work:
            by_cam.setdefault(publication.served.cam, []).append(publication)
        units = [[pubs] for pubs in by_cam.values()] if self._per_camera else [list(by_cam.values())]
        failures = []
        for unit in units:  # a camera whose master is failing over holds back no other camera
            try:
                self._transact(unit)
            except BaseException as exc:  # noqa: BLE001 - raised below, or reported per camera
                failures.append((unit, exc))
        refused = [exc for _, exc in failures if not isinstance(exc, CONNECTION_ERRORS)]
        if refused or (failures and not self._per_camera):
            raise (refused or [failures[0][1]])[0]
        for unit, exc in failures:  # a cluster node that does not answer: its cameras pause
            served = unit[0][0].served
            self.faults.append((served, served.frames_key, exc))

    def _transact(self, unit: list[list[Publication]]) -> None:
        """One MULTI with every camera of `unit`: each camera's writes in order, its XACK, its counts."""
        pipe = self.client.pipeline(transaction=True)
        spans, what = [], []  # per camera: (publications, first index, ack index, end); per command: its key
        for pubs in unit:
            served = pubs[0].served
            start = len(pipe)
            for publication in pubs:
                for stream, fields, maxlen in publication.writes:
                    pipe.xadd(stream, fields, maxlen=maxlen, approximate=True)
                    what.append(stream)
            ack = len(pipe)
            pipe.xack(served.frames_key, WORKER_GROUP, *(eid for p in pubs for eid in p.entry_ids))
            what.append(served.frames_key)
            counted: dict[tuple, int] = collections.Counter()
            for publication in pubs:
                counted[(publication.figure, tuple(sorted(publication.labels.items())))] += len(publication.entry_ids)
            for (figure, labels), amount in counted.items():
                served.account.queue(pipe, figure, amount, **dict(labels))
            what += [served.account.stats.key] * (len(pipe) - len(what))
            spans.append((pubs, start, ack, len(pipe)))
        try:
            results = pipe.execute(raise_on_error=False)
        except BaseException:
            for pubs, *_ in spans:
                pubs[0].served.account.settle(False)
            raise
        outage = next((r for r in results if isinstance(r, CONNECTION_ERRORS)), None)
        for pubs, start, ack, end in spans:
            served = pubs[0].served
            failed = {i: results[i] for i in range(start, end) if isinstance(results[i], Exception)}
            # The counts reached Redis unless the stats hash refused them (the rest of a MULTI runs).
            served.account.settle(outage is None and not any(i > ack for i in failed))
            if failed:
                first = min(failed)
                self.faults.append((served, what[first], failed[first]))
            elif outage is None:
                for publication in pubs:
                    if publication.done is not None:
                        publication.done()
                if served.fault is not None:
                    self.faults.append((served, None, None))
        if outage is not None:
            raise outage
