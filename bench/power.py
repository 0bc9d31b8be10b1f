"""IPMI power control: Roost's ipmi driver (pyghmi, kept RMCP+ session) against ipmitool.

Both talk to the same ipmi_sim BMC on a free loopback UDP port, whose chassis control starts
and kills a real process. Measured per tool: status reads (median latency and reads/s) and
verified power changes (off→on→off: the command, then status until the BMC reports it).
ipmitool is run the way scripts use it, one process and one RMCP+ login per call (``-C 3``,
ipmi_sim does not answer cipher-suite discovery). Prints ratios and ends with one JSON line.
"""

from __future__ import annotations

import os
import sys

# Run as ``python bench/<name>.py``, this folder comes first on sys.path, where bench/http.py
# (the HTTP benchmark) would stand in for the standard library's ``http`` package.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from roost.power import PowerState, RetryPolicy
from roost.power.drivers.ipmi import IPMIDriver
from roost.testing.ipmisim import IPMISim, ipmi_sim

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "ipmi"


def ipmitool(sim: IPMISim, *args: str) -> str:
    done = sim.ipmitool(*args)
    done.check_returncode()
    return done.stdout


def ipmitool_power(sim: IPMISim, state: str) -> None:
    ipmitool(sim, "chassis", "power", state)
    while f"is {state}" not in ipmitool(sim, "chassis", "power", "status"):
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
    with (
        tempfile.TemporaryDirectory(prefix="rpw-bench-") as tmp,
        ipmi_sim(Path(tmp), DATA) as sim,
    ):
        d = IPMIDriver(
            {"host": "127.0.0.1", "port": sim.port, "username": "admin", "password": "secret"},
            retry=RetryPolicy(verify_timeout=30, poll_interval=0.05),
        )
        await d.power_status()  # the one RMCP+ login, as a running Roost has it
        roost_status = await atimed(d.power_status, n_status)
        tool_status = timed(lambda: ipmitool(sim, "chassis", "power", "status"), n_status)

        async def roost_pair() -> None:
            assert await d.power_on() == PowerState.ON
            assert await d.power_off() == PowerState.OFF

        def tool_pair() -> None:
            ipmitool_power(sim, "on")
            ipmitool_power(sim, "off")

        roost_power = await atimed(roost_pair, n_power)
        tool_power = timed(tool_pair, n_power)
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
