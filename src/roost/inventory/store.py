"""Inventory operations inside one database session: find, create, change state, tag.

These functions never commit and never publish: a caller runs several of them in one
transaction and publishes the :class:`StateChange` events it got back only after the commit
(write before acknowledge). :mod:`roost.inventory.nodes` does exactly that for the API.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from roost.db.models import utcnow
from roost.errors import Conflict, Forbidden, Invalid, NotFound
from roost.inventory import lifecycle
from roost.inventory.lifecycle import State
from roost.inventory.models import HistoryRow, InterfaceRow, NodeRow, SiteRow, TagRow

_HEX = re.compile(r"[0-9a-f]{12}")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_HOSTNAME = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*$")

STATE_CHANGED = "node.state.changed"


def normalize_mac(value: str) -> str:
    """``AA-BB-CC-DD-EE-FF``, ``aabb.ccdd.eeff`` or ``aa:bb:…`` → ``aa:bb:cc:dd:ee:ff``."""
    digits = re.sub(r"[:\-.]", "", value.strip().lower())
    if not _HEX.fullmatch(digits):
        raise Invalid(f"{value!r} is not a MAC address (six hex octets, e.g. 52:54:00:12:34:56)")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def check_name(kind: str, value: str) -> str:
    """Site and tag names: letters, digits and ``_.:-``, at most 64 characters."""
    if not _NAME.fullmatch(value):
        raise Invalid(
            f"{kind} {value!r} is not a valid name: use 1-64 letters, digits or _.:- "
            "starting with a letter or digit"
        )
    return value


RESERVED_HOSTNAMES = frozenset({"self", "import", "export"})
"""Names that are API paths under ``/nodes/``, so a node could not be addressed by them."""


def check_hostname(value: str) -> str:
    if len(value) > 253 or not _HOSTNAME.fullmatch(value):
        raise Invalid(f"hostname {value!r} is not a valid DNS name (RFC 1123 §2.1)")
    if value.lower() in RESERVED_HOSTNAMES:
        raise Invalid(f"hostname {value!r} is reserved; choose another")
    return value.lower()


@dataclass(frozen=True)
class StateChange:
    """One lifecycle transition, as stored in history and published."""

    node: int
    mac: str
    site: str
    from_state: str | None
    to_state: str
    reason: str

    def event(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "mac": self.mac,
            "from": self.from_state,
            "to": self.to_state,
            "reason": self.reason,
        }


async def ensure_site(s: AsyncSession, name: str) -> None:
    # Remembered for the session: the row itself would leave the identity map (weakly held),
    # and a query per node costs a batch of discovered nodes a third of its time.
    sites: set[str] = s.info.setdefault("sites", set())
    if name in sites:
        return
    check_name("site", name)
    if await s.get(SiteRow, name) is None:
        s.add(SiteRow(name=name))
        await s.flush()
    sites.add(name)


async def node_by_mac(s: AsyncSession, mac: str) -> NodeRow | None:
    q = select(NodeRow).join(InterfaceRow).where(InterfaceRow.mac == normalize_mac(mac))
    return (await s.execute(q)).scalar_one_or_none()


async def nodes_by_macs(s: AsyncSession, macs: Iterable[str]) -> dict[str, NodeRow]:
    """The nodes that own any of ``macs``, by each of those MACs (normalized); one query."""
    wanted = {normalize_mac(m) for m in macs}
    q = select(NodeRow).join(InterfaceRow).where(InterfaceRow.mac.in_(wanted))
    return {
        iface.mac: node
        for node in (await s.execute(q)).scalars().unique()
        for iface in node.interfaces
        if iface.mac in wanted
    }


async def find_node(s: AsyncSession, ref: str | int, sites: Sequence[str] | None = None) -> NodeRow:
    """A node by id, MAC or hostname, tried in that order (a hostname may look like either);
    ``sites`` limits what the caller may see (404 otherwise)."""
    text = str(ref).strip()
    node: NodeRow | None = None
    if text.isascii() and text.isdigit() and int(text) < 2**63:  # "²" is a digit too
        node = await s.get(NodeRow, int(text))
    if node is None and _HEX.fullmatch(re.sub(r"[:\-.]", "", text.lower())):
        node = await node_by_mac(s, text)
    if node is None:
        q = select(NodeRow).where(NodeRow.hostname == text.lower())
        node = (await s.execute(q)).scalar_one_or_none()
    if node is None or (sites is not None and node.site not in sites):
        raise NotFound(f"no node {text!r} (give its id, a MAC address or its hostname)")
    return node


def allow_site(site: str, sites: Sequence[str] | None) -> None:
    if sites is not None and site not in sites:
        raise Forbidden(f"this token may not manage site {site!r}")


async def check_hostname_free(s: AsyncSession, hostname: str, node_id: int | None = None) -> None:
    q = select(NodeRow.id).where(NodeRow.hostname == check_hostname(hostname))
    other = (await s.execute(q)).scalar_one_or_none()
    if other is not None and other != node_id:
        raise Conflict(f"hostname {hostname!r} already belongs to node {other}")


async def add_history(s: AsyncSession, node: NodeRow, frm: str | None, reason: str) -> StateChange:
    s.add(HistoryRow(node_id=node.id, from_state=frm, to_state=node.state, reason=reason[:255]))
    return StateChange(node.id, node.mac, node.site, frm, node.state, reason[:255])


def discovered_node(
    *,
    mac: str,
    site: str,
    reason: str,
    ip: str | None = None,
    seen: datetime | None = None,
    hostname: str | None = None,
    **fields: Any,
) -> NodeRow:
    """A new ``discovered`` node with its primary interface, not yet in any session; its
    history row needs its id, so it is added after the insert (:func:`add_history`)."""
    mac = normalize_mac(mac)
    return NodeRow(
        mac=mac,
        site=site,
        hostname=check_hostname(hostname) if hostname else None,
        ip=ip,
        last_seen=seen,
        state=State.discovered.value,
        state_reason=reason[:255],
        facts={},
        power_settings={},
        interfaces=[InterfaceRow(mac=mac, addresses=[ip] if ip else [])],
        tag_rows=[],
        **fields,
    )


async def create_node(
    s: AsyncSession,
    *,
    mac: str,
    site: str,
    reason: str,
    hostname: str | None = None,
    ip: str | None = None,
    seen: datetime | None = None,
    **fields: Any,
) -> tuple[NodeRow, StateChange]:
    """Insert a ``discovered`` node with its primary interface. A known MAC or hostname is a
    Conflict; a concurrent insert of the same MAC fails on the unique column at commit."""
    mac = normalize_mac(mac)
    if (other := await node_by_mac(s, mac)) is not None:
        raise Conflict(f"MAC {mac} already belongs to node {other.id}")
    if hostname:
        await check_hostname_free(s, hostname)
    await ensure_site(s, site)
    node = discovered_node(
        mac=mac, site=site, reason=reason, ip=ip, seen=seen, hostname=hostname, **fields
    )
    s.add(node)
    await s.flush()
    return node, await add_history(s, node, None, reason)


async def set_state(s: AsyncSession, node: NodeRow, to: State, reason: str) -> StateChange | None:
    """Move ``node`` along the transition table; None when it is already there."""
    current = lifecycle.parse_state(node.state)
    if not lifecycle.check(current, to):
        return None
    node.state = to.value
    node.state_reason = reason[:255]
    node.updated_at = utcnow()
    return await add_history(s, node, current.value, reason)


def set_tags(node: NodeRow, add: Iterable[str] = (), remove: Iterable[str] = ()) -> None:
    gone = set(remove)
    have = {t.tag for t in node.tag_rows}
    node.tag_rows = [t for t in node.tag_rows if t.tag not in gone]
    for tag in add:
        if tag not in have and tag not in gone:
            node.tag_rows.append(TagRow(tag=check_name("tag", tag)))
            have.add(tag)
    node.updated_at = utcnow()


def filtered(
    q: Select[NodeRow],
    *,
    site: str | None = None,
    tags: Sequence[str] = (),
    state: str | None = None,
    sites: Sequence[str] | None = None,
) -> Select[NodeRow]:
    """Listing filters: a site, every one of ``tags``, a state, and the caller's site scope."""
    if site is not None:
        q = q.where(NodeRow.site == site)
    if sites is not None:
        q = q.where(NodeRow.site.in_(list(sites)))
    if state is not None:
        q = q.where(NodeRow.state == lifecycle.parse_state(state).value)
    for tag in tags:
        q = q.where(NodeRow.id.in_(select(TagRow.node_id).where(TagRow.tag == tag)))
    return q


async def list_nodes(s: AsyncSession, **flt: Any) -> list[NodeRow]:
    return list((await s.execute(filtered(select(NodeRow), **flt).order_by(NodeRow.id))).scalars())


async def history(s: AsyncSession, node_id: int) -> list[HistoryRow]:
    q = select(HistoryRow).where(HistoryRow.node_id == node_id).order_by(HistoryRow.id)
    return list((await s.execute(q)).scalars())
