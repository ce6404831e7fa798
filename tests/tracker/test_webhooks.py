"""Webhooks against local HTTP receivers: valid signatures, retries, a hanging receiver that does not
hold up the caller, a bounded queue whose drops are counted, secrets kept out of the logs."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest

from common.events_config import WebhookConfig
from tests.loopback_http import LoopbackServer
from tracker.webhooks import SIGNATURE_HEADER, WebhookSender, WebhookTarget, verify

SECRET = "s3cret-key"


class Receiver:
    """An HTTP server on 127.0.0.1 in a thread. `statuses` answers the first requests; then 200.
    With `hang`, every request waits until `release` (or 30 s). A 3xx answer carries `location`.
    Every request is recorded whatever its method (`methods`), so a redirect followed as GET shows."""

    def __init__(self, statuses=(), hang=False, location=None):
        self.requests: list[tuple[dict, bytes]] = []
        self.methods: list[str] = []
        self.statuses = list(statuses)
        self.hang = hang
        self.location = location
        self.released = threading.Event()
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.arrived:
                    receiver.requests.append((dict(self.headers), body))
                    receiver.methods.append(self.command)
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.arrived.notify_all()
                if receiver.hang:
                    receiver.released.wait(30)
                self.send_response(status)
                if 300 <= status < 400 and receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_HEAD = do_PUT = do_POST

            def log_message(self, *args):
                pass

        self.http = LoopbackServer(Handler)

    def url(self, path="/hook/tok3n-in-path?token=q-secret") -> str:
        return self.http.url(path)

    def wait(self, count: int, timeout: float = 10.0) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.requests) >= count, timeout), len(self.requests)

    def close(self) -> None:
        self.released.set()
        self.http.close()


@pytest.fixture
def receiver_factory():
    made = []

    def make(**kwargs) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def message(kind: str, n: int = 0) -> dict:
    state = {"id": f"1700000000.{n:06d}-abcdef", "camera": "door", "label": "person", "n": n}
    return {"type": kind, "before": state, "after": state}


def test_signed_posts_of_the_configured_types(receiver_factory):
    receiver = receiver_factory()
    config = WebhookConfig(url=receiver.url(), secret=SECRET)
    sender = WebhookSender.from_config([config]).start()
    try:
        for kind in ("new", "update", "end"):
            sender.send(message(kind))
        receiver.wait(2)
        time.sleep(0.2)
        assert len(receiver.requests) == 2  # `update` is not among the default types
        for (headers, body), kind in zip(receiver.requests, ("new", "end"), strict=True):
            expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            assert headers[SIGNATURE_HEADER] == expected and verify(SECRET, body, headers[SIGNATURE_HEADER])
            assert not verify("another-key", body, headers[SIGNATURE_HEADER])
            assert not verify(SECRET, body + b" ", headers[SIGNATURE_HEADER])
            assert headers["Content-Type"] == "application/json" and headers["X-Framecast-Event"] == kind
            assert json.loads(body) == message(kind)
    finally:
        sender.stop()


def test_failed_attempts_are_retried_with_one_delivery_id(receiver_factory):
    receiver = receiver_factory(statuses=[500, 503, 200, 400])
    target = WebhookTarget(receiver.url(), SECRET, min_backoff=0.05, max_backoff=0.2, max_attempts=5).start()
    try:
        target.send(message("new", 1))
        receiver.wait(3)
        ids = {headers["X-Framecast-Delivery"] for headers, _ in receiver.requests}
        assert len(ids) == 1
        target.send(message("end", 2))  # answered 400: not retried
        receiver.wait(4)
        deadline = time.monotonic() + 5
        while target.pending() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        assert len(receiver.requests) == 4
        assert target.stats == {"queued": 2, "delivered": 1, "retries": 2, "failed": 1, "dropped": 0}
    finally:
        target.stop()


def test_hanging_receiver_never_blocks_the_caller_and_the_queue_is_bounded(receiver_factory, caplog):
    hanging = receiver_factory(hang=True)
    healthy = receiver_factory()
    slow = WebhookTarget(hanging.url(), SECRET, timeout=0.3, max_attempts=2, queue_size=5,
                         min_backoff=0.05, max_backoff=0.1)
    sender = WebhookSender([slow, WebhookTarget(healthy.url(), SECRET)]).start()
    caplog.set_level(logging.INFO, logger="framecast.webhooks")
    try:
        sender.send(message("new", 0))
        hanging.wait(1)  # the first request is in flight and hangs
        slowest = 0.0
        for n in range(1, 20):
            started = time.perf_counter()
            sender.send(message("new", n))
            slowest = max(slowest, time.perf_counter() - started)
        assert slowest < 0.05  # an append to a queue, not a request
        assert slow.stats["dropped"] == 15 and slow.pending() == 5  # 1 in flight + 4 waiting
        healthy.wait(20)  # the other URL is not held up by the hanging one
        assert [json.loads(b)["after"]["n"] for _, b in healthy.requests] == list(range(20))
        # Each attempt times out after 0.3 s; after 2 attempts a message is given up, counted, logged.
        deadline = time.monotonic() + 15
        while slow.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert slow.pending() == 0 and slow.stats["failed"] == 5 and slow.stats["delivered"] == 0
    finally:
        sender.stop()
    text = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    assert "webhook delivery failed" in text and "127.0.0.1" in text
    for secret in (SECRET, "tok3n-in-path", "q-secret"):
        assert secret not in text
