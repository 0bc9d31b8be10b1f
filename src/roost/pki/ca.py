"""The Roost certificate authority: one EC P-256 key and a self-signed CA certificate.

Both live in ``<data_dir>/pki/``: ``ca.key`` (PKCS#8 PEM, mode 0600, never served) and
``ca.pem`` (public; the API serves it so nodes and site services can pin it). They are created
on first use, race-free between processes (see :func:`roost.secrets.create_private_file`).
Node certificates are end-entity client certificates (RFC 5280 §4.2.1.12 ``clientAuth``)
whose subject Roost chooses, never the CSR: CN ``node-<id>`` and the URI SAN
``urn:roost:node:<id>``. Time is passed in, so issuing is deterministic to test.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from roost.errors import ConfigError, Invalid
from roost.secrets import check_private, create_private_file

CA_LIFETIME = timedelta(days=3650)
_BACKDATE = timedelta(minutes=5)  # tolerate node clocks that lag a little
_cache: dict[Path, CertificateAuthority] = {}

NodeKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def serial_hex(serial: int) -> str:
    return format(serial, "x")


def node_public_key(key: object) -> NodeKey:
    """Node keys are EC (P-256 or P-384) or Ed25519; anything else is refused."""
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in ("secp256r1", "secp384r1"):
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    raise Invalid("the CSR's key must be EC P-256, EC P-384 or Ed25519")


class CertificateAuthority:
    """Signs node CSRs and CRLs; constructed from a loaded key and certificate, no I/O."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self._key = key
        self.cert = cert

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        csr: x509.CertificateSigningRequest,
        node_id: int,
        now: datetime,
        lifetime: timedelta,
    ) -> x509.Certificate:
        if not csr.is_signature_valid:
            raise Invalid("the CSR's signature does not verify: it was not made with its key")
        key = node_public_key(csr.public_key())
        ski = x509.SubjectKeyIdentifier.from_public_key(key)
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"node-{node_id}")]))
            .issuer_name(self.cert.subject)
            .public_key(key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + lifetime)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(f"urn:roost:node:{node_id}")]
                ),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(_usage(signing=True), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(aki, critical=False)
        )
        return builder.sign(self._key, hashes.SHA256())

    def issued_by_me(self, cert: x509.Certificate) -> bool:
        """True when ``cert`` carries this CA's signature (RFC 5280 §6.1.3 (a)(1))."""
        try:
            cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    def crl(
        self, revoked: list[tuple[int, datetime]], now: datetime, next_update: timedelta
    ) -> x509.CertificateRevocationList:
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now)
            .next_update(now + next_update)
        )
        for serial, when in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
            )
        return builder.sign(self._key, hashes.SHA256())


def _usage(signing: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=signing,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=not signing,
        crl_sign=not signing,
        encipher_only=False,
        decipher_only=False,
    )


def _self_signed(key: ec.EllipticCurvePrivateKey, name: str, now: datetime) -> x509.Certificate:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Roost"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(signing=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def load_or_create(data_dir: Path, name: str, now: datetime) -> CertificateAuthority:
    """The CA of this data directory, created on first use; ``name`` goes into a new CA's CN."""
    pki = (data_dir / "pki").resolve()
    if (ca := _cache.get(pki)) is not None:
        return ca
    pki.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path, cert_path = pki / "ca.key", pki / "ca.pem"
    fresh = ec.generate_private_key(ec.SECP256R1())
    create_private_file(
        key_path,
        fresh.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    check_private(key_path)
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{key_path} is not an EC private key")
    if not cert_path.exists():
        cert = _self_signed(key, name, now)
        create_private_file(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    if cert.public_key() != key.public_key():
        raise ConfigError(f"{cert_path} does not belong to {key_path}")
    ca = _cache[pki] = CertificateAuthority(key, cert)
    return ca
