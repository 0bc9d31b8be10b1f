#!/usr/bin/env python3
"""Regenerate src/roost/discovery/data/iana-services.tsv.gz from Wireshark's IANA table.

Source: Debian's ``libwireshark-data`` ships ``/usr/share/wireshark/services``, which
Wireshark's ``tools/make-services.py`` generates from IANA's "Service Name and Transport
Protocol Port Number Registry" (service-names-port-numbers.csv): one line per port and
name with its protocols and IANA's description. This script keeps TCP and UDP entries and
writes ``port<TAB>protocol<TAB>name<TAB>description`` sorted by port, gzip-compressed, so
Roost looks up services offline with no download at run time.

Usage (as root, once, when refreshing the table):
    apt-get install --no-install-recommends libwireshark-data
    scripts/gen-iana-services.py [/usr/share/wireshark/services]
"""

import gzip
import re
import sys
from pathlib import Path

SRC = Path(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/wireshark/services")
DST = Path(__file__).resolve().parent.parent / "src/roost/discovery/data/iana-services.tsv.gz"
LINE = re.compile(r"^(\S+)\s+(\d+)/(\S+)\s*(?:#\s*(.*))?$")

rows: dict[tuple[int, str], tuple[str, str]] = {}
for raw in SRC.read_text(encoding="utf-8").splitlines():
    m = LINE.match(raw.strip())
    if not m:
        continue
    name, port, protos, desc = m.group(1), int(m.group(2)), m.group(3), (m.group(4) or "")
    for proto in protos.split("/"):
        if proto in ("tcp", "udp"):
            rows.setdefault((port, proto), (name, desc.strip().replace("\t", " ")))
header = "# IANA service names (tcp, udp), from Wireshark's services file (Debian libwireshark-data)\n"
body = "".join(f"{p}\t{proto}\t{n}\t{d}\n" for (p, proto), (n, d) in sorted(rows.items()))
DST.parent.mkdir(parents=True, exist_ok=True)
with gzip.GzipFile(DST, "wb", mtime=0) as f:
    f.write((header + body).encode())
print(f"{DST}: {len(rows)} entries")
