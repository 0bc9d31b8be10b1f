"""Per-node boot tokens: proof that a request comes from the node Roost sent a URL to.

A token is the node's MAC (12 hex digits) and a truncated HMAC-SHA256 of the MAC and the
node's enrollment generation under a secret that only this boot server holds
(``<data_dir>/boot/secret``, mode 0600, made at first start). It needs no database row,
survives restarts, is checked in constant time on every request, and names its node, so a
callback URL alone identifies who calls. Every enrollment moves the generation on, so a token
that leaked before it is worthless after it; replacing the secret file revokes every token at
once. Whether a render carries one at all is the enrollment policy's decision
(:mod:`roost.boot.enrollment`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from roost.boot.names import normalize_mac
from roost.errors import Invalid

_DIGEST_HEX = 32  # 128 bits of HMAC: unguessable over a network


class BootTokens:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("boot token secret must be at least 16 bytes")
        self._secret = secret

    @classmethod
    def load(cls, path: Path) -> BootTokens:
        """Read the secret, creating it (0600, written before use) when it does not exist."""
        try:
            return cls(path.read_bytes())
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            return cls(path.read_bytes())

    def _digest(self, mac_hex: str, generation: int) -> str:
        msg = f"roost-boot:{mac_hex}:{generation}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()[:_DIGEST_HEX]

    def issue(self, mac: str, generation: int = 0) -> str:
        mac_hex = normalize_mac(mac).replace(":", "")
        return f"{mac_hex}-{self._digest(mac_hex, generation)}"

    @staticmethod
    def mac_of(token: str) -> str | None:
        """The MAC a well-formed token names (not yet verified), or None."""
        mac_hex, sep, digest = token.partition("-")
        if not sep or len(mac_hex) != 12 or len(digest) != _DIGEST_HEX:
            return None
        try:
            return normalize_mac(mac_hex)
        except Invalid:
            return None

    def verify(self, token: str, generation: int = 0) -> str | None:
        """The MAC the token was issued for in ``generation``, or None for anything else."""
        mac = self.mac_of(token)
        return mac if mac is not None and self.check(mac, token, generation) else None

    def check(self, mac: str, token: str | None, generation: int = 0) -> bool:
        """True when ``token`` was issued for ``mac`` in enrollment ``generation``."""
        if token is None or self.mac_of(token) != mac:
            return False
        expected = self.issue(mac, generation).encode()
        return hmac.compare_digest(expected, token.encode("utf-8", "replace"))
