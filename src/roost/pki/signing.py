"""Signed requests: how a node proves it holds the key of its certificate over plain HTTP.

uvicorn terminates TLS without handing the client certificate to the application, so a node
authenticates each request itself: it sends its certificate and a signature, made with the
certificate's key, over a canonical string of the request (method, path with query, time,
a random nonce and the SHA-256 of the body). The server checks the certificate against the
CA and the database and the signature against the certificate; see :mod:`roost.pki.nodeauth`.
This module is pure: it builds and checks the canonical string and signatures, nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Generator

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

HEADER_CERT = "x-roost-cert"
"""Base64 (standard alphabet) of the node certificate's DER."""
HEADER_TIME = "x-roost-time"
"""Unix time in seconds when the request was signed."""
HEADER_NONCE = "x-roost-nonce"
"""At least 16 random hex digits; a nonce is accepted once within the time window."""
HEADER_SIGNATURE = "x-roost-signature"
"""Base64 of the signature over :func:`canonical` (ECDSA-SHA256 DER or Ed25519)."""

NodePrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def canonical(method: str, target: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """The bytes that are signed; ``target`` is the raw path with its query, as sent."""
    lines = [
        "roost-node-v1",
        method.upper(),
        target,
        timestamp,
        nonce,
        hashlib.sha256(body).hexdigest(),
    ]
    return "\n".join(lines).encode()


def sign(key: NodePrivateKey, message: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(message)
    return key.sign(message, ec.ECDSA(hashes.SHA256()))


def verify(public_key: object, signature: bytes, message: bytes) -> bool:
    try:
        if isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, message)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        else:
            return False
    except InvalidSignature:
        return False
    return True


def headers(
    key: NodePrivateKey,
    cert: x509.Certificate,
    method: str,
    target: str,
    body: bytes,
    now: float,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers that authenticate one request."""
    timestamp = str(int(now))
    nonce = nonce or secrets.token_hex(16)
    signature = sign(key, canonical(method, target, timestamp, nonce, body))
    der = cert.public_bytes(serialization.Encoding.DER)
    return {
        HEADER_CERT: base64.b64encode(der).decode(),
        HEADER_TIME: timestamp,
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: base64.b64encode(signature).decode(),
    }


class NodeAuth(httpx.Auth):
    """httpx authentication for an agent: signs every request with the node's key."""

    requires_request_body = True

    def __init__(self, key: NodePrivateKey, cert: x509.Certificate) -> None:
        self.key = key
        self.cert = cert

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        import time

        target = request.url.raw_path.decode("ascii")
        request.headers.update(
            headers(self.key, self.cert, request.method, target, request.content, time.time())
        )
        yield request
