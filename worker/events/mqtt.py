"""MQTT delivery: event messages, per-camera per-label counts and availability, never blocking callers.

Topics under `topic_prefix` (default `framecast`), in Frigate's layout:
- `<prefix>/events`: one JSON `{"type": "new"|"update"|"end", "before": {...}, "after": {...}}` per
  event change (QoS 1, not retained);
- `<prefix>/<cam>/<label>`: the number of such objects the camera sees now (retained);
- `<prefix>/available`: `online` once connected, `offline` on a clean stop and, as the last will,
  when the connection dies without one (retained).

`publish*` only append to a bounded queue and return at once; when it is full the message is dropped
and counted. At most `queue_size` messages wait here, plus PAHO_QUEUE handed to paho unacknowledged. One sender thread moves queued messages to paho while connected; paho's own network
thread connects, reconnects with exponential backoff (`min_backoff`..`max_backoff`) and resends
unacknowledged QoS 1 messages after a reconnect. Passwords are never logged.
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

log = logging.getLogger("framecast.mqtt")

PAHO_QUEUE = 100  # messages handed to paho but not yet acknowledged; the rest wait in our queue


class MqttPublisher:
    def __init__(self, host: str, port: int = 1883, *, prefix: str = "framecast", username: str | None = None,
                 password: str | None = None, tls: bool = False, client_id: str | None = None,
                 keepalive: int = 30, queue_size: int = 1000, min_backoff: float = 1.0,
                 max_backoff: float = 30.0):
        self.host, self.port, self.prefix = host, port, prefix.rstrip("/")
        self.queue_size = queue_size
        self.stats = {"queued": 0, "sent": 0, "dropped": 0, "connects": 0, "disconnects": 0}
        self._queue: deque[tuple[str, bytes, bool]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._sender: threading.Thread | None = None
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
                return False
            self._queue.append((topic, data, retain))
            self.stats["queued"] += 1
            self._wake.notify()
        return True

    def publish_event(self, message: dict) -> bool:
        return self.publish(self.topic("events"), json.dumps(message, separators=(",", ":")))

    def publish_count(self, cam: str, label: str, count: int) -> bool:
        return self.publish(self.topic(cam, label), str(int(count)), retain=True)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> MqttPublisher:
        """Start connecting in the background; returns at once, whether or not the broker is there."""
        log.info("mqtt publisher starting", extra={"broker": f"{self.host}:{self.port}", "prefix": self.prefix})
        self.client.connect_async(self.host, self.port, keepalive=self._keepalive)
        self.client.loop_start()
        self._sender = threading.Thread(target=self._send_loop, name="mqtt-sender", daemon=True)
        self._sender.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Say `offline`, send what paho holds (up to `timeout`), disconnect, end both threads."""
        self._stopping.set()
        with self._lock:
            self._wake.notify_all()
        if self._sender is not None:
            self._sender.join(timeout)
        if self.connected:
            info = self.client.publish(self.topic("available"), "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()

    # --- paho's network thread ---------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("mqtt broker refused the connection", extra={"reason": str(reason_code)})
            return
        self.stats["connects"] += 1
        client.publish(self.topic("available"), "online", qos=1, retain=True)
        self._connected.set()
        with self._lock:
            self._wake.notify_all()
        log.info("mqtt connected", extra={"broker": f"{self.host}:{self.port}"})

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._connected.is_set():
            self.stats["disconnects"] += 1
            log.warning("mqtt connection lost; reconnecting with backoff", extra={"reason": str(reason_code)})
        self._connected.clear()

    # --- the sender thread -------------------------------------------------------------------------
    def _send_loop(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                while not self._stopping.is_set() and not (self._queue and self._connected.is_set()):
                    self._wake.wait(0.5)
                if self._stopping.is_set():
                    return
                topic, data, retain = self._queue.popleft()
            info = self.client.publish(topic, data, qos=1, retain=retain)
            # NO_CONN (the connection died a moment ago) still leaves the message with paho, which
            # sends it after reconnecting; only a full paho queue hands it back.
            if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                self.stats["sent"] += 1
                continue
            with self._lock:
                self._queue.appendleft((topic, data, retain))
            time.sleep(0.05)
