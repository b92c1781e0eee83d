"""Transport security and caller identity for every Rapport gRPC server and client.

Threats and what answers them:

* Eavesdropping or tampering on the wire: TLS on every server (`tls.server_credentials`), with
  certificates re-read on rotation; clients verify the server (`tls.channel_credentials`).
  Plaintext is refused on any non-loopback address unless explicitly allowed (a mesh encrypts).
* An unknown machine talking to a service: mutual TLS, client certificates signed by a set CA.
* An unknown or forged caller: a bearer token on every call, checked by `AuthInterceptor`
  against a static token set (stored as SHA-256 digests) or a JWT verified with a configured
  key and a fixed algorithm (no `alg` confusion, `exp` required); UNAUTHENTICATED otherwise.
* A caller doing more than its job: per-method permissions from a declarative `Policy` of
  roles (agent, supervisor, integrator, admin) mapped to gRPC method patterns; anything not
  granted is PERMISSION_DENIED, so a new method is admin-only until the policy names it.
* Hostile bytes: requests are decoded only after the caller is authorised, and a request that
  does not decode is INVALID_ARGUMENT naming the message type (`wire.RequestDecodingInterceptor`).

Health and reflection stay open so probes and grpcurl work without a token.

Rotation, without a restart: the server certificate, its key and the client CA bundle (the
next handshake uses the new files once the key matches the certificate), the static token set
and the JWT verification key (the next call), and a client's token file (the next call).
With a restart: the role policy file, and a client's CA or certificate (read when a channel
opens). A file that is broken mid-rotation is logged and the previous version kept.
"""

from rapport.security.interceptor import AuthInterceptor, current_principal
from rapport.security.policy import DEFAULT_POLICY, Policy
from rapport.security.tokens import InvalidToken, Principal

__all__ = ["DEFAULT_POLICY", "AuthInterceptor", "InvalidToken", "Policy", "Principal", "current_principal"]
