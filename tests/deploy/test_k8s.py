"""The Kubernetes example (deploy/k8s), checked without a cluster (none runs here): the core kinds
against a pinned Kubernetes version's schemas (kubernetes-validate ships them, offline), the KEDA
ScaledObjects field by field against our key names, the ConfigMap through our config loader, and the
Redis command and web readiness probe run for real."""

import copy
import http.client
import importlib
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import kubernetes_validate
import numpy as np
import psutil
import pytest
import redis
import yaml

from common import envelope
from common.config import ENV_VARS, load_config
from common.envelope import Frame
from common.keys import FRAME_FIELD, WORKER_GROUP, Keys
from framecast.cli import SUBCOMMANDS
from framecast.supervisord import redis_maxmemory
from tests.conftest import REPO
from testsupport.redis_server import free_port, redis_binary

K8S = REPO / "deploy" / "k8s"
# The Kubernetes version the manifests are written for (kubernetes-validate ships 1.25-1.37 schemas).
K8S_VERSION = "1.33.0"
CORE_KINDS = {"Namespace", "Secret", "ConfigMap", "Service", "StatefulSet", "Deployment"}
# Read by KEDA's scaler from the worker container (passwordFromEnv), not by framecast.
KEDA_ENV = {"REDIS_PASSWORD"}


def _documents() -> list[tuple[str, dict]]:
    return [(path.name, doc) for path in sorted(K8S.glob("*.yaml")) if path.name != "kustomization.yaml"
            for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.fixture(scope="module")
def docs() -> list[tuple[str, dict]]:
    return _documents()


def _of(docs, kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for _, doc in docs if doc["kind"] == kind}


def _one(docs, kind: str) -> dict:
    found = list(_of(docs, kind).values())
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def settings(docs, tmp_path_factory):
    """The ConfigMap's cameras.yaml, loaded as framecast loads it."""
    path = tmp_path_factory.mktemp("k8s") / "cameras.yaml"
    path.write_text(_one(docs, "ConfigMap")["data"]["cameras.yaml"])
    return load_config(path, env={})


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def _workloads(docs) -> dict[str, dict]:
    return {**_of(docs, "Deployment"), **_of(docs, "StatefulSet")}


def _framecast_containers(docs):
    for name, workload in _of(docs, "Deployment").items():
        for container in workload["spec"]["template"]["spec"]["containers"]:
            yield name, workload, container


def _env(container) -> dict[str, dict]:
    return {item["name"]: item for item in container.get("env", [])}


def test_schemas_ship_offline_with_kubernetes_validate():
    assert kubernetes_validate.utils.major_minor(K8S_VERSION) in {
        kubernetes_validate.utils.major_minor(v) for v in kubernetes_validate.utils.all_versions()}
    package = Path(kubernetes_validate.__file__).parent
    assert (package / "kubernetes-json-schema" / f"v{K8S_VERSION}-local-strict" / "deployment-apps-v1.json").exists()


def test_core_kinds_validate_against_the_pinned_kubernetes_schemas(docs):
    validated = set()
    for filename, doc in docs:
        if doc["apiVersion"].startswith("keda.sh/"):
            continue  # a CRD: checked field by field below
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{filename}: {doc['kind']}/{doc['metadata']['name']}: "
                        f"{'.'.join(map(str, exc.path))}: {exc.message}")
        validated.add(doc["kind"])
    assert validated == CORE_KINDS


def test_strict_validation_catches_a_misspelt_field(docs):
    broken = copy.deepcopy(_of(docs, "Deployment")["web"])
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"exec": {"command": ["true"]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest_and_the_namespace(docs):
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)
    assert kustomization["namespace"] == _one(docs, "Namespace")["metadata"]["name"]


def test_configmap_cameras_load_and_every_camera_has_its_workers_and_scaler(docs, settings):
    keys = Keys(settings.key_prefix)
    deployments, scalers = _of(docs, "Deployment"), _of(docs, "ScaledObject")
    assert len(settings.cameras) >= 2
    by_camera = {}
    for name, deployment in deployments.items():
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        if args[0] == "worker":
            assert args[1::2] == ["--camera"] * (len(args) // 2) and len(args) == 3, f"{name}: one camera per worker"
            by_camera[args[2]] = name
            assert "replicas" not in deployment["spec"], f"{name}: KEDA's HPA owns the replica count"
    assert sorted(by_camera) == sorted(cam.id for cam in settings.cameras)
    assert sorted(so["spec"]["scaleTargetRef"]["name"] for so in scalers.values()) == sorted(by_camera.values())

    for name, so in scalers.items():
        assert so["apiVersion"] == "keda.sh/v1alpha1"
        target = so["spec"]["scaleTargetRef"]["name"]
        assert target in deployments, f"{name}: scaleTargetRef {target!r} is no Deployment"
        cam = next(c for c, d in by_camera.items() if d == target)
        assert 1 <= so["spec"]["minReplicaCount"] <= so["spec"]["maxReplicaCount"]
        (trigger,) = so["spec"]["triggers"]
        meta = trigger["metadata"]
        assert trigger["type"] == "redis-streams"
        assert meta["stream"] == keys.frames(cam), f"{name}: not camera {cam}'s frames stream"
        assert meta["consumerGroup"] == WORKER_GROUP
        assert {"address", "addressFromEnv"} & set(meta)
        thresholds = {"lagCount", "pendingEntriesCount"} & set(meta)
        assert thresholds and all(int(meta[k]) > 0 for k in thresholds)
        assert all(isinstance(v, str) for v in meta.values()), f"{name}: KEDA metadata values are strings"
        if "passwordFromEnv" in meta:  # KEDA reads it from the target's container
            container = deployments[target]["spec"]["template"]["spec"]["containers"][0]
            assert meta["passwordFromEnv"] in _env(container)


def test_redis_address_secret_and_service_agree(docs):
    secret = _one(docs, "Secret")["stringData"]
    assert all("CHANGE-ME" in value for value in secret.values()), "placeholders only, never real secrets"
    url = urlsplit(secret["REDIS_URL"])
    assert url.scheme == "redis" and url.password == secret["REDIS_PASSWORD"]
    service = _of(docs, "Service")["redis"]
    namespace = _one(docs, "Namespace")["metadata"]["name"]
    address = f"redis.{namespace}.svc.cluster.local:{service['spec']['ports'][0]['port']}"
    assert f"{url.hostname}:{url.port}" == address
    assert {so["spec"]["triggers"][0]["metadata"]["address"] for so in _of(docs, "ScaledObject").values()} == {address}
    assert _of(docs, "StatefulSet")["redis"]["spec"]["serviceName"] == "redis"


def test_images_agree_with_compose(docs, compose):
    image = compose["services"]["worker"]["image"]
    assert image == compose["services"]["web"]["image"] == compose["services"]["producer"]["image"]
    for name, _, container in _framecast_containers(docs):
        assert container["image"] == image, name
        assert container["imagePullPolicy"] == "IfNotPresent", f"{name}: a :latest image would be pulled always"
    redis_container = _of(docs, "StatefulSet")["redis"]["spec"]["template"]["spec"]["containers"][0]
    assert redis_container["image"] == compose["services"]["redis"]["image"]


def test_commands_flags_and_environment_are_framecast_s(docs):
    known = set(ENV_VARS) | {"FRAMECAST_CONFIG"}
    roles = set()
    for name, _, container in _framecast_containers(docs):
        args = container["args"]
        assert args[0] in SUBCOMMANDS, f"{name}: unknown subcommand {args[0]}"
        importlib.import_module(SUBCOMMANDS[args[0]][0]).build_parser().parse_args(args[1:])
        roles.add(args[0])
        env = _env(container)
        extra = set(env) - known
        assert extra <= KEDA_ENV, f"{name}: {extra} not read by framecast"
        assert env["FRAMECAST_CONFIG"]["value"] == "/etc/framecast/cameras.yaml"
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/etc/framecast")
        assert mount["readOnly"]
        if "FRAMECAST_METRICS_PORT" in env:
            port = int(env["FRAMECAST_METRICS_PORT"]["value"])
            assert port in {p["containerPort"] for p in container["ports"]}, name
    assert roles == {"producer", "worker", "web"}


def test_references_resolve(docs):
    secret = _one(docs, "Secret")
    configmap = _one(docs, "ConfigMap")
    for name, workload in _workloads(docs).items():
        pod = workload["spec"]["template"]
        labels = pod["metadata"]["labels"]
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
        for container in pod["spec"]["containers"]:
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
            assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
            assert container["resources"]["limits"]["memory"], f"{name}: no memory limit"
        for volume in pod["spec"].get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    pods = [w["spec"]["template"] for w in _workloads(docs).values()]
    for name, service in _of(docs, "Service").items():
        selected = [p for p in pods if service["spec"]["selector"].items() <= p["metadata"]["labels"].items()]
        assert len({tuple(sorted(p["metadata"]["labels"].items())) for p in selected}) == 1, name
        ports = {p["name"] for c in selected[0]["spec"]["containers"] for p in c.get("ports", [])}
        assert all(p["targetPort"] in ports for p in service["spec"]["ports"]), name


def test_web_probes(docs):
    container = _of(docs, "Deployment")["web"]["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "/readyz" in " ".join(container["readinessProbe"]["exec"]["command"])
    env = _env(container)
    assert env["FRAMECAST_WEB_PORT"]["value"] == container["args"][container["args"].index("--port") + 1]
    assert container["ports"][0]["containerPort"] == int(env["FRAMECAST_WEB_PORT"]["value"])


def _redis_command(docs) -> tuple[str, dict]:
    container = _of(docs, "StatefulSet")["redis"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["sh", "-c"]
    return container["args"][0], container


def test_redis_memory_fits_the_streams_and_the_limit(docs, settings):
    script, container = _redis_command(docs)
    words = shlex.split(script)
    size = words[words.index("--maxmemory") + 1]
    maxmemory = int(size[:-2]) * {"mb": 2**20, "gb": 2**30}[size[-2:]]
    assert maxmemory >= redis_maxmemory(settings)
    limit = container["resources"]["limits"]["memory"]
    assert int(limit[:-2]) * {"Mi": 2**20, "Gi": 2**30}[limit[-2:]] > maxmemory
    assert words[words.index("--maxmemory-policy") + 1] == "noeviction"
    assert words[words.index("--appendonly") + 1] == "yes"
    assert "CHANGE-ME" not in script and "requirepass" in script


def test_redis_command_runs_with_password_and_keeps_a_backlog_over_a_restart(docs, tmp_path):
    """The StatefulSet's shell command, run here with /data and /tmp moved into tmp_path: the password
    is required and off the command line, and a stream with its consumer group survives a restart (AOF)."""
    script, _ = _redis_command(docs)
    port, password = free_port(), "s3cret-for-this-test"
    (tmp_path / "data").mkdir()
    script = script.replace("/tmp/", f"{tmp_path}/").replace("/data", str(tmp_path / "data"))
    script = script.replace("exec redis-server", f"exec {redis_binary()}") + f" --port {port} --bind 127.0.0.1"
    env = {"PATH": os.environ["PATH"], "REDIS_PASSWORD": password}
    stream = Keys().frames("yard")

    def start() -> tuple[subprocess.Popen, redis.Redis]:
        proc = subprocess.Popen(["sh", "-c", script], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(host="127.0.0.1", port=port, password=password, decode_responses=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return proc, client
            except redis.exceptions.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, "redis did not start"
                time.sleep(0.05)

    proc, client = start()
    try:
        assert password not in " ".join(psutil.Process(proc.pid).cmdline())
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=port).ping()
        assert client.config_get("appendonly")["appendonly"] == "yes"
        client.xgroup_create(stream, WORKER_GROUP, id="0", mkstream=True)
        for seq in range(5):
            client.xadd(stream, {"f": str(seq)})
        delivered = client.xreadgroup(WORKER_GROUP, "w1", {stream: ">"}, count=2)[0][1]
        time.sleep(1.2)  # appendfsync everysec
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)

    proc, client = start()
    try:
        assert client.xlen(stream) == 5
        (group,) = client.xinfo_groups(stream)
        assert group["name"] == WORKER_GROUP and group["pending"] == 2
        assert group["last-delivered-id"] == delivered[-1][0]
        # The backlog goes on where it stopped. (`lag` is not checked: Redis before 7.2.4 forgets the
        # group's entries-read on an AOF reload and reports no lag until it catches up, redis#12898.)
        rest = client.xreadgroup(WORKER_GROUP, "w2", {stream: ">"})[0][1]
        assert [fields["f"] for _, fields in rest] == ["2", "3", "4"]
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


def _probe(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    assert command[0] == "python"
    return subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, text=True, timeout=20)


def test_web_readiness_probe_sends_the_token_and_asks_readyz(docs, settings, redis_url, tmp_path):
    """The probe command from web.yaml against a real `framecast web` with a token: 401 without the
    right token, 503 until both cameras have fresh annotated frames, then exit 0."""
    container = _of(docs, "Deployment")["web"]["spec"]["template"]["spec"]["containers"][0]
    command = container["readinessProbe"]["exec"]["command"]
    config = tmp_path / "cameras.yaml"
    config.write_text(_one(docs, "ConfigMap")["data"]["cameras.yaml"])
    port, token = free_port(), "probe-token"
    base = {"PATH": os.environ["PATH"], "FRAMECAST_WEB_PORT": str(port)}
    web = subprocess.Popen([sys.executable, "-m", "framecast", "web", "--host", "127.0.0.1", "--port", str(port)],
                           env={**base, "REDIS_URL": redis_url, "FRAMECAST_WEB_TOKEN": token,
                                "FRAMECAST_CONFIG": str(config)},
                           cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + 30
        while True:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            finally:
                conn.close()
            assert web.poll() is None and time.monotonic() < deadline, "framecast web did not start"
            time.sleep(0.2)

        wrong = _probe(command, {**base, "FRAMECAST_WEB_TOKEN": "not-it"})
        assert wrong.returncode == 1 and "readyz: 401" in wrong.stderr
        no_frames = _probe(command, {**base, "FRAMECAST_WEB_TOKEN": token})
        assert no_frames.returncode == 1 and "readyz: 503" in no_frames.stderr

        jpeg = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
        keys = Keys(settings.key_prefix)
        for cam in settings.cameras:
            frame = Frame(cam.id, 1, 0, time.time_ns(), 64, 48, jpeg, [], {})
            client.xadd(keys.annotated(cam.id), {FRAME_FIELD: envelope.encode(frame)})
        # /readyz reads the web process's shared camera figures, recomputed once per
        # web.figures_interval (1 s): the probe turns ready within that interval, not at once.
        deadline = time.monotonic() + 10
        while True:
            ready = _probe(command, {**base, "FRAMECAST_WEB_TOKEN": token})
            if ready.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert ready.returncode == 0, ready.stderr
    finally:
        client.close()
        web.terminate()
        try:
            web.wait(timeout=20)
        except subprocess.TimeoutExpired:
            web.kill()
            web.wait()

