"""A throwaway ipmi_sim BMC on a free loopback UDP port, for the power tests and benchmark.

Its chassis control (``chassis.sh`` in the data directory) starts and kills a real process,
so "powered on" is observable. ipmitool needs ``-C 3``: ipmi_sim does not answer cipher-suite
discovery, and without it every call stalls for 10 s.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass
class IPMISim:
    port: int
    node_dir: Path
    log: Path

    def ipmitool(self, *args: str, password: str = "secret") -> subprocess.CompletedProcess[str]:
        cmd = ["ipmitool", "-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-p", str(self.port)]
        cmd += ["-U", "admin", "-P", password, *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30)

    def node_pid(self) -> int | None:
        """PID of the simulated machine's process if it is running (= powered on)."""
        try:
            pid = int((self.node_dir / "node.pid").read_text())
            os.kill(pid, 0)
        except (FileNotFoundError, ProcessLookupError, ValueError):
            return None
        return pid

    def calls(self) -> list[str]:
        path = self.node_dir / "calls.log"
        return path.read_text().splitlines() if path.exists() else []


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 5 s; for the emulators tests start."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def ipmi_sim(work: Path, data: Path) -> Iterator[IPMISim]:
    """Run ipmi_sim with ``data``'s ``lan.conf.in``, ``bmc.emu`` and ``chassis.sh`` until the
    block ends; the simulated machine's process is stopped too. Raises RuntimeError if the
    BMC never answers ``mc info``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    conf = (data / "lan.conf.in").read_text()
    (work / "lan.conf").write_text(
        conf.replace("@PORT@", str(port)).replace("@CHASSIS@", str(data / "chassis.sh"))
    )
    (work / "state").mkdir()
    sim = IPMISim(port, work / "node", work / "sim.log")
    argv = ["ipmi_sim", "-n", "-c", str(work / "lan.conf"), "-f", str(data / "bmc.emu")]
    with sim.log.open("wb") as log:
        proc = subprocess.Popen(
            [*argv, "-s", str(work / "state")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RPW_NODE_DIR": str(sim.node_dir)},
        )
    try:
        for _ in range(50):
            if proc.poll() is not None:
                raise RuntimeError(f"ipmi_sim exited: {sim.log.read_text()}")
            if sim.ipmitool("mc", "info").returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("ipmi_sim did not answer ipmitool mc info")
        yield sim
    finally:
        stop_process(proc)
        pid = sim.node_pid()
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
