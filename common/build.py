"""What this install is: framecast's version and the dependency lock its packages came from.

The locks (`lock/requirements-<name>.txt`, written by `make lock`) pin every package with its hash. This
module reads them and compares them with what is installed, so `framecast --version`, the services'
`framecast_build_info` metric and `python -m common.build check` can say which lock an install
follows and where it drifted from it (a stale, hand-installed package on a developer's machine).
The lock folder is the checkout's `lock/`, or `$FRAMECAST_LOCK_DIR` (the Docker image's copy).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path

LOCK_NAMES = ("base", "tensorflow", "gpu", "test")  # lock/requirements-<name>.txt
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")
_OWN = {"framecast"}  # installed from the checkout, not from the lock


def normalise(name: str) -> str:
    """A distribution name as PEP 503 compares them (`Foo_Bar.baz` and `foo-bar-baz` are one)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_dir() -> Path:
    return Path(os.environ.get("FRAMECAST_LOCK_DIR") or Path(__file__).resolve().parent.parent / "lock")


def lock_file(name: str) -> Path:
    """The file of the lock called `name` (base, tensorflow, gpu, test)."""
    return lock_dir() / f"requirements-{name}.txt"


def read_pins(text: str) -> dict[str, str]:
    """name -> version of every `name==version` line of a lock (hash and comment lines skipped)."""
    pins = {}
    for line in text.splitlines():
        match = _PIN.match(line.strip())
        if match:
            pins[normalise(match.group(1))] = match.group(2)
    return pins


def installed() -> dict[str, str]:
    """name -> version of every distribution this interpreter can import from."""
    return {normalise(d.metadata["Name"]): d.version for d in metadata.distributions() if d.metadata["Name"]}


@dataclass
class LockStatus:
    """How the installed packages compare with one lock file."""

    name: str
    sha256: str
    differs: list[str] = field(default_factory=list)  # "pkg: installed X, lock Y" or "pkg: missing"
    extra: list[str] = field(default_factory=list)  # installed, not in the lock

    @property
    def matches(self) -> bool:
        return not self.differs and not self.extra

    def describe(self) -> str:
        head = f"lock requirements-{self.name}.txt sha256:{self.sha256}"
        if self.matches:
            return f"{head} (installed packages match it)"
        problems = self.differs + [f"{pkg}: installed, not in the lock" for pkg in self.extra]
        return f"{head} (installed packages differ: {'; '.join(problems)})"


def compare(name: str, text: str, have: dict[str, str]) -> LockStatus:
    pins = read_pins(text)
    status = LockStatus(name, hashlib.sha256(text.encode()).hexdigest())
    for pkg, version in sorted(pins.items()):
        if pkg not in have:
            status.differs.append(f"{pkg}: missing (lock {version})")
        elif have[pkg] != version:
            status.differs.append(f"{pkg}: installed {have[pkg]}, lock {version}")
    status.extra = sorted(pkg for pkg in have if pkg not in pins and pkg not in _OWN)
    return status


def status(name: str | None = None) -> LockStatus | None:
    """The named lock's comparison; without a name, the lock this install follows (the one with the
    fewest differences, the larger lock on a tie). None when no lock file is present."""
    have = installed()
    found = []
    for lock in ([name] if name else LOCK_NAMES):
        path = lock_file(lock)
        if path.is_file():
            found.append(compare(lock, path.read_text(), have))
    if not found:
        return None
    return min(found, key=lambda s: (len(s.differs) + len(s.extra), -LOCK_NAMES.index(s.name)
                                     if s.name in LOCK_NAMES else 0))


def version() -> str:
    try:
        return metadata.version("framecast")
    except metadata.PackageNotFoundError:
        return "unknown"


@cache
def build_info() -> dict[str, str]:
    """The labels of `framecast_build_info`: version, lock name, lock sha256, whether packages match."""
    lock = status()
    if lock is None:
        return {"version": version(), "lock": "none", "lock_sha256": "", "lock_matches": "unknown"}
    return {"version": version(), "lock": lock.name, "lock_sha256": lock.sha256,
            "lock_matches": "true" if lock.matches else "false"}


def describe() -> str:
    """`framecast --version`'s text."""
    lock = status()
    return f"framecast {version()}\n" + (lock.describe() if lock else
                                         f"lock: none found in {lock_dir()} (set FRAMECAST_LOCK_DIR)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.build",
                                     description="compare the installed packages with a dependency lock")
    parser.add_argument("command", choices=["check"])
    parser.add_argument("lock", nargs="?", help="a lock name (base, tensorflow, gpu, test) or file")
    args = parser.parse_args(argv)
    if args.lock and args.lock.endswith(".txt"):
        path = Path(args.lock)
        lock = compare(path.stem.removeprefix("requirements-"), path.read_text(), installed())
    else:
        lock = status(args.lock)
    if lock is None:
        print(f"no lock file in {lock_dir()}", file=sys.stderr)
        return 1
    print(lock.describe(), file=sys.stdout if lock.matches else sys.stderr)
    return 0 if lock.matches else 1


if __name__ == "__main__":
    sys.exit(main())
