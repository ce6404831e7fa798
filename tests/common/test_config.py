import pytest

from common.camera_id import validate_camera_id
from common.config import load_config
from common.errors import ConfigError, InvalidCameraIdError, UnknownCameraError


def test_example_config_in_repo_is_valid():
    from tests.conftest import REPO

    settings = load_config(REPO / "cameras.yaml", env={})
    assert [c.id for c in settings.cameras] == ["sample"]
    assert settings.cameras[0].source_kind == "sample"
    assert settings.cameras[0].detection.min_score == 0.5  # from `defaults:`


def test_bad_camera_id_names_the_field_and_file(write_config):
    path = write_config([{"id": "bad id!", "source": "pattern"}])
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    text = str(err.value)
    assert str(path) in text
    assert "cameras[0].id" in text


def test_bad_nested_field_names_camera(write_config):
    path = write_config([{"id": "cam1", "source": "pattern", "detection": {"min_score": 7}}])
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert "cameras[0].detection.min_score" in str(err.value)
    assert "'cam1'" in str(err.value)


def test_unknown_field_is_refused(write_config):
    path = write_config([{"id": "cam1", "source": "pattern", "fsp": 3}])
    with pytest.raises(ConfigError, match=r"cameras\[0\]\.fsp"):
        load_config(path, env={})


def test_duplicate_ids_refused(write_config):
    path = write_config([{"id": "a", "source": "pattern"}, {"id": "a", "source": "pattern"}])
    with pytest.raises(ConfigError, match="duplicate camera id"):
        load_config(path, env={})


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml", env={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras: [\n  - id: a\n  source: x\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(bad, env={})


def test_precedence_flags_over_env_over_file(write_config):
    path = write_config([{"id": "a", "source": "pattern"}], redis_url="redis://file:6379/0", log_level="warning")
    assert load_config(path, env={}).redis_url.get_secret_value() == "redis://file:6379/0"
    assert load_config(path, env={}).log_level == "WARNING"
    env = {"REDIS_URL": "redis://env:6379/0", "FRAMECAST_WEB_PORT": "9001"}
    settings = load_config(path, env=env)
    assert settings.redis_url.get_secret_value() == "redis://env:6379/0"
    assert settings.web.port == 9001
    settings = load_config(path, env=env, overrides={"redis_url": "redis://flag:6379/0", "web.port": None})
    assert settings.redis_url.get_secret_value() == "redis://flag:6379/0"
    assert settings.web.port == 9001  # an unset flag does not mask env


def test_config_env_var_selects_file(write_config):
    path = write_config([{"id": "envcam", "source": "pattern"}], name="other.yaml")
    assert load_config(env={"FRAMECAST_CONFIG": str(path)}).cameras[0].id == "envcam"


def test_secret_values_are_not_echoed_in_errors(write_config):
    path = write_config([{"id": "a", "source": "pattern"}], redis_url="http://admin:hunter2@host/0")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert "redis_url" in str(err.value)
    assert "hunter2" not in str(err.value)
    settings = load_config(path, env={"REDIS_URL": "redis://admin:hunter2@host:6379/0"})
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in settings.redis_url_display


def test_relative_file_source_resolves_against_config_dir(write_config, tmp_path):
    path = write_config([{"id": "a", "source": "clips/x.mp4"}, {"id": "b", "source": "rtsp://h/s"},
                         {"id": "c", "source": 0}, {"id": "d", "source": "pattern"}])
    cams = load_config(path, env={}).cameras
    assert cams[0].source == str(tmp_path / "clips" / "x.mp4")
    assert [c.source_kind for c in cams] == ["file", "url", "device", "pattern"]


def test_source_display_hides_credentials(write_config):
    path = write_config([{"id": "a", "source": "rtsp://admin:s3cret@10.0.0.5:554/live?token=abc"}])
    cam = load_config(path, env={}).cameras[0]
    assert "s3cret" not in cam.source_display and "abc" not in cam.source_display
    assert "10.0.0.5:554/live" in cam.source_display


@pytest.mark.parametrize("cid", ["a", "cam_1", "Front-Door", "x" * 64])
def test_valid_camera_ids(cid):
    assert validate_camera_id(cid) == cid


@pytest.mark.parametrize("cid", ["", "a b", "a/b", "x" * 65, "{a}", "a:b", "ü"])
def test_invalid_camera_ids(cid):
    with pytest.raises(InvalidCameraIdError):
        validate_camera_id(cid)


def test_camera_lookup(write_config):
    settings = load_config(write_config([{"id": "a", "source": "pattern"}]), env={})
    assert settings.camera("a").id == "a"
    with pytest.raises(UnknownCameraError, match="'b'"):
        settings.camera("b")
    with pytest.raises(InvalidCameraIdError):
        settings.camera("../etc")


def test_binary_config_file_is_a_usage_error(tmp_path):
    """A non-UTF-8 file exits 2 with a message, never a traceback."""
    import subprocess
    import sys

    from tests.conftest import REPO

    path = tmp_path / "cameras.yaml"
    path.write_bytes(b"cameras:\n  - id: a\n    source: \xff\xfe\x00pattern\n")
    with pytest.raises(ConfigError, match="not a UTF-8 text file"):
        load_config(path, env={})
    result = subprocess.run([sys.executable, "-m", "framecast", "producer", "--config", str(path)],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 2
    assert "not a UTF-8 text file" in result.stderr and "Traceback" not in result.stderr


def test_duplicate_yaml_keys_are_refused_naming_key_and_line(tmp_path):
    path = tmp_path / "cameras.yaml"
    path.write_text("cameras:\n  - id: a\n    source: pattern\n    fps: 5\n    fps: 6\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'fps' at line 5 \(first given at line 4\)"):
        load_config(path, env={})
    path.write_text("key_prefix: a\ncameras: []\nkey_prefix: b\n")
    with pytest.raises(ConfigError, match="duplicate key 'key_prefix' at line 3"):
        load_config(path, env={})
