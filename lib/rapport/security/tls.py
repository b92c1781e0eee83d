"""TLS for gRPC servers (with rotation) and clients (verifying the server).

Rotation: the server's credentials are dynamic. gRPC asks for the current certificate on every
new connection's handshake; the files are re-read when any of them changes (a cert-manager or
Kubernetes Secret update), and the new chain is used only once its key matches it, so a
half-written rotation never takes a server down. Connections already open keep the
certificate they started with. Client CA bundles (mutual TLS) rotate the same way.
Clients read their CA and certificate when a channel is opened: long-lived clients pick up a
rotated CA on their next channel (a restart, for a service).
"""

from __future__ import annotations

import ipaddress
import logging
from datetime import UTC, datetime, timedelta

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key

from rapport.security.files import WatchedFiles
from rapport.settings import ChannelSettings, TlsSettings

log = logging.getLogger(__name__)

EXPIRY_WARNING = timedelta(days=14)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost; False for wildcards ([::], 0.0.0.0) and the rest."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def target_host(target: str) -> str:
    """The host of a gRPC target: `host:port`, `[::1]:50051`, `dns:///host:port`, `ipv4:1.2.3.4:5`."""
    rest = target.strip()
    for scheme in ("dns:", "ipv4:", "ipv6:"):
        if rest.startswith(scheme):
            rest = rest[len(scheme) :]
            if rest.startswith("//"):  # dns://authority/host:port
                rest = rest[2:].partition("/")[2]
            break
    if rest.startswith("["):
        return rest[1 : rest.find("]")]
    return rest.split(":")[0] if rest.count(":") == 1 else rest


def is_local_target(target: str) -> bool:
    """A Unix socket or a loopback address: traffic that never leaves the machine."""
    return target.startswith(("unix:", "unix-abstract:")) or is_loopback(target_host(target))


def _certificates(pem: bytes, what: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise ValueError(f"{what}: not PEM certificates ({exc})") from None
    return certs


def _spki(key: object) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined,no-any-return]


def check_key_pair(chain_pem: bytes, key_pem: bytes) -> x509.Certificate:
    """The leaf certificate, once its key is known to be `key_pem` and it has not expired."""
    leaf = _certificates(chain_pem, "certificate")[0]
    try:
        key = load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"private key: cannot load an unencrypted PEM key ({exc})") from None
    if _spki(leaf.public_key()) != _spki(key.public_key()):
        raise ValueError("the private key does not match the certificate")
    now = datetime.now(UTC)
    if leaf.not_valid_after_utc <= now:
        raise ValueError(f"the certificate expired at {leaf.not_valid_after_utc.isoformat()}")
    if leaf.not_valid_after_utc - now < EXPIRY_WARNING:
        log.warning("server certificate expires soon", extra={"not_after": leaf.not_valid_after_utc.isoformat()})
    return leaf


class ServerCertificates:
    """The server's certificate configuration, current with the files on disk."""

    def __init__(self, settings: TlsSettings) -> None:
        if not settings.enabled:
            raise ValueError("TLS is not configured")
        self.settings = settings
        paths = [settings.cert_file, settings.key_file] + ([settings.client_ca_file] if settings.mutual else [])
        self._files = WatchedFiles(paths, self._parse, "gRPC server certificate")
        self._served = self._files.current()

    def _parse(self, contents: list[bytes]) -> grpc.ServerCertificateConfiguration:
        chain, key = contents[0], contents[1]
        leaf = check_key_pair(chain, key)
        client_ca = None
        if len(contents) > 2:
            client_ca = contents[2]
            _certificates(client_ca, "client CA bundle")
        log.info(
            "server certificate loaded",
            extra={"subject": leaf.subject.rfc4514_string(), "not_after": leaf.not_valid_after_utc.isoformat()},
        )
        return grpc.ssl_server_certificate_configuration([(key, chain)], root_certificates=client_ca)

    def initial(self) -> grpc.ServerCertificateConfiguration:
        return self._served

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC before each handshake: a new configuration, or None for no change."""
        current = self._files.current()
        if current is self._served:
            return None
        self._served = current
        return current

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            # The stubs want a configuration back, but gRPC documents None as "no change".
            self.initial(),
            self.fetch,  # type: ignore[arg-type]
            require_client_authentication=self.settings.mutual,
        )


def server_credentials(settings: TlsSettings) -> grpc.ServerCredentials:
    return ServerCertificates(settings).credentials()


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def channel_credentials(settings: ChannelSettings) -> grpc.ChannelCredentials:
    """TLS that verifies the server against the CA file (or the system roots), with the client
    certificate for mutual TLS when one is set."""
    root = _read(settings.ca_file) if settings.ca_file else None
    if root is not None:
        _certificates(root, f"RAPPORT_TLS_CA_FILE {settings.ca_file}")
    key = chain = None
    if settings.cert_file:
        chain, key = _read(settings.cert_file), _read(settings.key_file)
        check_key_pair(chain, key)
    return grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=chain)
