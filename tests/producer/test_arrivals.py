"""The producer announces each round's cameras on the arrivals stream, after their frames (a real
`framecast producer` on a real redis-server): what workers block on instead of every stream."""

import subprocess
import sys
import time

from common.keys import ARRIVALS_FIELD, Keys
from tests.conftest import REPO

KEYS = Keys()


def _ms(entry_id: bytes) -> tuple[int, int]:
    ms, seq = entry_id.decode().split("-")
    return int(ms), int(seq)


def test_every_frame_is_announced_after_it_is_added(write_config, redis_url, redis_client):
    cams = [{"id": f"p{i}", "source": "pattern", "fps": 4, "max_width": 96} for i in range(3)]
    path = write_config(cams, redis_url=redis_url, log_format="text")
    proc = subprocess.Popen([sys.executable, "-m", "framecast", "producer", "--config", str(path)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and min(redis_client.xlen(KEYS.frames(c["id"])) for c in cams) < 8:
            assert proc.poll() is None, "the producer exited"
            time.sleep(0.1)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    arrivals = redis_client.xrange(KEYS.arrivals)
    assert arrivals
    named = {c["id"]: [] for c in cams}
    for entry_id, fields in arrivals:
        for cam in fields[ARRIVALS_FIELD].decode().split(","):
            named[cam].append(_ms(entry_id))
    for cam, announced in named.items():
        frames = [_ms(entry_id) for entry_id, _ in redis_client.xrange(KEYS.frames(cam))]
        assert len(frames) >= 8
        # every frame has an announcement at or after it (one Redis clock: ids order the writes), and
        # no announcement names a camera that added nothing since the one before
        for frame in frames:
            assert any(at >= frame for at in announced), (cam, frame)
        previous = (0, 0)
        for at in announced:
            assert any(previous < frame <= at for frame in frames), (cam, at)
            previous = at
    assert "could not announce" not in err
