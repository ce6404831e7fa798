"""MQTT delivery: event messages, per-camera per-label counts and availability, never blocking callers.

Topics under `topic_prefix` (default `framecast`), in Frigate's layout:
- `<prefix>/events`: one JSON `{"type": "new"|"update"|"end", "before": {...}, "after": {...}}` per
  event change (QoS 1, not retained);
- `<prefix>/<cam>/<label>`: the number of such objects the camera sees now (retained);
- `<prefix>/available`: `online` once connected, `offline` on a clean stop and, as the last will,
  when the connection dies without one (retained).

Delivery is QoS 1, at least once, in order, with every loss counted:
- `publish*` only append to a bounded queue (`queue_size`) and return at once; when it is full the
  message is dropped and counted (`stats["dropped"]`, `framecast_mqtt_messages_total{outcome="dropped"}`).
  A message paho refuses outright (a `+` or `#` in a label makes a topic with a wildcard) is dropped
  and counted too (`outcome="invalid"`), and the sender goes on with the next.
- One sender thread hands queued messages to paho, in order, only while connected; paho holds at most
  PAHO_QUEUE of them until the broker acknowledges each (PUBACK). A message paho holds when the
  connection drops is resent by paho after the reconnect (with DUP set: a subscriber may see it twice),
  before anything newer: after a reconnect the sender waits until the broker has acknowledged the
  `online` message, which paho sends ahead of its resends, so none of ours overtakes them.
- paho's network thread reconnects with exponential backoff (`min_backoff`..`max_backoff`).
- `stop` sends what is queued for up to its timeout; whatever is still unacknowledged then is counted
  as dropped.
The unacknowledged messages live in this process (paho resends them whatever the session), so the
publisher needs no broker-side session: it connects with a clean session. Subscribers that must not
miss messages while they themselves are away need a persistent session (QoS 1, `clean_session=False`
or an MQTT 5 session expiry) on a broker with persistence. Passwords are never logged.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections import deque

import paho.mqtt.client as mqtt

from common.events_config import MqttConfig
from common.threads import start_thread
from tracker import metrics

log = logging.getLogger("framecast.mqtt")

PAHO_QUEUE = 100  # messages handed to paho but not yet acknowledged; the rest wait in our queue


class MqttPublisher:
    def __init__(self, host: str, port: int = 1883, *, prefix: str = "framecast", username: str | None = None,
                 password: str | None = None, tls: bool = False, client_id: str | None = None,
                 keepalive: int = 30, queue_size: int = 1000, min_backoff: float = 1.0,
                 max_backoff: float = 30.0):
        self.host, self.port, self.prefix = host, port, prefix.rstrip("/")
        self.queue_size = queue_size
        self.stats = {"queued": 0, "sent": 0, "acked": 0, "dropped": 0, "connects": 0, "disconnects": 0}
        self._queue: deque[tuple[str, bytes, bool]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._sender: threading.Thread | None = None
        self._ready = False  # connected and the `online` message acknowledged: sending may go on
        self._online_mid: int | None = None
        self._handing = 0  # messages the sender has taken from the queue and not yet given to paho
        self._unacked: set[int] = set()  # mids paho holds until the broker acknowledges them
        self._acked_early: set[int] = set()  # PUBACKs that came before publish() returned the mid
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"framecast-{socket.gethostname()}-{os.getpid()}",
                                  protocol=mqtt.MQTTv311)
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls:
            self.client.tls_set()
        self.client.will_set(self.topic("available"), "offline", qos=1, retain=True)
        self.client.reconnect_delay_set(min_delay=min_backoff, max_delay=max_backoff)
        self.client.max_queued_messages_set(PAHO_QUEUE)
        self._keepalive = keepalive
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish

    @classmethod
    def from_config(cls, config: MqttConfig) -> MqttPublisher:
        return cls(config.host, config.port, prefix=config.topic_prefix, username=config.username,
                   password=config.password.get_secret_value() if config.password else None, tls=config.tls,
                   client_id=config.client_id, keepalive=config.keepalive, queue_size=config.queue_size)

    def topic(self, *parts: str) -> str:
        return "/".join((self.prefix, *parts))

    # --- called by the pipeline (any thread): never blocks ---------------------------------------
    def publish(self, topic: str, payload: str | bytes, retain: bool = False) -> bool:
        """Queue a message for `topic` (a full topic). False when the queue is full and it was dropped."""
        data = payload.encode() if isinstance(payload, str) else payload
        with self._lock:
            if len(self._queue) >= self.queue_size:
                self.stats["dropped"] += 1
                metrics.MQTT_MESSAGES.labels("dropped").inc()
                return False
            self._queue.append((topic, data, retain))
            self.stats["queued"] += 1
            self._wake.notify()
        metrics.MQTT_MESSAGES.labels("queued").inc()
        return True

    def publish_event(self, message: dict) -> bool:
        return self.publish(self.topic("events"), json.dumps(message, separators=(",", ":")))

    def publish_count(self, cam: str, label: str, count: int) -> bool:
        return self.publish(self.topic(cam, label), str(int(count)), retain=True)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def pending(self) -> int:
        """Messages not yet acknowledged by the broker: queued here, or held by paho."""
        with self._lock:
            return len(self._queue) + self._handing + len(self._unacked)

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> MqttPublisher:
        """Start connecting in the background; returns at once, whether or not the broker is there."""
        log.info("mqtt publisher starting", extra={"broker": f"{self.host}:{self.port}", "prefix": self.prefix})
        self.client.connect_async(self.host, self.port, keepalive=self._keepalive)
        self.client.loop_start()
        self._sender = start_thread(self._send_loop, "mqtt-sender")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Deliver what is queued (up to `timeout` in all, while connected), say `offline`,
        disconnect, end both threads. What the broker has not acknowledged by then is counted as
        dropped."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while (self._queue or self._handing or self._unacked) and self._ready and time.monotonic() < deadline:
                self._wake.wait(min(0.05, max(0.001, deadline - time.monotonic())))
            self._stopping.set()
            self._wake.notify_all()
        if self._sender is not None:
            self._sender.join(max(0.1, deadline - time.monotonic()))
        if self.connected:
            info = self.client.publish(self.topic("available"), "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()
        with self._lock:
            lost = len(self._queue) + len(self._unacked)
            self._queue.clear()
            self._unacked.clear()
            self.stats["dropped"] += lost
        if lost:
            metrics.MQTT_MESSAGES.labels("dropped").inc(lost)
            log.warning("mqtt messages not delivered before stopping", extra={"dropped": lost})
        log.info("mqtt publisher stopped", extra=dict(self.stats))

    # --- paho's network thread ---------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("mqtt broker refused the connection", extra={"reason": str(reason_code)})
            return
        self.stats["connects"] += 1
        # paho resends what it holds unacknowledged right after this callback returns; `online` goes
        # out ahead of those, so its PUBACK means they are on the wire and ours may follow.
        info = client.publish(self.topic("available"), "online", qos=1, retain=True)
        with self._lock:
            self._online_mid = info.mid if info.rc == mqtt.MQTT_ERR_SUCCESS else None
            self._ready = self._online_mid is None
            self._wake.notify_all()
        self._connected.set()
        log.info("mqtt connected", extra={"broker": f"{self.host}:{self.port}"})

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._connected.is_set():
            self.stats["disconnects"] += 1
            log.warning("mqtt connection lost; reconnecting with backoff", extra={"reason": str(reason_code)})
        with self._lock:
            self._ready = False
            self._online_mid = None
        self._connected.clear()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        """The broker acknowledged `mid` (PUBACK)."""
        with self._lock:
            if mid == self._online_mid:
                self._online_mid = None
                self._ready = True
            elif mid in self._unacked:
                self._unacked.discard(mid)
                self.stats["acked"] += 1
            else:
                self._acked_early.add(mid)
            self._wake.notify_all()

    # --- the sender thread -------------------------------------------------------------------------
    def _send_loop(self) -> None:
        while True:
            with self._lock:
                while not self._stopping.is_set() and not (self._queue and self._ready):
                    self._wake.wait(0.5)
                if self._stopping.is_set():
                    return
                topic, data, retain = self._queue.popleft()
                self._handing += 1
            try:
                info = self.client.publish(topic, data, qos=1, retain=retain)
            except Exception as exc:  # noqa: BLE001 - per message: a topic paho refuses (a label with + or #)
                self._refused(topic, exc)
                continue
            with self._lock:
                self._handing -= 1
                # NO_CONN (the connection died a moment ago) still leaves the message with paho,
                # which resends it after reconnecting; only a full paho queue hands it back.
                if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                    self._queue.appendleft((topic, data, retain))
                    self._wake.wait(0.05)
                    continue
                self.stats["sent"] += 1
                if info.mid in self._acked_early:
                    self._acked_early.discard(info.mid)
                    self.stats["acked"] += 1
                else:
                    self._unacked.add(info.mid)
                self._wake.notify_all()
            metrics.MQTT_MESSAGES.labels("sent").inc()

    def _refused(self, topic: str, exc: Exception) -> None:
        """paho refused one message outright (ValueError: a wildcard in its topic, a payload too
        large): it can never be sent, so it is dropped and counted, and the sender goes on."""
        with self._lock:
            self._handing -= 1
            self.stats["dropped"] += 1
            self._wake.notify_all()
        metrics.MQTT_MESSAGES.labels("invalid").inc()
        log.error("mqtt message dropped: the client refuses it", extra={"topic": topic, "error": str(exc)})
