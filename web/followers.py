"""Followed Redis streams (the event feed, `detections?follow=1`): one reader per stream key per web
process, fanned out to the followers of that key.

A follower that ran its own XREAD BLOCK would hold a pooled Redis connection for as long as it
follows, and the pool (redis-py caps it at 100 per client) is the one every other route uses: a few
hundred followers answered 503 everywhere. Here a StreamReader per key blocks on its own thread and
hands each batch of entries to every follower's queue, as the broadcaster does for MJPEG viewers.
Unlike a viewer's one-slot mailbox, a follower's queue keeps every entry (a skipped event message is
a missed event); a follower that lets QUEUE_LIMIT entries pile up is dropped (its response ends and
the client reconnects), so a slow follower only costs itself.

A follower starts at a position per key (the stream's newest id when its request came). The shared
reader may be behind that position (those entries are skipped) or ahead of it (the entries in between
are read once with XRANGE), so a follower gets exactly the entries after its position either way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator

import redis

from common.connection import CONNECTION_ERRORS, Backoff, ThrottledLog, describe_error
from common.text import as_str
from common.threads import service_thread
from web import metrics
from web.refused_keys import RefusedKeyError, reading

READ_BLOCK_MS = 1000  # short, so a stopped or retired reader ends promptly
READ_COUNT = 100
QUEUE_LIMIT = 10_000  # entries waiting for one follower; beyond, the follower is dropped
LINGER_S = 10.0  # a reader lives this long after its last follower left (a reconnect reuses it)
KEEPALIVE_S = 5.0  # an idle follower gets a keep-alive this often (proxies close silent connections)
FOLLOW_WAIT_S = 1.0  # how long `follow` waits for entries before giving its caller a turn (None)
log = logging.getLogger("framecast.web")
_failures = ThrottledLog(60.0)

Entry = tuple[str, bytes | str, dict]  # (key, entry id, fields)


def stream_id(entry_id: bytes | str) -> tuple[int, int]:
    """A stream id as a pair of numbers, so ids compare as Redis orders them."""
    ms, _, seq = as_str(entry_id).partition("-")
    return int(ms), int(seq or 0)


class Follower:
    """One client's queue of entries: readers' threads put, the client's thread takes."""

    def __init__(self, starts: dict[str, bytes | str]):
        self.starts = {key: stream_id(start) for key, start in starts.items()}
        self._cond = threading.Condition()
        self._entries: deque[Entry] = deque()
        self.closed = False
        self.reason: str | None = None  # why it was closed, when not by its own client or shutdown

    def put(self, key: str, entries: list) -> None:
        with self._cond:
            if self.closed:
                return
            if len(self._entries) + len(entries) > QUEUE_LIMIT:
                self._close(f"it fell {QUEUE_LIMIT} entries behind")
                return
            self._entries.extend((key, entry_id, fields) for entry_id, fields in entries)
            self._cond.notify()

    def take(self, timeout: float) -> list[Entry]:
        """Every entry waiting (after this follower's start), or [] after `timeout` or once closed."""
        with self._cond:
            if not self._entries and not self.closed:
                self._cond.wait(timeout)
            taken, self._entries = list(self._entries), deque()
        return [entry for entry in taken if stream_id(entry[1]) > self.starts[entry[0]]]

    def close(self, reason: str | None = None) -> None:
        with self._cond:
            self._close(reason)

    def _close(self, reason: str | None) -> None:
        if not self.closed:
            self.closed, self.reason = True, reason
            self._cond.notify()


class StreamReader:
    """The one reader of one stream key in this process, and the followers it feeds."""

    def __init__(self, client: redis.Redis, key: str, cam: str | None, start: bytes | str, linger: float,
                 stop: threading.Event):
        self.client = client
        self.key = key
        self.cam = cam
        self.linger = linger
        self.stop = stop
        self.closing = threading.Event()
        self.last: bytes | str = start  # the id the next XREAD reads after
        self._lock = threading.Lock()
        self._followers: set[Follower] = set()
        self._last_follower_left = time.monotonic()
        self.retired = False
        self.thread = service_thread(self._run, f"follow-{key}", cam=cam)

    def add(self, follower: Follower) -> bytes | str | None:
        """Add a follower; where the reader stands (the follower gets every entry after it), or None
        when the reader has retired."""
        with self._lock:
            if self.retired:
                return None
            self._followers.add(follower)
            return self.last

    def remove(self, follower: Follower) -> None:
        with self._lock:
            self._followers.discard(follower)
            if not self._followers:
                self._last_follower_left = time.monotonic()

    def followers(self) -> int:
        with self._lock:
            return len(self._followers)

    def close(self, reason: str | None = None) -> None:
        """Stop reading and end every follower."""
        self.closing.set()
        with self._lock:
            self.retired = True
            followers = list(self._followers)
        for follower in followers:
            follower.close(reason)

    def _stopped(self) -> bool:
        return self.stop.is_set() or self.closing.is_set()

    def _run(self) -> None:
        """The reader's thread: XREAD BLOCK after `last`; Redis failures are waited out with backoff (the
        followers stay, and get what was written meanwhile); a key Redis refuses ends its followers."""
        backoff = Backoff(base=0.2, cap=5.0)
        metrics.FOLLOW_READERS.inc()
        try:
            self._read(backoff)
        finally:
            metrics.FOLLOW_READERS.dec()

    def _read(self, backoff: Backoff) -> None:
        while not self._stopped() and not self._retire_if_idle():
            try:
                with reading(self.key, self.cam):
                    reply = self.client.xread({self.key: self.last}, count=READ_COUNT, block=READ_BLOCK_MS)
            except RefusedKeyError as exc:
                self.close(f"Redis refuses {exc}")
                return
            except Exception as exc:  # the reader must outlive any single failure
                if _failures.due(self.key):
                    level = logging.WARNING if isinstance(exc, CONNECTION_ERRORS) else logging.ERROR
                    log.log(level, "follow paused: cannot read the stream",
                            extra={"key": self.key, "camera": self.cam, "error": describe_error(exc)})
                backoff.wait(self.stop)
                continue
            backoff.reset()
            for _stream, entries in reply or []:
                if not entries:
                    continue
                with self._lock:  # with `add`'s lock: a follower either gets this batch or stands after it
                    self.last = entries[-1][0]
                    targets = list(self._followers)
                for follower in targets:
                    follower.put(self.key, entries)
        if self._stopped():
            self.close()

    def _retire_if_idle(self) -> bool:
        with self._lock:
            if self._followers or time.monotonic() - self._last_follower_left < self.linger:
                return False
            self.retired = True
            return True


class Followers:
    """The stream readers of one web process: a follower subscribes to the keys it follows here, and
    the first follower of a key starts its reader."""

    def __init__(self, client: redis.Redis, stop: threading.Event, linger: float = LINGER_S):
        self.client = client
        self.stop = stop
        self.linger = linger
        self._lock = threading.Lock()
        self._readers: dict[str, StreamReader] = {}
        self.readers_started = 0

    def follow(self, starts: dict[str, bytes | str], cams: dict[str, str | None]) -> Iterator[Entry | None]:
        """The entries written to `starts`' keys after each one's start position, in order per key, as
        they come; None after FOLLOW_WAIT_S seconds with nothing new (the caller's turn for a keep-alive or to
        check for shutdown). Ends on shutdown, or when the follower is dropped. Run it on the client's
        own thread; closing the generator unsubscribes."""
        follower = Follower(starts)
        joined: dict[str, StreamReader] = {}
        metrics.FOLLOWERS.inc()
        try:
            backlog: list[Entry] = []
            for key, start in starts.items():
                reader, position = self._join(key, cams.get(key), start, follower)
                joined[key] = reader
                if stream_id(position) > stream_id(start):  # the reader read past the start already
                    with reading(key, cams.get(key)):
                        missed = self.client.xrange(key, min=b"(" + _bytes(start), max=position)
                    backlog += [(key, entry_id, fields) for entry_id, fields in missed]
            yield from backlog
            while not follower.closed and not self.stop.is_set():
                batch = follower.take(timeout=FOLLOW_WAIT_S)
                yield from batch if batch else (None,)
            if follower.reason:
                metrics.FOLLOWERS_DROPPED.inc()
                log.warning("a follower was dropped", extra={"keys": list(starts), "reason": follower.reason})
        finally:
            metrics.FOLLOWERS.dec()
            for reader in joined.values():
                reader.remove(follower)

    def lines(self, starts: dict[str, bytes | str], cams: dict[str, str | None], render: Callable[[Entry], bytes],
              keepalive: bytes, stopping: threading.Event) -> Iterator[bytes]:
        """What a followed feed's response sends, on the client's thread: `render(entry)` for each
        entry `follow` hands over, and `keepalive` after KEEPALIVE_S seconds of silence (proxies close
        silent connections). Ends when the process is stopping; unsubscribes however it ends."""
        quiet_since = time.monotonic()
        entries = self.follow(starts, cams)
        try:
            for entry in entries:
                if stopping.is_set():
                    return
                if entry is None:
                    if time.monotonic() - quiet_since >= KEEPALIVE_S:
                        quiet_since = time.monotonic()
                        yield keepalive
                    continue
                quiet_since = time.monotonic()
                yield render(entry)
        finally:
            entries.close()

    def _join(self, key: str, cam: str | None, start: bytes | str,
              follower: Follower) -> tuple[StreamReader, bytes | str]:
        with self._lock:
            reader = self._readers.get(key)
            position = reader.add(follower) if reader is not None else None
            if position is None:
                reader = StreamReader(self.client, key, cam, start, self.linger, self.stop)
                self._readers[key] = reader
                self.readers_started += 1
                position = reader.add(follower)
                reader.thread.start()
        return reader, position

    def readers(self) -> dict[str, StreamReader]:
        """The running readers (retired ones are forgotten here)."""
        with self._lock:
            self._readers = {k: r for k, r in self._readers.items() if not r.retired}
            return dict(self._readers)

    def close(self) -> None:
        """End every follower and stop every reader (process shutdown, tests)."""
        with self._lock:
            readers = list(self._readers.values())
            self._readers.clear()
        for reader in readers:
            reader.close()
        for reader in readers:
            reader.thread.join(timeout=5)


def _bytes(entry_id: bytes | str) -> bytes:
    return entry_id if isinstance(entry_id, bytes) else entry_id.encode()
