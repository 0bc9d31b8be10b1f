"""Authenticating a node on every request, by its certificate.

Two ways in, one set of checks. (1) When the ASGI server terminated mutual TLS and reports the
peer certificate (the ASGI TLS extension, ``scope["extensions"]["tls"]["client_cert_chain"]``),
the handshake already proved possession of the key. (2) Otherwise (uvicorn, the default) the
request carries the certificate and a signature (:mod:`roost.pki.signing`), checked here with
a bounded clock skew and a per-process nonce memory against replays. Either way the
certificate must be signed by the Roost CA, be within its validity, and be recorded in the
database as issued, unrevoked and bound to a live node: that lookup happens on every request,
so revocation applies from the next one.
"""

from __future__ import annotations

import base64
import binascii
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from sqlalchemy.ext.asyncio import AsyncSession

from roost.inventory.lifecycle import State
from roost.inventory.models import NodeRow
from roost.pki import signing
from roost.pki.ca import CertificateAuthority, fingerprint, serial_hex
from roost.pki.models import CertificateRow


class NodeAuthFailed(Exception):
    """Why a node credential was refused (for the log and the 401 detail)."""


@dataclass(frozen=True)
class NodePrincipal:
    node_id: int
    serial: str


class ReplayGuard:
    """Remembers nonces for the skew window; a nonce seen twice is a replay."""

    def __init__(self, window: float, limit: int = 100_000) -> None:
        self.window = window
        self.limit = limit
        self._seen: OrderedDict[str, float] = OrderedDict()

    def check(self, key: str, now: float) -> None:
        while self._seen and (
            next(iter(self._seen.values())) < now - 2 * self.window or len(self._seen) > self.limit
        ):
            self._seen.popitem(last=False)
        if key in self._seen:
            raise NodeAuthFailed("replayed request (nonce already used)")
        self._seen[key] = now


def from_tls(scope: Mapping[str, Any]) -> x509.Certificate | None:
    """The verified peer certificate, when the server terminated mutual TLS and says so."""
    tls = (scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    if not chain or tls.get("client_cert_error"):
        return None
    leaf = chain[0]
    return x509.load_pem_x509_certificate(leaf.encode() if isinstance(leaf, str) else leaf)


def from_signature(
    headers: Mapping[str, str],
    method: str,
    target: str,
    body: bytes,
    now: float,
    skew: float,
    guard: ReplayGuard,
) -> x509.Certificate:
    """The certificate of a correctly signed, fresh, not replayed request."""
    try:
        der = base64.b64decode(headers[signing.HEADER_CERT], validate=True)
        signature = base64.b64decode(headers[signing.HEADER_SIGNATURE], validate=True)
        timestamp, nonce = headers[signing.HEADER_TIME], headers[signing.HEADER_NONCE]
        cert = x509.load_der_x509_certificate(der)
        when = int(timestamp)
    except KeyError as exc:
        raise NodeAuthFailed(f"missing header {exc.args[0]}") from None
    except (ValueError, binascii.Error):
        raise NodeAuthFailed("malformed certificate, signature or time header") from None
    if abs(now - when) > skew:
        raise NodeAuthFailed(f"request time is more than {int(skew)}s from the server clock")
    if len(nonce) < 16 or len(nonce) > 64:
        raise NodeAuthFailed("nonce must be 16 to 64 characters")
    message = signing.canonical(method, target, timestamp, nonce, body)
    if not signing.verify(cert.public_key(), signature, message):
        raise NodeAuthFailed("signature does not verify with the presented certificate")
    guard.check(f"{fingerprint(cert)}:{nonce}", now)
    return cert


async def check_certificate(
    s: AsyncSession, ca: CertificateAuthority, cert: x509.Certificate, now: datetime
) -> NodePrincipal:
    """CA signature, validity, and the database record: issued, unrevoked, live node."""
    if not ca.issued_by_me(cert):
        raise NodeAuthFailed("certificate was not issued by this Roost CA")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise NodeAuthFailed("certificate is expired or not yet valid")
    serial = serial_hex(cert.serial_number)
    row = await s.get(CertificateRow, serial)
    if row is None or row.fingerprint != fingerprint(cert):
        raise NodeAuthFailed(f"certificate {serial} is not on record")
    if row.revoked_at is not None:
        raise NodeAuthFailed(f"certificate {serial} is revoked ({row.revoked_reason})")
    node = await s.get(NodeRow, row.node_id) if row.node_id is not None else None
    if node is None or node.state == State.retired.value:
        raise NodeAuthFailed(f"certificate {serial} belongs to no live node")
    return NodePrincipal(node.id, serial)
