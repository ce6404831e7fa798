"""A rolling upgrade on a real redis-server: workers of the previous release still write the
untracked stream under its old name (`fc:detected:{cam}`) while upgraded ones write
`fc:untracked:{cam}`. The tracking owner reads both: it tracks every frame once and in (run, seq)
order, its checkpoint keeps where to resume in each stream, and an heir resumes both (also from a
checkpoint of the previous release, which knew only the old stream's `id`)."""

from __future__ import annotations

import json

from common import envelope
from common.connection import connect
from common.envelope import Detection, Frame
from common.keys import DETECTIONS_FIELD, FRAME_FIELD, Keys
from tests.tracker.test_owner import CAM, JPEG, RUN, owner, published

STEPS = 10  # owner steps to wait through (each blocks at most 200 ms when there is nothing to read)
# Frames up to seq 0 were published by an earlier owner: seq 1 is next in line (the owner's reorder
# window is long, so every later frame waits for the ones before it).
START = {"ids": {"untracked": "0-0", "detected": "0-0"}, "released": [RUN, 0]}


def detect(client, key: str, seq: int) -> str:
    """A worker's entry for frame `seq` on `key`: one person walking right. Returns the entry id."""
    person = Detection("person", 0.9, (2 * seq, 10, 2 * seq + 20, 40), 0)
    frame = Frame(CAM, RUN, seq, RUN + seq * 100_000_000, 64, 48, JPEG, detections=[person])
    return client.xadd(key, {FRAME_FIELD: envelope.encode(frame)}).decode()


def step_until(tracker, client, keys: Keys, seqs: list[int]) -> None:
    for _ in range(STEPS):
        if published(client, keys) == seqs:
            return
        tracker.step()


def checkpoint(client, keys: Keys) -> dict:
    return json.loads(client.get(keys.tracker_checkpoint(CAM)))


def test_frames_of_both_streams_are_tracked_once_in_order(redis_client, keys, tmp_path):
    tracked_once_in_order(redis_client, keys, tmp_path)


def test_on_a_redis_cluster_one_read_takes_both_streams(cluster_url, keys, tmp_path):
    """Both names carry the camera's hash tag: one slot, so the owner's one XREAD works there too."""
    client = connect(cluster_url)
    try:
        tracked_once_in_order(client, keys, tmp_path)
    finally:
        client.close()


def tracked_once_in_order(redis_client, keys: Keys, tmp_path) -> None:
    new, old = keys.untracked(CAM), keys.untracked_legacy(CAM)
    assert (new, old) == ("fc:untracked:{yard}", "fc:detected:{yard}")
    redis_client.set(keys.tracker_checkpoint(CAM), json.dumps(START))
    # Two workers of different releases share the camera; each stream is a little out of order.
    for seq, key in [(2, old), (1, new), (4, new), (3, old), (5, old), (7, new), (6, new), (8, old)]:
        detect(redis_client, key, seq)
    tracker = owner(redis_client, keys, tmp_path, "a")
    step_until(tracker, redis_client, keys, list(range(1, 9)))

    assert published(redis_client, keys) == list(range(1, 9))
    annotated = [envelope.decode(f[FRAME_FIELD]) for _, f in redis_client.xrange(keys.annotated(CAM))]
    assert [f.seq for f in annotated] == list(range(1, 9))
    # One object, tracked frame after frame across both streams: one track id once it is confirmed.
    ids = [r["detections"][0]["track_id"] for r in (json.loads(f[DETECTIONS_FIELD])
                                                    for _, f in redis_client.xrange(keys.detections(CAM)))]
    assert set(ids) - {None} == {1} and ids[-6:] == [1] * 6
    assert checkpoint(redis_client, keys)["ids"] == {"untracked": redis_client.xrange(new)[-1][0].decode(),
                                                     "detected": redis_client.xrange(old)[-1][0].decode()}


def test_an_heir_resumes_both_streams_from_the_checkpoint(redis_client, keys, tmp_path):
    new, old = keys.untracked(CAM), keys.untracked_legacy(CAM)
    redis_client.set(keys.tracker_checkpoint(CAM), json.dumps(START))
    first_old = detect(redis_client, old, 1)
    detect(redis_client, old, 3)
    detect(redis_client, new, 4)
    first = owner(redis_client, keys, tmp_path, "a")
    step_until(first, redis_client, keys, [1])
    assert published(redis_client, keys) == [1]  # 3 and 4 wait for 2
    # Each stream resumes before its first frame not yet published: the old one after seq 1's entry.
    assert checkpoint(redis_client, keys)["ids"] == {"untracked": "0-0", "detected": first_old}
    first.lease.release()  # the owner goes with 3 and 4 unpublished

    detect(redis_client, new, 2)
    detect(redis_client, old, 5)
    detect(redis_client, new, 6)
    heir = owner(redis_client, keys, tmp_path, "b")
    step_until(heir, redis_client, keys, list(range(1, 7)))
    assert published(redis_client, keys) == list(range(1, 7))
    saved = checkpoint(redis_client, keys)
    assert saved["released"] == [RUN, 6] and saved["owner"] == "b"
    assert saved["ids"] == {"untracked": redis_client.xrange(new)[-1][0].decode(),
                            "detected": redis_client.xrange(old)[-1][0].decode()}


def test_an_heir_resumes_from_a_checkpoint_of_the_previous_release(redis_client, keys, tmp_path):
    new, old = keys.untracked(CAM), keys.untracked_legacy(CAM)
    detect(redis_client, old, 1)
    second = detect(redis_client, old, 2)
    # The previous release's owner published 1 and 2 and checkpointed the old stream's id alone.
    redis_client.set(keys.tracker_checkpoint(CAM), json.dumps({"id": second, "released": [RUN, 2],
                                                               "next_track_id": 5}))
    detect(redis_client, old, 3)
    detect(redis_client, new, 4)
    heir = owner(redis_client, keys, tmp_path, "b")
    assert heir.last_ids == {"untracked": "0-0", "detected": second}
    step_until(heir, redis_client, keys, [3, 4])
    assert published(redis_client, keys) == [3, 4]
    assert checkpoint(redis_client, keys)["ids"] == {"untracked": redis_client.xrange(new)[-1][0].decode(),
                                                     "detected": redis_client.xrange(old)[-1][0].decode()}
