"""Detector backends are plugins found through the `framecast.detectors` entry points: the config's
choices come from them, each declares its own settings, and a setting its backend lacks is an error."""

import subprocess
import sys

import pytest

from common.config import DetectionConfig, load_config
from common.detectors import backend, backend_names
from common.errors import ConfigError
from tests.conftest import REPO


def test_the_registry_lists_the_installed_backends():
    assert backend_names() == ["saved_model", "tflite"]
    assert (backend("tflite").first_class_id, backend("saved_model").first_class_id) == (0, 1)
    assert backend("tflite").default_files is not None and backend("saved_model").default_files is None


def test_a_setting_the_backend_lacks_is_an_error_naming_it(write_config):
    path = write_config([{"id": "door", "source": "pattern",
                          "detection": {"backend": "saved_model", "model": "/m", "threads": 4}}])
    with pytest.raises(ConfigError, match=r"cameras\[0\]\.detection \(camera 'door'\): threads: not a setting "
                                          r"of the 'saved_model' backend"):
        load_config(path, env={})
    path = write_config([{"id": "door", "source": "pattern", "detection": {"threads": 0}}])
    with pytest.raises(ConfigError, match="threads: Input should be greater than or equal to 1"):
        load_config(path, env={})
    path = write_config([{"id": "door", "source": "pattern", "detection": {"backend": "onnx"}}])
    with pytest.raises(ConfigError, match="detection.backend .*must be one of 'saved_model', 'tflite'"):
        load_config(path, env={})


def test_a_backend_fills_in_its_own_defaults():
    assert DetectionConfig().options == {"threads": 2}
    assert DetectionConfig(threads=3).threads == 3
    assert DetectionConfig(backend="saved_model", model="/m").options == {}


def test_reading_the_declarations_loads_no_runtime():
    """Any service validating a config reads the plugins' declarations: they must not pull in a runtime."""
    code = ("import sys; from common.config import DetectionConfig; DetectionConfig(); "
            "DetectionConfig(backend='saved_model', model='/m'); "
            "print(sorted(m for m in ('tensorflow', 'ai_edge_litert') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_process_offers_the_registered_backends():
    result = subprocess.run([sys.executable, "-m", "framecast", "process", "in.mp4", "-o", "out.mp4",
                             "--backend", "onnx"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 2 and "choose from 'saved_model', 'tflite'" in result.stderr
