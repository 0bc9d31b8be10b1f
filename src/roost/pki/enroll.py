"""Enrollment and renewal: a node trades a one-time token (and optionally a CSR) for its place
in the inventory (and a certificate).

Enrollment is one transaction: spend the token, find or create the node by MAC, check that the
token's scope (node, MAC or site) covers it, record its facts, move it ``enrolling`` →
``ready``, and with a CSR issue a certificate (earlier ones are revoked as superseded). Only
after the commit are events published. A refused token rolls everything back, is published as
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
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy.ext.asyncio import AsyncSession

from roost.db.models import utcnow
from roost.errors import Invalid
from roost.inventory import store
from roost.inventory.lifecycle import ENROLLABLE, State
from roost.inventory.models import NodeRow
from roost.inventory.nodes import publish, view
from roost.inventory.store import StateChange
from roost.inventory.views import NodeOut
from roost.pki import ca as ca_mod
from roost.pki import revocation, tokens
from roost.pki.models import CertificateRow
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


@dataclass(frozen=True)
class Enrolled:
    node: NodeOut
    certificate: str | None
    ca: str


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


async def enroll(
    runtime: Runtime,
    token: str,
    mac: str,
    facts: dict[str, Any],
    csr_pem: str | None = None,
    ip: str | None = None,
) -> Enrolled:
    mac = store.normalize_mac(mac)
    csr = parse_csr(csr_pem) if csr_pem else None
    now = utcnow()
    changes: list[StateChange | None] = []
    cert: x509.Certificate | None = None
    try:
        async with runtime.db.session() as s:
            red = await tokens.redeem(s, token, now)
            node = await store.node_by_mac(s, mac)
            _covers(red, node, mac)
            if node is None:
                site = red.site or runtime.settings.site
                node, created = await store.create_node(
                    s, mac=mac, site=site, ip=ip, seen=now, reason="appeared by enrolling"
                )
                changes.append(created)
            changes.append(
                await store.set_state(s, node, State.enrolling, f"token {red.id} accepted")
            )
            node.facts = facts
            for key in ("architecture", "vendor"):
                if isinstance(facts.get(key), str):
                    setattr(node, key, facts[key][:128])
            node.ip, node.last_seen = ip or node.ip, now
            if csr is not None:
                cert = await _issue(s, runtime.settings, node, csr)
            how = "certificate issued" if cert is not None else "facts recorded"
            changes.append(await store.set_state(s, node, State.ready, f"enrolled: {how}"))
            await tokens.mark_used_by(s, red.id, node.id)
            out = await view(s, node)
    except TokenRefused as exc:
        log.warning("enrollment from %s refused: %s", mac, exc)
        await runtime.bus.publish("enroll.refused", mac, {"mac": mac, "ip": ip, "reason": str(exc)})
        raise
    serial = ca_mod.serial_hex(cert.serial_number) if cert is not None else None
    await asyncio.gather(
        publish(runtime, changes),
        runtime.bus.publish(
            "node.enrolled",
            mac,
            {"node": out.id, "mac": mac, "ip": ip, "token": red.id, "certificate": serial},
            site=out.site,
        ),
    )
    pem = cert.public_bytes(Encoding.PEM).decode() if cert is not None else None
    return Enrolled(out, pem, authority(runtime.settings).cert_pem.decode())


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
