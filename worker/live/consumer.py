"""The detector worker loop: read camera frames through a consumer group, process, publish, ack.

One loop serves a process's cameras: those the rendezvous ranking over the live workers assigns it
(`assignment.py`, `worker.readers_per_camera` readers per camera), or exactly the cameras it was
started for (`--camera`). One XREADGROUP over their streams on a single server, one per hash slot on
a Redis Cluster (`reads.py`). Live cameras keep latency bounded: of the entries read at once only the
newest is processed, the frames of a pass are processed oldest capture first across cameras, and a
frame older than max_frame_age when its turn comes is acked and skipped.
Backlog cameras process every frame, one at a time (a few at a time over a slow link). Every entry is
acknowledged, bad ones after a copy to the camera's dead-letter stream, and each entry's count goes
to the camera's stats in the same transaction as its XACK, so the counts match the records exactly
even when the worker is killed. The publishing thread (`publisher.py`) writes those transactions
while the loop reads and processes the next frames. A camera whose key Redis refuses (a stream
overwritten with a string: WRONGTYPE) is taken out of service and retried alone, so the other
cameras keep flowing. The per-frame transform and its writes are the camera's outlet (`outlets.py`:
annotate, or detect only for an event camera); this module only does the Redis side.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import redis

from common import envelope, threads
from common.config import CameraConfig, Settings
from common.connection import CONNECTION_ERRORS, Backoff, ThrottledLog, describe_error
from common.errors import EnvelopeError
from common.keys import FRAME_FIELD, WORKER_GROUP, Keys
from common.logs import camera_logger
from common.registry import deregister, heartbeat, member_id
from common.stats import Figure
from common.text import as_str
from worker.detect.pipeline import FrameDecodeError
from worker.live import groups, metrics
from worker.live.assignment import POOL_FIELD, Assignment
from worker.live.cameras import ServedCamera
from worker.live.groups import GroupMissingError
from worker.live.housekeeping import Chore, Rotation
from worker.live.publisher import Publication, Publisher
from worker.live.reads import FrameReader

UNREACHABLE_PAUSE = 0.5  # seconds a camera whose cluster node does not answer is left out of the reads
# Consumer-group chores on each camera read: every `interval` seconds, at most `budget` cameras a
# second (housekeeping.py), so their Redis commands do not grow with the camera count.
LAG = Chore("lag", interval=2.0, budget=8.0)
DEAD_CONSUMERS = Chore("consumers", interval=10.0, budget=2.0)
RECLAIM_BUDGET = 8.0  # cameras a second; its interval is worker.claim_idle_ms / 2
HOUSEKEEPING_TURN = 0.25  # seconds between turns of the chores
SKIP_LOG_INTERVAL = 10.0
DEADLETTER_MAX_BYTES = 1 << 20
ASSIGNMENT_INTERVAL = 1.0  # seconds between readings of the worker registry (a pool worker's cameras)


class Worker:
    """Serves `cameras` until `stop` is set. Library first: `framecast worker` is a thin CLI over it.

    Building a Worker loads the cameras' detectors (one per distinct detection config); `run` needs
    Redis only once it starts, and waits for it with backoff when it is down. A worker of the pool
    (`dedicated` False, what `framecast worker` without --camera runs) reads the cameras the ranking
    over the live pool workers assigns it; a dedicated one reads every camera it is given.
    """

    def __init__(self, settings: Settings, cameras: list[CameraConfig], client: redis.Redis,
                 stop: threading.Event, name: str | None = None, dedicated: bool = False):
        self.settings = settings
        self.client = client
        self.stop = stop
        self.name = name or member_id()
        self.keys = Keys(settings.key_prefix)
        self.cfg = settings.worker
        self.cams = {c.id: ServedCamera(c, settings, client, self.name) for c in cameras}
        self.by_stream = {served.frames_key: served for served in self.cams.values()}
        self.log = camera_logger("framecast.worker", ",".join(self.cams), worker=self.name)
        self.reader = FrameReader(client, self.name, list(self.cams.values()), self.keys.arrivals, self.log)
        self.assignment = Assignment(client, self.keys, self.name, self.cams,
                                     0 if dedicated else self.cfg.readers_per_camera)
        self._releasing: set[str] = set()  # cameras no longer assigned whose consumer is still in the group
        self.publisher: Publisher | None = None  # started by `run`
        self._throttled = ThrottledLog(60.0)
        self._busy = False  # the last read returned entries: read again without blocking
        self._groups_ready = False
        self._groups_created_once = False
        self._redis_down = False
        self._due: dict[str, float] = {}
        self._lag = Rotation(LAG)
        self._reclaims = Rotation(Chore("reclaim", self.cfg.claim_idle_ms / 2000, RECLAIM_BUDGET))
        self._consumers = Rotation(Chore("consumers", min(DEAD_CONSUMERS.interval, self.cfg.dead_consumer_after / 2),
                                         DEAD_CONSUMERS.budget))

    @property
    def processed(self) -> int:
        return sum(s.processed for s in self.cams.values())

    # ---- the loop ----------------------------------------------------------------------------------
    def run(self) -> None:
        """The worker's main loop; returns after `stop` is set, with every frame it read acknowledged.

        Runs on the calling thread (the main thread of `framecast worker`, or a thread of an
        embedding program). Redis outages, restarts and vanished groups are waited out, never fatal.
        """
        backoff = Backoff(base=0.2, cap=5.0)
        self.publisher = Publisher(self.client, self.name, name=f"framecast-publisher-{self.name}")
        try:
            while not self.stop.is_set():
                try:
                    self.step()
                    if self._redis_down:
                        self.log.info("redis reachable again")
                        self._redis_down = False
                    backoff.reset()
                except GroupMissingError as exc:
                    self._group_lost(exc)
                except CONNECTION_ERRORS as exc:  # before ResponseError: CLUSTERDOWN, READONLY are both
                    if not self._redis_down:
                        metrics.REDIS_OUTAGES.inc()
                        self.log.warning("redis unavailable, reconnecting", extra={"error": describe_error(exc)})
                    self._redis_down = True
                    self._groups_ready = False  # a restarted Redis without persistence has none
                    if backoff.wait(self.stop):
                        break
                except redis.exceptions.RedisClusterException as exc:  # not a RedisError
                    # e.g. no startup node reachable while the cluster's slot map is re-read
                    self.log.error("redis cluster client failed, retrying", extra={"error": describe_error(exc)})
                    self._groups_ready = False
                    if backoff.wait(self.stop):
                        break
                except redis.exceptions.ResponseError as exc:
                    if groups.is_missing_group(exc):
                        self._group_lost(exc)
                        continue
                    # e.g. OOM or a refused permission: nothing one camera's isolation can help
                    self.log.error("redis refused a command, retrying", extra={"error": describe_error(exc)})
                    if backoff.wait(self.stop):
                        break
        finally:
            self._shutdown()

    def step(self) -> None:
        """One pass of the loop: groups, periodic chores, one read and the frames it returned.

        The frames read are all handled (and acked) even when `stop` is set meanwhile.
        """
        self._collect_publishing()
        if not self._groups_ready:
            self._ensure_groups()
        self._periodic()
        batches = self._read()
        self._busy = bool(batches)
        self._work_through(batches)

    def _read(self) -> list[tuple[ServedCamera, list]]:
        """Block until frames arrive when idle; while frames keep coming, read without blocking so a
        live stream's backlog is read as one batch and a backlog stream's frames one at a time."""
        # Wake up for the next periodic chore (heartbeat, reclaim, the retry of a camera out of service)
        # even when no frame arrives.
        until_due = min([*self._due.values(), *(s.retry_at for s in self.cams.values() if s.out_of_service)],
                        default=0.0) - time.monotonic()
        wait_ms = max(10, min(self.cfg.block_ms, int(until_due * 1000)))
        done = self.reader.read(idle=not self._busy, wait_ms=wait_ms)
        if done is None:  # every camera is out of service
            self.stop.wait(wait_ms / 1000)
            return []
        for stream, exc in done.refused.items():
            self._refused(self.by_stream[stream], stream, exc)
        for stream in done.streams:
            served = self.by_stream[stream]
            if stream not in done.refused and served.refused_key == stream:
                served.return_to_service()
        return [(self.by_stream[stream], entries) for stream, entries in done.found]

    def _ensure_groups(self) -> None:
        now = time.monotonic()
        for served in self.cams.values():
            if not served.readable(now):
                continue
            try:
                created = groups.ensure_group(self.client, served.frames_key, "$" if served.live else "0")
            except redis.exceptions.ResponseError as exc:
                if isinstance(exc, CONNECTION_ERRORS):
                    raise
                self._refused(served, served.frames_key, exc)
                continue
            if created:
                if self._groups_created_once:
                    served.account.count(metrics.RECREATED)
                served.log.info("created consumer group", extra={"group": WORKER_GROUP, "mode": served.camera.mode})
        self._groups_ready = self._groups_created_once = True

    # ---- cameras out of service ----------------------------------------------------------------------
    def _refused(self, served: ServedCamera, key: str, exc: Exception) -> None:
        """Redis refused a command on one camera's `key`: a vanished group is re-created; a node that
        does not answer (its master failing over, while the other nodes do) pauses the camera
        briefly; anything else (a key of the wrong type) takes it out of service until its retry."""
        if isinstance(exc, CONNECTION_ERRORS):
            served.pause(UNREACHABLE_PAUSE, describe_error(exc))
        elif groups.is_missing_group(exc):
            self._group_lost(exc)
        else:
            served.take_out_of_service(key, f"{key}: {describe_error(exc)}")

    def _collect_publishing(self) -> None:
        """Take in what the publishing thread found: cameras out of service, unreachable or back in
        service, then a failed write (raised here, so the loop backs off as for its own failures)."""
        while self.publisher.refusals:
            served, key, exc = self.publisher.refusals.popleft()
            if exc is None:
                served.return_to_service()
            else:
                self._refused(served, key, exc)
        error = self.publisher.take_error()
        if error is not None:
            raise error

    def _group_lost(self, exc: Exception) -> None:
        self.log.warning("consumer group missing (Redis restarted or flushed?), re-creating it",
                         extra={"error": describe_error(exc)})
        self._groups_ready = False

    def _is_due(self, task: str, interval: float) -> bool:
        now = time.monotonic()
        if now < self._due.get(task, 0.0):
            return False
        self._due[task] = now + interval
        return True

    def _periodic(self) -> None:
        """Heartbeat, the pool, the consumer-group chores and the skip log, each at its own interval."""
        if self._is_due("heartbeat", self.cfg.heartbeat_ttl / 3):
            self._heartbeat()
        if self.assignment.enabled and self._is_due("assignment", ASSIGNMENT_INTERVAL):
            self._reassign()
        if self._is_due("housekeeping", HOUSEKEEPING_TURN):
            self._housekeeping()
        if self._is_due("skip-log", SKIP_LOG_INTERVAL):
            for served in self.cams.values():
                skipped = served.skipped_since_last_report()
                if skipped:
                    served.log.info("skipped stale frames to keep latency bounded", extra={"frames": skipped})
        if self.publisher.idle:  # else its next transaction carries the pending figures anyway
            for served in self.cams.values():
                served.account.stats.maybe_flush()

    def _serving(self) -> list[ServedCamera]:
        now = time.monotonic()
        return [s for s in self.cams.values() if s.serving(now)]

    # ---- the cameras assigned to this worker -------------------------------------------------------
    def _reassign(self) -> None:
        """Read the pool of live workers and take up or leave cameras as the ranking says; then take this
        worker's consumer out of the groups of the cameras it left once it holds nothing there."""
        before = set(self.assignment.pool)
        try:
            changed = self.assignment.refresh()
        except (*CONNECTION_ERRORS, redis.exceptions.ResponseError) as exc:
            if isinstance(exc, CONNECTION_ERRORS) and not self.reader.streams.cluster:
                raise
            if self._throttled.due("assignment"):  # the last assignment stands meanwhile
                self.log.error("could not read the worker registry; keeping this worker's cameras",
                               extra={"error": describe_error(exc)})
            return
        if before - set(self.assignment.pool):
            # A worker left the pool (stopped, or killed and its heartbeat expired): take over what it
            # held pending and delete its consumer on every camera now and once they have been idle long
            # enough for that (claim_idle_ms, dead_consumer_after), not a rotation later.
            now = time.monotonic()
            self._reclaims.hurry(now, self.cfg.claim_idle_ms / 1000 + HOUSEKEEPING_TURN)
            self._consumers.hurry(now, self.cfg.dead_consumer_after + HOUSEKEEPING_TURN)
        if changed:
            mine = self.assignment.cameras
            for cam, served in self.cams.items():
                if served.assigned and cam not in mine:
                    self._releasing.add(cam)
                elif cam in mine:
                    self._releasing.discard(cam)
                served.assigned = cam in mine
            self.log.info("cameras assigned", extra={"cameras": sorted(mine), "workers": list(self.assignment.pool)})
        if self._releasing:
            self._release()

    def _release(self) -> None:
        """Delete this worker's consumer from the groups of the cameras it no longer reads, for those where
        it holds no pending entry (its frames published and acked; nothing can add one, as it neither
        reads nor claims them any more, nor has a read in flight naming them). Two pipelined round trips."""
        in_flight = self.reader.streams_in_flight()
        cams = [cam for cam in sorted(self._releasing) if self.cams[cam].frames_key not in in_flight]
        if not cams:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for cam in cams:
                pipe.xpending_range(self.cams[cam].frames_key, WORKER_GROUP, "-", "+", 1, consumername=self.name)
            pending = pipe.execute(raise_on_error=False)
            idle = [cam for cam, reply in zip(cams, pending, strict=True) if isinstance(reply, list) and not reply]
            if idle:
                pipe = self.client.pipeline(transaction=False)
                for cam in idle:
                    pipe.xgroup_delconsumer(self.cams[cam].frames_key, WORKER_GROUP, self.name)
                pipe.execute(raise_on_error=False)
        except (*CONNECTION_ERRORS, redis.exceptions.ResponseError) as exc:
            if isinstance(exc, CONNECTION_ERRORS) and not self.reader.streams.cluster:
                raise
            return  # tried again at the next reading of the registry
        for cam, reply in zip(cams, pending, strict=True):
            if isinstance(reply, list) and not reply or groups.is_missing_group(reply):
                self._releasing.discard(cam)

    def _heartbeat(self) -> None:
        try:
            self._send_heartbeat()
        except (*CONNECTION_ERRORS, redis.exceptions.ResponseError) as exc:
            if isinstance(exc, CONNECTION_ERRORS) and not self.reader.streams.cluster:
                raise
            # a registry key overwritten with another type, or (cluster) the registry's master failing
            # over: the frames need not wait for it, the next heartbeat is due in heartbeat_ttl / 3
            if self._throttled.due("heartbeat"):
                self.log.error("heartbeat refused by Redis; the web tier will not list this worker",
                               extra={"error": describe_error(exc)})

    def _send_heartbeat(self) -> None:
        reading = {cam: s for cam, s in self.cams.items() if s.assigned}
        heartbeat(self.client, self.keys, "worker", self.name, {
            "host": socket.gethostname(), "pid": os.getpid(), "cameras": sorted(reading),
            POOL_FIELD: self.assignment.enabled,  # reads the cameras the ranking over the pool assigns it
            "modes": {cam: s.camera.mode for cam, s in reading.items()},
            "model": sorted({s.model_name for s in self.cams.values()}),
            "fps": {cam: round(s.processed_fps(), 2) for cam, s in self.cams.items()
                    if s.assigned or cam in self._releasing},
            "processed": self.processed,
            "last_frame_ts": max((s.last_frame_ts for s in self.cams.values()), default=0.0),
            "errors": {cam: s.refusal for cam, s in self.cams.items() if s.out_of_service},  # cameras out of service
            "dead_threads": threads.dead(),  # a service thread died: the process is exiting (70)
        }, self.cfg.heartbeat_ttl)

    def _housekeeping(self) -> None:
        """A turn of the consumer-group chores: the cameras each one's rotation has due, each chore's
        commands in one pipeline."""
        now = time.monotonic()
        serving = {s.frames_key: s for s in self._serving()}
        streams = sorted(serving)
        due = self._lag.take(streams, now)
        for stream, reply in zip(due, self._chore_replies(groups.group_backlogs, due), strict=True):
            if self._accepted(serving[stream], reply):
                serving[stream].account.set(metrics.LAG, reply[0])
                serving[stream].account.set(metrics.PENDING, reply[1])
        due = self._reclaims.take(streams, now)
        replies = self._chore_replies(groups.claim_stale_many, due, self.name, self.cfg.claim_idle_ms)
        claimed = [(serving[stream], reply) for stream, reply in zip(due, replies, strict=True)
                   if self._accepted(serving[stream], reply)]
        for served, (entries, deleted) in claimed:
            self._reclaimed(served, entries, deleted)
        due = self._consumers.take(streams, now)
        replies = self._chore_replies(groups.remove_dead_consumers_many, due, self.name,
                                      int(self.cfg.dead_consumer_after * 1000))
        for stream, reply in zip(due, replies, strict=True):
            if self._accepted(serving[stream], reply) and reply:
                serving[stream].log.info("removed dead consumers", extra={"consumers": reply})

    def _chore_replies(self, chore, streams: list[str], *args) -> list:
        """Run a pipelined chore over `streams`: one reply or error per stream. On a single server an
        outage raises (the loop backs off); on a cluster a pipeline cut short leaves this turn's cameras
        for their next visit."""
        if not streams:
            return []
        try:
            return chore(self.client, streams, *args)
        except CONNECTION_ERRORS as exc:
            if not self.reader.streams.cluster:
                raise
            return [exc] * len(streams)

    def _accepted(self, served: ServedCamera, reply) -> bool:
        """True for a chore's answer; an error is the camera's (out of service, its group re-created, or
        paused while its cluster node does not answer)."""
        if isinstance(reply, GroupMissingError):
            self._group_lost(reply)
            return False
        if isinstance(reply, Exception):
            if isinstance(reply, CONNECTION_ERRORS) and not self.reader.streams.cluster:
                raise reply
            self._refused(served, served.frames_key, reply)
            return False
        return True

    def _reclaimed(self, served: ServedCamera, entries: list, deleted: list) -> None:
        """Handle the frames taken over from consumers that died mid-frame, and count those trimmed."""
        if entries or deleted:
            served.account.count(metrics.RECLAIMED, len(entries))
            served.log.info("reclaimed pending frames", extra={"frames": len(entries), "trimmed": len(deleted)})
        if deleted:
            # Trimmed from the stream while a stopped consumer held them: Redis has dropped them from
            # the pending list too, so they are counted here or nowhere. A live frame that old is
            # stale anyway; a backlog frame is lost (the ledger's `lost`).
            served.account.count(metrics.SKIPPED if served.live else metrics.LOST, len(deleted))
            if not served.live:
                served.log.error("frames lost: trimmed from the stream before a worker acknowledged them",
                                 extra={"frames": len(deleted)})
        self._work_through([(served, entries)])

    def _shutdown(self) -> None:
        try:  # a pass read ahead was delivered to this consumer: handle it too
            self._work_through([(self.by_stream[stream], entries) for stream, entries in self.reader.finish()])
        except (*CONNECTION_ERRORS, redis.exceptions.ResponseError) as exc:
            self.log.warning("the read ahead failed at exit", extra={"error": describe_error(exc)})
        if self.publisher is not None and not self.publisher.close():
            self.log.warning("frames still being published at exit stay pending, for another worker to reclaim")
        for served in self.cams.values():
            served.account.stats.flush()
        try:
            deregister(self.client, self.keys, "worker", self.name)
        except (*CONNECTION_ERRORS, redis.exceptions.ResponseError) as exc:
            self.log.warning("could not deregister; the heartbeat will expire", extra={"error": describe_error(exc)})
        self.log.info("worker stopped", extra={"processed": self.processed})

    # ---- per entry -----------------------------------------------------------------------------------
    def _work_through(self, batches: list[tuple[ServedCamera, list]]) -> None:
        """Handle the entries of one pass (or of a reclaim), the oldest capture first across cameras.

        A live camera's older entries of a batch are superseded by its newest and skipped. The rest are
        decoded first (a bad entry is dead-lettered there) and processed by capture time, so a camera at
        the end of a many-camera read waits no longer than its frame's age says: the frame that has
        waited longest goes next, and one that is too old by its turn is skipped as stale."""
        started = time.monotonic()
        turns: list[tuple[int, int, ServedCamera, str, bytes, envelope.Frame]] = []
        for served, entries in batches:
            if served.live and len(entries) > 1:
                # The worker fell behind: the older entries of the batch are superseded by the newest.
                stale = [eid for eid, _ in entries[:-1]]
                self._skip(served, stale, entries[:-1])
                entries = entries[-1:]
            for entry_id, fields in entries:
                admitted = self._admit(served, entry_id, fields)
                if admitted is not None:
                    turns.append((admitted[2].ts, len(turns), served, *admitted))
        turns.sort(key=lambda turn: turn[:2])  # capture time, then the order read (a camera's own order)
        for _, _, served, eid, data, frame in turns:
            self._process(served, eid, data, frame)
        self.reader.pace.frames_took(time.monotonic() - started, len(turns))

    def _admit(self, served: ServedCamera, entry_id: bytes | str,
               fields: dict) -> tuple[str, bytes, envelope.Frame] | None:
        """The entry's id, bytes and frame, or None when it is no frame of this camera (dead-lettered)."""
        eid = as_str(entry_id)
        data = fields.get(FRAME_FIELD) if fields else None
        if data is None:
            names = ", ".join(sorted(k.decode(errors="replace") if isinstance(k, bytes) else str(k)
                                     for k in (fields or {})))
            return self._dead_letter(served, eid, b"", f"entry has no {FRAME_FIELD.decode()!r} field "
                                     f"(fields: {names or 'none'})", "malformed")
        try:
            frame = envelope.decode(data)
        except EnvelopeError as exc:
            return self._dead_letter(served, eid, data, str(exc), "envelope")
        if frame.cam != served.cam:
            return self._dead_letter(served, eid, data, f"frame of camera {frame.cam!r} in this stream", "envelope")
        return eid, data, frame

    def _process(self, served: ServedCamera, eid: str, data: bytes, frame: envelope.Frame) -> None:
        """Process one frame and have it acknowledged (by the publishing thread), whatever happens to it."""
        read_ns = time.time_ns()  # the `read` mark: the worker takes the entry up
        if served.live and time.time_ns() - frame.ts > served.max_age_ns:
            return self._skip(served, [eid], [data])
        frame = frame.stamped(read=read_ns)
        try:
            result = served.outlet.process(frame, fps=served.source_fps(), max_pixels=self.cfg.max_frame_pixels)
            published_ns = time.time_ns()
            result = result.annotated(result.jpeg, result.detections or [], worker=self.name,
                                      published_ns=published_ns).stamped(published=published_ns)
            payload = envelope.encode(result)
        except FrameDecodeError as exc:
            return self._dead_letter(served, eid, data, str(exc), "jpeg")
        except Exception as exc:  # a detector or encoder failure on one frame must not stop the worker
            served.log.exception("frame processing failed", extra={"entry": eid})
            return self._dead_letter(served, eid, data, f"{type(exc).__name__}: {exc}", "processing")
        served.account.observe(metrics.INFERENCE, result.meta.get("infer_ms", 0.0))
        self._count_inspection(served, result)
        served.account.observe(metrics.END_TO_END, (published_ns - frame.ts) / 1e6)
        for stage, ms in result.stage_ms().items():
            served.account.observe(metrics.STAGE, ms, stage=stage)
        self._ack(served, [eid], metrics.PROCESSED, served.outlet.writes(result, payload),
                  done=lambda: served.record_processed(frame.run, frame.seq, frame.ts, published_ns))
        return None

    @staticmethod
    def _count_inspection(served: ServedCamera, result: envelope.Frame) -> None:
        """How the frame was inspected, and how many times the model ran on it."""
        inspected = result.inspect
        served.account.count(metrics.INSPECTED[inspected], inspect=inspected)
        regions = len(result.meta.get("regions") or ())
        if regions:
            served.account.observe(metrics.REGIONS, regions)
        served.account.count(metrics.INFERENCE_CALLS, regions or (0 if inspected == envelope.INSPECT_NONE else 1))

    def _ack(self, served: ServedCamera, entry_ids: list[str], figure: Figure, writes=(), done=None,
             **labels: str) -> None:
        """Have `entry_ids` written (`writes`: what was done with them), acknowledged and counted as
        `figure` in one transaction, by the publishing thread; `done` runs once it is written."""
        self.publisher.put(Publication(served, entry_ids, figure, labels, list(writes), done))

    def _skip(self, served: ServedCamera, entry_ids: list[str], frames: list = ()) -> None:
        """Ack stale live frames unprocessed: a newer frame makes them worthless. The camera's outlet
        says what they leave behind (`frames`: entries or envelope bytes)."""
        self._ack(served, entry_ids, metrics.SKIPPED, served.outlet.skip_markers(list(frames)),
                  done=lambda: served.record_skipped(len(entry_ids)))

    def _dead_letter(self, served: ServedCamera, entry_id: str, data: bytes, error: str, reason: str) -> None:
        served.log.warning("bad frame dead-lettered", extra={"entry": entry_id, "error": error, "reason": reason})
        copy = {"entry": entry_id, "error": error, "reason": reason, "data": bytes(data[:DEADLETTER_MAX_BYTES])}
        self._ack(served, [entry_id], metrics.FAILED,
                  [(served.deadletter_key, copy, self.settings.streams.deadletter_maxlen),
                   *served.outlet.skip_markers([data])], reason=reason)
