"""common/threads.py in real processes: a service thread whose work hits a real fault (a read on a
file descriptor that was closed under it, EBADF) ends the process with 70, the thread and camera
named in the log, whether or not the process has a main loop to stop first. Each process is started
here and ended by its PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from tests.conftest import REPO

# The doomed thread reads a byte from a pipe every 50 ms; a timer closes the pipe's read end
# under it, and the next os.read raises EBADF (OSError), which nothing in the thread catches.
FAULT = textwrap.dedent("""
    import os, sys, threading, time
    from common import threads
    from common.logs import setup_logging
    setup_logging("INFO", "text", stream=sys.stdout)
    r, w = os.pipe()
    os.write(w, b"x" * 1000)
    def work():
        while True:
            os.read(r, 1)
            time.sleep(0.05)
    threads.start_thread(work, "reader-cam7", cam="cam7")
    threading.Timer(0.5, os.close, (r,)).start()
""")


def run(script: str, timeout: float = 30.0) -> tuple[int, str, float]:
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"the process did not exit within {timeout} s:\n{out}") from None
    return proc.returncode, out, time.monotonic() - started


def test_a_dead_thread_ends_a_process_whose_main_thread_would_go_on():
    # The main thread would sleep for 10 minutes: only the death handler ends the process.
    code, out, took = run(FAULT + "time.sleep(600)\n")
    assert code == 70, out
    assert "service thread died" in out and "reader-cam7" in out and "camera=cam7" in out, out
    assert "OSError" in out and "Bad file descriptor" in out, out
    assert took < 15, took


def test_a_dead_thread_stops_the_main_loop_cleanly_and_main_returns_70():
    # A service's main: its stop event (stop_event_on_signals) is set by the death, the loop ends,
    # the clean shutdown runs, and main returns threads.exit_code().
    code, out, took = run(FAULT + textwrap.dedent("""
        from common.service import stop_event_on_signals
        stop = stop_event_on_signals()
        stop.wait(600)
        print("clean shutdown ran; dead:", [d["thread"] for d in threads.dead()], flush=True)
        sys.exit(threads.exit_code())
    """))
    assert code == 70, out
    assert "clean shutdown ran; dead: ['reader-cam7']" in out, out
    assert took < 15, took


def test_a_main_that_returns_0_after_a_death_still_exits_70():
    code, out, _ = run(FAULT + textwrap.dedent("""
        from common.service import stop_event_on_signals
        stop = stop_event_on_signals()
        stop.wait(600)
        sys.exit(0)
    """))
    assert code == 70, out


def test_a_thread_that_returns_or_a_healthy_process_exits_as_it_means_to():
    code, out, _ = run(textwrap.dedent("""
        import sys, time
        from common import threads
        t = threads.start_thread(lambda: time.sleep(0.1), "short")
        t.join()
        assert threads.healthy() and threads.exit_code() == 0
        sys.exit(threads.exit_code(0))
    """))
    assert code == 0, out
