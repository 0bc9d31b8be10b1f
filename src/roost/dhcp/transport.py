"""UDP sockets for the DHCP server: one per served interface and port, and the few ioctls.

Each socket is bound to 0.0.0.0:<port> and pinned to its interface with SO_BINDTODEVICE, so a
request that arrives elsewhere is never seen and a broadcast reply leaves only through the
interface the request came in on. Replies to a client that has no address yet and did not ask
for a broadcast go unicast to yiaddr (RFC 2131 §4.1); the kernel cannot resolve that address
by ARP, so we add the ARP entry ourselves (SIOCSARP, as dnsmasq does) before sending.
"""

from __future__ import annotations

import fcntl
import socket
import struct
from ipaddress import IPv4Address

from roost import privileges

SIOCGIFADDR = 0x8915
SIOCSARP = 0x8955
ATF_COM = 0x02
ARPHRD_ETHER = 1


def interface_address(ifname: str) -> IPv4Address:
    """The primary IPv4 address of an interface; raises OSError when it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16s16x", ifname.encode()[:15])
        res = fcntl.ioctl(s.fileno(), SIOCGIFADDR, req)
    return IPv4Address(res[20:24])


def open_socket(ifname: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        # a deep receive queue absorbs bursts while a batch is being handled
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        privileges.bind(sock, ("0.0.0.0", port), "dhcp.interfaces")
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def add_arp_entry(sock: socket.socket, ifname: str, ip: str, hwaddr: bytes) -> None:
    """Tell the kernel ``ip`` is at ``hwaddr`` on ``ifname`` (struct arpreq, SIOCSARP)."""
    # sockaddr families are in host byte order, ports and addresses in network order
    pa = struct.pack("=H", socket.AF_INET) + bytes(2) + socket.inet_aton(ip) + bytes(8)
    ha = struct.pack("=H14s", ARPHRD_ETHER, hwaddr[:14])
    req = pa + ha + struct.pack("i", ATF_COM) + bytes(16) + ifname.encode()[:15].ljust(16, b"\0")
    fcntl.ioctl(sock.fileno(), SIOCSARP, req)
