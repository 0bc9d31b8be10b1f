"""Throwaway network namespaces joined by veth pairs, for tests and benchmarks.

Everything made here carries the caller's prefix and is removed by :meth:`Lab.close` (deleting
a namespace removes its veths; processes started in it are killed by PID first). Nothing is
ever created in, or routed to, the root namespace.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from typing import Any


def unavailable_reason(*tools: str) -> str | None:
    """Why namespace tests cannot run here (not root, no ``ip``, a missing tool), or None."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    for tool in ("ip", *tools):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            return f"{tool} is not installed (scripts/bootstrap installs it)"
    return None


def run(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=timeout)


class Lab:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[Any]] = []

    def ns(self, role: str) -> str:
        name = f"{self.prefix}-{role}"
        if name not in self.namespaces:
            run("ip", "netns", "add", name)
            self.namespaces.append(name)
            run("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def link(
        self, ns_a: str, if_a: str, addr_a: str | None, ns_b: str, if_b: str, addr_b: str | None
    ) -> None:
        """A veth pair between two namespaces, with optional address/prefix on each end."""
        run(
            "ip",
            "link",
            "add",
            if_a,
            "netns",
            ns_a,
            "type",
            "veth",
            "peer",
            "name",
            if_b,
            "netns",
            ns_b,
        )
        for ns, ifname, addr in ((ns_a, if_a, addr_a), (ns_b, if_b, addr_b)):
            if addr:
                run("ip", "-n", ns, "addr", "add", addr, "dev", ifname)
            run("ip", "-n", ns, "link", "set", ifname, "up")

    def bridge(self, sw_ns: str, name: str) -> None:
        """A bridge (no STP, no forwarding delay: ports forward at once) in ``sw_ns``."""
        run(
            "ip",
            "-n",
            sw_ns,
            "link",
            "add",
            name,
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        )
        run("ip", "-n", sw_ns, "link", "set", name, "up")

    def attach(self, sw_ns: str, bridge: str, ns: str, ifname: str, addr: str | None) -> None:
        """A veth from ``ns`` (``ifname``, optional address) to a port of ``bridge``."""
        port = f"{ifname}p"[-15:]
        self.link(ns, ifname, addr, sw_ns, port, None)
        run("ip", "-n", sw_ns, "link", "set", port, "master", bridge)

    def exec(
        self, ns: str, *argv: str, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        return run("ip", "netns", "exec", ns, *argv, check=check, timeout=timeout)

    def spawn(self, ns: str, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], start_new_session=True, **kw)
        self.procs.append(proc)
        return proc

    def kill(
        self, proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, wait: float = 10
    ) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def pids_in(self, ns: str) -> list[int]:
        out = run("ip", "netns", "pids", ns, check=False).stdout.split()
        return [int(p) for p in out]

    def close(self) -> None:
        """Kill what was started, then delete the namespaces, whatever fails on the way."""
        for proc in self.procs:
            with contextlib.suppress(Exception):
                self.kill(proc, wait=5)
        for ns in reversed(self.namespaces):
            with contextlib.suppress(Exception):
                for pid in self.pids_in(ns):  # whatever daemonised in there (dhclient, dhcrelay)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            run("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()


@contextlib.contextmanager
def lab(prefix: str) -> Iterator[Lab]:
    the_lab = Lab(prefix)
    try:
        yield the_lab
    finally:
        the_lab.close()


def wait_for(predicate: Any, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
