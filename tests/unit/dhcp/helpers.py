"""Builders shared by the DHCP unit tests."""

from __future__ import annotations

from ipaddress import IPv4Address

from roost.dhcp.codec import Packet, decode
from roost.dhcp.config import Pool, ReservationSpec, SubnetSpec, compile_config
from roost.dhcp.leases import LeaseTable
from roost.dhcp.options import Opt
from roost.dhcp.server import DHCPServer, Inbound, Policy, Reply

SERVER_IP = IPv4Address("10.0.0.1")
INBOUND = Inbound("rdh0", SERVER_IP)


def lan(**kw: object) -> SubnetSpec:
    base: dict[str, object] = {
        "name": "lan",
        "cidr": "10.0.0.0/24",
        "pools": [Pool(start=IPv4Address("10.0.0.100"), end=IPv4Address("10.0.0.102"))],
        "routers": ["10.0.0.1"],
        "dns_servers": ["10.0.0.53"],
    }
    base.update(kw)
    return SubnetSpec.model_validate(base)


def make_server(
    subnets: list[SubnetSpec] | None = None,
    reservations: list[ReservationSpec] | None = None,
    policy: Policy | None = None,
) -> DHCPServer:
    cfg = compile_config(enumerate(subnets or [lan()], 1), reservations or [])
    return DHCPServer(cfg, LeaseTable(), policy or Policy())


def mac_bytes(n: int) -> bytes:
    return bytes.fromhex(f"5254000000{n:02x}").ljust(16, b"\0")


def request(mtype: int, n: int = 1, **opts: bytes) -> Packet:
    options: dict[int, bytes] = {Opt.MESSAGE_TYPE: bytes((mtype,))}
    for name, value in opts.items():
        options[int(Opt[name.upper()])] = value
    return Packet(xid=0x1000 + n, chaddr=mac_bytes(n), options=options)


def reply_packet(r: Reply | None) -> Packet:
    assert r is not None
    return decode(r.data)


def must(r: Reply | None) -> Reply:
    assert r is not None, "the server stayed silent"
    return r
