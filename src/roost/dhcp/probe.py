"""Ping an address before offering it (RFC 2131 §4.4.1 "SHOULD probe"), without blocking.

One raw ICMP socket for the whole server; each probe sends an echo request with a fresh
sequence number and waits, as a future, for the matching reply or its timeout. An answer
means some host already uses the address: the server quarantines it and picks another.
``echo_request`` and ``parse_echo_reply`` are pure and unit-tested.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct

from roost import privileges

ICMP_ECHO_REPLY = 0
ICMP_ECHO_REQUEST = 8


def checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return int(~total & 0xFFFF)


def echo_request(ident: int, seq: int, payload: bytes = b"roost-dhcp-probe") -> bytes:
    head = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, ident, seq)
    return (
        struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, checksum(head + payload), ident, seq) + payload
    )


def parse_echo_reply(ip_packet: bytes) -> tuple[str, int, int] | None:
    """(source address, identifier, sequence) of an IPv4 ICMP echo reply, else None."""
    if len(ip_packet) < 20 or ip_packet[0] >> 4 != 4:
        return None
    ihl = (ip_packet[0] & 0x0F) * 4
    icmp = ip_packet[ihl:]
    if len(icmp) < 8 or icmp[0] != ICMP_ECHO_REPLY:
        return None
    ident, seq = struct.unpack_from("!HH", icmp, 4)
    return socket.inet_ntoa(ip_packet[12:16]), ident, seq


class Pinger:
    def __init__(self) -> None:
        self.ident = os.getpid() & 0xFFFF
        self._seq = 0
        self._sock: socket.socket | None = None
        self._waiting: dict[tuple[str, int], asyncio.Future[bool]] = {}

    def open(self) -> None:
        sock = privileges.raw_socket(
            socket.AF_INET, socket.IPPROTO_ICMP, "dhcp.probe", "turn dhcp.probe off"
        )
        sock.setblocking(False)
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_result(False)
        self._waiting.clear()

    async def ping(self, ip: str, wait: float) -> bool:
        """True when ``ip`` answers an echo request within ``wait`` seconds."""
        if self._sock is None:
            return False
        self._seq = (self._seq + 1) & 0xFFFF
        key = (ip, self._seq)
        fut = asyncio.get_running_loop().create_future()
        self._waiting[key] = fut
        try:
            self._sock.sendto(echo_request(self.ident, self._seq), (ip, 0))
            return await asyncio.wait_for(fut, wait)
        except (TimeoutError, OSError):
            return False
        finally:
            self._waiting.pop(key, None)

    def _readable(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            got = parse_echo_reply(data)
            if got is None or got[1] != self.ident:
                continue
            fut = self._waiting.get((got[0], got[2]))
            if fut is not None and not fut.done():
                fut.set_result(True)
