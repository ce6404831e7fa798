"""Hosts on a private network made of Linux network namespaces, for multi-host tests on one machine.

A `Network` is a switch (a bridge inside a namespace of its own, `fc-<tag>-sw`) and hosts (one
namespace each, `fc-<tag>-<name>`, with an `eth0` cabled to the switch by a veth pair), addressed in
10.77.0.0/24 and nothing else: no host has a default route, so no packet can leave the machine. The
test process itself reaches the hosts through one more port on the switch, `fc<tag>t` in its own
namespace with 10.77.0.254/24. `cut`/`restore` pull and plug a host's cable at the switch, as a
failed link would look to that host (its own interface stays up; packets just stop).

Programs run in a host with `Network.command(host, ...)` (an `ip netns exec` prefix for Popen), so
they stay children of the test and are ended by PID. `cleanup` deletes every namespace it made (and
with them every veth); the `network` fixture calls it even when the test fails.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass

import pytest

SUBNET = "10.77.0"
TEST_ADDRESS = f"{SUBNET}.254"


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


@dataclass(frozen=True)
class Host:
    name: str
    ns: str  # its network namespace
    address: str  # on eth0
    port: str  # its cable's end on the switch (in the switch namespace)


class Network:
    """A switch and the hosts cabled to it; `Network()` builds only the switch and the test's port."""

    def __init__(self):
        self.tag = secrets.token_hex(3)
        self.switch = f"fc-{self.tag}-sw"
        self.test_port = f"fc{self.tag}t"  # IFNAMSIZ: at most 15 characters
        self.hosts: dict[str, Host] = {}
        self._namespaces: list[str] = []
        try:
            self._add_namespace(self.switch)
            _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.switch, "link", "set", "br0", "up")
            # The test's own port: a veth from the switch into this process's namespace.
            _ip("-n", self.switch, "link", "add", "p-test", "type", "veth", "peer", "name", self.test_port,
                "netns", str(os.getpid()))
            _ip("-n", self.switch, "link", "set", "p-test", "master", "br0", "up")
            _ip("addr", "add", f"{TEST_ADDRESS}/24", "dev", self.test_port)
            _ip("link", "set", self.test_port, "up")
        except BaseException:
            self.cleanup()
            raise

    def _add_namespace(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self._namespaces.append(ns)

    def add_host(self, name: str, octet: int) -> Host:
        """A namespace `fc-<tag>-<name>` with lo and eth0 = 10.77.0.<octet>/24 on the switch."""
        assert 1 <= octet <= 253 and name not in self.hosts
        ns = f"fc-{self.tag}-{name}"
        port = f"p-{name}"[:15]
        self._add_namespace(ns)
        _ip("-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "addr", "add", f"{SUBNET}.{octet}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        host = Host(name, ns, f"{SUBNET}.{octet}", port)
        self.hosts[name] = host
        return host

    def command(self, host: str, *argv: str) -> list[str]:
        """argv run inside `host`'s network namespace (ip netns exec replaces itself with argv, so the
        Popen's PID is the program's)."""
        return ["ip", "netns", "exec", self.hosts[host].ns, *argv]

    def cut(self, host: str) -> None:
        """Pull `host`'s cable out of the switch."""
        _ip("-n", self.switch, "link", "set", self.hosts[host].port, "down")

    def restore(self, host: str) -> None:
        _ip("-n", self.switch, "link", "set", self.hosts[host].port, "up")

    def cleanup(self) -> None:
        """Delete every namespace made here (veths go with them, the test's port too). Processes must
        be ended first: a namespace lives on while a process is inside it."""
        for ns in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
        self._namespaces.clear()
        subprocess.run(["ip", "link", "del", self.test_port], capture_output=True, timeout=20)

    def leftovers(self) -> list[str]:
        """Namespaces of this network that still exist (for a test's own final check)."""
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=20).stdout
        return [line.split()[0] for line in out.splitlines() if line.startswith(f"fc-{self.tag}-")]


def netns_usable() -> str | None:
    """Why namespaces cannot be used here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not shutil.which("ip") or not shutil.which("unshare"):
        return "needs iproute2 (ip) and util-linux (unshare)"
    return None


@pytest.fixture
def network():
    """A fresh `Network`, deleted after the test whatever happened."""
    reason = netns_usable()
    if reason:
        pytest.skip(reason)
    net = Network()
    try:
        yield net
    finally:
        net.cleanup()
