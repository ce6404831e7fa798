"""Zones, lines, events, MQTT and webhook settings: validated at load time, errors name the field."""

from __future__ import annotations

import pytest

from common.config import load_config
from common.errors import ConfigError


def cam(**fields) -> dict:
    return {"id": "door", "source": "pattern", **fields}


def test_zones_lines_and_delivery_load(write_config):
    path = write_config(
        [cam(zones=[{"name": "porch", "points": [[0.1, 0.5], [0.9, 0.5], [0.9, 1.0], [0.1, 1.0]]}],
             lines=[{"name": "gate", "points": [[0.5, 0.0], [0.5, 1.0]], "in_side": "left"}],
             events={"labels": ["person"], "min_frames": 4})],
        events={"dir": "/tmp/x", "max_size_mb": 100, "pre_roll": 1.5},
        mqtt={"enabled": True, "host": "broker", "password": "hunter2"},
        webhooks=[{"url": "https://hooks.example/abc?token=t0k", "secret": "s3cret"}],
    )
    settings = load_config(path, env={})
    door = settings.cameras[0]
    assert door.zones[0].points[2] == (0.9, 1.0) and door.lines[0].in_side == "left"
    assert door.events.min_frames == 4 and settings.events.pre_roll == 1.5
    assert settings.mqtt.password.get_secret_value() == "hunter2"
    assert "s3cret" not in repr(settings.webhooks) and "t0k" not in repr(settings.webhooks)
    assert settings.webhooks[0].types == ["new", "end"]


@pytest.mark.parametrize("fields, where, words", [
    ({"zones": [{"name": "z", "points": [[0.1, 0.1], [1.5, 0.1], [0.5, 0.9]]}]},
     "cameras[0].zones[0].points[1][0]", "less than or equal to 1"),
    ({"zones": [{"name": "z", "points": [[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]]}]},
     "cameras[0].zones[0].points", "no area"),
    ({"zones": [{"name": "z", "points": [[0, 0], [1, 0], [1, 1]]}] * 2}, "cameras[0].zones", "duplicate zone"),
    ({"lines": [{"name": "bad name", "points": [[0, 0], [1, 1]]}]}, "cameras[0].lines[0].name", "A-Z"),
    ({"lines": [{"name": "l", "points": [[0, 0], [1, 1], [1, 0]]}]}, "cameras[0].lines[0].points", "at most 2"),
    ({"lines": [{"name": "l", "points": [[0.5, 0.5], [0.5, 0.5]]}]}, "cameras[0].lines[0].points", "differ"),
    ({"events": {"min_frames": 0}}, "cameras[0].events.min_frames", "greater than or equal to 1"),
])
def test_bad_camera_fields_are_named(write_config, fields, where, words):
    path = write_config([cam(**fields)])
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    text = str(err.value)
    assert where in text and words in text and "(camera 'door')" in text


def test_bad_delivery_settings_are_named_without_echoing_secrets(write_config):
    path = write_config([cam()], webhooks=[{"url": "ftp://user:pw@host/x", "secret": "s"}],
                        mqtt={"topic_prefix": "a/#"})
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    text = str(err.value)
    assert "webhooks[0].url: must be an http:// or https:// URL" in text
    assert "mqtt.topic_prefix" in text and "pw" not in text


def test_the_old_name_of_untracked_maxlen_is_read_with_a_warning(write_config, caplog):
    with caplog.at_level("WARNING", logger="framecast.config"):
        settings = load_config(write_config([cam()], events={"detected_maxlen": 300}), env={})
    assert settings.events.untracked_maxlen == 300
    assert "events.detected_maxlen is deprecated" in caplog.text and "events.untracked_maxlen" in caplog.text
    with pytest.raises(ConfigError) as err:
        load_config(write_config([cam()], events={"detected_maxlen": 300, "untracked_maxlen": 400}), env={})
    assert "untracked_maxlen only" in str(err.value)
