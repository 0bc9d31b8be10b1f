"""IANA service names for ports, offline, and the port lists scans use.

The table is package data (``data/iana-services.tsv.gz``, ~120 kB): every TCP and UDP entry
of IANA's Service Name and Transport Protocol Port Number Registry with its description,
derived from Wireshark's generated copy of that registry by ``scripts/gen-iana-services.py``
(see docs/dependencies.md). Debian's ``/etc/services`` was not enough: it has names but no
descriptions and only a few hundred ports. Loaded once, lazily; nothing is downloaded.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class ServiceName:
    port: int
    protocol: str
    name: str
    description: str


@cache
def _table() -> dict[tuple[int, str], ServiceName]:
    raw = resources.files("roost.discovery").joinpath("data/iana-services.tsv.gz").read_bytes()
    table: dict[tuple[int, str], ServiceName] = {}
    for line in gzip.decompress(raw).decode().splitlines():
        if line.startswith("#"):
            continue
        port, proto, name, desc = line.split("\t", 3)
        table[(int(port), proto)] = ServiceName(int(port), proto, name, desc)
    return table


def lookup(port: int, protocol: str = "tcp") -> ServiceName | None:
    """The IANA service registered for ``port``/``protocol``, if any."""
    return _table().get((port, protocol.lower()))


# Ports most often found open on LAN machines, most common first: a curated list (port
# numbers and common use; the order follows common practice, e.g. SSH, HTTP(S), SMB, RDP,
# BMC and management ports of bare-metal fleets). ``top_ports(n)`` continues with the
# remaining well-known ports in numeric order when ``n`` exceeds it.
TOP_TCP: tuple[int, ...] = (
    22,
    80,
    443,
    445,
    139,
    3389,
    8080,
    623,
    5900,
    21,
    23,
    25,
    53,
    110,
    111,
    135,
    143,
    993,
    995,
    3306,
    5432,
    6379,
    8443,
    8000,
    8888,
    9090,
    9100,
    2049,
    5985,
    5986,
    6443,
    2379,
    2380,
    10250,
    179,
    389,
    636,
    88,
    464,
    873,
    1433,
    1521,
    27017,
    11211,
    5000,
    5001,
    7000,
    8081,
    8008,
    9000,
    9200,
    9300,
    15672,
    5672,
    1883,
    8883,
    3000,
    4243,
    2375,
    2376,
    5601,
    8200,
    8500,
    9418,
    3260,
    548,
    631,
    515,
    161,
    162,
    69,
    514,
    1723,
    1194,
    51820,
    4789,
    6081,
    8472,
    10050,
    10051,
    5353,
    1900,
    7070,
    554,
    1935,
    8086,
    8125,
    9093,
    9094,
    2181,
    9092,
    6000,
    6001,
    1080,
    3128,
    8118,
    9050,
)
TOP_UDP: tuple[int, ...] = (
    53,
    67,
    68,
    69,
    123,
    137,
    138,
    161,
    162,
    500,
    514,
    520,
    623,
    1194,
    1900,
    4500,
    4789,
    5353,
    5355,
    6081,
    8472,
    11211,
    51820,
    111,
    2049,
    7,
    9,
    19,
    1812,
    1813,
)


def top_ports(n: int, protocol: str = "tcp") -> list[int]:
    """The ``n`` most common ports for ``protocol`` (see :data:`TOP_TCP`)."""
    top = TOP_TCP if protocol == "tcp" else TOP_UDP
    ports = list(dict.fromkeys(top))[:n]
    seen = set(ports)
    port = 1
    while len(ports) < n and port <= 65535:
        if port not in seen:
            ports.append(port)
        port += 1
    return ports
