#!/usr/bin/env python3
"""TFTP throughput of Roost against tftpd-hpa and atftpd, measured in the same run.

Two network namespaces joined by a veth pair (``rtf-bs`` serves on 10.79.0.1:69, ``rtf-bc``
runs the clients; MTU 1500, so blksize 1468 fills a frame). Each server in turn serves the same
files from tmpfs: a single 64 MiB stream with ``atftp`` at blksize 1468, lockstep (windowsize 1)
and with RFC 7440 windowsize 16 (tftpd-hpa has no windowsize), then 500 ``atftp`` clients at
once fetching 1 MiB each. Every download is checked by size and sha256; a mismatch or a
non-zero exit is a failure. The storm runs in every round and then, Roost and atftpd back to
back, in rounds of its own (7 in all; its target is the median of the rounds' paired ratios,
as it is the noisiest figure). During the storm the server namespace's CPU time and sent
datagrams are read too: the server's own CPU per datagram, what it costs where the clients
are other machines rather than processes sharing its two CPUs. Ratios are printed against
the targets, and the last line is one JSON object of the figures. ``--quick`` uses 16 MiB,
200 clients and 3 storm rounds. Needs root, atftp, atftpd, busybox and the tftpd-hpa binary
that ``scripts/bootstrap`` unpacks into ``.tools``.

Last, issue #17's load: 200 ``busybox tftp -b 1468`` clients at once (the initramfs client,
lockstep) fetching 1 MiB each, against Roost with its defaults (``TFTPSettings()``: workers
``auto``, whatever ``--workers`` says) and tftpd-hpa, alternating, 3 rounds (both modes); the
median of the paired tftpd-hpa / Roost ratios is ``busybox_vs_tftpd_hpa_median``.

Internal modes: ``--serve DIR`` runs Roost's server (bench's own process, so the measured code
is exactly ``TFTPServer``); ``--clients N`` runs N concurrent clients inside the client
namespace and prints their JSON result.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SRV_NS, CLI_NS = "rtf-bs", "rtf-bc"
SRV_IF, CLI_IF = "rtf-bs0", "rtf-bc0"
SRV_IP, CLI_IP = "10.79.0.1", "10.79.0.2"
HPA = REPO / ".tools/tftpd-hpa/usr/sbin/in.tftpd"
BLKSIZE = 1468
SERVERS = ("roost", "tftpd-hpa", "atftpd")
SETTLE = 1.0  # seconds a server runs before it is measured
BUSYBOX_CLIENTS, BUSYBOX_ROUNDS = 200, 3


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


@contextlib.contextmanager
def namespaces() -> Iterator[None]:
    for ns in (SRV_NS, CLI_NS):
        sh("ip", "netns", "del", ns, check=False)
    try:
        sh("ip", "netns", "add", SRV_NS)
        sh("ip", "netns", "add", CLI_NS)
        sh("ip", "link", "add", SRV_IF, "netns", SRV_NS, "type", "veth",
           "peer", CLI_IF, "netns", CLI_NS)  # fmt: skip
        for ns, ifname, ip in ((SRV_NS, SRV_IF, SRV_IP), (CLI_NS, CLI_IF, CLI_IP)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", ifname)
            sh("ip", "-n", ns, "link", "set", ifname, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield
    finally:
        for ns in (SRV_NS, CLI_NS):
            sh("ip", "netns", "del", ns, check=False)


def server_command(name: str, root: Path, workers: int) -> list[str]:
    if name == "roost":
        return [sys.executable, "-P", __file__, "--serve", str(root), "--workers", str(workers)]
    if name == "roost-defaults":
        return [sys.executable, "-P", __file__, "--serve", str(root), "--defaults"]
    if name == "tftpd-hpa":
        return [str(HPA), "-L", "-s", "-u", "root", "-a", f"{SRV_IP}:69", str(root)]
    return [
        "atftpd", "--daemon", "--no-fork", "--bind-address", SRV_IP, "--port", "69",
        "--user", "root", "--group", "root", "--maxthread", "2000", "--logfile", "/dev/null",
        str(root),
    ]  # fmt: skip


@contextlib.contextmanager
def running(name: str, root: Path, workers: int) -> Iterator[None]:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", SRV_NS, *server_command(name, root, workers)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(100):
            if sh("ip", "netns", "exec", SRV_NS, "ss", "-Hlun", "sport = :69").stdout.strip():
                break
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited: {proc.stderr.read().decode() if proc.stderr else ''}"
                )
            time.sleep(0.05)
        else:
            raise RuntimeError(f"{name} does not listen on port 69")
        # Measure every server settled, not its first second: right after a start the
        # scheduler still places new processes by their start-up history (Roost's workers
        # ran the lockstep stream at 25-28 MB/s then, 40-42 once settled).
        time.sleep(SETTLE)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def atftp(remote: str, local: Path, window: int | None) -> list[str]:
    cmd = ["atftp", "-g", "-r", remote, "-l", str(local), "--option", f"blksize {BLKSIZE}"]
    if window:
        cmd += ["--option", f"windowsize {window}"]
    return [*cmd, SRV_IP]


def busybox(remote: str, local: Path) -> list[str]:
    return ["busybox", "tftp", "-g", "-b", str(BLKSIZE), "-r", remote, "-l", str(local), SRV_IP]


CLIENTS = {"atftp": lambda remote, local: atftp(remote, local, None), "busybox": busybox}


def digest(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def single(remote: str, want: str, size: int, work: Path, window: int | None) -> float:
    """MB/s of one download; 0.0 when the download is wrong."""
    out = work / "single.out"
    out.unlink(missing_ok=True)
    t0 = time.perf_counter()
    rc = subprocess.run(
        ["ip", "netns", "exec", CLI_NS, *atftp(remote, out, window)],
        capture_output=True,
        timeout=300,
    ).returncode
    seconds = time.perf_counter() - t0
    ok = rc == 0 and out.exists() and digest(out) == want
    out.unlink(missing_ok=True)
    return size / seconds / 1e6 if ok else 0.0


def keep(
    figures: dict[str, float], key: str, value: float, best: Callable[..., float] = max
) -> None:
    figures[key] = best(figures[key], value) if key in figures else value


def server_cpu() -> float:
    """CPU seconds (user + system) used so far by every process in the server namespace:
    Roost's server and its workers, or atftpd with all its threads, ended ones included.
    (Not tftpd-hpa: the children it forks per transfer are reaped without accounting.)"""
    total = 0
    for pid in sh("ip", "netns", "pids", SRV_NS).stdout.split():
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def datagrams_out() -> int:
    """UDP datagrams the server namespace has sent (its /proc/net/snmp)."""
    rows = [
        line.split()
        for line in sh("ip", "netns", "exec", SRV_NS, "cat", "/proc/net/snmp").stdout.splitlines()
        if line.startswith("Udp:")
    ]
    return int(dict(zip(rows[0][1:], rows[1][1:], strict=True))["OutDatagrams"])


def concurrent(clients: int, work: Path, want: str, client: str = "atftp") -> dict[str, float]:
    """The storm: wall time and failures, and the server's own CPU per datagram it sent,
    which is what the server costs where its clients are other machines."""
    cpu, sent = server_cpu(), datagrams_out()
    res = sh(
        "ip", "netns", "exec", CLI_NS, sys.executable, "-P", __file__,
        "--clients", str(clients), "--client", client, "--out", str(work / "many"),
        "--want", want,
    )  # fmt: skip
    result: dict[str, float] = json.loads(res.stdout.strip().splitlines()[-1])
    sent = datagrams_out() - sent
    result["server_us_per_datagram"] = (server_cpu() - cpu) / sent * 1e6 if sent else 0.0
    return result


async def run_clients(n: int, out: Path, want: str, client: str) -> dict[str, float]:
    """N clients started at once; seconds until the last is done, and failures."""
    command = CLIENTS[client]
    t0 = time.perf_counter()
    procs = [
        await asyncio.create_subprocess_exec(
            *command("one.bin", out / f"{i}.bin"),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for i in range(n)
    ]
    codes = await asyncio.gather(*(p.wait() for p in procs))
    seconds = time.perf_counter() - t0
    failures = 0
    for i, rc in enumerate(codes):
        path = out / f"{i}.bin"
        if rc != 0 or not path.exists() or digest(path) != want:
            failures += 1
        path.unlink(missing_ok=True)
    return {"seconds": seconds, "failures": failures}


def default_workers() -> int:
    """What ``tftp.workers = "auto"`` (the default) makes of this machine."""
    sys.path.insert(0, str(REPO / "src"))
    from roost.settings import TFTPSettings

    return TFTPSettings().worker_count


async def serve(root: Path, workers: int, defaults: bool) -> None:
    sys.path.insert(0, str(REPO / "src"))
    # Worker processes import roost afresh: the same tree as this process, not an install.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])
    )
    from roost.settings import TFTPSettings
    from roost.tftp.resolver import DirectoryResolver
    from roost.tftp.server import TFTPServer
    from roost.tftp.session import Limits

    tftp = TFTPSettings()  # Roost's defaults, as `roost serve` runs
    if defaults:  # everything as a user who changed nothing runs it
        limits = Limits(tftp.timeout, tftp.retries, tftp.max_blksize, tftp.max_windowsize)
        workers, max_transfers = tftp.worker_count, tftp.max_transfers
    else:
        limits, max_transfers = Limits(max_blksize=BLKSIZE, max_windowsize=64), 2000
    server = TFTPServer(
        DirectoryResolver(root),
        host=SRV_IP,
        port=69,
        limits=limits,
        workers=workers,
        max_transfers=max_transfers,
        mac_lookup=lambda ip: None,
        busy_poll=tftp.busy_poll / 1e6,
        pin_workers=tftp.pin_workers,
    )
    await server.start()
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="16 MiB and 200 clients (< 60 s)")
    cpus = len(os.sched_getaffinity(0))
    ap.add_argument(
        "--workers", type=int, default=cpus, help=f"Roost's tftp.workers (default {cpus}: per CPU)"
    )
    ap.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--defaults", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--clients", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--client", choices=sorted(CLIENTS), default="atftp", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--want", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        import uvloop

        with contextlib.suppress(KeyboardInterrupt):
            uvloop.run(serve(args.serve, args.workers, args.defaults))
        return 0
    if args.clients:
        args.out.mkdir(parents=True, exist_ok=True)
        result = run_clients(args.clients, args.out, args.want, args.client)
        print(json.dumps(asyncio.run(result)))
        return 0
    missing = [t for t in ("atftp", "atftpd", "busybox", "ip", "ss") if not shutil.which(t)]
    if os.geteuid() != 0 or missing or not HPA.exists():
        print(f"bench/tftp.py needs root, {missing or ''} and {HPA} (run scripts/bootstrap)")
        return 2

    big_mib, clients, rounds, storm_rounds = (16, 200, 1, 3) if args.quick else (64, 500, 3, 7)
    work = Path(tempfile.mkdtemp(prefix="rtf-bench-", dir="/dev/shm"))
    root = work / "root"
    root.mkdir()
    figures: dict[str, float] = {
        "big_mib": big_mib,
        "clients": clients,
        "roost_workers": args.workers,
        "storm_rounds": storm_rounds,
    }
    storms: dict[str, list[float]] = {}  # each server's storm seconds, round by round
    busybox_storms: dict[str, list[float]] = {}
    figures["busybox_clients"] = BUSYBOX_CLIENTS
    figures["roost_defaults_workers"] = default_workers()

    def storm(r: int, name: str, line: str) -> None:
        """The storm against ``name``, which is running; its figures kept and printed."""
        key = name.replace("-", "_")
        many = concurrent(clients, work, want_one)
        keep(figures, f"{key}_concurrent_s", many["seconds"], best=min)
        storms.setdefault(name, []).append(many["seconds"])
        failed = f"{key}_concurrent_failures"
        figures[failed] = figures.get(failed, 0) + many["failures"]
        line += f"  {clients} x 1 MiB {many['seconds']:6.2f} s, {int(many['failures'])} failed"
        if name != "tftpd-hpa":
            keep(figures, f"{key}_concurrent_server_us_per_datagram",
                 many["server_us_per_datagram"], best=min)  # fmt: skip
            line += f", server {many['server_us_per_datagram']:4.1f} us/datagram"
        print(f"round {r + 1}  {name:10} {line}", flush=True)

    try:
        big, one = root / "big.bin", root / "one.bin"
        big.write_bytes(os.urandom(big_mib << 20))
        one.write_bytes(os.urandom(1 << 20))
        root.chmod(0o755)
        want_big, want_one = digest(big), digest(one)
        size = big.stat().st_size
        with namespaces():
            # Rounds alternate the servers, so a load that comes and goes on the machine
            # touches each of them; the best figure of each kind is kept.
            for r in range(rounds):
                for name in SERVERS:
                    key = name.replace("-", "_")
                    with running(name, root, args.workers):
                        keep(
                            figures,
                            f"{key}_ws1_MBps",
                            single("big.bin", want_big, size, work, None),
                        )
                        if name != "tftpd-hpa":
                            keep(figures, f"{key}_ws16_MBps",
                                 single("big.bin", want_big, size, work, 16))  # fmt: skip
                        ws16 = figures.get(f"{key}_ws16_MBps")
                        line = f"ws1 {figures[f'{key}_ws1_MBps']:7.1f} MB/s"
                        line += f"  ws16 {ws16:7.1f} MB/s" if ws16 is not None else " " * 20
                        storm(r, name, line)
            # The storm is the noisiest figure (a whole machine of clients), so Roost and
            # atftpd meet in more rounds of it alone, back to back, each round's first one
            # taking turns; figures are still best so far, pairs are compared round by round.
            for r in range(rounds, storm_rounds):
                for name in ("atftpd", "roost")[:: 1 if r % 2 else -1]:
                    with running(name, root, args.workers):
                        storm(r, name, "storm only")
            # Issue #17's load: busybox's lockstep client against what a user who changed
            # nothing runs, and tftpd-hpa; first in a round taking turns, as above.
            for r in range(BUSYBOX_ROUNDS):
                for name in ("tftpd-hpa", "roost-defaults")[:: 1 if r % 2 else -1]:
                    with running(name, root, args.workers):
                        many = concurrent(BUSYBOX_CLIENTS, work, want_one, "busybox")
                    key = name.replace("-", "_")
                    keep(figures, f"{key}_busybox_s", many["seconds"], best=min)
                    busybox_storms.setdefault(name, []).append(many["seconds"])
                    failed = f"{key}_busybox_failures"
                    figures[failed] = figures.get(failed, 0) + many["failures"]
                    print(
                        f"busybox {r + 1}  {name:14} {BUSYBOX_CLIENTS} x 1 MiB"
                        f" {many['seconds']:6.2f} s, {int(many['failures'])} failed",
                        flush=True,
                    )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def ratio(a: float, b: float) -> float:
        return round(a / b, 2) if b else 0.0

    figures["single_vs_tftpd_hpa"] = ratio(figures["roost_ws1_MBps"], figures["tftpd_hpa_ws1_MBps"])
    figures["ws16_vs_ws1"] = ratio(figures["roost_ws16_MBps"], figures["roost_ws1_MBps"])
    figures["concurrent_vs_atftpd"] = ratio(
        figures["atftpd_concurrent_s"], figures["roost_concurrent_s"]
    )
    # The same comparison paired within each round (the two run close together, so a load
    # that comes and goes touches both), then the median: the storm's target figure, as it
    # is less at the mercy of one lucky or unlucky round than the best of each.
    figures["concurrent_vs_atftpd_median"] = statistics.median(
        ratio(a, r) for a, r in zip(storms["atftpd"], storms["roost"], strict=True)
    )
    figures["concurrent_server_cpu_vs_atftpd"] = ratio(
        figures["atftpd_concurrent_server_us_per_datagram"],
        figures["roost_concurrent_server_us_per_datagram"],
    )
    figures["busybox_vs_tftpd_hpa_median"] = statistics.median(
        ratio(h, r)
        for h, r in zip(busybox_storms["tftpd-hpa"], busybox_storms["roost-defaults"], strict=True)
    )
    print(f"single stream vs tftpd-hpa   {figures['single_vs_tftpd_hpa']:5.2f}x (target >= 1.0)")
    print(f"windowsize 16 vs lockstep    {figures['ws16_vs_ws1']:5.2f}x (target >= 4.0)")
    print(
        f"{clients} concurrent vs atftpd  {figures['concurrent_vs_atftpd_median']:5.2f}x"
        f" (median of {storm_rounds} rounds' atftpd / Roost; target >= 1.0,"
    )
    print(f"    {int(figures['roost_concurrent_failures'])} Roost failures; target 0)")
    print(
        f"  best against best            {figures['concurrent_vs_atftpd']:5.2f}x"
        " (atftpd's fastest round / Roost's)"
    )
    print(
        f"  server CPU per datagram      {figures['concurrent_server_cpu_vs_atftpd']:5.2f}x"
        " (atftpd's / Roost's: the storm's server side alone; no target)"
    )
    print(
        f"{BUSYBOX_CLIENTS} busybox vs tftpd-hpa   {figures['busybox_vs_tftpd_hpa_median']:5.2f}x"
        f" (median of {BUSYBOX_ROUNDS} rounds' tftpd-hpa / Roost with its defaults,"
        f" {int(figures['roost_defaults_workers'])} workers; target >= 1.0,"
        f" {int(figures['roost_defaults_busybox_failures'])} Roost failures)"
    )
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
