"""Per-node boot tokens: proof that a request comes from the node Roost sent a URL to.

A token is the node's MAC (12 hex digits) and a truncated HMAC-SHA256 of it under a secret
that only this boot server holds (``<data_dir>/boot/secret``, mode 0600, made at first start).
It needs no database row, survives restarts, is checked in constant time on every request,
and names its node, so a callback URL alone identifies who calls. Replacing the secret file
revokes every token at once. The token is only as secret as the LAN the iPXE script crosses,
which is why enrollment uses one-time tokens of its own (see ``token_for`` in the service).
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

    def _digest(self, mac_hex: str) -> str:
        mac = hmac.new(self._secret, b"roost-boot:" + mac_hex.encode(), hashlib.sha256)
        return mac.hexdigest()[:_DIGEST_HEX]

    def issue(self, mac: str) -> str:
        mac_hex = normalize_mac(mac).replace(":", "")
        return f"{mac_hex}-{self._digest(mac_hex)}"

    def verify(self, token: str) -> str | None:
        """The MAC the token was issued for, or None for anything else."""
        mac_hex, sep, digest = token.partition("-")
        if not sep or len(mac_hex) != 12 or len(digest) != _DIGEST_HEX:
            return None
        try:
            mac = normalize_mac(mac_hex)
        except Invalid:
            return None
        expected = self._digest(mac_hex).encode()
        return mac if hmac.compare_digest(expected, digest.encode("utf-8", "replace")) else None

    def check(self, mac: str, token: str | None) -> bool:
        """True when ``token`` was issued for ``mac``."""
        return token is not None and self.verify(token) == mac
