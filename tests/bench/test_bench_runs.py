"""`python -m bench` ends: the quickest suite runs as a subprocess, prints its table, writes its JSON
and exits 0 (the naive FIFO baseline's queue feeder once kept the interpreter from exiting)."""

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow
TIMEOUT_S = 240  # well past what the run needs even on a loaded 2-core machine; a hang is minutes


def test_quick_latency_bench_prints_writes_and_exits(tmp_path):
    command = [sys.executable, "-m", "bench", "--quick", "--only", "latency", "--seconds", "4", "--out", str(tmp_path)]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the bench and whatever it started
        output, _ = proc.communicate()
        pytest.fail(f"python -m bench did not exit within {TIMEOUT_S} s:\n{output[-3000:]}")
    assert proc.returncode == 0, output[-3000:]
    assert "machine:" in output and "== latency at native fps" in output and "== latency under overload" in output
    assert "added" in output and "target:" in output  # the per-stage table and target 1's verdict
    [written] = list(tmp_path.glob("bench-*.json"))
    info = json.loads(written.read_text())
    assert f"wrote {written}" in output
    assert info["machine"]["cores"] >= 1 and "cpu" in info["machine"]
    native = info["results"][0]
    assert set(native["stages"]) >= {"encode", "queue", "transit", "decode", "detect", "annotate", "reencode",
                                     "publish", "end to end", "added"}
    assert native["figures"]["frames"] > 0 and isinstance(native["met"], bool)
