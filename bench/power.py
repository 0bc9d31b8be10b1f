"""IPMI power control: Roost's ipmi driver (pyghmi, kept RMCP+ session) against ipmitool.

Both talk to the same ipmi_sim BMC on a free loopback UDP port, whose chassis control starts
and kills a real process. Measured per tool: status reads (median latency and reads/s) and
verified power changes (off→on→off: the command, then status until the BMC reports it).
ipmitool is run the way scripts use it, one process and one RMCP+ login per call (``-C 3``,
ipmi_sim does not answer cipher-suite discovery). Prints ratios and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from roost.power import PowerState, RetryPolicy
from roost.power.drivers.ipmi import IPMIDriver

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "ipmi"


def start_sim(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    conf = (DATA / "lan.conf.in").read_text()
    conf = conf.replace("@PORT@", str(port)).replace("@CHASSIS@", str(DATA / "chassis.sh"))
    (work / "lan.conf").write_text(conf)
    (work / "state").mkdir()
    env = {**os.environ, "RPW_NODE_DIR": str(work / "node")}
    proc = subprocess.Popen(
        [
            "ipmi_sim",
            "-n",
            "-c",
            str(work / "lan.conf"),
            "-f",
            str(DATA / "bmc.emu"),
            "-s",
            str(work / "state"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    for _ in range(50):
        try:
            ipmitool(port, "mc", "info")
            break
        except subprocess.CalledProcessError:
            time.sleep(0.1)
    return proc, port


def ipmitool(port: int, *args: str) -> str:
    cmd = [
        "ipmitool",
        "-I",
        "lanplus",
        "-C",
        "3",
        "-H",
        "127.0.0.1",
        "-p",
        str(port),
        "-U",
        "admin",
        "-P",
        "secret",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout


def ipmitool_power(port: int, state: str) -> None:
    ipmitool(port, "chassis", "power", state)
    while f"is {state}" not in ipmitool(port, "chassis", "power", "status"):
        time.sleep(0.05)


def timed(fn: object, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append(time.perf_counter() - t)
    return out


async def atimed(fn: object, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await fn()  # type: ignore[operator]
        out.append(time.perf_counter() - t)
    return out


async def run(quick: bool) -> dict[str, float]:
    n_status, n_power = (20, 3) if quick else (200, 15)
    with tempfile.TemporaryDirectory(prefix="rpw-bench-") as tmp:
        proc, port = start_sim(Path(tmp))
        try:
            d = IPMIDriver(
                {"host": "127.0.0.1", "port": port, "username": "admin", "password": "secret"},
                retry=RetryPolicy(verify_timeout=30, poll_interval=0.05),
            )
            await d.power_status()  # the one RMCP+ login, as a running Roost has it
            roost_status = await atimed(d.power_status, n_status)
            tool_status = timed(lambda: ipmitool(port, "chassis", "power", "status"), n_status)

            async def roost_pair() -> None:
                assert await d.power_on() == PowerState.ON
                assert await d.power_off() == PowerState.OFF

            def tool_pair() -> None:
                ipmitool_power(port, "on")
                ipmitool_power(port, "off")

            roost_power = await atimed(roost_pair, n_power)
            tool_power = timed(tool_pair, n_power)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=5)
            pid_file = Path(tmp) / "node" / "node.pid"
            if pid_file.exists():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid_file.read_text()), signal.SIGTERM)
    med = statistics.median
    return {
        "status_ms_roost": round(med(roost_status) * 1e3, 2),
        "status_ms_ipmitool": round(med(tool_status) * 1e3, 2),
        "status_speedup": round(med(tool_status) / med(roost_status), 1),
        "on_off_ms_roost": round(med(roost_power) * 1e3, 1),
        "on_off_ms_ipmitool": round(med(tool_power) * 1e3, 1),
        "on_off_speedup": round(med(tool_power) / med(roost_power), 2),
        "status_reads": n_status,
        "on_off_pairs": n_power,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (< 60 s)")
    args = parser.parse_args()
    if not (shutil.which("ipmi_sim") and shutil.which("ipmitool")):
        sys.exit("bench/power.py needs ipmi_sim and ipmitool (scripts/bootstrap installs them)")
    r = asyncio.run(run(args.quick))
    print(
        f"status read: roost {r['status_ms_roost']} ms, ipmitool {r['status_ms_ipmitool']} ms "
        f"(roost {r['status_speedup']}x faster)"
    )
    print(
        f"verified on+off: roost {r['on_off_ms_roost']} ms, ipmitool "
        f"{r['on_off_ms_ipmitool']} ms (roost {r['on_off_speedup']}x)"
    )
    print(json.dumps(r))


if __name__ == "__main__":
    main()
