"""Boot storm: N clients in network namespaces each do DHCP → TFTP (a 1 MiB iPXE stand-in) →
HTTP (kernel + initrd), all at once; time until every client is done, Roost against the
dnsmasq (DHCP + TFTP) + nginx (HTTP) stack, in the same run.

Clients are busybox udhcpc (announcing itself as a BIOS PXE client: option 60 PXEClient,
option 93 arch 0), busybox tftp (blksize 1468) and curl. Everything runs in namespaces this
script creates (prefix ``rbs``) and removes. Last line: one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

PREFIX = "rbs"
SERVER_NS = f"{PREFIX}-srv"
BRIDGE = f"{PREFIX}br0"
SERVER_IP = "10.98.0.1"
HTTP_PORT = 8442
BOOT_FILE = "undionly.kpxe"

CLIENT_SCRIPT = r"""#!/bin/sh
# One boot: DHCP, TFTP the boot file from the server named in the lease, HTTP kernel + initrd.
set -e
n=$1; dir=$2
t0=$(date +%s.%N)
udhcpc -i eth0 -f -q -n -t 20 -T 1 -V "PXEClient:Arch:00000:UNDI:002001" -x 0x5d:0000 \
    -O 0x42 -O 0x43 -s "$dir/udhcpc.sh" >/dev/null 2>&1 || { echo "$n dhcp-failed"; exit 1; }
. "$dir/lease.$n"
t1=$(date +%s.%N)
busybox tftp -g -b 1468 -r "$boot_file" -l /dev/null "$server" \
    || { echo "$n tftp-failed"; exit 1; }
t2=$(date +%s.%N)
curl -sf -o /dev/null "http://$server:$HTTP_PORT/files/vmlinuz" \
    && curl -sf -o /dev/null "http://$server:$HTTP_PORT/files/initrd.img" \
    || { echo "$n http-failed"; exit 1; }
t3=$(date +%s.%N)
echo "$n ok $t0 $t1 $t2 $t3"
"""

UDHCPC_SCRIPT = r"""#!/bin/sh
# udhcpc hook: configure the address and remember where to boot from.
case "$1" in
bound|renew)
    ip addr add "$ip/$mask" dev "$interface"
    server=${siaddr:-$serverid}
    file=${boot_file:-$bootfile}
    echo "server=$server; boot_file=$file" > "$(dirname "$0")/lease.$N"
    ;;
esac
"""


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def in_ns(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


@contextlib.contextmanager
def topology(clients: int) -> Iterator[list[str]]:
    """A server namespace with a bridge and ``clients`` namespaces wired to it."""
    names = [f"{PREFIX}-c{i}" for i in range(clients)]
    teardown(clients)
    batch = [f"netns add {SERVER_NS}"] + [f"netns add {n}" for n in names]
    subprocess.run(["ip", "-batch", "-"], input="\n".join(batch) + "\n", text=True, check=True)
    srv = [
        f"link add {BRIDGE} type bridge",
        f"link set {BRIDGE} up",
        f"addr add {SERVER_IP}/16 dev {BRIDGE}",
        "link set lo up",
    ]
    for i, n in enumerate(names):
        srv += [
            f"link add {PREFIX}v{i} type veth peer name eth0 netns {n}",
            f"link set {PREFIX}v{i} master {BRIDGE}",
            f"link set {PREFIX}v{i} up",
        ]
    subprocess.run(
        in_ns(SERVER_NS, "ip", "-batch", "-"), input="\n".join(srv) + "\n", text=True, check=True
    )
    for n in names:
        subprocess.run(
            in_ns(n, "ip", "-batch", "-"),
            input="link set lo up\nlink set eth0 up\n",
            text=True,
            check=True,
        )
    try:
        yield names
    finally:
        teardown(clients)


def teardown(clients: int) -> None:
    for ns in [SERVER_NS] + [f"{PREFIX}-c{i}" for i in range(clients)]:
        pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        sh("ip", "netns", "del", ns, check=False)


def make_files(root: Path, kernel_mib: int, initrd_mib: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, mib in ((BOOT_FILE, 1), ("vmlinuz", kernel_mib), ("initrd.img", initrd_mib)):
        with (root / name).open("wb") as f:
            f.write(os.urandom(mib << 20))


def storm(names: list[str], work: Path) -> dict[str, float | int]:
    """Start every client at once; return the time until all are done and per-phase medians."""
    (work / "client.sh").write_text(CLIENT_SCRIPT)
    (work / "udhcpc.sh").write_text(UDHCPC_SCRIPT)
    os.chmod(work / "udhcpc.sh", 0o755)
    for f in work.glob("lease.*"):
        f.unlink()
    start = time.monotonic()
    procs = []
    for i, n in enumerate(names):
        env = {**os.environ, "N": str(i), "HTTP_PORT": str(HTTP_PORT)}
        procs.append(
            subprocess.Popen(
                in_ns(n, "sh", str(work / "client.sh"), str(i), str(work)),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        )
    outputs = [p.communicate(timeout=600)[0].strip() for p in procs]
    total = time.monotonic() - start
    ok = [o.split() for o in outputs if " ok " in f" {o} "]
    if os.environ.get("BOOTSTORM_DEBUG"):
        print("\n".join(o for o in outputs if " ok " not in f" {o} "), file=sys.stderr)
    dhcp = [float(r[3]) - float(r[2]) for r in ok]
    tftp = [float(r[4]) - float(r[3]) for r in ok]
    http = [float(r[5]) - float(r[4]) for r in ok]
    for n in names:
        sh(*in_ns(n, "ip", "addr", "flush", "dev", "eth0"), check=False)
    return {
        "clients": len(names),
        "ok": len(ok),
        "failed": len(names) - len(ok),
        "all_done_s": round(total, 3),
        "dhcp_median_s": round(statistics.median(dhcp), 3) if dhcp else -1,
        "tftp_median_s": round(statistics.median(tftp), 3) if tftp else -1,
        "http_median_s": round(statistics.median(http), 3) if http else -1,
    }


@contextlib.contextmanager
def peer_stack(files: Path, work: Path) -> Iterator[None]:
    """dnsmasq (DHCP + TFTP) and nginx (HTTP) in the server namespace."""
    nginx_conf = work / "nginx.conf"
    nginx_conf.write_text(
        f"worker_processes 2; pid {work}/nginx.pid; error_log /dev/null;\n"
        "events { worker_connections 4096; }\n"
        f"http {{ access_log off; sendfile on; tcp_nopush on;\n"
        f"  client_body_temp_path {work}/nb; proxy_temp_path {work}/np;\n"
        f"  fastcgi_temp_path {work}/nf; uwsgi_temp_path {work}/nu; scgi_temp_path {work}/ns;\n"
        f"  server {{ listen {SERVER_IP}:{HTTP_PORT};\n"
        f"    location /files/ {{ alias {files}/; }} }} }}\n"
    )
    dnsmasq = subprocess.Popen(
        in_ns(
            SERVER_NS,
            "dnsmasq",
            "--no-daemon",
            "--port=0",
            f"--interface={BRIDGE}",
            "--bind-interfaces",
            "--dhcp-range=10.98.1.1,10.98.200.254,255.255.0.0,1h",
            f"--dhcp-boot={BOOT_FILE},,{SERVER_IP}",
            "--enable-tftp",
            f"--tftp-root={files}",
            f"--dhcp-leasefile={work}/dnsmasq.leases",
            "--dhcp-authoritative",
            "--log-facility=/dev/null",
            "--user=root",
            "--tftp-max=1000",
            "--no-ping",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    nginx = subprocess.Popen(
        in_ns(SERVER_NS, "nginx", "-c", str(nginx_conf), "-g", "daemon off;"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    try:
        yield
    finally:
        for p in (dnsmasq, nginx):
            p.terminate()
            p.wait(10)


@contextlib.contextmanager
def roost_stack(files: Path, work: Path) -> Iterator[None]:
    """``roost serve`` alone in the server namespace: DHCP on the bridge, TFTP, HTTP boot."""
    data = work / "roost"
    data.mkdir()
    env = {
        **os.environ,
        "ROOST_DATA_DIR": str(data),
        "ROOST_API__PORT": "0",
        "ROOST_DHCP__INTERFACES": BRIDGE,
        "ROOST_TFTP__ENABLED": "true",
        "ROOST_BOOT__ENABLED": "true",
        "ROOST_BOOT__HTTP_PORT": str(HTTP_PORT),
        "ROOST_BOOT__IMPORT_IPXE": "false",
        "ROOST_LOG__LEVEL": "warning",
    }
    roost = str(Path(sys.executable).parent / "roost")
    log = (work / "roost.log").open("wb")
    server = subprocess.Popen(
        in_ns(SERVER_NS, roost, "serve"), env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while not (data / "client.toml").exists():
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"roost serve did not start; see {work / 'roost.log'}")
            time.sleep(0.1)

        def cli(*args: str) -> None:
            subprocess.run(
                in_ns(SERVER_NS, roost, *args), env=env, check=True, stdout=subprocess.DEVNULL
            )

        cli(
            "dhcp",
            "subnet",
            "add",
            "storm",
            "10.98.0.0/16",
            "--pool",
            "10.98.1.1-10.98.200.254",
            "--server-address",
            SERVER_IP,
            "--lease-time",
            "3600",
        )
        for name in (BOOT_FILE, "vmlinuz", "initrd.img"):
            cli("boot", "file", "put", str(files / name), name)
        yield
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="20 clients, small files (< 60 s)")
    ap.add_argument("--clients", type=int, default=100)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bootstorm: needs root for network namespaces")
    clients = 20 if args.quick else args.clients
    kernel, initrd = (8, 16) if args.quick else (8, 48)
    work = Path(tempfile.mkdtemp(prefix="roost-bootstorm-"))
    os.chmod(work, 0o755)
    files = work / "files"
    make_files(files, kernel, initrd)
    results: dict[str, dict[str, float | int]] = {}
    try:
        with topology(clients) as names:
            with roost_stack(files, work):
                results["roost"] = storm(names, work)
            with peer_stack(files, work):
                results["dnsmasq+nginx"] = storm(names, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for name, r in results.items():
        print(
            f"{name:>15}: {r['ok']}/{r['clients']} done in {r['all_done_s']:.2f} s "
            f"(median dhcp {r['dhcp_median_s']} s, tftp {r['tftp_median_s']} s, "
            f"http {r['http_median_s']} s)"
        )
    ratio = results["dnsmasq+nginx"]["all_done_s"] / max(results["roost"]["all_done_s"], 1e-9)
    print(f"all done, peer time / Roost time: {ratio:.2f}x (above 1: Roost is faster)")
    print(
        json.dumps({"bench": "bootstorm", "clients": clients, "ratio": round(ratio, 3), **results})
    )


if __name__ == "__main__":
    main()
