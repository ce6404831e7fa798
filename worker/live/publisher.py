"""The worker's publishing thread: it writes what the loop did with each entry (an annotated frame and
its detection record, a dead-letter copy, or nothing for a skipped frame), acknowledges the entry and
counts it, while the loop goes on to the next frame. On a slow link the round trips overlap the
detection work instead of adding to it.

Everything queued when the thread comes round is written together: on a single server in one
pipeline, on a cluster in one pipeline per camera (one camera is one slot). An entry is acknowledged
in the same script as its results and its count, so nothing is acked unwritten and the counts stay
exact.
The queue is bounded (PUBLISH_QUEUE): when Redis cannot keep up the loop waits, the live streams
grow meanwhile, and their next read skips the stale frames as it always did.

The fence: a camera's publications of one round are one Lua script (`_PUBLISH`, atomic, all its
keys under the camera's hash tag), which writes an entry's results, XACKs and counts it only while
this consumer still owns it: `XPENDING frames detectors <id> <id> 1` names this consumer. A worker
cut off or SIGSTOPped mid-frame has its entries reclaimed (XAUTOCLAIM) by another after
`worker.claim_idle_ms`; when it resumes, its delayed round finds them owned by the other worker, or
already acknowledged, and writes nothing for them. XACK alone is no fence: it acks an entry whatever
consumer holds it and returns 1, so the late worker and the new owner would both publish. Ownership
changes only by delivery, claim and ack, each atomic with respect to the script, so exactly one
publication of an entry writes its record: the one that acknowledges it; a copy the same worker
reclaimed from itself finds it acknowledged. Publications that lost the fence are counted
(`framecast_worker_frames_fenced_total`) and their `done` is not run.

The script checks the type of every key before writing anything (a key of the wrong type fails the
camera's round with `WRONGTYPE <key>`, nothing half-written); such a failure is reported per camera
(`refusals`) for the loop to take the camera out of service. On a cluster, a camera whose master does
not answer is reported the same way (the loop pauses it) rather than as an outage, so the cameras of
the other masters keep flowing. The pending gauges of a camera ride in the same pipeline.
"""

from __future__ import annotations

import collections
import queue
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from common.connection import CONNECTION_ERRORS, is_cluster
from common.keys import WORKER_GROUP
from common.stats import Figure
from common.threads import start_thread
from worker.live import metrics
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
    """One worker's publishing thread and its bounded queue, publishing as group consumer `consumer`
    (only entries it still owns). `put` is called by the worker loop;
    the loop collects `take_error()` (an outage or a refused transaction) and `refusals` from it."""

    def __init__(self, client, consumer: str, name: str = "framecast-publisher"):
        self.client = client
        self.consumer = consumer  # the worker's name in the consumer group: the fence's owner
        self._publish = client.register_script(_PUBLISH)
        self._per_camera = is_cluster(client)  # a cluster transaction stays within one slot
        self._queue: queue.Queue[Publication | None] = queue.Queue(maxsize=PUBLISH_QUEUE)
        self._error: BaseException | None = None
        self._closing = False
        # (camera, key, error) when a key refused a write or its node did not answer; (camera, None,
        # None) when the write of a camera out of service went through again
        self.refusals: collections.deque[tuple[ServedCamera, str | None, Exception | None]] = collections.deque()
        self._thread = start_thread(self._run, name)

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
            self.refusals.append((served, served.frames_key, exc))

    def _transact(self, unit: list[list[Publication]]) -> None:
        """One pipeline with every camera of `unit`: per camera one fenced script (its writes in order,
        its XACK, its counts) and its pending gauges."""
        pipe = self.client.pipeline(transaction=False)
        calls = []  # per camera: (publications, index of its script in the pipeline, keys, args)
        for pubs in unit:
            served = pubs[0].served
            keys, args = _script_call(pubs, served.frames_key, served.account.stats.key, self.consumer)
            calls.append((pubs, len(pipe), keys, args))
            # execute_command: redis-py's cluster pipeline refuses its evalsha() (all keys here share
            # the camera's hash tag, which routes the call to one node)
            pipe.execute_command("EVALSHA", self._publish.sha, len(keys), *keys, *args)
            served.account.queue(pipe)  # the pending gauges
        try:
            results = pipe.execute(raise_on_error=False)
        except BaseException:
            for pubs, *_ in calls:
                pubs[0].served.account.settle(False)
            raise
        outage = next((r for r in results if isinstance(r, CONNECTION_ERRORS)), None)
        for pubs, at, keys, args in calls:
            served = pubs[0].served
            result = results[at]
            if isinstance(result, redis.exceptions.NoScriptError) and outage is None:
                try:  # a restarted Redis forgot the script: load it (EVALSHA did not run) and run it again
                    result = self._publish(keys=keys, args=args)
                except CONNECTION_ERRORS as exc:
                    outage = result = exc
                except redis.exceptions.ResponseError as exc:
                    result = exc
            failed = [r for r in results[at + 1:at + 1 + _commands_after(results, at, calls)]
                      if isinstance(r, Exception)]
            served.account.settle(outage is None and not failed)
            if isinstance(result, Exception):
                if not isinstance(result, CONNECTION_ERRORS):
                    self.refusals.append((served, _refused_key(result, keys), result))
                continue
            if failed:
                self.refusals.append((served, served.account.stats.key, failed[0]))
            self._settled(served, pubs, result)
        if outage is not None:
            raise outage

    def _settled(self, served: ServedCamera, pubs: list[Publication], owned: list) -> None:
        """After a camera's script ran: count what it published, run `done` of the publications it
        wrote whole, and count the entries fenced off (owned by another consumer, or acknowledged)."""
        for publication, kept in zip(pubs, owned, strict=True):
            kept = int(kept)
            if kept:
                publication.figure.metric.labels(camera=served.cam, **publication.labels).inc(kept)
            if kept < len(publication.entry_ids):
                metrics.FENCED.labels(camera=served.cam).inc(len(publication.entry_ids) - kept)
                served.log.info("entries no longer this worker's (reclaimed by another, or acknowledged): "
                                "their results are not published",
                                extra={"entries": len(publication.entry_ids) - kept})
            elif publication.done is not None:
                publication.done()
        if served.out_of_service:
            self.refusals.append((served, None, None))


def _commands_after(results: list, at: int, calls: list) -> int:
    """How many commands follow the script at `at` for the same camera (its pending gauges)."""
    later = [index for _, index, *_ in calls if index > at]
    return (min(later) if later else len(results)) - at - 1


def _refused_key(exc: Exception, keys: list[str]) -> str:
    """The key a refusal names (`WRONGTYPE <key> ...` from the script), else the frames stream."""
    words = str(exc).split()
    return words[1] if len(words) > 1 and words[0] == "WRONGTYPE" and words[1] in keys else keys[0]


def _script_call(pubs: list[Publication], frames_key: str, stats_key: str, consumer: str):
    """KEYS and ARGV of `_PUBLISH` for one camera's publications."""
    keys = [frames_key, stats_key]
    args: list = [WORKER_GROUP, consumer, len(pubs)]
    for publication in pubs:
        args += [len(publication.entry_ids), *publication.entry_ids, publication.figure.field or "",
                 len(publication.writes)]
        for stream, fields, maxlen in publication.writes:
            if stream not in keys:
                keys.append(stream)
            args += [keys.index(stream) + 1, maxlen, len(fields)]
            for name, value in fields.items():
                args += [name, value]
    return keys, args


# KEYS: frames stream, stats hash, the streams written. ARGV: group, consumer, publications, then per
# publication: n ids, the ids, the stats field counting them ("" for none), n writes, and per write:
# its key's index in KEYS, MAXLEN (~), n fields, the field/value pairs.
_PUBLISH = """#!lua
local function check(key, want)
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= 'none' and kind ~= want then
    return redis.error_reply('WRONGTYPE ' .. key .. ' holds a ' .. kind .. ', not a ' .. want)
  end
end
local err = check(KEYS[2], 'hash')
if err then return err end
for i = 3, #KEYS do
  err = check(KEYS[i], 'stream')
  if err then return err end
end
local group, me = ARGV[1], ARGV[2]
local pubs, at = {}, 4
for p = 1, tonumber(ARGV[3]) do
  local n = tonumber(ARGV[at]); at = at + 1
  local owned = {}
  for i = at, at + n - 1 do
    local row = redis.call('XPENDING', KEYS[1], group, ARGV[i], ARGV[i], 1)[1]
    if row and row[2] == me then owned[#owned + 1] = ARGV[i] end
  end
  at = at + n
  local pub = {n = n, owned = owned, field = ARGV[at], writes = {}}
  local writes = tonumber(ARGV[at + 1]); at = at + 2
  for w = 1, writes do
    local key, maxlen, pairs = KEYS[tonumber(ARGV[at])], ARGV[at + 1], tonumber(ARGV[at + 2])
    pub.writes[w] = {key, maxlen, at + 3, at + 2 + 2 * pairs}
    at = at + 3 + 2 * pairs
  end
  pubs[p] = pub
end
local out = {}
for p, pub in ipairs(pubs) do
  local kept = #pub.owned
  if kept == pub.n then  -- results only for entries wholly this consumer's
    for _, w in ipairs(pub.writes) do
      redis.call('XADD', w[1], 'MAXLEN', '~', w[2], '*', unpack(ARGV, w[3], w[4]))
    end
  end
  if kept > 0 then
    redis.call('XACK', KEYS[1], group, unpack(pub.owned))
    if pub.field ~= '' then redis.call('HINCRBY', KEYS[2], pub.field, kept) end
  end
  out[p] = kept
end
return out
"""
