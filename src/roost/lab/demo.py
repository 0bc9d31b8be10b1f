"""Roost's main job, end to end, in the lab: bare guests network-boot through Roost alone.

The demo brings up a lab, runs ``roost serve`` in its server namespace with DHCP on the lab
interface, TFTP (the iPXE binaries) and the HTTP boot server, stores the commissioning image
as boot files, makes it the default boot profile, adds the lab subnet, then powers on the
guests and follows each one through the event stream until it calls back and enrolls. The
API is relayed to this machine's loopback (see :mod:`roost.lab.relay`), so the normal CLI
works beside it. Everything it starts belongs to the lab and goes with ``Lab.down``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import queue
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from roost.client import Client, ClientError, Connection
from roost.lab import image, qemu
from roost.lab.netns import SERVER_IF, Topology, namespaces
from roost.lab.progress import Board, GuestProgress
from roost.lab.relay import Relay
from roost.lab.runner import Lab
from roost.server import write_client_file
from roost.settings import Settings

API_PORT_IN_LAB = 8440
BOOT_PORT = 8442
KERNEL_FILE = "commissioning-vmlinuz"
INITRD_FILE = "commissioning-initrd.img"
PROFILE = "commissioning"
CMDLINE = (
    "console=ttyS0 quiet roost.callback={{ enroll_url }} roost.token={{ token }} "
    "roost.after=poweroff"
)
"""One POST of the facts to ``/boot/enroll/<one-time token>``: the node enrolls (ready) and
the boot server publishes ``boot.callback`` for it as well."""
IPXE_FILES = ("undionly.kpxe", "ipxe.efi", "snponly.efi")
CAPABILITIES = {
    "dhcp": ("roost.dhcp.service", "interfaces"),
    "tftp": ("roost.tftp.service", "enabled"),
    "boot": ("roost.boot.service", "enabled"),
}
"""Settings section → (module that serves it, the key the demo turns it on with)."""


class DemoError(RuntimeError):
    """The demo could not get as far as booting guests; the message says what is missing."""


def missing_capabilities() -> list[str]:
    """Boot services this Roost lacks (not installed or without their settings)."""
    gone = []
    for section, (module, key) in CAPABILITIES.items():
        field = Settings.model_fields.get(section)
        known = field is not None and key in getattr(field.annotation, "model_fields", {})
        if not known or importlib.util.find_spec(module) is None:
            gone.append(f"{section} ({module})")
    return gone


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v))


def server_config(topo: Topology, data_dir: Path, tftp_root: Path) -> str:
    """The settings file ``roost serve`` runs with inside the lab (TOML)."""
    sections: dict[str, dict[str, Any]] = {
        "api": {"host": "127.0.0.1", "port": API_PORT_IN_LAB},
        "dhcp": {"interfaces": [SERVER_IF]},
        "tftp": {"enabled": True, "root": str(tftp_root)},
        "boot": {"enabled": True, "http_port": BOOT_PORT, "default_profile": PROFILE},
    }
    lines = [f"data_dir = {_toml_value(str(data_dir))}", 'site = "lab"']
    for name, values in sections.items():
        lines.append(f"\n[{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


@dataclass
class DemoOptions:
    guests: int = 3
    once: bool = False
    timeout: float = 600.0
    prefix: str = "roost-lab"
    state_root: Path = Path("/run/roost-lab")
    api_port: int = 8440
    accel: str = "auto"
    firmware: str | None = None


class Demo:
    """One run; :meth:`run` returns the process exit status."""

    def __init__(self, opts: DemoOptions, say: Callable[[str], None]) -> None:
        self.opts = opts
        self.say = say
        self.lab = Lab(Topology(prefix=opts.prefix), state_root=opts.state_root)
        self.data_dir = self.lab.dir / "roost"
        self.relay = Relay(self.lab.topo.server_ns, ("127.0.0.1", API_PORT_IN_LAB))
        self._relay_loop: Any = None
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._stopping = threading.Event()
        self._follower: threading.Thread | None = None
        self.api: Client | None = None
        self.url = ""

    # -- set-up ------------------------------------------------------------------------------

    def prepare(self) -> tuple[image.CommissioningImage, qemu.Accel]:
        gone = missing_capabilities()
        if gone:
            raise DemoError(
                "this Roost has no " + ", ".join(gone) + ": the demo needs DHCP, TFTP and the "
                "HTTP boot server"
            )
        img = image.locate()
        accel = qemu.choose_accel(img.kernel, self.opts.state_root / "accel.json", self.opts.accel)
        self.say(f"accelerator: {accel.name} ({accel.reason})")
        if self.lab.state_file.exists() or self.lab.topo.server_ns in namespaces():
            self.say(f"taking down the previous lab {self.opts.prefix!r}")
            self.lab.down()
        self.lab.up(accel)
        return img, accel

    def start_server(self) -> Client:
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.data_dir.mkdir(parents=True)
        tftp_root = self.lab.dir / "tftp"
        tftp_root.mkdir(exist_ok=True)
        for name in IPXE_FILES:
            shutil.copy2(Path("/usr/lib/ipxe") / name, tftp_root / name)
        config = self.lab.dir / "roost.toml"
        config.write_text(server_config(self.lab.topo, self.data_dir, tftp_root))
        log = self.lab.dir / "roost.log"
        log.unlink(missing_ok=True)
        self.lab.spawn(
            "roost serve",
            [sys.executable, "-m", "roost.cli", "serve", "--config", str(config)],
            self.lab.topo.server_ns,
            log,
            env={"ROOST_CONFIG": "", "PYTHONUNBUFFERED": "1"},
        )
        port = self._start_relay()
        self.url = f"http://127.0.0.1:{port}"
        token = self._wait_ready(log)
        write_client_file(self.data_dir, self.url)
        self.say(
            f"Roost API: {self.url}/api/v1 — admin token {token} "
            f"(saved in {self.data_dir / 'admin-token'});\n"
            f"beside it: ROOST_DATA_DIR={self.data_dir} roost events --follow, or\n"
            f"curl -H 'Authorization: Bearer {token}' {self.url}/api/v1/events"
        )
        self.api = Client(Connection(self.url, token))
        return self.api

    def _start_relay(self) -> int:
        ready: queue.Queue[int | BaseException] = queue.Queue()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._relay_loop = loop
            try:
                ready.put(loop.run_until_complete(self.relay.start(self.opts.api_port)))
            except BaseException as exc:  # reported to the caller's thread
                ready.put(exc)
                return
            loop.run_forever()
            loop.run_until_complete(self.relay.stop())
            loop.close()

        threading.Thread(target=serve, name="api-relay", daemon=True).start()
        got = ready.get(timeout=10)
        if isinstance(got, BaseException):
            raise DemoError(f"cannot listen on 127.0.0.1:{self.opts.api_port}: {got}")
        return got

    def _wait_ready(self, log: Path, timeout: float = 120.0) -> str:
        token_file = self.data_dir / "admin-token"
        deadline = time.monotonic() + timeout
        server = self.lab.load().procs[-1]
        while time.monotonic() < deadline:
            if not self.lab.running(server.pid):
                raise DemoError(f"roost serve exited:\n{_tail(log)}")
            if token_file.exists():
                try:
                    r = httpx.get(f"{self.url}/healthz", timeout=2)
                    if r.status_code == 200:
                        return token_file.read_text().strip()
                except httpx.HTTPError:
                    pass
            time.sleep(0.3)
        raise DemoError(f"roost serve was not ready within {timeout:.0f} s:\n{_tail(log)}")

    def provision(self, api: Client, img: image.CommissioningImage) -> None:
        """Boot files, the commissioning profile (default for every node), the lab subnet."""
        for name, path in ((KERNEL_FILE, img.kernel), (INITRD_FILE, img.initrd)):
            api.request("PUT", f"/boot/files/{name}", content=path.read_bytes())
        api.request(
            "PUT",
            f"/boot/profiles/{PROFILE}",
            json={
                "description": "commissioning image: lease, facts, call back, power off",
                "kernel": KERNEL_FILE,
                "initrds": [INITRD_FILE],
                "cmdline": CMDLINE,
            },
        )
        lo, hi = self.lab.topo.pool()
        subnet = {
            "name": "lab",
            "cidr": str(self.lab.topo.network),
            "pools": [{"start": lo, "end": hi}],
            "interface": SERVER_IF,
            "lease_time": 600,
        }
        try:
            api.post("/dhcp/subnets", json=subnet)
        except ClientError as exc:
            if not str(exc).startswith("409"):
                raise
            api.request("PUT", "/dhcp/subnets/lab", json=subnet)
        self.say(f"subnet {subnet['cidr']} pool {lo}-{hi} on {SERVER_IF}; profile {PROFILE}")

    def follow(self, api: Client) -> None:
        """Stream boot-chain events into ``self.events`` from a thread."""
        newest = api.get("/events/history", params={"tail": 1})
        since = str(newest[-1]["id"]) if newest else "0"

        def pump() -> None:
            try:
                params = {"type": ["dhcp.lease.", "boot.", "node.enrolled"], "since": since}
                for ev in api.sse("/events", params=params, stop=self._stopping):
                    self.events.put(ev)
            except Exception:  # the server went away: the demo is ending
                pass
            self.events.put(None)

        self._follower = threading.Thread(target=pump, name="events", daemon=True)
        self._follower.start()

    def start_guests(self, img: image.CommissioningImage) -> Board:
        specs = qemu.default_specs(self.opts.guests, self.opts.firmware)  # type: ignore[arg-type]
        board = Board(
            [
                GuestProgress(s.index, s.mac_address, s.firmware, needs_tftp=not s.rom)
                for s in specs
            ],
            KERNEL_FILE,
            INITRD_FILE,
        )
        for spec in specs:
            self.lab.start_guest(spec)
        return board

    def stop(self) -> list[str]:
        self._stopping.set()  # the event follower ends instead of reconnecting
        if self._relay_loop is not None:
            self._relay_loop.call_soon_threadsafe(self._relay_loop.stop)
        if self._follower is not None:  # the relay closing its connections ends the stream
            self._follower.join(timeout=5)
        if self.api is not None:  # its pooled keep-alive sockets, before GC finds them open
            self.api.close()
        return self.lab.down()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
