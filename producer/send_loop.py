"""The producer's sending thread: every camera's frames go to Redis through one SendLoop.

Each round takes what every camera (its FrameSender) has ready: its queued batch, a backlog camera's
consumer-group reading while it holds back, stats figures of a camera with no frames to carry them,
and sends them all in one pipeline, so a round costs one round trip however many cameras it serves
(and Redis sees one client's pipelined commands instead of one connection per camera). Frames that
queue while a round is on the wire go in the next one, so a slow link costs one round trip per batch,
not per frame, as before.

Replies are read with `raise_on_error=False` and handed back to each sender, so a key Redis refuses
for one camera (an ACL, a wrong type) is that camera's failure only. An exception from the pipeline
itself (connection lost, no cluster node reachable) is an outage for every camera in the round, each
waiting it out on its own backoff. An error nobody foresaw inside one camera's part is that camera's,
counted and backed off (`FrameSender.broken`); one in the loop itself ends the thread, and so the
process, with exit 70 (common.threads).
"""

from __future__ import annotations

import math
import threading
import time

import redis

from common.connection import CONNECTION_ERRORS, ThrottledLog, describe_error, is_cluster
from common.keys import ARRIVALS_FIELD, ARRIVALS_MAXLEN
from common.logs import camera_logger
from common.threads import start_thread

# What a round meets when Redis is away: waited out with backoff by each sender. RedisClusterException
# (no cluster node reachable at all) is no RedisError.
OUTAGE = (*CONNECTION_ERRORS, redis.exceptions.RedisError, redis.exceptions.RedisClusterException)
IDLE_WAIT_S = 0.5  # the longest a round waits without being woken or due


class SendLoop:
    """One thread sending the frames of many cameras. Senders `add` themselves and `wake` it when a
    frame is queued; everything a sender does towards Redis runs on this thread."""

    def __init__(self, client: redis.Redis, name: str = "sender", cam: str | None = None,
                 arrivals: str | None = None):
        self.client = client
        self.arrivals = arrivals  # the workers' arrivals stream (Keys.arrivals): announced after each round's frames
        self._refused_arrivals = ThrottledLog(60.0)
        # On a cluster the arrivals key's node may be down while the frames' are not: it goes alone,
        # after the round, so its failure never looks like the frames' (a resent backlog batch).
        self._announce_apart = is_cluster(client)
        self.log = camera_logger("framecast.producer", cam or "-")
        self._cond = threading.Condition()
        self._senders: list = []
        self._woken = False
        self._closed = False
        self.rounds = 0  # pipelines sent (figures for tests and the benchmark)
        self.frame_rounds = 0  # of those, the ones that carried frames
        self.passes = 0  # looks at the senders, whether or not they had anything to send
        self._thread = start_thread(self._run, name, cam=cam)

    def add(self, sender) -> None:
        with self._cond:
            self._senders.append(sender)
            self._woken = True
            self._cond.notify()

    def remove(self, sender) -> None:
        with self._cond:
            if sender in self._senders:
                self._senders.remove(sender)

    def wake(self) -> None:
        """A sender has something to send: run a round now (or right after the one on the wire)."""
        with self._cond:
            self._woken = True
            self._cond.notify()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (senders close themselves first, which sends what they hold)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=timeout)

    def _run(self) -> None:
        wait = 0.0
        while True:
            with self._cond:
                if not self._woken and not self._closed and wait > 0:
                    self._cond.wait(wait)
                if self._closed:
                    return
                self._woken = False
                senders = list(self._senders)
            wait = self._round(senders)

    def _round(self, senders: list) -> float:
        """Send one pipeline with every sender's ready part; seconds until a sender is next due."""
        now = time.monotonic()
        self.passes += 1
        pipe = self.client.pipeline(transaction=False)
        parts = []
        for sender in senders:
            try:
                added = sender.prepare(pipe, now)
            except Exception as exc:  # noqa: BLE001 - one camera's fault is that camera's
                sender.broken(exc)
                continue
            if added:
                parts.append((sender, added))
        if parts:
            self.rounds += 1
            sending = [sender.account.cam for sender, _ in parts if sender.sending_frames]
            self.frame_rounds += bool(sending)
            announced = bool(sending and self.arrivals) and not self._announce_apart
            if announced:  # after the frames, in the same round trip; its reply is no sender's
                self._announce(pipe, sending)
            try:
                replies = pipe.execute(raise_on_error=False)
            except OUTAGE as exc:
                for sender, _ in parts:
                    sender.failed(exc)
            except Exception as exc:  # noqa: BLE001 - counted per camera, backed off
                for sender, _ in parts:
                    sender.broken(exc)
            else:
                if announced and isinstance(replies[-1], Exception):
                    self._not_announced(replies[-1])
                if sending and self.arrivals and self._announce_apart:
                    try:
                        self._announce(self.client, sending)
                    except OUTAGE as exc:
                        self._not_announced(exc)
                at = 0
                for sender, added in parts:
                    try:
                        sender.done(replies[at:at + added])
                    except Exception as exc:  # noqa: BLE001
                        sender.broken(exc)
                    at += added
            del pipe, parts  # the round's frames are not kept alive while the thread waits
        due = min((sender.due_at for sender in senders), default=math.inf)
        return max(0.0, min(IDLE_WAIT_S, due - time.monotonic()))

    def _announce(self, target, cams: list[str]) -> None:
        target.xadd(self.arrivals, {ARRIVALS_FIELD: ",".join(cams)}, maxlen=ARRIVALS_MAXLEN, approximate=True)

    def _not_announced(self, exc: BaseException) -> None:
        """The frames are in Redis; the workers find them by their sweep (worker/live/arrivals.py)."""
        if self._refused_arrivals.due("arrivals"):
            self.log.warning("could not announce frames on the arrivals stream; workers find them later "
                             "by their sweep", extra={"error": describe_error(exc)})
