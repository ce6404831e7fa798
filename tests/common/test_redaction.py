import json
import logging

from common.logs import camera_logger, setup_logging
from common.redaction import redact_text, redact_url


def test_redact_url_variants():
    assert redact_url("rtsp://admin:pw@cam.local:554/s") == "rtsp://***@cam.local:554/s"
    assert redact_url("redis://:secret@h:6379/0") == "redis://***@h:6379/0"
    assert redact_url("rediss://user:secret@h:6380") == "rediss://***@h:6380"
    assert redact_url("http://h/x?user=a&password=pw&x=1") == "http://h/x?user=a&password=***&x=1"
    assert redact_url("rtsp://cam.local/s") == "rtsp://cam.local/s"
    assert redact_url("/videos/a.mp4") == "/videos/a.mp4"


def test_redact_free_text():
    text = "failed to open rtsp://admin:pw@10.0.0.1/x and redis://:pw2@r:6379"
    out = redact_text(text)
    assert "pw" not in out.replace("***", "") and "10.0.0.1/x" in out


def test_log_lines_redact_and_carry_camera(capsys):
    import io

    stream = io.StringIO()
    setup_logging("INFO", "json", stream=stream)
    camera_logger("t", "cam7").warning("cannot open rtsp://u:topsecret@h/s", extra={"url": "rtsp://u:topsecret@h/s"})
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["camera"] == "cam7"
    assert "topsecret" not in stream.getvalue()
    logging.getLogger().handlers.clear()
