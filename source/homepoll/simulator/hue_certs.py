"""Certificates for the simulated bridge, shaped like a real Hue bridge's.

A real bridge presents a certificate whose subject CN is its bridge id (16 hex digits), with
no subjectAltName, issued by Signify's root (``CN=root-bridge``, ``O=Philips Hue``); older
square bridges present a self-signed one. The simulator makes a test CA of the same shape and
issues from it, so homepoll's verification (chain + CN = bridge id) runs for real. Needs the
``cryptography`` package (the ``test`` extra): only the HTTPS modes import this module.
"""

from __future__ import annotations

import datetime
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_VALID_FROM = datetime.datetime(2017, 1, 1, tzinfo=datetime.UTC)
_VALID_TO = datetime.datetime(2038, 1, 19, tzinfo=datetime.UTC)


def _name(common_name: str, organization: str = "Philips Hue", unit: str | None = None):
    parts = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "NL"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
    ]
    if unit:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    parts.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(parts)


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@dataclass(frozen=True)
class Issued:
    """A certificate (PEM) and its private key (PEM)."""

    cert: str
    key: str

    def files(self, folder: Path, stem: str) -> tuple[Path, Path]:
        cert, key = folder / f"{stem}.crt", folder / f"{stem}.key"
        cert.write_text(self.cert)
        key.write_text(self.key)
        key.chmod(0o600)
        return cert, key


class TestCa:
    """A private root shaped like Signify's ``root-bridge``."""

    __test__ = False  # not a pytest class

    def __init__(self, common_name: str = "root-bridge", organization: str = "Philips Hue"):
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.name = _name(common_name, organization)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_VALID_FROM)
            .not_valid_after(_VALID_TO)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.pem = _pem(self.cert)

    def issue(self, bridge_id: str, model: str = "BSB002") -> Issued:
        """A bridge certificate: CN = bridge id, OU = model, no subjectAltName."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(bridge_id, unit=model))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(int(bridge_id, 16) if _is_hex(bridge_id) else 1)
            .not_valid_before(_VALID_FROM)
            .not_valid_after(_VALID_TO)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        return Issued(_pem(cert), _key_pem(key))


def self_signed(bridge_id: str) -> Issued:
    """What an older square bridge presents: self-signed, CN = bridge id."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(bridge_id)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int(bridge_id, 16) if _is_hex(bridge_id) else 1)
        .not_valid_before(_VALID_FROM)
        .not_valid_after(_VALID_TO)
        .sign(key, hashes.SHA256())
    )
    return Issued(_pem(cert), _key_pem(key))


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True


def scratch_folder() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="homepoll-sim-tls-")
