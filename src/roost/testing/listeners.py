"""Test services for the discovery lab: TCP and UDP listeners in many namespaces, one process.

``python -m roost.testing.listeners SPEC`` where SPEC is JSON ``{"<netns>": {"tcp": [ports],
"udp": [ports]}}``. The process enters each namespace in turn to open its sockets (a socket
stays in the namespace it was created in), prints ``ready`` and then serves them all from one
selector: TCP connections are accepted and closed, every UDP datagram is answered. One
process for all hosts keeps the lab cheap to start.
"""

from __future__ import annotations

import json
import selectors
import socket
import sys

from roost.discovery.netns import enter_netns


def main() -> None:
    spec: dict[str, dict[str, list[int]]] = json.loads(sys.argv[1])
    sel = selectors.DefaultSelector()
    for ns, ports in spec.items():
        enter_netns(ns)
        for port in ports.get("tcp", []):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", port))
            s.listen(512)
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, "tcp")
        for port in ports.get("udp", []):
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.bind(("0.0.0.0", port))
            u.setblocking(False)
            sel.register(u, selectors.EVENT_READ, "udp")
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            try:
                if key.data == "tcp":
                    conn, _ = sock.accept()
                    conn.close()
                else:
                    _, peer = sock.recvfrom(4096)
                    sock.sendto(b"roost-lab\n", peer)
            except OSError:
                continue


if __name__ == "__main__":
    main()
