"""Discovery speed and accuracy: Roost against arp-scan and nmap, in the same run.

1. ARP sweep of a /24 that holds 50 hosts (network namespaces on one bridge): Roost's sweeper
   against ``arp-scan`` with its defaults.
2. TCP connect scan of all 65 535 ports of one host with 20 listeners: Roost's scanner
   against ``nmap -sT -T4 -p-``.

Both sides run from the same namespace on the same wire, alternating, several rounds; the
figures are medians. Roost is timed as the service runs it (the engine on its thread inside
the namespace); the peers as the command an operator would type. Recall and false positives
are checked against the lab's truth every round. The lab (prefix ``rdsb``) is removed at the
end. Last line: one JSON object with the figures.

    .venv/bin/python bench/scan.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import threading
import time
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from roost.discovery import arp, tcpscan
from roost.discovery.netns import run_in_thread
from roost.testing import netlab

PREFIX = "rdsb"
SUBNET = "10.232.0.0/24"
HOSTS = 50
LISTEN = [
    22, 80, 443, 2049, 3306, 5432, 6443, 8080, 8443, 9100,
    10250, 20000, 32768, 40000, 45000, 50000, 55000, 60000, 65000, 65535,
]  # fmt: skip


def _cpu() -> float:
    """CPU seconds used so far by this process and its finished children."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _score(found: set[Any], truth: set[Any]) -> tuple[float, int]:
    recall = len(found & truth) / len(truth) if truth else 1.0
    return recall, len(found - truth)


def _roost_arp(lab: netlab.Lab) -> tuple[float, set[tuple[str, str]]]:
    targets = list(IPv4Network(SUBNET).hosts())
    start = time.perf_counter()
    found = asyncio.run(
        run_in_thread(
            lab.hub,
            lambda: arp.sweep(
                netlab.BRIDGE, targets, rate=2000.0, attempts=2, timeout=0.5, stop=threading.Event()
            ),
        )
    )
    took = time.perf_counter() - start
    return took, {(str(ip), arp.mac_str(mac)) for ip, mac in found.found.items()}


def _arp_scan(lab: netlab.Lab) -> tuple[float, set[tuple[str, str]]]:
    start = time.perf_counter()
    out = lab.run(["arp-scan", "-I", netlab.BRIDGE, "-q", "-x", SUBNET])
    took = time.perf_counter() - start
    return took, {(line.split()[0], line.split()[1]) for line in out.splitlines() if line.strip()}


def _roost_tcp(lab: netlab.Lab, ip: IPv4Address) -> tuple[float, set[int]]:
    opened: set[int] = set()
    start = time.perf_counter()
    asyncio.run(
        run_in_thread(
            lab.hub,
            lambda: tcpscan.scan_tcp(
                ((str(ip), p) for p in range(1, 65536)),
                total=65535,
                stop=threading.Event(),
                on_result=lambda _ip, port, state: opened.add(port) if state == "open" else None,
            ),
        )
    )
    return time.perf_counter() - start, opened


def _nmap_tcp(lab: netlab.Lab, ip: IPv4Address) -> tuple[float, set[int]]:
    start = time.perf_counter()
    out = lab.run(["nmap", "-sT", "-T4", "-p-", "-n", "-Pn", "-oG", "-", str(ip)], timeout=600)
    took = time.perf_counter() - start
    opened: set[int] = set()
    for line in out.splitlines():
        if "Ports:" in line:
            for entry in line.split("Ports:")[1].split(","):
                fields = entry.strip().split("/")
                if len(fields) > 1 and fields[1] == "open":
                    opened.add(int(fields[0]))
    return took, opened


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 rounds instead of 7 (< 60 s)")
    args = ap.parse_args()
    reason = netlab.unavailable_reason()
    if reason:
        sys.exit(f"bench/scan.py: {reason}")
    rounds = 3 if args.quick else 7
    with netlab.lab(PREFIX, SUBNET, HOSTS) as lab:
        target = lab.hosts[0]
        proc = lab.python(
            lab.hub, "roost.testing.listeners", json.dumps({target.netns: {"tcp": LISTEN}})
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        arp_truth = {(str(h.ip), h.mac) for h in lab.hosts}
        tcp_truth = set(LISTEN)
        times: dict[str, list[float]] = {
            k: [] for k in ("roost_arp", "arp_scan", "roost_tcp", "nmap")
        }
        quality: dict[str, list[tuple[float, int]]] = {k: [] for k in times}
        cpu: dict[str, list[float]] = {k: [] for k in times}
        for r in range(rounds):
            # Alternate who goes first so neither side always gets the warmer caches.
            order = [("roost_arp", "arp_scan"), ("roost_tcp", "nmap")]
            for pair in order:
                for name in pair if r % 2 == 0 else reversed(pair):
                    cpu0 = _cpu()
                    if name == "roost_arp":
                        took, found = _roost_arp(lab)
                        truth: set[Any] = arp_truth
                    elif name == "arp_scan":
                        took, found = _arp_scan(lab)
                        truth = arp_truth
                    elif name == "roost_tcp":
                        took, found = _roost_tcp(lab, target.ip)  # type: ignore[assignment]
                        truth = tcp_truth
                    else:
                        took, found = _nmap_tcp(lab, target.ip)  # type: ignore[assignment]
                        truth = tcp_truth
                    cpu[name].append(_cpu() - cpu0)
                    times[name].append(took)
                    quality[name].append(_score(found, truth))
                    print(
                        f"round {r + 1}: {name:<10} {took:6.3f} s  recall "
                        f"{quality[name][-1][0]:.0%}  false positives {quality[name][-1][1]}",
                        flush=True,
                    )
    med = {k: statistics.median(v) for k, v in times.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpu.items()}

    def paired(a: str, b: str) -> float:
        """Median of the per-round ratios: both sides of a round saw the same machine load."""
        return round(statistics.median(x / y for x, y in zip(times[a], times[b], strict=True)), 3)

    figures = {
        "rounds": rounds,
        "arp_roost_s": round(med["roost_arp"], 3),
        "arp_arpscan_s": round(med["arp_scan"], 3),
        "arp_ratio": round(med["roost_arp"] / med["arp_scan"], 3),
        "arp_ratio_paired": paired("roost_arp", "arp_scan"),
        "arp_cpu_ratio": round(cpu_med["roost_arp"] / cpu_med["arp_scan"], 3),
        "arp_recall": min(q[0] for q in quality["roost_arp"]),
        "arp_false_positives": max(q[1] for q in quality["roost_arp"]),
        "arpscan_recall": min(q[0] for q in quality["arp_scan"]),
        "tcp_roost_s": round(med["roost_tcp"], 3),
        "tcp_nmap_s": round(med["nmap"], 3),
        "tcp_ratio": round(med["roost_tcp"] / med["nmap"], 3),
        "tcp_ratio_paired": paired("roost_tcp", "nmap"),
        "tcp_cpu_roost_s": round(cpu_med["roost_tcp"], 3),
        "tcp_cpu_nmap_s": round(cpu_med["nmap"], 3),
        "tcp_cpu_ratio": round(cpu_med["roost_tcp"] / cpu_med["nmap"], 3),
        "tcp_recall": min(q[0] for q in quality["roost_tcp"]),
        "tcp_false_positives": max(q[1] for q in quality["roost_tcp"]),
        "nmap_recall": min(q[0] for q in quality["nmap"]),
    }
    print(
        f"\nARP /24 (50 hosts): Roost {figures['arp_roost_s']} s, arp-scan "
        f"{figures['arp_arpscan_s']} s, ratio {figures['arp_ratio']} "
        f"(paired {figures['arp_ratio_paired']}, CPU {figures['arp_cpu_ratio']}; target <= 1.0)"
    )
    print(
        f"TCP 65535 ports (20 open): Roost {figures['tcp_roost_s']} s, nmap -sT -T4 "
        f"{figures['tcp_nmap_s']} s, ratio {figures['tcp_ratio']} "
        f"(paired {figures['tcp_ratio_paired']}, CPU {figures['tcp_cpu_ratio']}; target <= 1.0)"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
