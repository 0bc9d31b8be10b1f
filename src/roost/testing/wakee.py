"""A machine that sleeps until it gets its magic packet: the Wake-on-LAN test's target.

``python -m roost.testing.wakee --mac MAC --addr 10.0.0.9/24 [--dev eth0]``, run inside a
namespace whose interface is up but has no address. It watches every frame on the interface
(UDP broadcast or EtherType 0x0842 alike) for a magic packet naming its MAC, then adds its
address (from then on the kernel answers ARP and ping, as a booted machine would), prints
``woken`` and exits.
"""

from __future__ import annotations

import argparse
import socket
import subprocess

from roost.discovery.wol import find_magic

ETH_P_ALL = 0x0003


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mac", required=True)
    ap.add_argument("--addr", required=True)
    ap.add_argument("--dev", default="eth0")
    args = ap.parse_args()
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((args.dev, ETH_P_ALL))
    print("listening", flush=True)
    while True:
        found = find_magic(sock.recv(65535))
        if found is not None and found[0] == args.mac.lower():
            break
    subprocess.run(["ip", "addr", "add", args.addr, "dev", args.dev], check=True)
    print("woken", flush=True)


if __name__ == "__main__":
    main()
