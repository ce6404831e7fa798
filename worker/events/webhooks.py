"""Webhooks: each event message POSTed as JSON to configured URLs, signed, retried, never blocking.

Every request carries:
- `Content-Type: application/json`, the body being the message `{"type", "before", "after"}`;
- `X-Framecast-Event`: the message type (`new`, `update`, `end`);
- `X-Framecast-Delivery`: an id that stays the same across retries of one message (deduplicate on it);
- `X-Framecast-Signature: sha256=<hex>`: HMAC-SHA256 of the exact body bytes with the URL's `secret`
  (only when one is configured). Receivers compare it in constant time (`verify` does).

Each URL has its own thread and bounded queue (`queue_size` messages waiting, retrying or in flight),
so a slow or hanging receiver only delays itself; `send` appends and returns, dropping (and counting)
when that queue is full. A failed attempt (connection error, timeout, 408, 429, 5xx) is retried with
exponential backoff up to `max_attempts`; other 4xx answers are not retried. URLs are treated as
secrets (many webhook URLs are): logs show only their scheme and host; secrets are never logged.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from common.events_config import WebhookConfig

log = logging.getLogger("framecast.webhooks")

SIGNATURE_HEADER = "X-Framecast-Signature"
RETRY_STATUS = {408, 429}


def sign(secret: str | bytes, body: bytes) -> str:
    """The X-Framecast-Signature value for `body`."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(secret: str | bytes, body: bytes, header: str | None) -> bool:
    """Whether `header` is the signature of `body` under `secret` (constant-time compare)."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


def display_url(url: str) -> str:
    """Scheme and host only: webhook URLs often hold their credential in the path or query."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}/..."


@dataclass(order=True)
class _Delivery:
    due: float
    order: int
    body: bytes = field(compare=False)
    kind: str = field(compare=False)
    delivery_id: str = field(compare=False)
    attempts: int = field(default=0, compare=False)


class WebhookTarget:
    """One URL's queue and delivery thread."""

    def __init__(self, url: str, secret: str | None = None, *, types: Iterable[str] = ("new", "end"),
                 timeout: float = 5.0, max_attempts: int = 5, queue_size: int = 200,
                 min_backoff: float = 1.0, max_backoff: float = 60.0):
        self._url = url
        self._secret = secret
        self.display = display_url(url)
        self.types = set(types)
        self.timeout, self.max_attempts, self.queue_size = timeout, max_attempts, queue_size
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self.stats = {"queued": 0, "delivered": 0, "retries": 0, "failed": 0, "dropped": 0}
        self._heap: list[_Delivery] = []
        self._inflight = 0
        self._count = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # --- called by the pipeline: never blocks ------------------------------------------------------
    def send(self, message: dict) -> bool:
        """Queue `message` if this URL wants its type. False when it was dropped (queue full)."""
        kind = message.get("type", "")
        if kind not in self.types:
            return False
        body = json.dumps(message, separators=(",", ":")).encode()
        with self._cond:
            if len(self._heap) + self._inflight >= self.queue_size:
                self.stats["dropped"] += 1
                return False
            self._count += 1
            heapq.heappush(self._heap, _Delivery(time.monotonic(), self._count, body, kind, uuid.uuid4().hex))
            self.stats["queued"] += 1
            self._cond.notify()
        return True

    def pending(self) -> int:
        with self._cond:
            return len(self._heap) + self._inflight

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> WebhookTarget:
        self._thread = threading.Thread(target=self._run, name=f"webhook-{self.display}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """End the thread after its current attempt; messages still queued are given up."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(self.timeout + 1 if timeout is None else timeout)

    # --- the delivery thread -----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (not self._heap or self._heap[0].due > time.monotonic()):
                    self._cond.wait(None if not self._heap else self._heap[0].due - time.monotonic())
                if self._stopping:
                    return
                delivery = heapq.heappop(self._heap)
                self._inflight += 1
            outcome = self._attempt(delivery)
            with self._cond:
                self._inflight -= 1
                if outcome == "retry" and not self._stopping:
                    delay = min(self.max_backoff, self.min_backoff * 2 ** (delivery.attempts - 1))
                    delivery.due = time.monotonic() + delay * random.uniform(0.9, 1.1)
                    heapq.heappush(self._heap, delivery)
                    self.stats["retries"] += 1

    def _attempt(self, delivery: _Delivery) -> str:
        """'delivered', 'retry' or 'failed'."""
        delivery.attempts += 1
        headers = {"Content-Type": "application/json", "User-Agent": "framecast-webhook/1",
                   "X-Framecast-Event": delivery.kind, "X-Framecast-Delivery": delivery.delivery_id}
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(self._secret, delivery.body)
        request = urllib.request.Request(self._url, data=delivery.body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read(65536)
            self.stats["delivered"] += 1
            return "delivered"
        except urllib.error.HTTPError as exc:
            status, retry = exc.code, exc.code >= 500 or exc.code in RETRY_STATUS
            reason = f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:  # URLError, timeouts, refused connections
            status, retry = None, True
            reason = type(getattr(exc, "reason", exc)).__name__
        if retry and delivery.attempts < self.max_attempts:
            log.info("webhook attempt failed; will retry",
                     extra={"url": self.display, "status": status, "reason": reason, "attempt": delivery.attempts})
            return "retry"
        self.stats["failed"] += 1
        log.warning("webhook delivery failed; message dropped",
                    extra={"url": self.display, "status": status, "reason": reason, "attempts": delivery.attempts})
        return "failed"


class WebhookSender:
    """All configured URLs; `send` fans a message out to those that want its type."""

    def __init__(self, targets: list[WebhookTarget]):
        self.targets = targets

    @classmethod
    def from_config(cls, configs: Iterable[WebhookConfig]) -> WebhookSender:
        return cls([WebhookTarget(c.url.get_secret_value(), c.secret.get_secret_value() if c.secret else None,
                                  types=c.types, timeout=c.timeout, max_attempts=c.max_attempts,
                                  queue_size=c.queue_size) for c in configs])

    def send(self, message: dict) -> None:
        for target in self.targets:
            target.send(message)

    def start(self) -> WebhookSender:
        for target in self.targets:
            target.start()
        return self

    def stop(self) -> None:
        for target in self.targets:
            target.stop()

