"""The installed packages are exactly the lock's, and an install that drifted from it is caught."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

from common import build
from tests.conftest import REPO

# The lock `make install` installed the test venv from (Makefile: LOCK ?= lock/requirements-test.txt).
LOCK = os.environ.get("FRAMECAST_TEST_LOCK", "test")


def test_installed_packages_are_exactly_the_lock():
    status = build.status(LOCK)
    assert status is not None, f"no lock/requirements-{LOCK}.txt"
    assert status.matches, status.describe() + "  (a stale venv: `make clean install`)"


def test_a_package_that_drifted_from_the_lock_is_named(tmp_path):
    text = (REPO / "lock" / f"requirements-{LOCK}.txt").read_text()
    numpy = build.installed()["numpy"]
    drifted = text.replace(f"numpy=={numpy}", "numpy==1.26.4")
    dropped = "\n".join(line for line in drifted.splitlines() if not line.startswith("msgpack=="))
    assert drifted != text and dropped != drifted
    lock = tmp_path / "drifted.txt"
    lock.write_text(dropped + "\nnot-a-real-package==1.0 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    status = build.compare("drifted", lock.read_text(), build.installed())
    assert not status.matches
    assert f"numpy: installed {numpy}, lock 1.26.4" in status.differs
    assert "not-a-real-package: missing (lock 1.0)" in status.differs
    assert status.extra == ["msgpack"]  # installed but no longer in the lock
    check = subprocess.run([sys.executable, "-m", "common.build", "check", str(lock)], cwd=REPO,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 1 and "numpy: installed" in check.stderr and "msgpack" in check.stderr


def test_version_names_the_lock_and_its_hash():
    out = subprocess.run([sys.executable, "-m", "framecast", "--version"], cwd=REPO, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    digest = hashlib.sha256((REPO / "lock" / f"requirements-{LOCK}.txt").read_bytes()).hexdigest()
    assert out.splitlines()[0].startswith("framecast ")
    assert f"lock requirements-{LOCK}.txt sha256:{digest} (installed packages match it)" in out


def test_the_lock_folder_can_be_moved(tmp_path):
    """The Docker image keeps its lock outside the code (FRAMECAST_LOCK_DIR)."""
    (tmp_path / "requirements-base.txt").write_text((REPO / "lock" / "requirements-base.txt").read_text())
    env = {**os.environ, "FRAMECAST_LOCK_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "framecast", "--version"], cwd=REPO, capture_output=True,
                         text=True, timeout=60, env=env, check=True).stdout
    assert "lock requirements-base.txt sha256:" in out and "installed packages differ" in out  # the venv has test extras
