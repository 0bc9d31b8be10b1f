"""What a scan may touch: target and port specifications, checked against the site's subnets.

Safety lives here: every address a scan, probe or wake would reach must lie inside one of
``discovery.subnets``; anything else is refused with a message that names the subnet list
and the setting to change. Loopback is no exception: it is scannable only when listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, ip_network

from roost.discovery import services
from roost.errors import Invalid


def parse_ports(spec: str, protocol: str = "tcp") -> list[int]:
    """``"22,80,8000-8100"``, ``"1-65535"``, ``"-"`` (all) or ``"top:100"`` to sorted ports."""
    spec = spec.strip()
    if spec in ("-", "all"):
        return list(range(1, 65536))
    if spec.startswith("top:"):
        try:
            n = int(spec[4:])
        except ValueError:
            raise Invalid(f"ports {spec!r}: top:N needs a number, e.g. top:100") from None
        if not 1 <= n <= 65535:
            raise Invalid(f"ports {spec!r}: N must be 1..65535")
        return sorted(services.top_ports(n, protocol))
    ports: set[int] = set()
    for part in filter(None, (p.strip() for p in spec.split(","))):
        lo_s, _, hi_s = part.partition("-")
        try:
            lo = int(lo_s) if lo_s else 1
            hi = (int(hi_s) if hi_s else 65535) if "-" in part else lo
        except ValueError:
            raise Invalid(
                f"ports {spec!r}: {part!r} is not a port or range (use e.g. 22,80,8000-8100)"
            ) from None
        if not (1 <= lo <= hi <= 65535):
            raise Invalid(f"ports {spec!r}: {part!r} is outside 1-65535 or reversed")
        ports.update(range(lo, hi + 1))
    if not ports:
        raise Invalid("ports: give at least one port, e.g. 1-1024")
    return sorted(ports)


def check_network(target: str, allowed: Sequence[IPv4Network], site: str) -> IPv4Network:
    """Parse ``target`` (address or CIDR) and make sure it lies inside an allowed subnet."""
    try:
        net = ip_network(target.strip(), strict=False)
    except ValueError:
        raise Invalid(f"target {target!r} is not an IPv4 address or CIDR (e.g. 10.0.0.5)") from None
    if not isinstance(net, IPv4Network):
        raise Invalid(f"target {target!r}: only IPv4 is scanned")
    if not any(net.subnet_of(a) for a in allowed):
        configured = ", ".join(str(a) for a in allowed) or "none"
        raise Invalid(
            f"target {target} is outside the subnets configured for site {site!r} "
            f"(discovery.subnets: {configured}); Roost scans only those. "
            f"Add the subnet to discovery.subnets to allow it."
        )
    return net


def addresses(net: IPv4Network) -> list[IPv4Address]:
    """Host addresses of ``net``: no network or broadcast address except in /31 and /32."""
    return list(net.hosts()) if net.prefixlen < 31 else list(net)


def expand(
    specs: Sequence[str], allowed: Sequence[IPv4Network], site: str, limit: int
) -> tuple[list[IPv4Network], list[IPv4Address]]:
    """Checked networks and their addresses, deduplicated, at most ``limit`` of them."""
    nets = [check_network(s, allowed, site) for s in specs]
    if not nets:
        raise Invalid("give at least one target (address or CIDR)")
    seen: dict[IPv4Address, None] = {}
    for net in nets:
        if net.num_addresses > limit:
            raise Invalid(
                f"target {net} has {net.num_addresses} addresses; the limit is "
                f"discovery.max_targets = {limit}"
            )
        seen.update(dict.fromkeys(addresses(net)))
        if len(seen) > limit:
            raise Invalid(f"targets cover more than discovery.max_targets = {limit} addresses")
    return nets, list(seen)


def subnet_of(ip: IPv4Address, subnets: Sequence[IPv4Network]) -> IPv4Network | None:
    return next((n for n in subnets if ip in n), None)
