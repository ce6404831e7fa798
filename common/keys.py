"""Every Redis key name framecast uses, in one place.

All keys of one camera carry the camera id as a hash tag (`{cam}`), so on Redis Cluster they live in
one slot and multi-key commands and pipelines per camera work. Global registries have their own tag.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.camera_id import validate_camera_id

# Field name of the single field in every frame stream entry.
FRAME_FIELD = b"f"
# Field name of the single field in every detections stream entry (JSON bytes).
DETECTIONS_FIELD = b"d"
# Field of an `untracked` stream entry marking a frame a worker skipped (stale) or dead-lettered:
# b"<run>:<seq>", so the tracking owner's reorderer need not wait for it.
SKIPPED_FIELD = b"s"
# Field name of the single field in every event feed entry (JSON `{"type", "before", "after"}`).
EVENT_FIELD = b"e"
# Consumer group that the detector workers share on each camera's frames stream.
WORKER_GROUP = "detectors"
# Field of an `arrivals` entry: the ids of the cameras whose frames one producer round added, comma-separated.
ARRIVALS_FIELD = b"c"
# Bound of the arrivals stream (MAXLEN ~): minutes of rounds at any usual rate; a worker further behind
# finds the frames by its sweep (worker/live/arrivals.py).
ARRIVALS_MAXLEN = 10_000


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix (`key_prefix` in the config, default 'fc')."""

    prefix: str = "fc"

    def _cam(self, kind: str, camera_id: str) -> str:
        validate_camera_id(camera_id)
        return f"{self.prefix}:{kind}:{{{camera_id}}}"

    def frames(self, camera_id: str) -> str:
        """Raw JPEG frames from the producer (stream of envelopes)."""
        return self._cam("frames", camera_id)

    def annotated(self, camera_id: str) -> str:
        """Annotated JPEG frames from the workers (stream of envelopes with detections)."""
        return self._cam("annotated", camera_id)

    def detections(self, camera_id: str) -> str:
        """Detection records, one JSON entry per processed frame."""
        return self._cam("detections", camera_id)

    def deadletter(self, camera_id: str) -> str:
        """Frames that could not be decoded, kept for inspection (bounded)."""
        return self._cam("deadletter", camera_id)

    def stats(self, camera_id: str) -> str:
        """Hash of per-camera counters written by producers and workers."""
        return self._cam("stats", camera_id)

    # Events (tracker): the tracking owner's input, its lease and checkpoint, and its outputs.
    def untracked(self, camera_id: str) -> str:
        """Stream: frames detected but not yet tracked, the tracking owner's input (envelope with
        dets, or a skip marker); the owner orders, tracks, annotates and publishes them."""
        return self._cam("untracked", camera_id)

    def untracked_legacy(self, camera_id: str) -> str:
        """The untracked stream's name in the previous release (`<prefix>:detected:{cam}`): the
        tracking owner still reads it, so a worker of that release loses no frames during a rolling
        upgrade. Nothing writes it; dropped in the next release."""
        return self._cam("detected", camera_id)

    def events(self, camera_id: str) -> str:
        """Sorted set: event id -> start time (epoch seconds), bounded."""
        return self._cam("events", camera_id)

    def event(self, camera_id: str, event_id: str) -> str:
        """Hash of one event: `state` (JSON of its latest `after`) and `type` (new/update/end)."""
        return f"{self._cam('event', camera_id)}:{event_id}"

    def tracker_lease(self, camera_id: str) -> str:
        """String: the camera's tracking lease, '<owner>:<token>' with a TTL; '<key>:token' counts the fencing tokens."""
        return self._cam("tracker", camera_id)

    def tracker_checkpoint(self, camera_id: str) -> str:
        """String (JSON): the tracking owner's checkpoint: `ids`, per untracked stream (new and old
        name), the entry to resume after; `released`, the last (run, seq) published; the next track id."""
        return self._cam("trackerstate", camera_id)

    def eventfeed(self, camera_id: str) -> str:
        """Stream (MAXLEN ~1000): the live feed of event new/update/end messages (JSON)."""
        return self._cam("eventfeed", camera_id)

    def counts(self, camera_id: str) -> str:
        """Hash: line crossings `line:<name>:<direction>:<label>` and zone occupancy
        `zone:<name>:<label>` (current count)."""
        return self._cam("counts", camera_id)

    # Live video (H.264, fragmented MP4): the camera's encoding owner writes, web processes read.
    def video(self, camera_id: str) -> str:
        """Stream (MAXLEN ~video.fragments_maxlen): the camera's fMP4 fragments, one per frame
        (common/video.py gives the fields); each generation starts at a keyframe."""
        return self._cam("video", camera_id)

    def video_init(self, camera_id: str) -> str:
        """Hash: the init segment (ftyp+moov) of the current generation of the camera's video, its
        generation, codec string and size (common/video.py)."""
        return self._cam("videoinit", camera_id)

    def encoder_lease(self, camera_id: str) -> str:
        """String: the camera's encoding lease, '<owner>:<token>' with a TTL (tracker/lease.py's
        Lease); '<key>:token' counts the fencing tokens, the generation of what the owner writes."""
        return self._cam("encoder", camera_id)

    @property
    def watched_cameras(self) -> str:
        """Sorted set: camera id -> until when (epoch s) some web process may have a viewer of its
        H.264 view (ZADD GT, so the latest announcement wins); encoders look here first and read
        the viewers of only those cameras, so a poll costs the same however many cameras there are."""
        return f"{self.prefix}:{{registry}}:watched"

    def video_viewers(self, camera_id: str) -> str:
        """Sorted set: web process id -> until when (epoch s) someone there watches the camera's
        H.264 view; the encoder encodes while a member is in the future."""
        return self._cam("viewers", camera_id)

    @property
    def arrivals(self) -> str:
        """Stream: which cameras just had frames added (a producer round: ARRIVALS_FIELD), so a worker
        blocks on this one key and reads only those cameras' streams instead of naming every stream it
        serves in each read (whose cost grows with the streams named). Its own hash tag: one key."""
        return f"{self.prefix}:{{arrivals}}:frames"

    # Global registries share one hash tag so they can be read together.
    @property
    def workers(self) -> str:
        """Sorted set: worker id -> time of last heartbeat (epoch seconds)."""
        return f"{self.prefix}:{{registry}}:workers"

    def worker(self, worker_id: str) -> str:
        """Hash describing one live worker; expires unless refreshed by heartbeats."""
        return f"{self.prefix}:{{registry}}:worker:{worker_id}"

    @property
    def producers(self) -> str:
        """Sorted set: producer id -> time of last heartbeat."""
        return f"{self.prefix}:{{registry}}:producers"

    def producer(self, producer_id: str) -> str:
        return f"{self.prefix}:{{registry}}:producer:{producer_id}"
