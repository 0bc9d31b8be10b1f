"""Real BMC peers for the power driver tests: ipmi_sim (OpenIPMI) and sushy-emulator, each on a
free loopback port, started per test module and always stopped."""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from roost.testing.ipmisim import IPMISim, stop_process
from roost.testing.ipmisim import ipmi_sim as run_ipmi_sim

DATA = Path(__file__).resolve().parents[2] / "data"


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ipmi_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IPMISim]:
    if not (shutil.which("ipmi_sim") and shutil.which("ipmitool")):
        pytest.skip("ipmi_sim/ipmitool not installed (Debian openipmi, ipmitool)")
    try:
        with run_ipmi_sim(tmp_path_factory.mktemp("ipmi"), DATA / "ipmi") as sim:
            yield sim
    except RuntimeError as exc:
        pytest.fail(str(exc))


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
        stop_process(proc)
        log.close()
