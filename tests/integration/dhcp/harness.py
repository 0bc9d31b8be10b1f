"""Real `roost serve` processes in network namespaces, and what the DHCP tests read back.

The server runs as a subprocess inside the server namespace with ``ROOST_DATA_DIR`` and
``ROOST_DHCP__INTERFACES`` set; the tests configure it through the CLI (the API listens on
the namespace's loopback) or by writing the database before it starts, and read leases and
events straight from its SQLite files.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from roost.db import Database
from roost.dhcp import store
from roost.dhcp.codec import Packet, decode
from roost.dhcp.config import ReservationSpec, SubnetSpec
from roost.dhcp.errors import MalformedPacket
from roost.server import read_client_file
from roost.testing.netns import Lab, wait_for

ROOST = str(Path(sys.executable).with_name("roost"))


class RoostServer:
    def __init__(self, lab: Lab, ns: str, data_dir: Path, interfaces: list[str], **env: str):
        self.lab, self.ns, self.data_dir = lab, ns, data_dir
        self.env = dict(
            os.environ,
            ROOST_DATA_DIR=str(data_dir),
            ROOST_DHCP__INTERFACES=",".join(interfaces),
            ROOST_API__PORT="0",
            ROOST_LOG__LEVEL="info",
            # these tests are about DHCP: no inventory nodes from the lease events (it follows
            # them with one transaction per event, which only slows the load tests down)
            ROOST_NODES__AUTO_DISCOVER="false",
            **env,
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "serve.log"
        data_dir.mkdir(parents=True, exist_ok=True)

    @property
    def db_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.data_dir / 'roost.db'}"

    def configure(
        self,
        subnets: list[dict[str, Any]],
        reservations: list[dict[str, Any]] = (),  # type: ignore[assignment]
    ) -> None:
        """Write configuration into the database before the server starts."""

        async def write() -> None:
            db = Database(self.db_url)
            await db.open()
            try:
                for s in subnets:
                    await store.put_subnet(db, SubnetSpec.model_validate(s), create=True)
                for r in reservations:
                    await store.put_reservation(db, ReservationSpec.model_validate(r), [], 0)
            finally:
                await db.close()

        asyncio.run(write())

    def start(self) -> None:
        started = self.log.read_text().count("DHCP serving") if self.log.exists() else 0
        with self.log.open("ab") as out:  # the child keeps its own copy of the descriptor
            self.proc = self.lab.spawn(
                self.ns, [ROOST, "serve"], env=self.env, stdout=out, stderr=out
            )
        ok = wait_for(
            lambda: (
                (
                    self.log.read_text().count("DHCP serving") > started
                    and "Roost API listening" in self.log.read_text().split("DHCP serving")[-1]
                )
                or self.proc is None
                or self.proc.poll() is not None
            ),
            60,
        )
        assert ok and self.proc.poll() is None, (
            f"roost serve did not start:\n{self.log.read_text()[-3000:]}"
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            self.lab.kill(self.proc, sig)
            self.proc = None

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            ["ip", "netns", "exec", self.ns, ROOST, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check:
            assert res.returncode == 0, f"roost {' '.join(args)}: {res.stderr}"
        return res

    def metrics(self) -> dict[str, float]:
        """The server's /metrics as {'name{labels}': value}, read inside its namespace."""
        client = read_client_file(self.data_dir)
        token = Path(client["token_file"]).read_text().strip()
        text = self.lab.exec(
            self.ns, "curl", "-sf", "-H", f"Authorization: Bearer {token}",
            f"{client['url']}/metrics",
        ).stdout  # fmt: skip
        samples = (line.rsplit(" ", 1) for line in text.splitlines() if line[:1] not in ("#", ""))
        return {name: float(value) for name, value in samples}

    def leases(self) -> dict[str, tuple[str, str]]:
        """ip → (mac, state) from the durable lease file."""
        path = self.data_dir / "roost-dhcp-leases.db"
        if not path.exists():
            return {}
        with sqlite3.connect(path) as conn:
            rows = conn.execute("SELECT address, mac, state FROM dhcp_leases").fetchall()
        return {ip: (mac, state) for ip, mac, state in rows}

    def events(self, prefix: str = "dhcp.") -> list[tuple[str, dict[str, Any]]]:
        with sqlite3.connect(self.data_dir / "roost.db") as conn:
            rows = conn.execute(
                "SELECT type, data FROM events WHERE type LIKE ? ORDER BY id", (prefix + "%",)
            ).fetchall()
        return [(t, json.loads(d)) for t, d in rows]

    def wait_event(self, type_: str, timeout: float = 20, **match: Any) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        def seen() -> bool:
            for t, data in self.events(type_):
                if t == type_ and all(data.get(k) == v for k, v in match.items()):
                    found.append(data)
                    return True
            return False

        assert wait_for(seen, timeout, 0.2), f"no {type_} {match}; saw {self.events()[-10:]}"
        return found[0]


class Capture:
    """tcpdump in a namespace, written to a pcap and parsed into DHCP packets afterwards."""

    def __init__(
        self, lab: Lab, ns: str, ifname: str, path: Path, filt: str = "udp port 67 or udp port 68"
    ):
        self.path = path
        self.err = path.with_suffix(".err")
        with self.err.open("wb") as err:
            self.proc = lab.spawn(
                ns,
                [
                    "tcpdump",
                    "--immediate-mode",
                    "-Z",
                    "root",
                    "-i",
                    ifname,
                    "-U",
                    "-n",
                    "-w",
                    str(path),
                    filt,
                ],
                stderr=err,
            )
        self.lab = lab
        assert wait_for(lambda: b"listening on" in self.err.read_bytes(), 15), (
            "tcpdump did not start"
        )

    def stop(self) -> list[tuple[tuple[str, int], tuple[str, int], Packet]]:
        time.sleep(0.3)
        self.lab.kill(self.proc, signal.SIGINT)
        return list(read_pcap(self.path.read_bytes()))


def read_pcap(pcap: bytes) -> Any:
    """(src, dst, packet) for each IPv4/UDP DHCP frame of an Ethernet pcap."""
    pos = 24
    while pos + 16 <= len(pcap):
        incl = struct.unpack_from("<I", pcap, pos + 8)[0]
        frame = pcap[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        if frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        src, dst = ".".join(map(str, ip[12:16])), ".".join(map(str, ip[16:20]))
        udp = ip[ihl:]
        sport, dport, length = struct.unpack_from("!HHH", udp)
        try:
            yield (src, sport), (dst, dport), decode(udp[8:length])
        except MalformedPacket:
            continue
