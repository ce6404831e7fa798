"""/readyz says 503 as soon as one of the web process's service threads died, before the process exits."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.conftest import REPO

SCRIPT = textwrap.dedent("""
    import json, os, sys, threading
    from common import threads
    from common.config import load_config
    from common.connection import connect
    from web.app import create_app

    settings = load_config(sys.argv[1], env={})
    app = create_app(settings, connect(settings.redis_url)).test_client()
    stop = threading.Event()
    threads.on_death(stop.set)  # as a service's main loop registers its stop
    print(json.dumps([app.get("/readyz").status_code]), flush=True)
    read, write = os.pipe()
    os.close(write)

    def doomed():  # a real fault: reading a closed descriptor raises OSError (EBADF)
        os.close(read)
        os.read(read, 1)

    threads.start_thread(doomed, "doomed-reader")
    stop.wait(10)
    answer = app.get("/readyz")
    print(json.dumps([answer.status_code, answer.get_json()]), flush=True)
    sys.exit(0)
""")


def test_readyz_reports_a_dead_thread_then_the_process_exits_70(write_config, redis_url):
    config = write_config([{"id": "cam1", "source": "pattern"}], redis_url=redis_url)
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(config)], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("[")]
    assert lines[0] == [503]  # no frames yet: not ready, but for the usual reason
    status, body = lines[1]
    assert status == 503 and body["dead_threads"][0]["thread"] == "doomed-reader", body
    assert "exiting" in body["message"]
    assert done.returncode == 70, done.stderr[-2000:]  # a main that returns 0 still exits 70
