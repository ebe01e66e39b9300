"""Throwaway certificates for TLS clusters (``zraft cluster up --tls``, tests): a CA, and
node and client certificates it signs, made with ``cryptography`` (no hand-made ASN.1).

Node certificates carry every host they are dialed by as a subjectAltName, DNS names and IP
addresses alike (``zraft/transport/tls.py`` says what is checked). Private keys are written
0600 from their first byte (``write_private``). These are for local and test clusters: a
real deployment brings certificates from its own CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from zraft.filemodes import write_private

DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Authority:
    """A CA: its certificate file and, in memory, its signing key."""

    cert_path: Path
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "zraft"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    write_private(path, pem.decode())


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_ca(directory: Path, name: str = "ca", days: int = 3650) -> Authority:
    """A self-signed CA: ``DIR/NAME.pem`` and ``DIR/NAME.key`` (0600)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(_name(f"zraft {name}")).issuer_name(_name(f"zraft {name}"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - DAY).not_valid_after(now + days * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    path = directory / f"{name}.pem"
    _write_cert(path, cert)
    _write_key(directory / f"{name}.key", key)
    return Authority(path, cert, key)


def load_ca(directory: Path, name: str = "ca") -> Authority:
    """The CA ``make_ca`` wrote in ``directory`` (to issue more certificates)."""
    cert = x509.load_pem_x509_certificate((directory / f"{name}.pem").read_bytes())
    key = serialization.load_pem_private_key((directory / f"{name}.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return Authority(directory / f"{name}.pem", cert, key)


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return x509.DNSName(host)


def issue(ca: Authority, directory: Path, name: str, hosts: list[str] | None = None, *,
          days: int = 825, not_before: dt.datetime | None = None,
          not_after: dt.datetime | None = None) -> Issued:
    """A certificate signed by ``ca`` for both TLS roles (a node serves and dials), with
    ``hosts`` (DNS names or IPs) as subjectAltNames: ``DIR/NAME.pem`` and ``DIR/NAME.key``
    (0600). ``not_before``/``not_after`` override the validity (tests: an expired one)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    start = not_before or now - DAY
    builder = (x509.CertificateBuilder()
               .subject_name(_name(name)).issuer_name(ca.cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(not_after or now + days * DAY)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                              critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                     ExtendedKeyUsageOID.CLIENT_AUTH]),
                              critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca.key.public_key()), critical=False))
    if hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_san(h) for h in dict.fromkeys(hosts)]),
            critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    issued = Issued(directory / f"{name}.pem", directory / f"{name}.key")
    _write_cert(issued.cert, cert)
    _write_key(issued.key, key)
    return issued


@dataclass(frozen=True)
class ClusterCerts:
    """What ``make_cluster_certs`` wrote: the CA, the nodes' and the clients' pairs."""

    ca: Path
    node: Issued
    client: Issued


def make_cluster_certs(directory: Path, hosts: list[str]) -> ClusterCerts:
    """A fresh CA, one node certificate naming ``hosts`` (plus localhost), one client
    certificate, all under ``directory`` (the CA's key too: a throwaway cluster)."""
    ca = make_ca(directory)
    node = issue(ca, directory, "node", [*hosts, "localhost", "127.0.0.1", "::1"])
    client = issue(ca, directory, "client")
    return ClusterCerts(ca.cert_path, node, client)


__all__ = ["Authority", "ClusterCerts", "Issued", "issue", "load_ca", "make_ca",
           "make_cluster_certs"]
