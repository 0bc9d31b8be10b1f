"""Write each client->server DHCP payload of a pcap to <client>-<n>-<type>.bin (see capture.sh).

Plain pcap (Ethernet, IPv4, UDP) parsed by hand so no packet library is needed.
"""

import struct
import sys
from pathlib import Path

TYPES = {1: "discover", 3: "request", 4: "decline", 7: "release", 8: "inform"}


def payloads(pcap: bytes):
    pos = 24
    while pos + 16 <= len(pcap):
        incl = struct.unpack_from("<I", pcap, pos + 8)[0]
        frame = pcap[pos + 16 : pos + 16 + incl]
        pos += 16 + incl
        if frame[12:14] != b"\x08\x00":
            continue
        ihl = (frame[14] & 0x0F) * 4
        udp = frame[14 + ihl :]
        _sport, dport, length = struct.unpack_from("!HHH", udp)
        if dport == 67:
            yield udp[8:length]


def msg_type(p: bytes) -> int:
    i = 240
    while i < len(p) and p[i] != 255:
        if p[i] == 0:
            i += 1
            continue
        if p[i] == 53:
            return p[i + 2]
        i += 2 + p[i + 1]
    return 0


def main() -> None:
    out = Path(sys.argv[2])
    named = sys.argv[3] if len(sys.argv) > 3 else None
    for n, p in enumerate(payloads(Path(sys.argv[1]).read_bytes())):
        # udhcpc names itself in option 60 only when -V is given; dhclient sends hostname 12.
        client = named or ("udhcpc" if b"roost-udhcpc" in p else "dhclient")
        name = out / f"{client}-{n:02d}-{TYPES.get(msg_type(p), 'other')}.bin"
        name.write_bytes(p)
        print(name, len(p))


if __name__ == "__main__":
    main()
