"""Helpers for the node tests: an agent's key, CSR and signed requests, and a recording power
driver with ``roost.power``'s interface, to see exactly what a driver is given."""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from roost.errors import Invalid
from roost.pki import signing


@dataclass
class Agent:
    """What a node holds after enrolling: its key and its certificate."""

    key: signing.NodePrivateKey
    cert: x509.Certificate | None = None

    @classmethod
    def new(cls, kind: str = "ec") -> Agent:
        if kind == "ed25519":
            return cls(ed25519.Ed25519PrivateKey.generate())
        return cls(ec.generate_private_key(ec.SECP256R1()))

    def csr(self) -> str:
        builder = x509.CertificateSigningRequestBuilder().subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ignored-by-roost")])
        )
        algo = None if isinstance(self.key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
        return builder.sign(self.key, algo).public_bytes(serialization.Encoding.PEM).decode()

    def take(self, pem: str) -> None:
        self.cert = x509.load_pem_x509_certificate(pem.encode())

    def auth(self) -> signing.NodeAuth:
        assert self.cert is not None
        return signing.NodeAuth(self.key, self.cert)

    def headers(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        now: float | None = None,
        nonce: str | None = None,
    ) -> dict[str, str]:
        assert self.cert is not None
        return signing.headers(
            self.key, self.cert, method, target, body, time.time() if now is None else now, nonce
        )


def anonymous(api: httpx.AsyncClient, auth: httpx.Auth | None = None) -> httpx.AsyncClient:
    """A client on the same in-process app without the admin token."""
    return httpx.AsyncClient(transport=api._transport, base_url="http://roost.test", auth=auth)


@dataclass(frozen=True)
class Spec:
    name: str
    type: type
    required: bool = False
    secret: bool = False
    help: str = ""
    default: Any = None
    target: bool = False


class RecordingDriver:
    """Keeps its power state in memory and records every call with the settings it got."""

    SETTINGS = (
        Spec("host", str, required=True, target=True),
        Spec("username", str, required=True),
        Spec("password", str, required=True, secret=True),
    )
    calls: list[tuple[str, dict[str, Any]]] = []
    state = "off"
    fail = False

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings

    async def power_on(self) -> str:
        if RecordingDriver.fail:
            raise RuntimeError(f"BMC {self.settings['host']} did not answer")
        RecordingDriver.calls.append(("on", self.settings))
        RecordingDriver.state = "on"
        return RecordingDriver.state

    async def power_off(self) -> str:
        RecordingDriver.calls.append(("off", self.settings))
        RecordingDriver.state = "off"
        return RecordingDriver.state

    async def power_cycle(self) -> str:
        RecordingDriver.calls.append(("cycle", self.settings))
        RecordingDriver.state = "on"
        return RecordingDriver.state

    async def power_status(self) -> str:
        return RecordingDriver.state

    async def set_boot_device(self, device: str) -> None:
        RecordingDriver.calls.append((f"boot:{device}", self.settings))


def _load(name: str) -> type[RecordingDriver]:
    if name != "recording":
        raise LookupError(f"no power driver {name!r}")
    return RecordingDriver


def _validate(cls: type[RecordingDriver], raw: dict[str, Any]) -> dict[str, Any]:
    known = {s.name for s in cls.SETTINGS}
    if unknown := set(raw) - known:
        raise Invalid(f"unknown settings {sorted(unknown)}")
    missing = [s.name for s in cls.SETTINGS if s.required and s.name not in raw]
    if missing:
        raise Invalid(f"missing settings {missing}")
    return {k: str(v) for k, v in raw.items()}


POWER_LIBRARY = SimpleNamespace(load_driver=_load, validate_settings=_validate, BootDevice=str)
"""``roost.power``'s interface (``load_driver``, ``validate_settings``) over RecordingDriver."""
