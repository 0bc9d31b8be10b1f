"""``roost serve`` as an unprivileged user with only its capabilities, in a namespace lab.

A uid with no account and no home (as the ``roost`` system user of
packaging/systemd/roost.service has none) runs DHCP on port 67, TFTP on 69 and the boot
server on port 80, with ``CAP_NET_BIND_SERVICE``, ``CAP_NET_RAW`` and ``CAP_NET_ADMIN`` as
ambient capabilities and nothing else (setpriv, as systemd's AmbientCapabilities= does).
Real clients in a peer namespace use each: busybox udhcpc leases an address, curl fetches a
file over TFTP and a boot file over HTTP. Without a capability the start fails
with a message naming it and the setting that needs it.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from roost.boot.store import BootStore
from roost.db import Database
from roost.dhcp import store
from roost.dhcp.config import SubnetSpec
from roost.testing.netns import Lab, unavailable_reason, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.slow]

TAG = f"rlp{os.getpid() % 4096:03x}"
CAPS = "net_bind_service,net_raw,net_admin"
# CapEff bits: CAP_NET_BIND_SERVICE 10, CAP_NET_ADMIN 12, CAP_NET_RAW 13
CAP_BITS = 1 << 10 | 1 << 12 | 1 << 13
SUBNET = {
    "name": "lan",
    "cidr": "10.203.0.0/24",
    "pools": [{"start": "10.203.0.100", "end": "10.203.0.120"}],
    "routers": ["10.203.0.1"],
}
UDHCPC_SCRIPT = """#!/bin/sh
[ "$1" = bound ] && ip addr add "$ip/${mask:-24}" dev "$interface"
exit 0
"""


def free_uid() -> int:
    """A uid no account has: no home, no groups, nothing it owns but what the test gives it."""
    for uid in range(61_000, 62_000):
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
    raise AssertionError("no free uid in 61000-61999")


def as_user(uid: int, caps: str | None) -> list[str]:
    """setpriv to ``uid`` with exactly ``caps`` inheritable, ambient and in the bounding set."""
    argv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    if caps:
        plus = ",".join(f"+{c}" for c in caps.split(","))
        argv += [f"--inh-caps=-all,{plus}", f"--ambient-caps=-all,{plus}"]
        argv += [f"--bounding-set=-all,{plus}"]
    else:
        argv += ["--inh-caps=-all", "--bounding-set=-all"]
    return argv


class Lab2:
    """The server namespace (10.203.0.1 on ``srv_if``) and the client's, one veth apart."""

    def __init__(self, lab: Lab, tmp: Path, uid: int) -> None:
        self.lab, self.tmp, self.uid = lab, tmp, uid
        self.srv, self.cli = lab.ns("srv"), lab.ns("cli")
        self.srv_if, self.cli_if = f"{TAG}s0", f"{TAG}c0"
        lab.link(self.srv, self.srv_if, "10.203.0.1/24", self.cli, self.cli_if, None)
        self.data = tmp / "data"
        self.log = tmp / "serve.log"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROOST_")}
        env.update(
            HOME="/nonexistent",
            ROOST_DATA_DIR=str(self.data),
            ROOST_API__PORT="0",
            ROOST_DHCP__INTERFACES=self.srv_if,
            ROOST_TFTP__ENABLED="true",
            ROOST_BOOT__ENABLED="true",
            ROOST_BOOT__HTTP_PORT="80",
            ROOST_BOOT__IMPORT_IPXE="false",
            ROOST_NODES__AUTO_DISCOVER="false",
            # The venv's interpreter links into /root (0700): setpriv's own exec reaches it, a
            # TFTP or render worker's exec by the unprivileged uid does not (render workers
            # then fail the start, clearly). Workers need no capability.
            ROOST_TFTP__WORKERS="0",
            ROOST_BOOT__RENDER_WORKERS="0",
            **extra,
        )
        return env

    def serve(self, caps: str | None, **extra: str) -> subprocess.Popen[bytes]:
        with self.log.open("wb") as out:
            return self.lab.spawn(
                self.srv,
                [*as_user(self.uid, caps), sys.executable, "-m", "roost.cli", "serve"],
                env=self.env(**extra),
                stdout=out,
                stderr=subprocess.STDOUT,
            )


@pytest.fixture
def lab2() -> Iterator[Lab2]:
    reason = unavailable_reason("setpriv", "curl", "udhcpc")
    if reason:
        pytest.skip(reason)
    uid = free_uid()
    probe = subprocess.run(
        [*as_user(uid, None), sys.executable, "-c", "import roost.cli"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode != 0:
        pytest.skip(f"an unprivileged uid cannot run this Python and checkout: {probe.stderr}")
    # a directory of the uid's own, outside pytest's root-only tmp_path
    tmp = Path(tempfile.mkdtemp(prefix="roost-lp-", dir="/tmp"))
    lab = Lab(TAG)
    try:
        yield Lab2(lab, tmp, uid)
    finally:
        lab.close()
        shutil.rmtree(tmp, ignore_errors=True)


def prepare(lab2: Lab2) -> None:
    """The subnet and a boot file in the database, a file in the TFTP root: the uid's."""

    async def write() -> None:
        db = Database(f"sqlite+aiosqlite:///{lab2.data / 'roost.db'}")
        await db.open()
        try:
            await store.put_subnet(db, SubnetSpec.model_validate(SUBNET), create=True)
            boot = BootStore(lab2.data, db)
            await boot.open()
            await boot.put_path("hello.ipxe", lab2.data / "tftp" / "hello.bin")
        finally:
            await db.close()

    (lab2.data / "tftp").mkdir(mode=0o700, parents=True)
    (lab2.data / "tftp" / "hello.bin").write_bytes(b"roost" * 1000)
    asyncio.run(write())
    for path in [lab2.tmp, *lab2.tmp.rglob("*")]:
        os.chown(path, lab2.uid, lab2.uid)


def test_serves_dhcp_tftp_and_boot_as_an_unprivileged_user(lab2: Lab2) -> None:
    prepare(lab2)
    proc = lab2.serve(CAPS)
    started = wait_for(
        lambda: (
            proc.poll() is not None
            or (
                "Roost API listening" in lab2.log.read_text()
                and "DHCP serving" in lab2.log.read_text()
            )
        ),
        60,
    )
    assert started and proc.poll() is None, lab2.log.read_text()
    status = dict(
        line.split(":\t", 1) for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
    )
    assert status["Uid"].split()[:2] == [str(lab2.uid)] * 2
    assert int(status["CapEff"], 16) == CAP_BITS == int(status["CapBnd"], 16)

    script = lab2.tmp / "udhcpc.sh"
    script.write_text(UDHCPC_SCRIPT)
    script.chmod(0o755)
    dhcp = lab2.lab.exec(
        lab2.cli, "udhcpc", "-i", lab2.cli_if, "-f", "-q", "-n", "-t", "5", "-T", "2",
        "-s", str(script), check=False, timeout=60,
    )  # fmt: skip
    assert dhcp.returncode == 0, dhcp.stdout + dhcp.stderr + lab2.log.read_text()
    address = lab2.lab.exec(lab2.cli, "ip", "-4", "-o", "addr", "show", lab2.cli_if).stdout
    assert "inet 10.203.0.1" in address, address  # 10.203.0.100-120 from the pool

    got = lab2.tmp / "got.bin"
    tftp = lab2.lab.exec(
        lab2.cli, "curl", "-sS", "--max-time", "20", "-o", str(got), "tftp://10.203.0.1/hello.bin",
        check=False, timeout=60,
    )  # fmt: skip
    assert tftp.returncode == 0 and got.read_bytes() == b"roost" * 1000, tftp.stderr
    http = lab2.lab.exec(
        lab2.cli, "curl", "-sS", "--max-time", "20", "http://10.203.0.1:80/files/hello.ipxe",
        check=False, timeout=60,
    )  # fmt: skip
    assert http.returncode == 0 and http.stdout == "roost" * 1000, http.stdout + http.stderr

    files = [lab2.data / "roost.db", lab2.data / "roost-dhcp-leases.db", lab2.data / "admin-token"]
    assert {f.name: (f.stat().st_uid, oct(f.stat().st_mode & 0o777)) for f in files} == {
        f.name: (lab2.uid, oct(0o600)) for f in files
    }
    lab2.lab.kill(proc)
    assert proc.returncode == 0, lab2.log.read_text()


@pytest.mark.parametrize(
    ("caps", "extra", "message"),
    [
        (None, {}, "boot.http_port: binding TCP port 80 needs CAP_NET_BIND_SERVICE"),
        (
            "net_bind_service",
            {"ROOST_DHCP__PROBE": "true"},
            "dhcp.probe: opening a raw IP socket needs CAP_NET_RAW",
        ),
    ],
)
def test_without_a_capability_the_start_fails_naming_it(
    lab2: Lab2, caps: str | None, extra: dict[str, str], message: str
) -> None:
    prepare(lab2)
    proc = lab2.serve(caps, **extra)
    assert proc.wait(60) == 1
    log = lab2.log.read_text()
    assert f"error: {message}" in log, log
    assert "Traceback" not in log
