"""Enrollment and renewal: a node trades a one-time token (and optionally a CSR) for its place
in the inventory (and a certificate).

Enrollment is one transaction: spend the token, find or create the node by MAC, check that the
token's scope (node, MAC or site) covers it, record its facts, move it ``enrolling`` →
``ready``, and with a CSR issue a certificate (earlier ones are revoked as superseded); the
node's enrollment generation moves on (its old boot token dies) and a recommission request is
consumed. A token minted for an anonymous boot render is held to the enrollment policy again
(:mod:`roost.pki.policy`: the node's state, the DHCP lease's address) and, with
``enroll.approve``, parks the enrollment in ``pending`` until :func:`approve`; the node then
presents the same token and CSR again to collect its certificate. A re-enrollment whose
system serial or UUID differs from the stored facts is refused (``node.enroll.mismatch``).
Only after the commit are events published. A refusal rolls everything back, is published as
``enroll.refused`` with the reason, and the client gets one generic answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from roost.db.models import utcnow
from roost.errors import Conflict, Invalid
from roost.inventory import store
from roost.inventory.lifecycle import ENROLLABLE, State
from roost.inventory.models import NodeRow
from roost.inventory.nodes import publish, view
from roost.inventory.store import StateChange
from roost.inventory.views import NodeOut
from roost.pki import ca as ca_mod
from roost.pki import revocation, tokens
from roost.pki.models import CertificateRow
from roost.pki.policy import anonymous_may_enroll, lease_refusal, site_policy
from roost.pki.tokens import TokenRefused
from roost.service import Runtime
from roost.settings import Settings

log = logging.getLogger(__name__)


def authority(settings: Settings) -> ca_mod.CertificateAuthority:
    return ca_mod.load_or_create(settings.data_dir, f"Roost CA ({settings.site})", utcnow())


def parse_csr(pem: str) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(pem.encode())
    except ValueError:
        raise Invalid("csr is not a PEM certificate signing request (PKCS #10)") from None
    ca_mod.node_public_key(csr.public_key())
    if not csr.is_signature_valid:
        raise Invalid("the CSR's signature does not verify: it was not made with its key")
    return csr


class FactsMismatch(TokenRefused):
    """The enrolling machine reports another system serial or UUID than the node's."""

    def __init__(self, node: NodeRow, key: str, stored: str, reported: str) -> None:
        super().__init__(
            f"node {node.id} has {key} {stored!r}; the enrollment reported {reported!r}"
        )
        self.node, self.key, self.stored, self.reported = node.id, key, stored, reported


@dataclass(frozen=True)
class Enrolled:
    node: NodeOut
    certificate: str | None
    ca: str

    @property
    def pending(self) -> bool:
        return self.node.state == State.pending


async def _issue(
    s: AsyncSession, settings: Settings, node: NodeRow, csr: x509.CertificateSigningRequest
) -> x509.Certificate:
    await revocation.revoke_node(s, node.id, "superseded")
    cert = authority(settings).issue(
        csr, node.id, utcnow(), timedelta(hours=settings.nodes.certificate_hours)
    )
    s.add(
        CertificateRow(
            serial=ca_mod.serial_hex(cert.serial_number),
            node_id=node.id,
            fingerprint=ca_mod.fingerprint(cert),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            pem=cert.public_bytes(Encoding.PEM).decode(),
            revoked_reason="",
        )
    )
    return cert


def _covers(red: tokens.Redeemed, node: NodeRow | None, mac: str) -> None:
    if red.node_id is not None and (node is None or node.id != red.node_id):
        raise TokenRefused(f"token {red.id} is for node {red.node_id}, not for {mac}")
    if red.mac is not None and red.mac != mac:
        raise TokenRefused(f"token {red.id} is for MAC {red.mac}, not for {mac}")
    if red.site is not None and node is not None and node.site != red.site:
        raise TokenRefused(f"token {red.id} is for site {red.site}; {mac} is in {node.site}")
    if node is not None and State(node.state) not in ENROLLABLE:
        raise TokenRefused(f"node {node.id} is {node.state} and may not enroll")


def _anonymous_allowed(
    runtime: Runtime,
    red: tokens.Redeemed,
    node: NodeRow | None,
    site: str,
    mac: str,
    source: str | None,
) -> None:
    """A minted token is spent only where a render may mint one, from the leased address."""
    auto = site_policy(runtime, site).auto
    state = State(node.state) if node is not None else None
    if not anonymous_may_enroll(auto, state, node.recommission if node is not None else False):
        what = f"node {node.id} is {node.state}" if node is not None else f"{mac} is new"
        raise TokenRefused(
            f"token {red.id} came from an anonymous boot render and {what} "
            f"(enroll.auto = {auto}); an operator may recommission it or create a token"
        )
    refused = lease_refusal(runtime, site, mac, source)
    if refused is not None:
        raise TokenRefused(f"token {red.id}: {refused}")


def _identity(facts: dict[str, Any]) -> dict[str, str]:
    """The system serial and UUID a facts document reports (``system.serial``/``.uuid``, as
    the commissioning image sends them, or top-level), lower-cased; empty ones left out."""
    system = facts.get("system")
    found: dict[str, str] = {}
    for key in ("serial", "uuid"):
        value = system.get(key) if isinstance(system, dict) else None
        value = value if isinstance(value, str) and value.strip() else facts.get(key)
        if isinstance(value, str) and value.strip():
            found[key] = value.strip().lower()
    return found


def _check_identity(node: NodeRow | None, facts: dict[str, Any]) -> None:
    # A discovered node that never enrolled has only what anonymous callbacks reported, which
    # must not let anyone lock the real machine out.
    if node is None or (node.enroll_generation == 0 and node.state == State.discovered):
        return
    stored, reported = _identity(node.facts or {}), _identity(facts)
    for key in stored.keys() & reported.keys():
        if stored[key] != reported[key]:
            raise FactsMismatch(node, key, stored[key], reported[key])


def _record(node: NodeRow, facts: dict[str, Any], ip: str | None, now: Any) -> None:
    node.facts = facts
    for key in ("architecture", "vendor"):
        if isinstance(facts.get(key), str):
            setattr(node, key, facts[key][:128])
    node.ip, node.last_seen = ip or node.ip, now


def _enrolled(node: NodeRow) -> None:
    """A completed enrollment: the old boot token dies, the recommission request is spent."""
    node.enroll_generation = (node.enroll_generation or 0) + 1
    node.recommission = False


async def _collect(
    s: AsyncSession, token: str, mac: str, csr: x509.CertificateSigningRequest | None
) -> tuple[NodeRow, x509.Certificate | None] | None:
    """A spent token presented again by the node whose enrollment it parked in ``pending``:
    the node (still pending, or approved with the certificate of this CSR's key), else None."""
    try:
        row = await tokens.find(s, token)
    except TokenRefused:
        return None
    if row.used_at is None or row.used_by is None:
        return None
    node = await s.get(NodeRow, row.used_by)
    if node is None or mac not in {i.mac for i in node.interfaces}:
        return None
    parked = node.pending or {}
    if parked.get("token") != row.id:
        return None
    if node.state == State.pending:
        return node, None
    if "approved_at" not in parked:
        return None
    if csr is None:
        return node, None
    q = (
        select(CertificateRow)
        .where(CertificateRow.node_id == node.id, CertificateRow.revoked_at.is_(None))
        .order_by(CertificateRow.not_after.desc())
        .limit(1)
    )
    newest = (await s.execute(q)).scalar_one_or_none()
    if newest is None:
        return None
    cert = x509.load_pem_x509_certificate(newest.pem.encode())
    if cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo) != (
        csr.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    ):
        return None
    return node, cert


async def enroll(
    runtime: Runtime,
    token: str,
    mac: str,
    facts: dict[str, Any],
    csr_pem: str | None = None,
    ip: str | None = None,
    source: str | None = None,
) -> Enrolled:
    """``ip`` is what the node reports as its address; ``source`` is the address the request
    really came from (checked against Roost's DHCP lease for a minted token)."""
    mac = store.normalize_mac(mac)
    csr = parse_csr(csr_pem) if csr_pem else None
    now = utcnow()
    changes: list[StateChange | None] = []
    cert: x509.Certificate | None = None
    parked = False
    try:
        async with runtime.db.session() as s:
            collected = await _collect(s, token, mac, csr)
            if collected is not None:
                again, issued = collected
                out = await view(s, again)
                pem = issued.public_bytes(Encoding.PEM).decode() if issued is not None else None
                return Enrolled(out, pem, authority(runtime.settings).cert_pem.decode())
            red = await tokens.redeem(s, token, now)
            node = await store.node_by_mac(s, mac)
            _covers(red, node, mac)
            site = node.site if node is not None else (red.site or runtime.settings.site)
            if red.anonymous:
                _anonymous_allowed(runtime, red, node, site, mac, source)
            _check_identity(node, facts)
            if node is None:
                node, created = await store.create_node(
                    s, mac=mac, site=site, ip=ip, seen=now, reason="appeared by enrolling"
                )
                changes.append(created)
            changes.append(
                await store.set_state(s, node, State.enrolling, f"token {red.id} accepted")
            )
            if red.anonymous and site_policy(runtime, site).approve:
                parked = True
                node.pending = {
                    "token": red.id,
                    "facts": facts,
                    "csr": csr_pem,
                    "ip": ip,
                    "source": source,
                    "at": now.isoformat(),
                }
                node.last_seen = now
                changes.append(
                    await store.set_state(s, node, State.pending, "enrolled: waits for approval")
                )
            else:
                _record(node, facts, ip, now)
                if csr is not None:
                    cert = await _issue(s, runtime.settings, node, csr)
                how = "certificate issued" if cert is not None else "facts recorded"
                _enrolled(node)
                changes.append(await store.set_state(s, node, State.ready, f"enrolled: {how}"))
            await tokens.mark_used_by(s, red.id, node.id)
            out = await view(s, node)
    except TokenRefused as exc:
        log.warning("enrollment from %s refused: %s", mac, exc)
        published = [
            runtime.bus.publish(
                "enroll.refused", mac, {"mac": mac, "ip": source or ip, "reason": str(exc)}
            )
        ]
        if isinstance(exc, FactsMismatch):
            data = {
                "node": exc.node,
                "mac": mac,
                "ip": source or ip,
                "key": exc.key,
                "stored": exc.stored,
                "reported": exc.reported,
            }
            published.append(runtime.bus.publish("node.enroll.mismatch", mac, data))
        await asyncio.gather(*published)
        raise
    serial = ca_mod.serial_hex(cert.serial_number) if cert is not None else None
    what = "node.enroll.pending" if parked else "node.enrolled"
    await asyncio.gather(
        publish(runtime, changes),
        runtime.bus.publish(
            what,
            mac,
            {"node": out.id, "mac": mac, "ip": ip, "token": red.id, "certificate": serial},
            site=out.site,
        ),
    )
    pem = cert.public_bytes(Encoding.PEM).decode() if cert is not None else None
    return Enrolled(out, pem, authority(runtime.settings).cert_pem.decode())


async def approve(runtime: Runtime, ref: str, scope: Sequence[str] | None) -> NodeOut:
    """Complete a ``pending`` enrollment: record its facts, issue its certificate, ready."""
    now = utcnow()
    async with runtime.db.session() as s:
        node = await store.find_node(s, ref, scope)
        parked = node.pending or {}
        if node.state != State.pending or "token" not in parked:
            raise Conflict(f"node {ref} is {node.state}, not pending: there is nothing to approve")
        _record(node, parked.get("facts") or {}, parked.get("ip"), now)
        cert = None
        if parked.get("csr"):
            cert = await _issue(s, runtime.settings, node, parse_csr(parked["csr"]))
        _enrolled(node)
        node.pending = {"token": parked["token"], "approved_at": now.isoformat()}
        change = await store.set_state(s, node, State.ready, "enrollment approved by an operator")
        out = await view(s, node)
    serial = ca_mod.serial_hex(cert.serial_number) if cert is not None else None
    await asyncio.gather(
        publish(runtime, [change]),
        runtime.bus.publish(
            "node.enroll.approved",
            out.mac,
            {"node": out.id, "mac": out.mac, "token": parked["token"], "certificate": serial},
            site=out.site,
        ),
        runtime.bus.publish(
            "node.enrolled",
            out.mac,
            {
                "node": out.id,
                "mac": out.mac,
                "ip": out.ip,
                "token": parked["token"],
                "certificate": serial,
            },
            site=out.site,
        ),
    )
    return out


async def recommission(runtime: Runtime, ref: str, scope: Sequence[str] | None) -> NodeOut:
    """Let the node's next boot enroll again (a minted token, whatever ``enroll.auto``)."""
    async with runtime.db.session() as s:
        node = await store.find_node(s, ref, scope)
        if State(node.state) not in ENROLLABLE:
            raise Conflict(
                f"a {node.state} node cannot be recommissioned; it may be from: "
                + ", ".join(sorted(ENROLLABLE))
            )
        node.recommission = True
        node.updated_at = utcnow()
        out = await view(s, node)
    await runtime.bus.publish(
        "node.recommission.requested",
        out.mac,
        {"node": out.id, "mac": out.mac, "state": out.state},
        site=out.site,
    )
    return out


async def renew(runtime: Runtime, node_id: int, csr_pem: str) -> str:
    """A fresh certificate for an authenticated node; its earlier ones are revoked."""
    csr = parse_csr(csr_pem)
    async with runtime.db.session() as s:
        node = await s.get(NodeRow, node_id)
        if node is None:
            raise Invalid(f"node {node_id} no longer exists")
        cert = await _issue(s, runtime.settings, node, csr)
    serial = ca_mod.serial_hex(cert.serial_number)
    await runtime.bus.publish(
        "pki.certificate.renewed",
        node.mac,
        {"node": node_id, "mac": node.mac, "certificate": serial},
        site=node.site,
    )
    return cert.public_bytes(Encoding.PEM).decode()


async def revoke(runtime: Runtime, ref: str, scope: Sequence[str] | None) -> list[str]:
    """Revoke every certificate of a node; refused from its very next request."""
    async with runtime.db.session() as s:
        node = await store.find_node(s, ref, scope)
        serials = await revocation.revoke_node(s, node.id, "revoked by an operator")
    await runtime.bus.publish(
        "pki.certificate.revoked",
        node.mac,
        {"node": node.id, "mac": node.mac, "certificates": serials},
        site=node.site,
    )
    return serials
