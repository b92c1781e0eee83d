"""What `rapport.serving.start_server` plugs in: credentials to bind with and the interceptors.

The rules for a server's address:
* loopback (the local default, 127.0.0.1): plaintext and no token check are allowed, with a
  warning in the log that says so;
* any other address: TLS is required unless RAPPORT_TLS_ALLOW_PLAINTEXT=true (a service mesh
  encrypts), and a token check is required unless RAPPORT_AUTH_ALLOW_ANONYMOUS=true.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import grpc

from rapport.security.interceptor import AuthInterceptor
from rapport.security.policy import DEFAULT_POLICY, Policy
from rapport.security.tls import ServerCertificates, is_loopback
from rapport.security.tokens import verifier_from_settings
from rapport.security.wire import RequestDecodingInterceptor
from rapport.settings import GrpcSettings

log = logging.getLogger(__name__)


class InsecureConfiguration(ValueError):
    """The server would expose plaintext or unauthenticated gRPC beyond this machine."""


@dataclass
class ServerSecurity:
    credentials: grpc.ServerCredentials | None
    # Outermost first: authentication, then decoding of the request.
    interceptors: list[grpc.ServerInterceptor] = field(default_factory=list)
    transport: str = "plaintext"
    auth: str = "off"


def server_security(settings: GrpcSettings, policy: Policy | None = None) -> ServerSecurity:
    """Loads certificates, token sources and policy; raises on a broken file or an unsafe setup."""
    local = is_loopback(settings.host)
    tls, auth = settings.tls, settings.auth
    if not tls.enabled and not local and not tls.allow_plaintext:
        raise InsecureConfiguration(
            f"refusing plaintext gRPC on {settings.address}: set RAPPORT_TLS_CERT_FILE and RAPPORT_TLS_KEY_FILE, "
            "or RAPPORT_TLS_ALLOW_PLAINTEXT=true if a service mesh encrypts this hop"
        )
    if not auth.enabled and not local and not auth.allow_anonymous:
        raise InsecureConfiguration(
            f"refusing unauthenticated gRPC on {settings.address}: set RAPPORT_AUTH_TOKENS_FILE or "
            "RAPPORT_AUTH_JWT_ALGORITHM and RAPPORT_AUTH_JWT_KEY_FILE, or RAPPORT_AUTH_ALLOW_ANONYMOUS=true"
        )
    credentials = ServerCertificates(tls).credentials() if tls.enabled else None
    transport = "mtls" if tls.mutual else "tls" if tls.enabled else "plaintext"
    interceptors: list[grpc.ServerInterceptor] = []
    verifier = verifier_from_settings(auth)
    auth_mode = "off"
    if verifier is not None:
        if policy is None:
            policy = Policy.from_file(auth.policy_file) if auth.policy_file else DEFAULT_POLICY
        interceptors.append(AuthInterceptor(verifier, policy))
        auth_mode = "+".join(verifier.sources)
        if verifier.jwt is not None and not auth.jwt_audience:
            log.warning("JWT audience is not checked: set RAPPORT_AUTH_JWT_AUDIENCE to this deployment's audience")
    interceptors.append(RequestDecodingInterceptor())
    if transport == "plaintext":
        log.warning(
            "gRPC server is plaintext: traffic is not encrypted (local use, or a mesh encrypts)",
            extra={"address": settings.address},
        )
    if auth_mode == "off":
        log.warning(
            "gRPC server checks no tokens: every caller may call every method", extra={"address": settings.address}
        )
    return ServerSecurity(credentials, interceptors, transport, auth_mode)
