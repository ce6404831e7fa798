"""Webhooks: each event message POSTed as JSON to configured URLs, signed, retried, never blocking.

Every request carries:
- `Content-Type: application/json`, the body being the message `{"type", "before", "after"}`;
- `X-Framecast-Event`: the message type (`new`, `update`, `end`);
- `X-Framecast-Delivery`: an id that stays the same across retries of one message (deduplicate on it);
- `X-Framecast-Signature: sha256=<hex>`: HMAC-SHA256 of the exact body bytes with the URL's `secret`
  (only when one is configured). Receivers compare it in constant time (`verify` does);
- `Authorization: Basic ...` when the URL has `user:password@` (percent-encoded) before its host.

Each URL has its own thread and bounded queue (`queue_size` messages waiting, retrying or in flight),
so a slow or hanging receiver only delays itself; `send` appends and returns, dropping (and counting)
when that queue is full. A failed attempt (connection error, timeout, 408, 429, 5xx) is retried with
exponential backoff up to `max_attempts`; other 4xx answers are not retried, and neither is a 3xx:
redirects are never followed, so the body and its signature only ever go to the configured host.
Every message ends in `framecast_webhook_deliveries_total{target,outcome}` (delivered, failed,
dropped; retried counts attempts) and repeated failures are logged once a minute per target.
URLs are treated as secrets (many webhook URLs are): logs and metrics show only scheme, host and
port; secrets and credentials are never logged.

HTTP is urllib3's, one connection pool per target bound to the configured scheme, host and port:
with the standard library's urllib a 302 to another host became a body-less GET there (signature
header included) counted as delivered, `user:pass@host` was resolved as a host name, and an answer
that is not HTTP raised past its error handling and ended the thread.
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
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit, urlunsplit

import urllib3
from urllib3.exceptions import HTTPError as TransportError
from urllib3.util import parse_url

from common.connection import ThrottledLog
from common.events_config import WebhookConfig
from common.redaction import url_origin
from common.threads import service_thread
from tracker.metrics import WEBHOOK_DELIVERIES

log = logging.getLogger("framecast.webhooks")

SIGNATURE_HEADER = "X-Framecast-Signature"
RETRY_STATUS = {408, 429}
MAX_ANSWER_BYTES = 65536  # read of a receiver's answer body; a longer one closes the connection
# stats key -> outcome label of framecast_webhook_deliveries_total
_OUTCOMES = {"delivered": "delivered", "failed": "failed", "dropped": "dropped", "retries": "retried"}


def sign(secret: str | bytes, body: bytes) -> str:
    """The X-Framecast-Signature value for `body`."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(secret: str | bytes, body: bytes, header: str | None) -> bool:
    """Whether `header` is the signature of `body` under `secret` (constant-time compare)."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


def display_url(url: str) -> str:
    """Scheme, host and port only: webhook URLs often hold their credential in the path or query."""
    return url_origin(url) + "/..."


class _HidePaths(logging.Filter):
    """urllib3 logs request targets (every request at DEBUG; at WARNING an answer whose headers it
    cannot parse). A webhook's path and query are secrets, so they become /... in its records."""

    def __init__(self):
        super().__init__()
        self.paths: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        paths = sorted(self.paths, key=len, reverse=True)  # a copy: targets may add meanwhile
        if paths:
            text = record.getMessage()
            for path in paths:
                text = text.replace(path, "/...")
            record.msg, record.args = text, ()
        return True


_hide_paths = _HidePaths()
logging.getLogger("urllib3.connectionpool").addFilter(_hide_paths)


def _reason(exc: BaseException) -> str:
    """An error's class (and the class it wraps): never its text, which may quote the URL's path."""
    inner = next((arg for arg in getattr(exc, "args", ()) if isinstance(arg, BaseException)), None)
    inner = inner or exc.__cause__ or getattr(exc, "reason", None)
    name = type(exc).__name__
    return f"{name}({type(inner).__name__})" if isinstance(inner, BaseException) else name


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
                 min_backoff: float = 1.0, max_backoff: float = 60.0, log_interval: float = 60.0):
        parts = urlsplit(url)
        self._origin = url_origin(url)
        # The request target: path and query of the configured URL (as urllib3 encodes and logs it),
        # sent to the configured origin only.
        self._path = parse_url(urlunsplit(("http", "h", parts.path or "/", parts.query, ""))).request_uri
        if self._path != "/":
            _hide_paths.paths.add(self._path)
        self._auth: dict[str, str] = {}
        if parts.username is not None:
            userinfo = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self._auth = {"Authorization": urllib3.make_headers(basic_auth=userinfo)["authorization"]}
        self._secret = secret
        self.display = self._origin + "/..."
        self.types = set(types)
        self.timeout, self.max_attempts, self.queue_size = timeout, max_attempts, queue_size
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self.stats = {"queued": 0, "delivered": 0, "retries": 0, "failed": 0, "dropped": 0}
        self._metric = {key: WEBHOOK_DELIVERIES.labels(target=self.display, outcome=outcome)
                        for key, outcome in _OUTCOMES.items()}
        self._throttle = ThrottledLog(log_interval)
        self._unlogged: dict[str, int] = {}
        self._log_lock = threading.Lock()
        self._heap: list[_Delivery] = []
        self._inflight = 0
        self._count = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._pool: urllib3.HTTPConnectionPool | None = None

    # --- called by the pipeline: never blocks, never raises ----------------------------------------
    def send(self, message: dict) -> bool:
        """Queue `message` if this URL wants its type. False when it was not queued (queue full, or
        not JSON-serialisable); either way it is counted and logged."""
        kind = message.get("type", "")
        if kind not in self.types:
            return False
        try:
            body = json.dumps(message, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:  # a value json cannot write: a bug upstream, this message only
            self._record("failed")
            self._log("unserializable", logging.ERROR, "webhook message is not JSON-serialisable; dropped",
                      reason=_reason(exc), type=kind)
            return False
        with self._cond:
            full = len(self._heap) + self._inflight >= self.queue_size
            if not full:
                self._count += 1
                heapq.heappush(self._heap, _Delivery(time.monotonic(), self._count, body, kind, uuid.uuid4().hex))
                self.stats["queued"] += 1
                self._cond.notify()
        if full:
            self._record("dropped")
            self._log("dropped", logging.WARNING, "webhook queue full; message dropped",
                      queue_size=self.queue_size)
            return False
        return True

    def pending(self) -> int:
        with self._cond:
            return len(self._heap) + self._inflight

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> WebhookTarget:
        # Bound to the configured origin: a request can go nowhere else. No urllib3 retries or redirects
        # (retries are ours, with backoff and one delivery id); one connection, kept alive when it can be.
        self._pool = urllib3.connection_from_url(self._origin, maxsize=1, retries=False,
                                                 timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout))
        self._thread = service_thread(self._run, f"webhook-{self.display}")
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """End the thread after its current attempt; messages still queued are counted as dropped."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(self.timeout + 1 if timeout is None else timeout)
        with self._cond:
            left, self._heap = len(self._heap), []
        for _ in range(left):
            self._record("dropped")
        if left:
            log.warning("webhook stopped with messages queued; dropped", extra={"url": self.display, "dropped": left})

    # --- accounting --------------------------------------------------------------------------------
    def _record(self, key: str) -> None:
        """Count one outcome in `stats` and the metric (one place, so the two cannot drift)."""
        with self._cond:
            self.stats[key] += 1
        self._metric[key].inc()

    def _log(self, subject: str, level: int, msg: str, **fields) -> None:
        """A line about `subject` at most once per log interval; `unlogged` says how many were skipped."""
        with self._log_lock:
            if not self._throttle.due(subject):
                self._unlogged[subject] = self._unlogged.get(subject, 0) + 1
                return
            skipped = self._unlogged.pop(subject, 0)
        log.log(level, msg, extra={"url": self.display, **fields, "unlogged": skipped})

    # --- the delivery thread -----------------------------------------------------------------------
    def _run(self) -> None:
        """The delivery thread: one message at a time; any error is this message's, never the thread's."""
        try:
            while True:
                with self._cond:
                    while not self._stopping and (not self._heap or self._heap[0].due > time.monotonic()):
                        self._cond.wait(None if not self._heap else self._heap[0].due - time.monotonic())
                    if self._stopping:
                        return
                    delivery = heapq.heappop(self._heap)
                    self._inflight += 1
                pause = 0.0
                try:
                    outcome = self._attempt(delivery)
                except Exception as exc:  # an answer or a bug nobody foresaw: give up this message, go on
                    outcome, pause = self._give_up(delivery, None, f"unexpected {_reason(exc)}"), self.min_backoff
                with self._cond:
                    self._inflight -= 1
                    requeue = outcome == "retry" and not self._stopping
                    if requeue:  # if stop() comes before it is due, stop() counts it dropped
                        delay = min(self.max_backoff, self.min_backoff * 2 ** (delivery.attempts - 1))
                        delivery.due = time.monotonic() + delay * random.uniform(0.9, 1.1)
                        heapq.heappush(self._heap, delivery)
                    elif pause:
                        self._cond.wait_for(lambda: self._stopping, pause)
                if outcome == "retry":
                    self._record("retries" if requeue else "dropped")
        finally:
            if self._pool is not None:
                self._pool.close()

    def _attempt(self, delivery: _Delivery) -> str:
        """'delivered', 'retry' or 'failed'."""
        delivery.attempts += 1
        headers = {"Content-Type": "application/json", "User-Agent": "framecast-webhook/1",
                   "X-Framecast-Event": delivery.kind, "X-Framecast-Delivery": delivery.delivery_id, **self._auth}
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(self._secret, delivery.body)
        fields: dict = {}
        try:
            response = self._pool.urlopen("POST", self._path, body=delivery.body, headers=headers,
                                          retries=False, redirect=False, assert_same_host=True,
                                          preload_content=False, release_conn=False)
        except (TransportError, OSError) as exc:  # refused, unresolvable, timed out, not HTTP, TLS
            status, retry, reason = None, True, _reason(exc)
        else:
            status = response.status
            try:
                response.read(MAX_ANSWER_BYTES, decode_content=False)
            except (TransportError, OSError):
                pass  # the status is what counts; the connection is closed below
            finally:
                if not response.closed:  # an answer longer than we read: do not reuse the connection
                    response.close()
                response.release_conn()
            if 200 <= status < 300:
                self._record("delivered")
                return "delivered"
            retry = status >= 500 or status in RETRY_STATUS
            reason = f"HTTP {status}"
            if 300 <= status < 400:
                reason += " redirect, not followed"
                location = urlsplit(response.headers.get("Location") or "")
                fields["location"] = url_origin(location.geturl()) if location.netloc else "(same host)"
        if retry and delivery.attempts < self.max_attempts:
            self._log("retry", logging.INFO, "webhook attempt failed; will retry",
                      status=status, reason=reason, attempt=delivery.attempts, **fields)
            return "retry"
        return self._give_up(delivery, status, reason, **fields)

    def _give_up(self, delivery: _Delivery, status: int | None, reason: str, **fields) -> str:
        self._record("failed")
        self._log("failed", logging.WARNING, "webhook delivery failed; message dropped",
                  status=status, reason=reason, attempts=delivery.attempts, **fields)
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

