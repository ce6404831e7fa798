"""A camera's zones, lines and zone corners are bounded at start-up (the figures behind the bounds:
`python -m bench.zones`): 10,000 zones used to be accepted and starved the camera's tracking owner."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

from common.config import load_config
from common.errors import ConfigError
from common.events_config import MAX_LINES, MAX_ZONE_POINTS, MAX_ZONES
from tests.conftest import REPO


def zone(i: int, corners: int = 3) -> dict:
    return {"name": f"z{i}", "points": [[0.5 + 0.4 * math.cos(2 * math.pi * k / corners),
                                          0.5 + 0.4 * math.sin(2 * math.pi * k / corners)] for k in range(corners)]}


def line(i: int) -> dict:
    return {"name": f"l{i}", "points": [[0.0, 0.5], [1.0, 0.5]]}


def camera(**fields) -> list[dict]:
    return [{"id": "door", "source": "pattern"}, {"id": "yard", "source": "pattern", **fields}]


def test_the_limits_themselves_are_accepted(write_config):
    cams = camera(zones=[zone(i, MAX_ZONE_POINTS) for i in range(MAX_ZONES)], lines=[line(i) for i in range(MAX_LINES)])
    yard = load_config(write_config(cams), env={}).cameras[1]
    assert len(yard.zones) == MAX_ZONES and len(yard.lines) == MAX_LINES
    assert len(yard.zones[-1].points) == MAX_ZONE_POINTS


@pytest.mark.parametrize("fields, where, words", [
    ({"zones": [zone(i) for i in range(MAX_ZONES + 1)]}, "cameras[1].zones", f"{MAX_ZONES + 1} zones; at most {MAX_ZONES}"),
    ({"zones": [zone(i) for i in range(10_000)]}, "cameras[1].zones", f"10000 zones; at most {MAX_ZONES}"),
    ({"lines": [line(i) for i in range(MAX_LINES + 1)]}, "cameras[1].lines", f"{MAX_LINES + 1} lines; at most {MAX_LINES}"),
    ({"zones": [zone(0, MAX_ZONE_POINTS + 1)]}, "cameras[1].zones[0].points", f"at most {MAX_ZONE_POINTS} items"),
])
def test_more_is_refused_naming_the_field(write_config, fields, where, words):
    with pytest.raises(ConfigError) as raised:
        load_config(write_config(camera(**fields)), env={})
    line_of_error = next(ln for ln in str(raised.value).splitlines() if ln.strip().startswith(where + " (camera 'yard'):"))
    assert words in line_of_error


def test_a_worker_with_10000_zones_exits_2_naming_the_field(write_config):
    path = write_config(camera(zones=[zone(i) for i in range(10_000)]))
    proc = subprocess.run([sys.executable, "-m", "framecast", "worker", "--config", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if not k.startswith("FRAMECAST_")})
    assert proc.returncode == 2, proc.stderr
    assert f"cameras[1].zones (camera 'yard'): 10000 zones; at most {MAX_ZONES} per camera" in proc.stderr
