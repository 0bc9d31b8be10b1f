"""A throwaway layer-2 lab of network namespaces for the discovery tests and benchmark.

One *hub* namespace holds a bridge with the scanner's address (``.1``); each host is its own
namespace with one veth (``eth0``) on that bridge. Nothing in the lab has a route to anywhere
else, so scans, wake packets and floods stay inside it. Everything is built with a handful of
``ip -batch`` runs (50 hosts in well under a second) and removed by :meth:`Lab.down`, which
deleting the namespaces makes complete: their veths and the bridge go with them.

Names carry a caller-chosen prefix (``rds`` for discovery) so labs of parallel test runs and
other capabilities never collide; interface names stay within 15 characters.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from roost.discovery.netns import enter_netns

BRIDGE = "rdsbr"


def _ip_batch(commands: Sequence[str], netns: str | None = None) -> None:
    args = ["ip", *(["-n", netns] if netns else []), "-batch", "-"]
    proc = subprocess.run(args, input="\n".join(commands) + "\n", capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {proc.stderr.strip()}")


def unavailable_reason() -> str | None:
    """Why a lab cannot be built here, or ``None`` when it can."""
    if os.geteuid() != 0:
        return "network-namespace lab needs root"
    if not Path("/proc/self/ns/net").exists():
        return "kernel has no network namespaces"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True)
    if probe.returncode != 0:
        return "`ip netns` is not available (iproute2)"
    return None


@dataclass(frozen=True)
class LabHost:
    netns: str
    ip: IPv4Address
    mac: str


@dataclass
class Lab:
    prefix: str
    subnet: IPv4Network
    hosts: list[LabHost] = field(default_factory=list)
    extra_ns: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def hub(self) -> str:
        return f"{self.prefix}hub"

    @property
    def gateway(self) -> IPv4Address:
        return self.subnet.network_address + 1

    def up(self, count: int, macs: Callable[[int], str] | None = None, first: int = 10) -> None:
        """Create the hub and ``count`` hosts at ``.first`` … with MACs from ``macs(i)``."""
        macs = macs or (lambda i: f"02:72:64:73:{i >> 8:02x}:{i & 0xFF:02x}")
        plen = self.subnet.prefixlen
        names = [f"{self.prefix}h{i}" for i in range(count)]
        self.hosts = [
            LabHost(n, self.subnet.network_address + first + i, macs(i))
            for i, n in enumerate(names)
        ]
        _ip_batch([f"netns add {self.hub}", *(f"netns add {n}" for n in names)])
        _ip_batch(
            [
                "link set lo up",
                f"link add {BRIDGE} type bridge stp_state 0 forward_delay 0",
                f"addr add {self.gateway}/{plen} dev {BRIDGE}",
                f"link set {BRIDGE} up",
            ],
            self.hub,
        )
        _ip_batch(
            [
                f"link add {self.prefix}v{i} netns {self.hub} type veth"
                f" peer name eth0 netns {h.netns}"
                for i, h in enumerate(self.hosts)
            ]
        )
        _ip_batch(
            [f"link set {self.prefix}v{i} master {BRIDGE} up" for i in range(count)], self.hub
        )
        for h in self.hosts:
            _ip_batch(
                [
                    f"link set eth0 address {h.mac}",
                    f"addr add {h.ip}/{plen} dev eth0",
                    "link set eth0 up",
                    "link set lo up",
                ],
                h.netns,
            )
        # Closed UDP ports answer with ICMP port unreachable, which Linux rate-limits per peer
        # (net.ipv4.icmp_ratelimit, 1 s after a burst of 6); the lab turns that off so a UDP
        # scan of a few ports is decided in milliseconds, for Roost and nmap alike.
        self.sysctl({"net/ipv4/icmp_ratelimit": "0"}, [h.netns for h in self.hosts])

    def add_bare_host(self, name: str, mac: str) -> str:
        """A namespace on the bridge with a link but no address (the machine to wake)."""
        ns = f"{self.prefix}{name}"
        idx = len(self.hosts) + len(self.extra_ns)
        _ip_batch([f"netns add {ns}"])
        self.extra_ns.append(ns)
        _ip_batch(
            [f"link add {self.prefix}v{idx} netns {self.hub} type veth peer name eth0 netns {ns}"]
        )
        _ip_batch([f"link set {self.prefix}v{idx} master {BRIDGE} up"], self.hub)
        _ip_batch([f"link set eth0 address {mac}", "link set eth0 up", "link set lo up"], ns)
        return ns

    def remove_ns(self, ns: str) -> None:
        """Delete one extra namespace (its veth goes with it)."""
        _ip_batch([f"netns del {ns}"])
        self.extra_ns.remove(ns)

    def sysctl(self, values: dict[str, str], namespaces: Sequence[str]) -> None:
        """Write ``/proc/sys`` keys in each namespace (a thread enters each one in turn)."""
        errors: list[BaseException] = []

        def run() -> None:
            try:
                for ns in namespaces:
                    enter_netns(ns)
                    for key, value in values.items():
                        Path("/proc/sys", key).write_text(value)
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=run)
        t.start()
        t.join()
        if errors:
            raise errors[0]

    def spawn(self, netns: str, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        """Start a process inside ``netns``; :meth:`down` ends it."""
        proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.processes.append(proc)
        return proc

    def python(self, netns: str, module: str, *args: str) -> subprocess.Popen[bytes]:
        return self.spawn(netns, [sys.executable, "-m", module, *args])

    def run(self, argv: Sequence[str], timeout: float = 120) -> str:
        """Run a command in the hub namespace and return its standard output."""
        proc = subprocess.run(
            ["ip", "netns", "exec", self.hub, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr}")
        return proc.stdout

    def down(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        self.processes.clear()
        names = [self.hub, *(h.netns for h in self.hosts), *self.extra_ns]
        existing = set(
            subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
        )
        _ip_batch([f"netns del {n}" for n in names if n in existing])


def remove_leftovers(prefix: str) -> None:
    """Delete namespaces that runs with this prefix left behind when they were killed.

    A lab's names are ``<prefix><pid in hex>…`` so that two runs at once (a developer's and
    CI's) never share a namespace; only labs whose process is gone are removed.
    """
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    stale = []
    for line in out.splitlines():
        name = line.split()[0] if line.strip() else ""
        if not name.startswith(prefix):
            continue
        digits = re.match(r"[0-9a-f]+", name[len(prefix) :])
        if digits is None or not Path(f"/proc/{int(digits.group(), 16)}").exists():
            stale.append(name)
    if stale:
        _ip_batch([f"netns del {n}" for n in stale])


@contextmanager
def lab(prefix: str, subnet: str, count: int, **kw: object) -> Iterator[Lab]:
    """A lab of ``count`` hosts named ``<prefix><pid>…``; removed on exit, whatever happens."""
    remove_leftovers(prefix)
    built = Lab(f"{prefix}{os.getpid():x}", IPv4Network(subnet))
    try:
        built.up(count, **kw)  # type: ignore[arg-type]
        yield built
    finally:
        built.down()
