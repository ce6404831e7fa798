"""`framecast up --workers door=2,yard=1`: workers of a camera's own, as supervisord programs of
`framecast worker --camera ID`, and a real two-camera run where each reads only its camera's stream."""

import argparse
import configparser
import http.client
import json
import re
import shlex
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest
import redis

from common.config import load_config
from common.keys import WORKER_GROUP, Keys
from framecast.supervisord import Layout, WorkerGroup, render
from framecast.up import WorkersSpec, _free_port_from, _port_free, build_parser, parse_workers, plan_workers
from tests.conftest import REPO
from testsupport.redis_server import free_port

CAMERAS = [{"id": "door", "source": "pattern"}, {"id": "yard", "source": "pattern"},
           {"id": "gate", "source": "pattern"}]


@pytest.fixture
def settings(write_config):
    return load_config(write_config(CAMERAS), env={})


def _conf(settings, tmp_path, workers, metrics_port=0) -> configparser.ConfigParser:
    text = render(settings, Layout(tmp_path), framecast_bin="/x/framecast", redis_bin="/x/redis-server",
                  config_path=tmp_path / "cameras.yaml", redis_port=6390, web_port=8000,
                  workers=workers, metrics_port=metrics_port)
    parser = configparser.RawConfigParser()
    parser.read_string(text)
    return parser


def _ports(conf: configparser.ConfigParser) -> list[int]:
    """Every metrics port the rendered processes are told (a worker program: one per process)."""
    ports = []
    for section in conf.sections():
        command = conf[section].get("command", "")
        if "--metrics-port" not in command:
            continue
        value = shlex.split(command)[shlex.split(command).index("--metrics-port") + 1]
        start, count = int(conf[section]["numprocs_start"]), int(conf[section]["numprocs"])
        ports += list(range(start, start + count)) if value == "%(process_num)d" else [int(value)]
    return ports


@pytest.mark.parametrize("text, spec", [
    ("3", WorkersSpec(3, {})),
    ("door=3,yard=1", WorkersSpec(None, {"door": 3, "yard": 1})),
    (" 2, door=3 ", WorkersSpec(2, {"door": 3})),
])
def test_parse_workers(text, spec):
    assert parse_workers(text) == spec


@pytest.mark.parametrize("text, message", [
    ("0", "at least 1"), ("door=0", "at least 1"), ("door=x", "not a whole number"), ("", "give N"),
    ("door=1,", "give N"), ("2,3", "more than one count"), ("door=1,door=2", "named twice"),
    ("d o=1", "invalid camera id"),
])
def test_parse_workers_rejects(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse_workers(text)


def test_plan_gives_every_camera_workers(settings):
    assert plan_workers(parse_workers("2"), settings) == [WorkerGroup("worker", 2)]
    assert plan_workers(parse_workers("yard=1,door=3,gate=1"), settings) == [
        WorkerGroup("worker-door", 3, ("door",)), WorkerGroup("worker-yard", 1, ("yard",)),
        WorkerGroup("worker-gate", 1, ("gate",))]
    assert plan_workers(parse_workers("2,door=3"), settings) == [
        WorkerGroup("worker", 2, ("yard", "gate")), WorkerGroup("worker-door", 3, ("door",))]
    with pytest.raises(Exception, match=r"'yard', 'gate' would have no workers.*--workers 1,door=3"):
        plan_workers(parse_workers("door=3"), settings)
    with pytest.raises(Exception, match="would serve none"):
        plan_workers(parse_workers("1,door=1,yard=1,gate=1"), settings)
    with pytest.raises(Exception, match="unknown camera 'porch'"):
        plan_workers(parse_workers("1,porch=1"), settings)


def test_supervisord_conf_has_a_program_per_camera_group(settings, tmp_path):
    groups = plan_workers(parse_workers("2,door=3"), settings)
    conf = _conf(settings, tmp_path, groups, metrics_port=9200)
    pool, door = conf["program:worker"], conf["program:worker-door"]
    assert shlex.split(pool["command"])[1:6] == ["worker", "--camera", "yard", "--camera", "gate"]
    assert shlex.split(door["command"])[1:4] == ["worker", "--camera", "door"]
    assert "--camera" not in shlex.split(door["command"])[4:]
    assert (pool["numprocs"], door["numprocs"]) == ("2", "3")
    assert door["process_name"] == "%(program_name)s-%(process_num)d"
    # Producers 9200-9202, the pool 9203-9204, door 9205-9207: every process its own port.
    ports = _ports(conf)
    assert sorted(ports) == list(range(9200, 9208))
    assert (pool["numprocs_start"], door["numprocs_start"]) == ("9203", "9205")


def test_supervisord_conf_without_metrics_tells_every_worker_0(settings, tmp_path):
    conf = _conf(settings, tmp_path, plan_workers(parse_workers("door=2,yard=1,gate=1"), settings))
    assert {s for s in conf.sections() if s.startswith("program:worker")} == {
        "program:worker-door", "program:worker-yard", "program:worker-gate"}
    assert set(_ports(conf)) == {0}
    # Process names stay distinct across programs (supervisord refuses duplicates).
    assert conf["program:worker-door"]["numprocs_start"] == conf["program:worker-yard"]["numprocs_start"] == "0"


def test_count_still_renders_one_pool_for_every_camera(settings, tmp_path):
    conf = _conf(settings, tmp_path, 2)
    assert shlex.split(conf["program:worker"]["command"])[1:] == ["worker", "--metrics-port", "0"]


@pytest.mark.parametrize("workers, message", [
    ("door=1", "'yard', 'gate' would have no workers"),
    ("1,porch=2", "unknown camera 'porch'"),
    ("door=", "not a whole number"),
])
def test_up_exits_2_on_bad_workers(write_config, tmp_path, workers, message):
    result = subprocess.run([sys.executable, "-m", "framecast", "up", "--config", str(write_config(CAMERAS)),
                             "--run-dir", str(tmp_path / "run"), "--workers", workers],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert not (tmp_path / "run" / "supervisord.conf").exists()


def test_makefile_passes_workers_through_as_one_argument():
    result = subprocess.run(["make", "-n", "run", "WORKERS=door=3, yard=1", "CONFIG=cams.yaml"],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if "framecast up" in line)
    argv = shlex.split(line)
    args = build_parser().parse_args(argv[argv.index("up") + 1:])
    assert args.workers == WorkersSpec(None, {"door": 3, "yard": 1}) and args.config == "cams.yaml"


def _get_json(port: int, path: str) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def _processed(port: int) -> dict[str, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return {cam: float(n) for cam, n in
            re.findall(r'^framecast_worker_frames_processed_total\{camera="([^"]+)"\} ([0-9.e+]+)$', text, re.M)}


def test_metrics_run_avoids_the_ports_chosen_for_web_and_redis():
    """The web and Redis ports are chosen before anything binds them, so a free-port probe alone would
    hand them to a metrics run too; the run moves past them instead."""
    base = free_port()
    while not all(_port_free(base + i) for i in range(9)):
        base = free_port()
    assert _free_port_from(base, 3) == base
    assert _free_port_from(base, 3, taken=(base + 2,)) == base + 3
    assert _free_port_from(base, 3, taken=(base + 1, base + 4)) == base + 5


@pytest.mark.slow
def test_dedicated_workers_read_only_their_cameras_stream(write_config, tmp_path):
    cams = [{"id": "door", "source": "pattern", "fps": 5}, {"id": "yard", "source": "pattern", "fps": 5}]
    config = write_config(cams, defaults={"max_width": 320, "detection": {"threads": 1}})
    web_port, redis_port, metrics_port = free_port(), free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "framecast", "up", "--config", str(config), "--run-dir", str(tmp_path / "run"),
         "--port", str(web_port), "--redis-port", str(redis_port), "--metrics-port", str(metrics_port),
         "--workers", "door=2,yard=1"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(iter(proc.stdout.readline, "")), daemon=True).start()
    cluster: list[psutil.Process] = []
    client = None
    try:
        # ~10 s on an idle 2-core machine; generous because a loaded one starts workers far slower.
        deadline = time.monotonic() + 240
        while not any("framecast: up" in line for line in output):
            assert proc.poll() is None, "".join(output)
            assert time.monotonic() < deadline, "cluster not ready in 240 s:\n" + "".join(output)
            time.sleep(0.5)
        cluster = psutil.Process(proc.pid).children(recursive=True)
        text = "".join(output)
        redis_port = int(re.search(r"redis on (\d+)", text).group(1))
        door_ports = tuple(map(int, re.search(r"worker-door: 2 worker\(s\) for door, metrics on (\d+)-(\d+)",
                                              text).groups()))
        yard_ports = tuple(map(int, re.search(r"worker-yard: 1 worker\(s\) for yard, metrics on (\d+)-(\d+)",
                                              text).groups()))
        # `up` moves the whole run to the next free one when a port of it is taken (the web or Redis port
        # the test picked may fall inside it), so the run is read from what `up` printed.
        run = tuple(map(int, re.search(r"producers and workers on ports (\d+)-(\d+)", text).groups()))
        assert run[0] >= metrics_port and run[1] == run[0] + 2 + 3 - 1, text

        # The live workers as the web tier lists them, by the cameras they serve.
        keys, by_cams = Keys(), {}
        deadline = time.monotonic() + 60
        while True:
            workers = _get_json(web_port, "/api/workers")["workers"]
            by_cams = {}
            for worker in workers:
                by_cams.setdefault(tuple(worker["cameras"]), set()).add(worker["id"])
            if len(by_cams.get(("door",), ())) == 2 and len(by_cams.get(("yard",), ())) == 1:
                break
            assert time.monotonic() < deadline, workers
            time.sleep(0.5)
        assert set(by_cams) == {("door",), ("yard",)}, by_cams

        # Each camera's consumer group holds exactly its dedicated workers, and they have read from it.
        client = redis.Redis(host="127.0.0.1", port=redis_port, decode_responses=True)
        deadline = time.monotonic() + 60
        while True:
            consumers = {cam: {c["name"]: c for c in client.xinfo_consumers(keys.frames(cam), WORKER_GROUP)}
                         for cam in ("door", "yard")}
            if set(consumers["door"]) == by_cams[("door",)] and set(consumers["yard"]) == by_cams[("yard",)]:
                break
            assert time.monotonic() < deadline, consumers
            time.sleep(0.5)
        assert set(consumers["door"]) == by_cams[("door",)]
        assert set(consumers["yard"]) == by_cams[("yard",)]

        # Each worker's own metrics port (numbered per program) counts only its camera's frames.
        deadline = time.monotonic() + 60
        while True:
            counts = {port: _processed(port) for port in (*range(door_ports[0], door_ports[1] + 1), yard_ports[0])}
            if all(counts[port].get(cam, 0) > 0 for port, cam in
                   ((door_ports[0], "door"), (door_ports[1], "door"), (yard_ports[0], "yard"))):
                break
            assert time.monotonic() < deadline, counts
            time.sleep(0.5)
        assert yard_ports[0] == door_ports[1] + 1 == run[0] + 2 + 2  # producers, door's, then yard's
        assert set(counts[door_ports[0]]) == set(counts[door_ports[1]]) == {"door"}
        assert set(counts[yard_ports[0]]) == {"yard"}
    finally:
        if client is not None:
            client.close()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    gone, alive = psutil.wait_procs(cluster, timeout=30)
    assert not alive, f"left behind: {[p.pid for p in alive]}"
    # supervisord names a dedicated worker's log after its program and port.
    assert (tmp_path / "run" / "logs" / f"worker-door-{door_ports[0]}.log").exists()
