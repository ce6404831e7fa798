"""The MQTT sender thread against a real mosquitto survives a message paho refuses: a label with a
`+` (or `#`) makes a count topic with an MQTT wildcard, and paho's publish raises ValueError. The
message is dropped and counted, and the messages after it are delivered."""

from __future__ import annotations

import json

from prometheus_client import REGISTRY

from tests.tracker.test_mqtt import Subscriber, publisher, wait_for


def invalid() -> float:
    return REGISTRY.get_sample_value("framecast_mqtt_messages_total", {"outcome": "invalid"}) or 0.0


def test_a_topic_paho_refuses_is_dropped_and_counted_and_the_sender_goes_on(mosquitto):
    sub = Subscriber(mosquitto.port, "faults/#", "test-faults")
    pub = publisher(mosquitto.port, "faults")
    try:
        wait_for(lambda: pub.connected, "the publisher to connect")
        before = invalid()
        assert pub.publish_count("door", "c++", 1)  # faults/door/c++: a wildcard in a topic name
        assert pub.publish_event({"type": "new", "after": {"id": "e1"}})
        payload, _ = sub.next("faults/events")
        assert json.loads(payload)["after"]["id"] == "e1"
        wait_for(lambda: pub.stats["dropped"] == 1, "the refused message to be counted")
        assert invalid() == before + 1
        assert pub._sender.is_alive()
        assert pub.publish_count("door", "person", 2)
        assert sub.next("faults/door/person")[0] == "2"
    finally:
        pub.stop()
        sub.stop()
