"""Bearer tokens: who is calling, and with which roles.

Two sources, usable together:

* a static token set, a JSON file (re-read when it changes)::

      {"tokens": [
        {"subject": "ivr-eu-1", "roles": ["integrator"], "sha256": "<hex digest of the token>"},
        {"subject": "desk-app", "roles": ["agent"], "token": "<the token itself>"}
      ]}

  Prefer `sha256` entries: the file then holds no usable secret. A plain `token` must be at
  least 32 characters. Tokens are looked up by their SHA-256 digest, so comparing takes the
  same time whatever the guess.
* JWTs signed by an identity provider, verified with one configured algorithm (HS256 with a
  shared secret of at least 32 bytes, RS256 with an RSA key of at least 2048 bits, ES256 with a
  P-256 key) so a token cannot choose its own algorithm; `exp` and `sub` are required, `iss`
  and `aud` are checked when configured. Roles come from a claim (default `roles`): a list, or
  a space-separated string.

A token with three dot-separated parts is treated as a JWT, anything else as a static token.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from rapport.security.files import WatchedFiles
from rapport.settings import AuthSettings

MAX_TOKEN_LENGTH = 8192
MIN_STATIC_TOKEN_LENGTH = 32
MIN_HMAC_SECRET_BYTES = 32
MIN_RSA_BITS = 2048
_ROLE = re.compile(r"^[a-z][a-z0-9_\-]{0,63}$")
_HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class InvalidToken(Exception):
    """The token does not identify a caller; the message is safe to return to the caller."""


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    subject: str
    roles: frozenset[str]
    # "token" (static set) or "jwt".
    source: str


class TokenVerifier(Protocol):
    def verify(self, token: str) -> Principal: ...


def token_digest(token: str) -> str:
    """The hex SHA-256 a static token file stores instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def _roles(value: object, where: str) -> frozenset[str]:
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, list) or not all(isinstance(r, str) for r in value):
        raise ValueError(f"{where}: roles must be a list of names")
    bad = [r for r in value if not _ROLE.match(r)]
    if bad:
        raise ValueError(f"{where}: invalid role names {bad}")
    return frozenset(value)


def parse_token_file(raw: bytes) -> dict[str, Principal]:
    """Digest -> principal; raises ValueError naming the bad entry."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"token file is not JSON: {exc}") from None
    entries = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError('token file must be {"tokens": [...]}')
    found: dict[str, Principal] = {}
    for i, entry in enumerate(entries):
        where = f"tokens[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: must be an object")
        subject = entry.get("subject")
        if not isinstance(subject, str) or not subject.strip():
            raise ValueError(f"{where}: subject is required")
        roles = _roles(entry.get("roles"), where)
        if not roles:
            raise ValueError(f"{where}: at least one role is required")
        token, digest = entry.get("token"), entry.get("sha256")
        if (token is None) == (digest is None):
            raise ValueError(f"{where}: give exactly one of token or sha256")
        if token is not None:
            if not isinstance(token, str) or len(token) < MIN_STATIC_TOKEN_LENGTH or token != token.strip():
                raise ValueError(f"{where}: token must be at least {MIN_STATIC_TOKEN_LENGTH} characters, no spaces")
            digest = token_digest(token)
        elif not isinstance(digest, str) or not _HEX_DIGEST.match(digest.lower()):
            raise ValueError(f"{where}: sha256 must be 64 hex digits")
        digest = digest.lower()
        if digest in found:
            raise ValueError(f"{where}: the same token appears twice")
        found[digest] = Principal(subject.strip(), roles, "token")
    return found


class StaticTokens:
    def __init__(self, path: str) -> None:
        self._file = WatchedFiles([path], lambda raw: parse_token_file(raw[0]), "static token set")

    def verify(self, token: str) -> Principal:
        principal = self._file.current().get(token_digest(token))
        if principal is None:
            raise InvalidToken("unknown token")
        return principal


def parse_jwt_key(algorithm: str, raw: bytes) -> Any:
    """The verification key for `algorithm`; raises ValueError when it is weak or of the wrong kind."""
    if algorithm == "HS256":
        secret = raw.strip()
        if len(secret) < MIN_HMAC_SECRET_BYTES:
            raise ValueError(f"an HS256 secret must be at least {MIN_HMAC_SECRET_BYTES} bytes")
        if secret.startswith(b"-----BEGIN"):
            raise ValueError("HS256 needs a shared secret, not a PEM key")
        return secret
    try:
        if b"BEGIN CERTIFICATE" in raw:
            key: Any = x509.load_pem_x509_certificate(raw).public_key()
        else:
            key = load_pem_public_key(raw)
    except ValueError as exc:
        raise ValueError(f"not a PEM public key or certificate: {exc}") from None
    if algorithm == "RS256":
        if not isinstance(key, rsa.RSAPublicKey) or key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RS256 needs an RSA public key of at least {MIN_RSA_BITS} bits")
    elif algorithm == "ES256":
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("ES256 needs an EC P-256 public key")
    else:
        raise ValueError(f"unsupported JWT algorithm {algorithm!r}")
    return key


class JwtVerifier:
    def __init__(
        self,
        algorithm: str,
        key_file: str,
        *,
        issuer: str = "",
        audience: str = "",
        roles_claim: str = "roles",
        leeway: float = 30.0,
    ) -> None:
        self.algorithm = algorithm
        self.issuer = issuer
        self.audience = audience
        self.roles_claim = roles_claim
        self.leeway = leeway
        self._key = WatchedFiles([key_file], lambda raw: parse_jwt_key(algorithm, raw[0]), f"{algorithm} JWT key")
        self._required = ["exp", "sub"] + (["iss"] if issuer else []) + (["aud"] if audience else [])

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._key.current(),
                algorithms=[self.algorithm],
                audience=self.audience or None,
                issuer=self.issuer or None,
                leeway=self.leeway,
                options={"require": self._required, "verify_aud": bool(self.audience)},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("token not yet valid") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("token from an untrusted issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"token lacks the {exc.claim} claim") from None
        except (jwt.InvalidTokenError, ValueError, TypeError):
            # Bad signature, wrong algorithm, malformed: one answer for all of them.
            raise InvalidToken("invalid token") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("token lacks the sub claim")
        try:
            roles = _roles(claims.get(self.roles_claim, []), self.roles_claim)
        except ValueError:
            raise InvalidToken(f"token's {self.roles_claim} claim is not a list of role names") from None
        return Principal(subject, roles, "jwt")


class Verifiers:
    """Routes a token to the JWT verifier or the static set by its shape."""

    def __init__(self, static: StaticTokens | None, jwt_verifier: JwtVerifier | None) -> None:
        if static is None and jwt_verifier is None:
            raise ValueError("at least one token source is needed")
        self.static = static
        self.jwt = jwt_verifier

    def verify(self, token: str) -> Principal:
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("token too long")
        looks_like_jwt = token.count(".") == 2
        if looks_like_jwt and self.jwt is not None:
            return self.jwt.verify(token)
        if self.static is not None:
            return self.static.verify(token)
        raise InvalidToken("invalid token")

    @property
    def sources(self) -> Sequence[str]:
        return [name for name, v in (("tokens", self.static), ("jwt", self.jwt)) if v is not None]


def verifier_from_settings(settings: AuthSettings) -> Verifiers | None:
    """None when no token source is configured; raises on a broken token file or key."""
    if not settings.enabled:
        return None
    static = StaticTokens(settings.tokens_file) if settings.tokens_file else None
    jwt_verifier = (
        JwtVerifier(
            settings.jwt_algorithm,
            settings.jwt_key_file,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            roles_claim=settings.jwt_roles_claim,
            leeway=settings.jwt_leeway,
        )
        if settings.jwt_key_file
        else None
    )
    return Verifiers(static, jwt_verifier)
