"""Webhooks: every message delivered or counted, to the host that was configured (issue "Trust 3").

Real loopback receivers: a 302 to a second server is not followed; credentials in the URL become Basic
auth and never reach a log or a metric label; queue-full drops and failed deliveries are counted in
framecast_webhook_deliveries_total and logged; one malformed answer does not end the sender thread."""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import time

import numpy as np
import pytest
from prometheus_client import REGISTRY

from common.config import load_config
from common.errors import ConfigError
from common.events_config import WebhookConfig
from tests.tracker.test_webhooks import SECRET, Receiver, message
from tracker.webhooks import SIGNATURE_HEADER, WebhookSender, WebhookTarget

METRIC = "framecast_webhook_deliveries_total"
PASSWORD = "pa55-w0rd/@:"  # '/', '@' and ':' percent-encoded in the URL


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(**kwargs) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def count(target: str, outcome: str) -> float:
    return REGISTRY.get_sample_value(METRIC, {"target": target, "outcome": outcome}) or 0.0


def counts(target: str) -> dict[str, float]:
    return {outcome: count(target, outcome) for outcome in ("delivered", "failed", "dropped", "retried")}


def settle(target: WebhookTarget, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while target.pending() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert target.pending() == 0


def logged(caplog) -> str:
    return caplog.text + " ".join(str(r.__dict__) for r in caplog.records)


def test_a_redirect_to_another_host_is_not_followed_and_counts_as_failed(receivers, caplog):
    elsewhere = receivers()
    redirecting = receivers(statuses=[302], location=elsewhere.url("/collect"))
    caplog.set_level(logging.DEBUG, logger="framecast.webhooks")
    target = WebhookTarget(redirecting.url(), SECRET, min_backoff=0.05, max_backoff=0.1).start()
    before = counts(target.display)
    try:
        target.send(message("new", 1))
        redirecting.wait(1)
        settle(target)
        time.sleep(0.3)  # room for a followed redirect to arrive, were one followed
    finally:
        target.stop()
    assert elsewhere.methods == [] and elsewhere.requests == []  # no body, no signature, not even a GET
    assert redirecting.methods == ["POST"] and SIGNATURE_HEADER in redirecting.requests[0][0]
    assert target.stats["failed"] == 1 and target.stats["delivered"] == 0 and target.stats["retries"] == 0
    after = counts(target.display)
    assert after["failed"] - before["failed"] == 1 and after["delivered"] == before["delivered"]
    failures = [r for r in caplog.records if r.getMessage().startswith("webhook delivery failed")]
    assert len(failures) == 1 and failures[0].status == 302 and failures[0].url == target.display
    assert "/collect" not in logged(caplog)  # the Location's path is the other host's business


def test_credentials_in_the_url_are_sent_as_basic_auth_and_never_logged(receivers, caplog):
    receiver = receivers(statuses=[503])  # one retry, so the attempt lines are logged too
    port = receiver.http.server.server_address[1]
    url = f"http://hook-user:pa55-w0rd%2F%40%3A@127.0.0.1:{port}/hook/tok3n-in-path?token=q-secret"
    config = WebhookConfig(url=url, secret=SECRET, max_attempts=3)  # start-up validation accepts it
    caplog.set_level(logging.DEBUG)
    sender = WebhookSender.from_config([config])
    (target,) = sender.targets
    target.min_backoff = target.max_backoff = 0.05
    sender.start()
    try:
        sender.send(message("new", 1))
        receiver.wait(2)
        settle(target)
    finally:
        sender.stop()
    expected = "Basic " + base64.b64encode(f"hook-user:{PASSWORD}".encode()).decode()
    assert [headers["Authorization"] for headers, _ in receiver.requests] == [expected, expected]
    assert json.loads(receiver.requests[1][1]) == message("new", 1)
    assert target.stats["delivered"] == 1 and target.stats["retries"] == 1
    assert target.display == f"http://127.0.0.1:{port}/..."
    text = logged(caplog)
    assert "webhook attempt failed" in text
    for secret in ("hook-user", "pa55-w0rd", "pa55-w0rd%2F", "tok3n-in-path", "q-secret", SECRET):
        assert secret not in text


def test_the_metric_target_label_carries_no_credentials(receivers):
    receiver = receivers(statuses=[400])
    port = receiver.http.server.server_address[1]
    url = f"http://hook-user:pa55-w0rd@127.0.0.1:{port}/hook/tok3n-in-path?token=q-secret"
    target = WebhookTarget(url, SECRET).start()
    try:
        target.send(message("new", 1))
        receiver.wait(1)
        settle(target)
    finally:
        target.stop()
    labels = [sample.labels["target"] for family in REGISTRY.collect() if family.name + "_total" == METRIC
              for sample in family.samples if sample.name == METRIC]
    assert f"http://127.0.0.1:{port}/..." in labels
    assert count(f"http://127.0.0.1:{port}/...", "failed") == 1
    for label in labels:
        for secret in ("hook-user", "pa55-w0rd", "tok3n-in-path", "q-secret", "@"):
            assert secret not in label


def test_queue_full_drops_are_counted_and_logged_once_per_interval(receivers, caplog):
    hanging = receivers(hang=True)
    target = WebhookTarget(hanging.url(), SECRET, queue_size=2, timeout=5).start()
    caplog.set_level(logging.INFO, logger="framecast.webhooks")
    before = counts(target.display)
    try:
        target.send(message("new", 0))
        hanging.wait(1)  # in flight, hanging
        results = [target.send(message("new", n)) for n in range(1, 6)]
        assert results == [True, False, False, False, False]  # 1 in flight + 1 waiting fill the queue
        after = counts(target.display)
        assert after["dropped"] - before["dropped"] == 4 and target.stats["dropped"] == 4
        drops = [r for r in caplog.records if r.getMessage().startswith("webhook queue full")]
        assert len(drops) == 1  # throttled: one line per target per interval, not one per message
        assert drops[0].url == target.display and drops[0].queue_size == 2 and drops[0].levelno == logging.WARNING
    finally:
        hanging.released.set()
        target.stop()


def test_failed_and_retried_deliveries_are_counted(receivers):
    receiver = receivers(statuses=[500, 200, 404])
    target = WebhookTarget(receiver.url(), SECRET, min_backoff=0.05, max_backoff=0.1).start()
    before = counts(target.display)
    try:
        target.send(message("new", 1))  # 500, then delivered on the retry
        receiver.wait(2)
        settle(target)
        target.send(message("end", 1))  # 404: failed, not retried
        receiver.wait(3)
        settle(target)
    finally:
        target.stop()
    after = counts(target.display)
    assert {k: after[k] - before[k] for k in after} == {"delivered": 1, "failed": 1, "dropped": 0, "retried": 1}


def test_unreachable_target_counts_every_message_as_failed(caplog):
    with socket.socket() as probe:  # a port with nothing listening: connections are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    target = WebhookTarget(f"http://127.0.0.1:{port}/hook", max_attempts=2, min_backoff=0.02,
                           max_backoff=0.05).start()
    caplog.set_level(logging.INFO, logger="framecast.webhooks")
    before = counts(target.display)
    try:
        for n in range(3):
            target.send(message("new", n))
        settle(target)
    finally:
        target.stop()
    after = counts(target.display)
    assert after["failed"] - before["failed"] == 3 and after["retried"] - before["retried"] == 3
    failures = [r for r in caplog.records if r.getMessage().startswith("webhook delivery failed")]
    assert len(failures) == 1 and failures[0].status is None  # throttled per target


class GarbageThenOk:
    """A raw TCP receiver: the first connection gets a line that is not HTTP, the rest get 200."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.bodies: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"

    def _serve(self) -> None:
        first = True
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                while len(body) < length:
                    body += conn.recv(65536)
                if first:
                    conn.sendall(b"THIS IS NOT HTTP\r\n\r\n")
                    first = False
                else:
                    self.bodies.append(body)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    def close(self) -> None:
        self.sock.close()


def test_a_malformed_answer_or_message_does_not_end_the_sender_thread(caplog):
    receiver = GarbageThenOk()
    target = WebhookTarget(receiver.url(), min_backoff=0.05, max_backoff=0.1).start()
    caplog.set_level(logging.INFO, logger="framecast.webhooks")
    before = counts(target.display)
    try:
        target.send(message("new", 1))  # answered with garbage: retried, then delivered
        unserializable = message("new", 2)
        unserializable["after"] = dict(unserializable["after"], score=np.float32(0.5))
        assert target.send(unserializable) is False  # counted failed, not raised into the pipeline
        target.send(message("new", 3))
        settle(target)
        deadline = time.monotonic() + 5
        while len(receiver.bodies) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        target.stop()
        receiver.close()
    assert sorted(json.loads(b)["after"]["n"] for b in receiver.bodies) == [1, 3]  # 1 on its retry
    after = counts(target.display)
    assert {k: after[k] - before[k] for k in after} == {"delivered": 2, "failed": 1, "dropped": 0, "retried": 1}


@pytest.mark.parametrize("url", ["http://hook-user:pa55/w0rd@127.0.0.1/hook",  # '/' not encoded: port 'pa55'
                                 "https://hooks.example:99999/tok3n-in-path", "http://:8080/tok3n-in-path"])
def test_a_url_the_sender_could_never_reach_is_refused_at_load_without_echoing_it(write_config, url):
    path = write_config([{"id": "door", "source": "pattern"}], webhooks=[{"url": url}])
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    text = str(err.value)
    assert "webhooks[0].url: has no valid host[:port]" in text and "%2F" in text
    for secret in ("hook-user", "pa55", "w0rd", "tok3n-in-path", "99999", "hooks.example"):
        assert secret not in text


def test_messages_still_queued_at_stop_are_counted_dropped(receivers):
    hanging = receivers(hang=True)
    target = WebhookTarget(hanging.url(), SECRET, timeout=5).start()
    before = counts(target.display)
    for n in range(3):
        target.send(message("new", n))
    hanging.wait(1)  # one in flight, two waiting
    target.stop(timeout=0.2)
    hanging.released.set()  # the one in flight is answered 200 after all
    target._thread.join(5)
    after = counts(target.display)
    assert {k: after[k] - before[k] for k in after} == {"delivered": 1, "failed": 0, "dropped": 2, "retried": 0}
    assert len(hanging.requests) == 1
