"""The enrollment policy: which machines may enroll through an anonymous boot render, and
from which address.

The boot LAN is anonymous: whoever can reach the boot server can fetch any MAC's documents.
So a token minted for such a render is handed only to MACs the operator has not vouched for
yet (``enroll.auto = "new"``: no node, or ``discovered``/``broken``), or to a node an operator
recommissioned; a node that is ``ready``, ``deploying`` or ``deployed`` gets none, and its
boot token (bound to its enrollment generation) opens nothing. When Roost's own DHCP serves
the site, a minted token is handed out to, and spent from, only the address that DHCP leased
to the MAC. The same decision is made when a render mints and again when the token is spent,
so a node that changed state in between is protected too.
"""

from __future__ import annotations

import time

from roost.inventory.lifecycle import ENROLLABLE, MINTABLE, State
from roost.service import Runtime
from roost.settings import EnrollPolicy


def site_policy(runtime: Runtime, site: str) -> EnrollPolicy:
    """``auto``, ``boot_token_ttl`` and ``approve`` in effect for ``site``."""
    return runtime.settings.enroll.for_site(site)


def anonymous_may_enroll(auto: str, state: State | None, recommission: bool) -> bool:
    """May a MAC in ``state`` (None: no node) enroll with a token minted for anonymous input?"""
    if state is None:
        return auto != "off"
    if state not in ENROLLABLE:
        return False
    if recommission or auto == "any":
        return True
    return auto == "new" and state in MINTABLE


def dhcp_lease(runtime: Runtime, site: str, mac: str) -> tuple[bool, str | None]:
    """(Roost serves DHCP on ``site``, the address it currently leases to ``mac``).

    The DHCP service serves this process's site; its lease table is in memory, so this is a
    scan without I/O (enrollments are rare next to DHCP packets, which keep no MAC index)."""
    try:
        from roost.dhcp.codec import ip_str
        from roost.dhcp.leases import BOUND
        from roost.dhcp.service import DHCPService
    except ImportError:  # a build without the DHCP capability
        return False, None
    dhcp = runtime.service("dhcp")
    if site != runtime.settings.site or not isinstance(dhcp, DHCPService):
        return False, None
    now = time.time()
    for lease in dhcp.leases:
        if lease.mac == mac and lease.state == BOUND and lease.expires > now:
            return True, ip_str(lease.ip)
    return True, None


def lease_refusal(runtime: Runtime, site: str, mac: str, ip: str | None) -> str | None:
    """Why ``ip`` may not enroll (or be handed a token) as ``mac``, or None when it may."""
    serves, leased = dhcp_lease(runtime, site, mac)
    if not serves:
        return None
    if leased is None:
        return f"Roost serves DHCP on site {site} and leases no address to {mac}"
    if ip != leased:
        return f"{mac} has the lease {leased}; the request came from {ip}"
    return None
