"""HTTP boot-file throughput: Roost's boot server against nginx, in the same run.

Both serve the same 256 MiB file (page cache warm) on loopback ports; curl downloads it to
/dev/null, first one client at a time (MB/s of single streams, median of the rounds), then
100 clients at once (aggregate MB/s = bytes of all completed downloads / wall time until
the last ends). nginx-light runs from its own temporary prefix and configuration with
``sendfile on`` and one worker per core, as a boot server would be set up. Roost runs as its
own process on uvloop, as ``roost serve`` does. The last line printed is a JSON object with
the figures and the ratios Roost/nginx (target ≥ 0.8).

    python bench/http.py [--quick] [--size-mib 256] [--clients 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

NAME = "bench.img"
MANY = "many.img"
ROOST_PORT = 18442
NGINX_PORT = 18443


def _ticks(pid: int) -> int:
    """CPU ticks of a process and its children (nginx workers)."""
    total = 0
    kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    for p in [str(pid), *kids.split()]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    import socket

    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"server on port {port} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port}")


def start_roost(work: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-P", __file__, "--serve", str(work / "roost"), str(work)],
        stdin=subprocess.PIPE,
    )
    _wait_port(ROOST_PORT, proc)
    return proc


def start_nginx(work: Path) -> subprocess.Popen[bytes]:
    prefix = work / "nginx"
    root = prefix / "www"
    root.mkdir(parents=True, mode=0o755)
    prefix.chmod(0o755)
    for name in (NAME, MANY):
        os.link(work / name, root / name)
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""worker_processes {os.cpu_count() or 1};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    sendfile on; tcp_nopush on; access_log off;
    client_body_temp_path {prefix}/body; proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fcgi; uwsgi_temp_path {prefix}/uwsgi; scgi_temp_path {prefix}/scgi;
    types {{ application/octet-stream img; }}
    server {{ listen 127.0.0.1:{NGINX_PORT}; root {root}; location /files/ {{ alias {root}/; }} }}
}}
"""
    )
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = subprocess.Popen([nginx, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"])
    _wait_port(NGINX_PORT, proc)
    return proc


def curl(url: str, clients: int) -> tuple[float, int, int]:
    """Run ``clients`` curls at once; return (wall seconds, completed, bytes)."""
    fmt = "%{http_code} %{size_download}\\n"
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            ["curl", "-sS", "-o", "/dev/null", "-w", fmt, url],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(clients)
    ]
    outs = [p.communicate()[0].split() for p in procs]
    wall = time.perf_counter() - t0
    done = [o for o in outs if len(o) == 2 and o[0] == "200"]
    return wall, len(done), sum(int(o[1]) for o in done)


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    base: str
    singles: list[float] = field(default_factory=list)
    concurrent: list[float] = field(default_factory=list)
    complete: list[int] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def single(server: Server, name: str, size: int) -> None:
    wall, ok, got = curl(f"{server.base}/files/{name}", 1)
    if ok != 1 or got != size:
        raise SystemExit(f"{server.name}: single download incomplete ({got} of {size} bytes)")
    server.singles.append(size / wall / 1e6)


def concurrent(server: Server, name: str, clients: int) -> None:
    hz = os.sysconf("SC_CLK_TCK")
    c0, t0 = _ticks(server.proc.pid), time.perf_counter()
    wall, ok, got = curl(f"{server.base}/files/{name}", clients)
    cpu = (_ticks(server.proc.pid) - c0) / hz / (time.perf_counter() - t0) * 100
    server.concurrent.append(got / wall / 1e6)
    server.complete.append(ok)
    server.cpu.append(cpu)
    print(
        f"{server.name:<6} {clients} concurrent: {ok}/{clients} complete in {wall:5.2f} s, "
        f"{got / wall / 1e6:8.1f} MB/s, server CPU {cpu:4.0f}%",
        flush=True,
    )


def serve(data_dir: str, blob: str) -> None:
    """Child process: a Roost runtime with only the boot service, serving ``blob``."""
    import uvloop

    from roost.boot.service import BootService
    from roost.service import Runtime
    from roost.settings import load_settings

    async def main() -> None:
        settings = load_settings(
            None,
            {
                "data_dir": data_dir,
                "boot.enabled": True,
                "boot.host": "127.0.0.1",
                "boot.http_port": ROOST_PORT,
                "boot.import_ipxe": False,
            },
        )
        runtime = Runtime.create(settings)
        service = BootService(runtime)
        await runtime.start(load_services=False)
        await service.store.open()
        for name in (NAME, MANY):
            await service.store.put_path(name, Path(blob) / name)
        runtime.services.append(service)
        await service.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_reader(sys.stdin.fileno(), stop.set)  # parent gone: stdin closes
        await stop.wait()
        await runtime.stop()

    uvloop.run(main())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one concurrent round of 64 MiB (< 60 s)")
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--serve", nargs=2, metavar=("DATA_DIR", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(*args.serve)
        return
    for tool in ("curl", "nginx"):
        if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists()):
            raise SystemExit(
                f"{tool} is missing: run scripts/bootstrap (Debian: curl, nginx-light)"
            )
    rounds = 1 if args.quick else args.rounds
    single_rounds = 5 if args.quick else 3 * args.rounds
    # --quick: 100 x 256 MiB is 25 GiB per server, more than a minute on two cores; the
    # concurrent part then uses a 64 MiB file: same clients, same shape, a quarter the bytes.
    many_mib = min(args.size_mib, 64) if args.quick else args.size_mib
    with tempfile.TemporaryDirectory(prefix="rhb-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # nginx workers drop root and must read the files
        files = {NAME: args.size_mib, MANY: many_mib}
        for name, mib in files.items():
            with (work / name).open("wb") as f:
                for _ in range(mib):
                    f.write(os.urandom(2**20))
            (work / name).chmod(0o644)
        servers = [
            Server("roost", start_roost(work), f"http://127.0.0.1:{ROOST_PORT}"),
            Server("nginx", start_nginx(work), f"http://127.0.0.1:{NGINX_PORT}"),
        ]
        try:
            # alternate the servers so that load from elsewhere on the machine hits both alike
            for i in range(single_rounds):
                for server in servers[:: 1 if i % 2 == 0 else -1]:
                    single(server, NAME, args.size_mib * 2**20)
            for server in servers:
                print(
                    f"{server.name:<6} single stream, {args.size_mib} MiB: median "
                    f"{statistics.median(server.singles):8.1f} MB/s of {len(server.singles)}",
                    flush=True,
                )
            for i in range(rounds):
                for server in servers[:: 1 if i % 2 == 0 else -1]:
                    concurrent(server, MANY, args.clients)
        finally:
            for server in servers:
                server.proc.terminate()
                server.proc.wait(10)
    figures: dict[str, float | int] = {
        "size_mib": args.size_mib,
        "concurrent_size_mib": many_mib,
        "clients": args.clients,
        "rounds": rounds,
    }
    for server in servers:
        figures[f"{server.name}_single_mbs"] = round(statistics.median(server.singles), 1)
        figures[f"{server.name}_concurrent_mbs"] = round(statistics.median(server.concurrent), 1)
        figures[f"{server.name}_complete"] = min(server.complete)
        figures[f"{server.name}_server_cpu_pct"] = round(statistics.median(server.cpu))
    for key in ("single", "concurrent"):
        ratio = figures[f"roost_{key}_mbs"] / figures[f"nginx_{key}_mbs"]
        figures[f"ratio_{key}"] = round(ratio, 2)
    print(
        f"ratio roost/nginx: single {figures['ratio_single']}, "
        f"{args.clients} concurrent {figures['ratio_concurrent']} (target >= 0.8)"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
