"""A camera whose key Redis refuses (a frames stream overwritten with a string: WRONGTYPE) costs only
that camera: the worker's other cameras keep flowing, that one is taken out of service (reported in
the heartbeat, logged once and counted), and it returns to service by itself once the key is fixed."""

import json
import time

from prometheus_client import REGISTRY

from common.config import load_config
from common.registry import live_members
from tests.producer.conftest import log_lines  # noqa: F401  (the fixture: everything logged, as JSON lines)
from tests.worker.conftest import make_frame
from tests.worker.live.test_consumer import KEYS, InProcessWorker, annotated, publish, wait_until
from worker.live.cameras import OUT_OF_SERVICE_RETRY_S


def refused_keys(cam: str) -> float:
    return REGISTRY.get_sample_value("framecast_worker_camera_refused_keys_total", {"camera": cam}) or 0.0


def out_of_service(cam: str) -> float | None:
    return REGISTRY.get_sample_value("framecast_worker_camera_out_of_service", {"camera": cam})


def worker_errors(client) -> dict:
    members = live_members(client, KEYS, "worker")
    return members[0].get("errors", {}) if members else {}


def test_a_stream_of_the_wrong_type_stalls_only_its_camera(write_config, redis_url, redis_client, sample_images,
                                                            log_lines):  # noqa: F811
    cams = [{"id": "good", "source": "pattern", "mode": "backlog"},
            {"id": "bad", "source": "pattern", "mode": "backlog"}]
    settings = load_config(write_config(cams, redis_url=redis_url, worker={"heartbeat_ttl": 1.5}), env={})
    refused_before = refused_keys("bad")
    seq = iter(range(1000))
    with InProcessWorker(settings):
        for cam in ("good", "bad"):
            publish(redis_client, [make_frame(sample_images[0], cam=cam, seq=next(seq))])
            assert wait_until(lambda c=cam: redis_client.xlen(KEYS.annotated(c)) == 1, 60)

        redis_client.delete(KEYS.frames("bad"))
        redis_client.set(KEYS.frames("bad"), "x")  # an operator's slip: every read over it is refused
        refused_at = time.monotonic()
        assert wait_until(lambda: "WRONGTYPE" in worker_errors(redis_client).get("bad", ""), 10)
        for i in range(1, 6):  # the other camera keeps getting annotated frames meanwhile
            publish(redis_client, [make_frame(sample_images[i], cam="good", seq=next(seq))])
            assert wait_until(lambda n=i + 1: redis_client.xlen(KEYS.annotated("good")) == n, 30)
        assert refused_keys("bad") - refused_before == 1 and refused_keys("good") == 0
        assert out_of_service("bad") == 1.0
        assert set(worker_errors(redis_client)) == {"bad"}
        assert KEYS.frames("bad") in worker_errors(redis_client)["bad"]

        redis_client.delete(KEYS.frames("bad"))  # fixed: the next retry re-creates the group
        publish(redis_client, [make_frame(sample_images[6], cam="bad", seq=next(seq))])
        # the first retry comes OUT_OF_SERVICE_RETRY_S[0] after the refusal; a failed one waits the next delay
        bound = sum(OUT_OF_SERVICE_RETRY_S[:2]) + 10
        assert wait_until(lambda: redis_client.xlen(KEYS.annotated("bad")) == 2, bound)
        recovered_s = time.monotonic() - refused_at
        assert wait_until(lambda: worker_errors(redis_client) == {}, 10)
        assert out_of_service("bad") == 0.0
        publish(redis_client, [make_frame(sample_images[7], cam="good", seq=next(seq))])
        assert wait_until(lambda: redis_client.xlen(KEYS.annotated("good")) == 7, 30)

    assert [f.seq for f in annotated(redis_client, "bad")] == [1, 7]
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines() if line.strip()]
    out = [r for r in lines if r.get("camera") == "bad" and "out of service" in r.get("msg", "")]
    back = [r for r in lines if r.get("camera") == "bad" and "back in service" in r.get("msg", "")]
    assert len(out) == 1 and "WRONGTYPE" in out[0]["error"], out  # once, however many retries failed
    assert len(back) == 1
    assert not [r for r in lines if r.get("camera") == "good" and r.get("level") == "error"]
    print(f"camera back in service {recovered_s:.1f} s after its key was refused (DEL right away)")


def test_an_annotated_stream_of_the_wrong_type_stalls_only_its_camera(write_config, redis_url, redis_client,
                                                                       sample_images):
    """A refused key the worker writes (found by the publishing thread's transaction) isolates the
    camera the same way; it is back once a frame is published again after the fix."""
    cams = [{"id": "good", "source": "pattern", "mode": "backlog"},
            {"id": "bad", "source": "pattern", "mode": "backlog"}]
    settings = load_config(write_config(cams, redis_url=redis_url,
                                        worker={"heartbeat_ttl": 1.5, "claim_idle_ms": 1000}), env={})
    redis_client.set(KEYS.annotated("bad"), "x")
    with InProcessWorker(settings):
        publish(redis_client, [make_frame(sample_images[0], cam="bad", seq=0)])
        assert wait_until(lambda: KEYS.annotated("bad") in worker_errors(redis_client).get("bad", ""), 30)
        assert "WRONGTYPE" in worker_errors(redis_client)["bad"]
        for seq in range(3):
            publish(redis_client, [make_frame(sample_images[seq], cam="good", seq=seq)])
            assert wait_until(lambda n=seq + 1: redis_client.xlen(KEYS.annotated("good")) == n, 30)
        redis_client.delete(KEYS.annotated("bad"))
        publish(redis_client, [make_frame(sample_images[1], cam="bad", seq=1)])
        assert wait_until(lambda: redis_client.xlen(KEYS.annotated("bad")) == 1, sum(OUT_OF_SERVICE_RETRY_S[:2]) + 10)
        assert wait_until(lambda: worker_errors(redis_client) == {}, 10)
        # The refused frame was left whole and pending (the publishing script checks every key's type
        # before writing): reclaimed after claim_idle_ms, it is published like any other.
        assert wait_until(lambda: redis_client.xlen(KEYS.annotated("bad")) == 2, 30)
    assert sorted(f.seq for f in annotated(redis_client, "bad")) == [0, 1]
    assert redis_client.xlen(KEYS.detections("bad")) == 2
    assert redis_client.xpending(KEYS.frames("bad"), "detectors")["pending"] == 0
