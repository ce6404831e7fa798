"""MQTT against a real mosquitto: event order, retained counts and availability, a broker that goes
away and comes back (callers never wait, drops are counted), and the last will of a killed process."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import time

import paho.mqtt.client as mqtt

from common.events_config import EventsConfig, ZoneConfig
from tests.conftest import REPO
from tracker.lifecycle import EventLifecycle
from tracker.mqtt import MqttPublisher


class Subscriber:
    """A test's own MQTT client: a persistent session (QoS 1), so a broker restart loses nothing."""

    def __init__(self, port: int, pattern: str, client_id: str):
        self.messages: queue.Queue = queue.Queue()
        self.pattern = pattern
        self.subscribed = 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(self.pattern, qos=1)
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload.decode(), m.retain))
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()
        wait_for(lambda: self.subscribed > 0, "subscription")

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        self.subscribed += 1

    def next(self, topic: str, timeout: float = 10.0) -> tuple[str, bool]:
        """The next message on `topic` (others on the way are skipped): (payload, retained)."""
        deadline = time.monotonic() + timeout
        while True:
            got_topic, payload, retain = self.messages.get(timeout=max(0.01, deadline - time.monotonic()))
            if got_topic == topic:
                return payload, retain

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_for(condition, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def publisher(port: int, prefix: str, **kwargs) -> MqttPublisher:
    return MqttPublisher("127.0.0.1", port, prefix=prefix, keepalive=5, min_backoff=0.1, max_backoff=0.5,
                         **kwargs).start()


def one_object_messages() -> list[dict]:
    """new -> update (enters the zone) -> end, from the real lifecycle."""
    zone = ZoneConfig(name="drive", points=[(0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0)])
    life = EventLifecycle("door", EventsConfig(min_frames=2, lost_after=1.0), [zone])
    out = []
    for i, x in enumerate([300, 350, 600]):
        out += life.observe(100.0 + i / 10, [["person", 0.8, x - 50, 500, x + 50, 900, 0, 1]], 1000, 1000)
    out += life.expire(110.0)
    return [m.to_dict() for m in out]


def test_new_update_end_in_order_with_counts_and_availability(mosquitto):
    sub = Subscriber(mosquitto.port, "t1/#", "sub-t1")
    pub = publisher(mosquitto.port, "t1")
    try:
        assert sub.next("t1/available")[0] == "online"
        messages = one_object_messages()
        assert [m["type"] for m in messages] == ["new", "update", "end"]
        for message in messages:
            assert pub.publish_event(message)
        assert pub.publish_count("door", "person", 1)
        got = [json.loads(sub.next("t1/events")[0]) for _ in range(3)]
        assert got == messages  # in order, whole
        assert sub.next("t1/door/person")[0] == "1"
        late = Subscriber(mosquitto.port, "t1/door/#", "sub-t1-late")  # retained: a newcomer gets the count
        assert late.next("t1/door/person") == ("1", True)
        late.stop()
        pub.stop()
        assert sub.next("t1/available")[0] == "offline"
        assert pub.stats["dropped"] == 0 and pub.stats["sent"] == 4
    finally:
        pub.stop()
        sub.stop()


def test_broker_down_and_back_callers_never_wait_and_drops_are_counted(mosquitto):
    sub = Subscriber(mosquitto.port, "t2/events", "sub-t2")
    pub = publisher(mosquitto.port, "t2", queue_size=50)
    try:
        wait_for(lambda: pub.connected, "first connection")
        pub.publish_event({"n": 0})
        assert json.loads(sub.next("t2/events")[0]) == {"n": 0}

        mosquitto.stop()
        wait_for(lambda: not pub.connected, "the publisher to notice the broker is gone")
        slowest = 0.0
        for n in range(1, 201):
            started = time.perf_counter()
            accepted = pub.publish_event({"n": n})
            slowest = max(slowest, time.perf_counter() - started)
            assert accepted == (n <= 50)
        assert slowest < 0.05  # a queue append, not a network wait
        assert pub.stats["dropped"] == 150 and pub.pending() == 50

        mosquitto.start()  # same port; the subscriber's session comes back from the broker's save
        wait_for(lambda: pub.stats["connects"] == 2, "the publisher to reconnect")
        pub.publish_event({"n": 201})
        got = [json.loads(sub.next("t2/events")[0])["n"] for _ in range(51)]
        assert got == [*range(1, 51), 201]  # the queue first, in order, then the newer message
        wait_for(lambda: pub.pending() == 0, "the broker's acknowledgements")
        assert pub.stats["disconnects"] == 1 and pub.stats["acked"] == 52 and pub.stats["dropped"] == 150
    finally:
        pub.stop()
        sub.stop()


def test_a_subscriber_away_across_a_broker_restart_gets_everything_in_order(mosquitto):
    """The broker saves a persistent session and what is queued for it; the publisher's queue and
    paho's resends cover the outage itself."""
    sub = Subscriber(mosquitto.port, "t4/events", "sub-t4")
    pub = publisher(mosquitto.port, "t4")
    try:
        wait_for(lambda: pub.connected, "first connection")
        pub.publish_event({"n": 0})
        assert json.loads(sub.next("t4/events")[0]) == {"n": 0}
        sub.stop()  # a clean disconnect: its session (subscription, queue) stays with the broker
        for n in range(1, 11):
            pub.publish_event({"n": n})
        wait_for(lambda: pub.pending() == 0, "the broker to take 1..10 for the absent subscriber")
        mosquitto.stop()
        wait_for(lambda: not pub.connected, "the publisher to notice the broker is gone")
        for n in range(11, 21):
            pub.publish_event({"n": n})
        mosquitto.start()
        wait_for(lambda: pub.stats["connects"] == 2 and pub.pending() == 0, "11..20 delivered to the broker")
        sub = Subscriber(mosquitto.port, "t4/events", "sub-t4")  # back, after all of it was published
        got = [json.loads(sub.next("t4/events")[0])["n"] for _ in range(20)]
        assert got == list(range(1, 21))
        assert pub.stats["dropped"] == 0
    finally:
        pub.stop()
        sub.stop()


def test_last_will_says_offline_when_the_process_dies(mosquitto):
    sub = Subscriber(mosquitto.port, "t3/available", "sub-t3")
    script = (
        "import sys, time\n"
        "from common.events_config import MqttConfig\n"
        "from tracker.mqtt import MqttPublisher\n"
        "config = MqttConfig(enabled=True, host='127.0.0.1', port=int(sys.argv[1]), topic_prefix='t3', keepalive=5)\n"
        "p = MqttPublisher.from_config(config).start()\n"
        "while not p.connected: time.sleep(0.02)\n"
        "print('connected', flush=True)\n"
        "time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", script, str(mosquitto.port)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "connected"
        assert sub.next("t3/available")[0] == "online"
        proc.kill()  # no clean disconnect: the broker sees the connection drop and sends the will
        proc.wait(timeout=10)
        assert sub.next("t3/available") == ("offline", False)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sub.stop()
