"""Encryption at rest for the secrets Roost stores (BMC passwords, cloud API keys).

Values are sealed with AES-256-GCM (``cryptography``) under a key kept in the data directory
as ``secret.key``, mode 0600, created on first use with ``O_EXCL`` so two processes starting
at once agree on one key. A sealed value reads ``v1:<base64(nonce ‖ ciphertext ‖ tag)>``; the
96-bit nonce is random per value (NIST SP 800-38D §8.2.2 allows 2^32 random nonces per key,
far beyond what an inventory stores). A purpose string is bound as associated data, so a
ciphertext copied from one column into another does not decrypt.

Whoever can read the data directory can read the secrets: this protects database dumps,
backups and a PostgreSQL server shared with others, not a compromised Roost host.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets as _random
import stat
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from roost.errors import ConfigError

log = logging.getLogger(__name__)

KEY_FILE = "secret.key"
REDACTED = "***"
"""What the API shows in place of every stored secret."""

_PREFIX = "v1:"
_cache: dict[Path, SecretBox] = {}


class SecretBox:
    """Seals and opens values with one key; constructed from key bytes, no I/O."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ConfigError("secret key must be 32 bytes (AES-256)")
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, purpose: str) -> str:
        nonce = _random.token_bytes(12)
        sealed = self._aead.encrypt(nonce, plaintext, purpose.encode())
        return _PREFIX + base64.b64encode(nonce + sealed).decode()

    def open(self, sealed: str, purpose: str) -> bytes:
        if not sealed.startswith(_PREFIX):
            raise ConfigError("stored secret has an unknown format")
        raw = base64.b64decode(sealed[len(_PREFIX) :])
        try:
            return self._aead.decrypt(raw[:12], raw[12:], purpose.encode())
        except InvalidTag:
            raise ConfigError(
                f"a stored secret does not decrypt with {KEY_FILE}: was the key file replaced?"
            ) from None

    def seal_json(self, value: dict[str, Any], purpose: str) -> str:
        return self.seal(json.dumps(value, sort_keys=True).encode(), purpose)

    def open_json(self, sealed: str, purpose: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.open(sealed, purpose))
        return data


def create_private_file(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` mode 0600 unless it exists; True when this call created it.

    The bytes go to a temporary file first and are linked into place, so a concurrent reader
    never sees a half-written key and exactly one of two racing writers wins.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{_random.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink()


def check_private(path: Path) -> None:
    """Refuse a key file that others could read."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"{path} is mode {mode:o}; it must be 0600 (chmod 600 {path})")


def secret_box(data_dir: Path) -> SecretBox:
    """The box for this data directory, creating its key on first use."""
    path = (data_dir / KEY_FILE).resolve()
    box = _cache.get(path)
    if box is not None:
        return box
    data_dir.mkdir(parents=True, exist_ok=True)
    if create_private_file(path, _random.token_bytes(32)):
        log.info("created the secrets key %s (mode 0600)", path)
    check_private(path)
    key = path.read_bytes()
    box = _cache[path] = SecretBox(key)
    return box
