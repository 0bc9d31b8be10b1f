"""One lab on this machine: bring it up, start guests and other processes in it, report its
state, and take it down again.

State lives in a directory (``/run/roost-lab/<prefix>`` by default: it goes with a reboot, as
namespaces do) as ``lab.json`` plus one directory per guest with its console log and
sockets. ``down`` kills the processes the lab recorded (after checking each PID still runs
the command it started, so a reused PID is left alone), then whatever else still runs inside
the lab's namespaces (only the lab puts processes there), then deletes the namespaces.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from roost.errors import Invalid, NotFound
from roost.lab import console, netns, qemu
from roost.lab.netns import Topology

DEFAULT_STATE_ROOT = Path("/run/roost-lab")


@dataclass
class Proc:
    """A process the lab started: its PID and a string its command line must contain."""

    name: str
    pid: int
    marker: str
    log: str = ""


@dataclass
class GuestRecord:
    index: int
    firmware: str
    nic: str
    mac: str
    rom: bool
    accel: str
    proc: Proc
    console_log: str
    console_sock: str


@dataclass
class LabState:
    prefix: str
    server_cidr: str
    accel: str = "tcg"
    accel_reason: str = ""
    guests: list[GuestRecord] = field(default_factory=list)
    procs: list[Proc] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabState:
        guests = [GuestRecord(**{**g, "proc": Proc(**g["proc"])}) for g in data.pop("guests")]
        procs = [Proc(**p) for p in data.pop("procs")]
        return cls(**data, guests=guests, procs=procs)


def alive(proc: Proc) -> bool:
    """The PID runs and its command line still contains the marker we started it with."""
    try:
        cmd = Path(f"/proc/{proc.pid}/cmdline").read_bytes().replace(b"\0", b" ")
        stat = Path(f"/proc/{proc.pid}/stat").read_text()
    except OSError:
        return False
    zombie = stat.rsplit(")", 1)[-1].split()[0] == "Z"
    return not zombie and proc.marker.encode() in cmd


class Lab:
    """A lab named by its topology, with its state directory."""

    def __init__(self, topo: Topology | None = None, state_root: Path | None = None) -> None:
        self.topo = topo or Topology()
        self.dir = (state_root or DEFAULT_STATE_ROOT) / self.topo.prefix
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def state_file(self) -> Path:
        return self.dir / "lab.json"

    def load(self) -> LabState:
        try:
            return LabState.from_json(json.loads(self.state_file.read_text()))
        except FileNotFoundError:
            raise NotFound(f"lab {self.topo.prefix!r} is not up (no {self.state_file})") from None

    def save(self, state: LabState) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(state), indent=2))
        tmp.replace(self.state_file)

    def up(self, accel: qemu.Accel) -> LabState:
        """Create the namespaces, bridge and server interface; no guests yet."""
        netns.create(self.topo)
        self.dir.mkdir(parents=True, exist_ok=True)
        state = LabState(self.topo.prefix, self.topo.server_cidr, accel.name, accel.reason)
        self.save(state)
        return state

    def spawn(
        self, name: str, argv: list[str], ns: str, log: Path, env: dict[str, str] | None = None
    ) -> Proc:
        """Start ``argv`` inside namespace ``ns``, detached, output to ``log``; record it."""
        state = self.load()
        with log.open("ab") as out:
            child = subprocess.Popen(
                netns.exec_argv(ns, argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )
        self._children[child.pid] = child
        proc = Proc(name, child.pid, argv[0], str(log))
        state.procs.append(proc)
        self.save(state)
        return proc

    def start_guest(self, spec: qemu.GuestSpec) -> GuestRecord:
        state = self.load()
        if any(g.index == spec.index for g in state.guests):
            raise Invalid(f"guest {spec.index} already exists in lab {self.topo.prefix!r}")
        files = qemu.GuestFiles(self.dir / f"guest{spec.index}")
        files.directory.mkdir(parents=True, exist_ok=True)
        files.console_log.unlink(missing_ok=True)
        tap = netns.add_tap(self.topo, spec.index)
        accel = qemu.Accel("kvm" if state.accel == "kvm" else "tcg", state.accel_reason)
        argv = qemu.command(spec, accel, files, tap)
        with (files.directory / "qemu.log").open("wb") as out:
            child = subprocess.Popen(
                netns.exec_argv(self.topo.switch_ns, argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._children[child.pid] = child
        record = GuestRecord(
            index=spec.index,
            firmware=spec.firmware,
            nic=spec.nic,
            mac=spec.mac_address,
            rom=spec.rom,
            accel=accel.name,
            proc=Proc(f"guest{spec.index}", child.pid, str(files.console_sock)),
            console_log=str(files.console_log),
            console_sock=str(files.console_sock),
        )
        state = self.load()
        state.guests.append(record)
        self.save(state)
        return record

    def guest(self, index: int) -> GuestRecord:
        for g in self.load().guests:
            if g.index == index:
                return g
        raise NotFound(f"lab {self.topo.prefix!r} has no guest {index}")

    def status(self) -> list[dict[str, Any]]:
        """One row per guest: firmware, NIC, MAC, whether QEMU runs, what it last said."""
        rows = []
        for g in self.load().guests:
            rows.append(
                {
                    "guest": g.index,
                    "firmware": g.firmware + ("" if g.rom or g.firmware == "bios" else " (PXE)"),
                    "nic": g.nic,
                    "mac": g.mac,
                    "accel": g.accel,
                    "state": "running" if alive(g.proc) else "exited",
                    "console": console.last_line(Path(g.console_log))[:80],
                }
            )
        return rows

    def down(self, grace: float = 3.0) -> list[str]:
        """Kill what the lab started, delete its namespaces and state; returns what it did."""
        done: list[str] = []
        try:
            state: LabState | None = self.load()
        except NotFound:
            state = None
        recorded = [] if state is None else [g.proc for g in state.guests] + state.procs
        victims = {p.pid: p.name for p in recorded if alive(p)}
        for ns in (self.topo.server_ns, self.topo.switch_ns):
            if ns in netns.namespaces():
                for pid in netns.pids(ns):
                    victims.setdefault(pid, f"pid {pid} in {ns}")
        self._signal(victims, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(self.running(p) for p in victims):
            time.sleep(0.05)
        self._signal({p: n for p, n in victims.items() if self.running(p)}, signal.SIGKILL)
        for pid in victims:
            self._reap(pid)
        for pid in list(self._children):  # started here and already gone: collect them too
            self._reap(pid)
        done += [f"stopped {name}" for name in victims.values()]
        done += [f"deleted namespace {ns}" for ns in netns.destroy(self.topo)]
        if self.dir.exists():
            for path in sorted(self.dir.rglob("*.sock")):
                path.unlink(missing_ok=True)
            self.state_file.unlink(missing_ok=True)
        return done

    def wait_exit(self, guest: GuestRecord, timeout: float) -> bool:
        """Wait until the guest's QEMU has exited; True if it did within ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.running(guest.proc.pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def running(self, pid: int) -> bool:
        child = self._children.get(pid)
        if child is not None:
            return child.poll() is None
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        return stat.rsplit(")", 1)[-1].split()[0] != "Z"

    def _signal(self, victims: dict[int, str], sig: signal.Signals) -> None:
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def _reap(self, pid: int) -> None:
        child = self._children.pop(pid, None)
        if child is not None:
            if child.poll() is None:
                child.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)
