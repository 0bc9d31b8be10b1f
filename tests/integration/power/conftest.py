"""Real BMC peers for the power driver tests: ipmi_sim (OpenIPMI) and sushy-emulator, each on a
free loopback port, started per test module and always stopped."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

DATA = Path(__file__).resolve().parents[2] / "data"


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class IPMISim:
    port: int
    node_dir: Path

    def ipmitool(self, *args: str, password: str = "secret") -> subprocess.CompletedProcess[str]:
        # -C 3: ipmitool's cipher-suite discovery gets no answer from ipmi_sim (10 s stall).
        cmd = [
            "ipmitool",
            "-I",
            "lanplus",
            "-C",
            "3",
            "-H",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "admin",
            "-P",
            password,
            *args,
        ]
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


@pytest.fixture(scope="module")
def ipmi_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IPMISim]:
    if not (shutil.which("ipmi_sim") and shutil.which("ipmitool")):
        pytest.skip("ipmi_sim/ipmitool not installed (Debian openipmi, ipmitool)")
    work = tmp_path_factory.mktemp("ipmi")
    port = free_port(socket.SOCK_DGRAM)
    conf = (DATA / "ipmi" / "lan.conf.in").read_text()
    conf = conf.replace("@PORT@", str(port)).replace("@CHASSIS@", str(DATA / "ipmi/chassis.sh"))
    (work / "lan.conf").write_text(conf)
    (work / "state").mkdir()
    sim = IPMISim(port, work / "node")
    env = {**os.environ, "RPW_NODE_DIR": str(sim.node_dir)}
    log = (work / "sim.log").open("wb")
    proc = subprocess.Popen(
        [
            "ipmi_sim",
            "-n",
            "-c",
            str(work / "lan.conf"),
            "-f",
            str(DATA / "ipmi/bmc.emu"),
            "-s",
            str(work / "state"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        for _ in range(50):
            if proc.poll() is not None:
                pytest.fail(f"ipmi_sim exited: {(work / 'sim.log').read_text()}")
            if sim.ipmitool("mc", "info").returncode == 0:
                break
            time.sleep(0.1)
        else:
            pytest.fail("ipmi_sim did not answer ipmitool mc info")
        yield sim
    finally:
        stop(proc)
        pid = sim.node_pid()
        if pid:
            os.kill(pid, signal.SIGTERM)
        log.close()


@dataclass
class Emulator:
    url: str
    password: str


@pytest.fixture(scope="module")
def sushy_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    exe = Path(sys.executable).with_name("sushy-emulator")
    if not exe.exists():
        pytest.skip("sushy-emulator not installed (pip install sushy-tools: the dev extra)")
    import bcrypt

    work = tmp_path_factory.mktemp("redfish")
    password = secrets.token_urlsafe(12)
    digest = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    (work / "htpasswd").write_text(f"admin:{digest}\n")
    port = free_port(socket.SOCK_STREAM)
    conf = (DATA / "redfish" / "emulator.conf.in").read_text()
    for key, value in {
        "@PORT@": str(port),
        "@STATE@": str(work / "state"),
        "@HTPASSWD@": str(work / "htpasswd"),
    }.items():
        conf = conf.replace(key, value)
    (work / "emulator.conf").write_text(conf)
    log = (work / "emulator.log").open("wb")
    proc = subprocess.Popen(
        [str(exe), "--config", str(work / "emulator.conf")],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            if proc.poll() is not None:
                pytest.fail(f"sushy-emulator exited: {(work / 'emulator.log').read_text()}")
            try:
                if httpx.get(url + "/redfish/v1/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            pytest.fail("sushy-emulator did not answer")
        yield Emulator(url, password)
    finally:
        stop(proc)
        log.close()
