"""The lease table in memory and the address allocator; pure, with time passed in.

Every address has at most one :class:`Lease` (keyed by address), so an address can never be
bound to two clients; a client's latest lease is found through its key (option 61 client
identifier, else hardware type + address, RFC 2131 §4.2). Leases in state ``offered`` are
short holds that live only in memory; every other change is marked dirty so the service can
store it (write-behind, before the ACK leaves). Released and expired leases stay as history
so a returning client gets its previous address back (RFC 2131 §4.3.1).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from roost.dhcp.config import Subnet

OFFERED = "offered"
BOUND = "bound"
RELEASED = "released"
DECLINED = "declined"
EXPIRED = "expired"
HOLDING = (OFFERED, BOUND, DECLINED)  # states that keep the address from others until expiry


@dataclass(slots=True)
class Lease:
    ip: int
    client: bytes
    mac: str
    hostname: str
    subnet_id: int
    state: str
    starts: float
    expires: float

    def holds(self, now: float) -> bool:
        return self.state in HOLDING and self.expires > now


class LeaseTable:
    def __init__(self) -> None:
        self.by_ip: dict[int, Lease] = {}
        self.by_client: dict[bytes, int] = {}
        self.dirty: dict[int, Lease] = {}
        self._cursor: dict[tuple[int, int], int] = {}

    def __len__(self) -> int:
        return len(self.by_ip)

    def __iter__(self) -> Iterator[Lease]:
        return iter(self.by_ip.values())

    def load(self, lease: Lease) -> None:
        """Add a stored lease (at start-up); the newest lease of a client wins its key."""
        self.by_ip[lease.ip] = lease
        prev = self.by_client.get(lease.client)
        if prev is None or self.by_ip[prev].starts <= lease.starts:
            self.by_client[lease.client] = lease.ip

    def of_client(self, client: bytes) -> Lease | None:
        ip = self.by_client.get(client)
        if ip is None:
            return None
        lease = self.by_ip.get(ip)
        return lease if lease is not None and lease.client == client else None

    def free_for(self, ip: int, client: bytes, now: float) -> bool:
        """Nobody else holds ``ip`` (reservations are checked by the caller)."""
        lease = self.by_ip.get(ip)
        return lease is None or lease.client == client or not lease.holds(now)

    def put(self, lease: Lease, durable: bool = True) -> Lease:
        old = self.by_ip.get(lease.ip)
        if (
            old is not None
            and old.client != lease.client
            and self.by_client.get(old.client) == old.ip
        ):
            del self.by_client[old.client]
        self.by_ip[lease.ip] = lease
        self.by_client[lease.client] = lease.ip
        if durable:
            self.dirty[lease.ip] = lease
        return lease

    def take_dirty(self) -> list[Lease]:
        batch = list(self.dirty.values())
        self.dirty.clear()
        return batch

    def allocate(
        self, subnet: Subnet, client: bytes, reserved: dict[int, str], now: float
    ) -> int | None:
        """A free pool address: walk each pool from where the last search stopped."""
        for lo, hi in subnet.pools:
            size = hi - lo + 1
            key = (lo, hi)
            start = self._cursor.get(key, 0)
            for step in range(size):
                off = (start + step) % size
                ip = lo + off
                if ip in reserved:
                    continue
                lease = self.by_ip.get(ip)
                if lease is None or (lease.client != client and not lease.holds(now)):
                    self._cursor[key] = (off + 1) % size
                    return ip
        return None

    def sweep(self, now: float) -> list[Lease]:
        """Mark bound leases past their expiry expired, drop stale offers; return the expired."""
        expired = []
        for lease in list(self.by_ip.values()):
            if lease.expires > now:
                continue
            if lease.state == BOUND:
                lease.state = EXPIRED
                self.dirty[lease.ip] = lease
                expired.append(lease)
            elif lease.state == OFFERED:
                del self.by_ip[lease.ip]
                if self.by_client.get(lease.client) == lease.ip:
                    del self.by_client[lease.client]
        return expired
