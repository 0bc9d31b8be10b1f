"""What the DHCP server serves: subnets, pools, options, boot files and reservations.

The same pydantic models are the API's bodies, the JSON stored in the database and the input
of the server; :func:`check_subnet` and :func:`check_reservation` hold every rule that spans
objects (pool inside its subnet, no overlaps, gateway on the subnet, …) and raise
:class:`~roost.errors.Invalid` with a message that says what to change. :class:`Config` is
the compiled, immutable form the packet path reads: addresses as ints, reservations by MAC.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from roost.auth import SiteName
from roost.errors import Invalid


def normalise_mac(value: str) -> str:
    """``52-54-00-AB-CD-EF`` or ``525400abcdef`` → ``52:54:00:ab:cd:ef``."""
    hexdigits = re.sub(r"[^0-9a-fA-F]", "", value).lower()
    if len(hexdigits) != 12:
        raise ValueError(
            f"{value!r} is not a MAC address (expected 6 bytes, e.g. 52:54:00:12:34:56)"
        )
    return ":".join(hexdigits[i : i + 2] for i in range(0, 12, 2))


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Pool(Model):
    start: IPv4Address
    end: IPv4Address

    @model_validator(mode="after")
    def _ordered(self) -> Pool:
        if int(self.end) < int(self.start):
            raise ValueError(f"pool {self.start}-{self.end}: end is before start; swap them")
        return self


class BootOverride(Model):
    """Per node (reservation) or per tag: what to boot instead of the subnet's default."""

    boot_file: str | None = Field(
        default=None, description="TFTP file for firmware PXE clients (or an http URL)"
    )
    ipxe_script: str | None = Field(default=None, description="URL handed to iPXE clients")


# What an iPXE script URL may be: iPXE fetches http(s) and tftp; placeholders (roost.dhcp.pxe)
# are expanded before it is sent, in at most 255 bytes (one DHCP option).
SCRIPT_URL = r"^(https?|tftp)://[^\s]+$"


class Boot(Model):
    """Boot files per client architecture (RFC 4578 option 93) and per-tag overrides."""

    enabled: bool = True
    bios: str = "undionly.kpxe"
    efi_x64: str = "ipxe.efi"
    efi_arm64: str = "ipxe-arm64.efi"
    ipxe_script_url: str | None = Field(
        default=None,
        max_length=255,
        pattern=SCRIPT_URL,
        description="URL handed to iPXE clients of this subnet (placeholders: ${mac}, "
        "${mac:hexhyp}, ${next-server}); default: dhcp.ipxe_script_url, else /boot/<mac>.ipxe",
    )
    tags: dict[str, BootOverride] = Field(default_factory=dict)


class SubnetSpec(Model):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    site: SiteName | None = Field(
        default=None,
        description="the site it belongs to (its reservations and leases too); default on "
        "create: the token's only site, else the server's; on replace: unchanged. null in an "
        "answer: a global subnet (stored before sites), for unscoped tokens only",
    )
    cidr: IPv4Network
    pools: list[Pool] = Field(default_factory=list)
    routers: list[IPv4Address] = Field(default_factory=list)
    dns_servers: list[IPv4Address] = Field(default_factory=list)
    ntp_servers: list[IPv4Address] = Field(default_factory=list)
    domain_name: str | None = None
    domain_search: list[str] = Field(default_factory=list)
    routes: list[tuple[IPv4Network, IPv4Address]] = Field(
        default_factory=list, description="classless static routes (option 121)"
    )
    lease_time: int = Field(default=3600, ge=10, le=365 * 86400)
    interface: str | None = Field(
        default=None, description="serve this subnet to clients on this interface (no relay)"
    )
    server_address: IPv4Address | None = Field(
        default=None, description="server identifier / next-server; default: the interface's"
    )
    options: dict[int, str] = Field(
        default_factory=dict, description="more options: code → value as hex bytes"
    )
    boot: Boot = Field(default_factory=Boot)

    @field_validator("options")
    @classmethod
    def _hex_options(cls, v: dict[int, str]) -> dict[int, str]:
        for code, value in v.items():
            if not 1 <= code <= 254 or code in (52, 53, 54, 55, 82):
                raise ValueError(f"option {code} cannot be set here; use 1-254 except 52-55, 82")
            try:
                bytes.fromhex(value)
            except ValueError:
                raise ValueError(
                    f"option {code}: {value!r} is not hex bytes (e.g. 0a000001)"
                ) from None
        return v


class ReservationSpec(Model):
    mac: str
    ip: IPv4Address
    hostname: str | None = Field(default=None, max_length=63)
    boot: BootOverride = Field(default_factory=BootOverride)

    @field_validator("mac")
    @classmethod
    def _mac(cls, v: str) -> str:
        return normalise_mac(v)


def _overlaps(a: Pool, b: Pool) -> bool:
    return int(a.start) <= int(b.end) and int(b.start) <= int(a.end)


def check_subnet(
    spec: SubnetSpec, others: Iterable[SubnetSpec], hidden: Iterable[SubnetSpec] = ()
) -> None:
    """Raise Invalid when ``spec`` contradicts itself or the other subnets. ``hidden`` are
    subnets the caller may not see (other sites'): one server holds every subnet, so they may
    not overlap either, but the message names nothing of them."""
    net = spec.cidr
    if net.prefixlen > 30:
        raise Invalid(f"subnet {net}: too small to serve; use a /30 or larger")
    usable = (int(net.network_address) + 1, int(net.broadcast_address) - 1)
    for pool in spec.pools:
        if not (usable[0] <= int(pool.start) and int(pool.end) <= usable[1]):
            raise Invalid(
                f"pool {pool.start}-{pool.end} is not inside subnet {net} (usable "
                f"{IPv4Address(usable[0])}-{IPv4Address(usable[1])}); change the pool or the cidr"
            )
    for i, a in enumerate(spec.pools):
        for b in spec.pools[i + 1 :]:
            if _overlaps(a, b):
                raise Invalid(f"pools {a.start}-{a.end} and {b.start}-{b.end} overlap; split them")
    for router in spec.routers:
        if router not in net:
            raise Invalid(f"gateway {router} is outside subnet {net}; give a router on the subnet")
    for other in others:
        if other.name == spec.name:
            continue
        if other.cidr.overlaps(net):
            raise Invalid(f"subnet {net} overlaps subnet {other.name!r} ({other.cidr})")
    for other in hidden:
        if other.name != spec.name and other.cidr.overlaps(net):
            raise Invalid(
                f"subnet {net} overlaps a subnet this token cannot see; pick another range"
            )


def site_of_address(ip: IPv4Address, subnets: Iterable[SubnetSpec]) -> str | None:
    """The site of the subnet ``ip`` is on (a reservation's site); None when on none."""
    return next((s.site for s in subnets if ip in s.cidr), None)


def check_reservation(
    spec: ReservationSpec,
    subnets: Iterable[SubnetSpec],
    others: Iterable[ReservationSpec],
    leases: Iterable[Any] = (),
    now: float = 0.0,
) -> None:
    """Raise Invalid when the reservation is off every subnet, taken by another reservation,
    or inside another client's current lease (``leases``: :class:`~roost.dhcp.leases.Lease`)."""
    nets = [s for s in subnets if spec.ip in s.cidr]
    if not nets:
        raise Invalid(f"{spec.ip} is in no subnet; add the subnet first or pick an address in one")
    net = nets[0].cidr
    if spec.ip in (net.network_address, net.broadcast_address):
        raise Invalid(
            f"{spec.ip} is the network or broadcast address of {net}; pick a host address"
        )
    for other in others:
        if other.mac != spec.mac and other.ip == spec.ip:
            raise Invalid(f"{spec.ip} is already reserved for {other.mac}; pick another address")
    ip = int(spec.ip)
    for lease in leases:
        if (
            lease.ip == ip
            and lease.state == "bound"
            and lease.expires > now
            and lease.mac != spec.mac
        ):
            raise Invalid(
                f"{spec.ip} is leased to {lease.mac} for {int(lease.expires - now)} s more; "
                "pick another address, or reserve it after that lease ends"
            )


@dataclass(frozen=True, slots=True)
class Subnet:
    """A subnet compiled for the packet path."""

    id: int
    spec: SubnetSpec
    network: int
    mask: int
    pools: tuple[tuple[int, int], ...]
    options: dict[int, bytes]
    """Options a reply on this subnet may carry (besides lease times), by code."""
    lease_options: dict[int, bytes]
    """Options 51, 58 and 59: lease time, T1 = 0.5 and T2 = 0.875 of it (RFC 2131 §4.4.5)."""
    reply_options: dict[tuple[bytes, bool], bytes] = field(default_factory=dict, compare=False)
    """Encoded options of plain replies by (parameter request list, with lease times); filled
    by :func:`roost.dhcp.replies.build`, dropped with the subnet when the configuration changes."""

    def contains(self, ip: int) -> bool:
        return ip & self.mask == self.network

    def in_pool(self, ip: int) -> bool:
        return any(lo <= ip <= hi for lo, hi in self.pools)


@dataclass(frozen=True)
class Config:
    subnets: tuple[Subnet, ...] = ()
    reservations: dict[str, ReservationSpec] = field(default_factory=dict)
    reserved_ips: dict[int, str] = field(default_factory=dict)
    """reserved address → the MAC it belongs to"""
    sites: dict[int, str | None] = field(default_factory=dict)
    """subnet id → its site: what a lease's events carry"""


def compile_subnet(subnet_id: int, spec: SubnetSpec) -> Subnet:
    from roost.dhcp.options import Opt, encode_value

    net = spec.cidr
    opts: dict[int, bytes] = {
        Opt.SUBNET_MASK: net.netmask.packed,
        Opt.BROADCAST: net.broadcast_address.packed,
    }
    typed: list[tuple[int, object]] = [
        (Opt.ROUTERS, spec.routers),
        (Opt.DNS_SERVERS, spec.dns_servers),
        (Opt.NTP_SERVERS, spec.ntp_servers),
        (Opt.DOMAIN_NAME, spec.domain_name),
        (Opt.DOMAIN_SEARCH, spec.domain_search),
        (Opt.CLASSLESS_ROUTES, spec.routes),
    ]
    for code, value in typed:
        if value:
            opts[code] = encode_value(code, value)
    for code, hexvalue in spec.options.items():
        opts[code] = bytes.fromhex(hexvalue)
    return Subnet(
        id=subnet_id,
        spec=spec,
        network=int(net.network_address),
        mask=int(net.netmask),
        pools=tuple((int(p.start), int(p.end)) for p in spec.pools),
        options=opts,
        lease_options={
            Opt.LEASE_TIME: spec.lease_time.to_bytes(4, "big"),
            Opt.RENEWAL_TIME: (spec.lease_time // 2).to_bytes(4, "big"),
            Opt.REBINDING_TIME: (spec.lease_time * 7 // 8).to_bytes(4, "big"),
        },
    )


def compile_config(
    subnets: Iterable[tuple[int, SubnetSpec]], reservations: Iterable[ReservationSpec]
) -> Config:
    res = {r.mac: r for r in reservations}
    compiled = tuple(compile_subnet(i, s) for i, s in subnets)
    return Config(
        subnets=compiled,
        reservations=res,
        reserved_ips={int(r.ip): r.mac for r in res.values()},
        sites={s.id: s.spec.site for s in compiled},
    )
