"""The ledger: what Redis says happened to every frame of a camera, for end-to-end and chaos tests.

A backlog camera promises that every published frame is processed once or counted; a live camera
that every published frame is processed, skipped as stale, dead-lettered, or still on its way. These
helpers read the evidence (the stats hash, the detection records, the dead-letter stream, the
frames stream and its consumer group) through any client `common.connection.connect` returns (one
server, Sentinel, Cluster) and put it in two small reports, `BacklogLedger` and `LiveBalance`, that
a test asserts on. They only read; nothing here writes to Redis.

Frames are identified by `(run, seq)`: the producer run (its start time in ns) and the frame's
number within that run (see `common/envelope.py`).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from common import envelope
from common.errors import EnvelopeError
from common.keys import DETECTIONS_FIELD, FRAME_FIELD, WORKER_GROUP, Keys
from common.stats import StatsField, read_stats
from common.text import as_str

FrameId = tuple[int, int]  # (run, seq)
PAGE = 1000  # entries per XRANGE page: memory stays flat on long streams


def stream_entries(client, key: str) -> Iterator[tuple[str, dict]]:
    """Every entry of a stream, oldest first, paged."""
    start = "-"
    while True:
        page = client.xrange(key, start, "+", count=PAGE)
        for entry_id, fields in page:
            yield as_str(entry_id), fields
        if len(page) < PAGE:
            return
        start = "(" + as_str(page[-1][0])


def detection_ids(client, keys: Keys, cam: str) -> list[FrameId]:
    """(run, seq) of every detection record of `cam`, in stream order (one record per processed frame)."""
    out = []
    for _, fields in stream_entries(client, keys.detections(cam)):
        record = json.loads(fields[DETECTIONS_FIELD])
        out.append((int(record["run"]), int(record["seq"])))
    return out


def deadletter_ids(client, keys: Keys, cam: str) -> tuple[list[FrameId], int]:
    """(run, seq) of the dead-lettered frames whose envelope still decodes, and how many do not
    (garbage cannot say which frame it was)."""
    ids, undecodable = [], 0
    for _, fields in stream_entries(client, keys.deadletter(cam)):
        try:
            frame = envelope.decode(fields.get(b"data") or fields.get("data") or b"")
        except EnvelopeError:
            undecodable += 1
            continue
        ids.append((frame.run, frame.seq))
    return ids, undecodable


def queued_ids(client, keys: Keys, cam: str) -> list[FrameId]:
    """(run, seq) of the frames still in the camera's frames stream (bounded by `frames_maxlen`)."""
    out = []
    for _, fields in stream_entries(client, keys.frames(cam)):
        try:
            frame = envelope.decode(fields[FRAME_FIELD])
        except (KeyError, EnvelopeError):
            continue
        out.append((frame.run, frame.seq))
    return out


def outstanding(client, keys: Keys, cam: str) -> tuple[int, int]:
    """(undelivered, pending) of the workers' group on the camera's frames: entries after the group's
    last-delivered id, and entries delivered but not acknowledged. Undelivered is counted from the
    stream itself, not taken from XINFO's `lag`, which Redis may report as nil (after deletions) or
    carry over a failover from a replica's view. (0, 0) when the group is missing."""
    key = keys.frames(cam)
    for info in client.xinfo_groups(key):
        if as_str(info["name"]) == WORKER_GROUP:
            last = as_str(info["last-delivered-id"])
            undelivered = sum(1 for _ in _entries_after(client, key, last))
            return undelivered, int(info.get("pending") or 0)
    return 0, 0


def _entries_after(client, key: str, last_id: str) -> Iterator:
    start = "(" + last_id
    while True:
        page = client.xrange(key, start, "+", count=PAGE)
        yield from page
        if len(page) < PAGE:
            return
        start = "(" + as_str(page[-1][0])


def counters(client, keys: Keys, cam: str) -> dict[str, int]:
    """The camera's stats hash as integers, with every counter the ledger uses present (0 if unset)."""
    raw = read_stats(client, keys, cam)
    names = (StatsField.PUBLISHED, StatsField.DROPPED, StatsField.LOST, StatsField.PROCESSED,
             StatsField.SKIPPED_STALE, StatsField.FAILED)
    return {name: int(raw.get(name, 0)) for name in names}


def wait_drained(client, keys: Keys, cams: list[str], timeout: float) -> float:
    """Wait until no camera's group has frames undelivered or unacknowledged (the workers caught
    up); returns the seconds waited. AssertionError naming what is left after `timeout`."""
    started = time.monotonic()
    while True:
        left = {cam: outstanding(client, keys, cam) for cam in cams}
        if all(undelivered == 0 and pending == 0 for undelivered, pending in left.values()):
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, \
            f"not drained after {timeout:.0f} s: (undelivered, pending) {left}"
        time.sleep(0.3)


@dataclass
class BacklogLedger:
    """What became of a backlog camera's frames: each published (run, seq) should have exactly one
    detection record or dead-letter entry. A run's published frames are taken to be seq 0 up to the
    highest seq anything shows (a record, a dead letter, the stream); frames dropped at the very end
    of a run (counted as `dropped`) are therefore invisible, as they should be."""

    cam: str
    handled: Counter = field(default_factory=Counter)  # (run, seq) -> records + dead letters
    queued: set = field(default_factory=set)  # (run, seq) still in the frames stream
    undecodable_deadletters: int = 0
    stats: dict[str, int] = field(default_factory=dict)

    @classmethod
    def read(cls, client, keys: Keys, cam: str) -> BacklogLedger:
        dead, undecodable = deadletter_ids(client, keys, cam)
        return cls(cam, Counter(detection_ids(client, keys, cam)) + Counter(dead),
                   set(queued_ids(client, keys, cam)), undecodable, counters(client, keys, cam))

    def runs(self) -> dict[int, int]:
        """run -> highest seq seen."""
        out: dict[int, int] = {}
        for run, seq in (*self.handled, *self.queued):
            out[run] = max(out.get(run, -1), seq)
        return out

    @property
    def duplicates(self) -> dict[FrameId, int]:
        """Frames handled more than once, with how often."""
        return {fid: n for fid, n in sorted(self.handled.items()) if n > 1}

    @property
    def missing(self) -> list[FrameId]:
        """Frames of a run below its highest seq with neither a record, a dead letter, nor a place in
        the stream: dropped and counted (`dropped`, `lost`), or lost without a trace."""
        return [(run, seq) for run, top in sorted(self.runs().items()) for seq in range(top + 1)
                if (run, seq) not in self.handled and (run, seq) not in self.queued]

    @property
    def unhandled(self) -> list[FrameId]:
        """Frames still in the stream without a record: in flight (or never to be processed)."""
        return sorted(fid for fid in self.queued if fid not in self.handled)

    def summary(self) -> str:
        """One line for test output and failure messages."""
        missing = self.missing
        span = f" (seq {missing[0][1]}..{missing[-1][1]})" if missing else ""
        return (f"{self.cam}: {sum(self.handled.values())} handled, {len(self.handled)} distinct, "
                f"{len(self.duplicates)} duplicated {dict(list(self.duplicates.items())[:10])}, "
                f"{len(missing)} missing{span}, {len(self.unhandled)} in the stream unhandled, "
                f"{self.undecodable_deadletters} undecodable dead letters; stats {self.stats}")


@dataclass
class LiveBalance:
    """A live camera's counters: every published frame is processed, skipped as stale, dead-lettered,
    or still outstanding in the group (`undelivered` + `pending`). `unbalanced` is 0 when that holds;
    frames the producer never published are counted apart (`dropped`)."""

    cam: str
    stats: dict[str, int]
    undelivered: int
    pending: int

    @classmethod
    def read(cls, client, keys: Keys, cam: str) -> LiveBalance:
        undelivered, pending = outstanding(client, keys, cam)
        return cls(cam, counters(client, keys, cam), undelivered, pending)

    @property
    def accounted(self) -> int:
        s = self.stats
        in_flight = self.undelivered + self.pending
        return s[StatsField.PROCESSED] + s[StatsField.SKIPPED_STALE] + s[StatsField.FAILED] + in_flight

    @property
    def unbalanced(self) -> int:
        """Frames seen downstream minus frames published (positive: more handled than published)."""
        return self.accounted - self.stats[StatsField.PUBLISHED]

    def summary(self) -> str:
        return (f"{self.cam}: stats {self.stats}, undelivered {self.undelivered}, pending {self.pending}, "
                f"accounted {self.accounted}, unbalanced {self.unbalanced}")
