"""Settings from the environment, with safe local defaults. Loaded once, in each `main`.

Security (see `rapport.security` for what each setting protects against):

gRPC servers (every service; read by `GrpcSettings.from_env`)
  RAPPORT_TLS_CERT_FILE, RAPPORT_TLS_KEY_FILE   PEM chain and key: the server speaks TLS; the
                                                files are re-read when they change (rotation)
  RAPPORT_TLS_CLIENT_CA_FILE      PEM CA bundle: mutual TLS, clients must present a certificate
                                  signed by it
  RAPPORT_TLS_ALLOW_PLAINTEXT     true lets a server bind a non-loopback address without TLS
                                  (behind a mesh that encrypts); plaintext is refused otherwise
  RAPPORT_AUTH_TOKENS_FILE        JSON static token set (subject, roles, token or sha256)
  RAPPORT_AUTH_JWT_ALGORITHM      HS256 | RS256 | ES256, with RAPPORT_AUTH_JWT_KEY_FILE (shared
                                  secret of at least 32 bytes, or a PEM public key/certificate)
  RAPPORT_AUTH_JWT_ISSUER, _AUDIENCE   checked when set; _ROLES_CLAIM (default "roles"),
                                  _LEEWAY seconds of clock skew (default 30)
  RAPPORT_AUTH_POLICY_FILE        JSON role -> method patterns, replacing the built-in policy
  RAPPORT_AUTH_ALLOW_ANONYMOUS    true lets a server bind a non-loopback address with no token
                                  check; refused otherwise
gRPC clients (`rapport.channels.open_channel`; read by `ChannelSettings.from_env`)
  RAPPORT_TLS_CA_FILE             PEM CA that signed the servers' certificates (TLS on); or
  RAPPORT_TLS_ENABLED=true        TLS verified against the system's trust store
  RAPPORT_TLS_CLIENT_CERT_FILE, RAPPORT_TLS_CLIENT_KEY_FILE   client certificate for mutual TLS
  RAPPORT_TLS_SERVER_NAME         name to verify in the server certificate when dialling an IP
  RAPPORT_AUTH_TOKEN or RAPPORT_AUTH_TOKEN_FILE   bearer token sent on every call (the file is
                                  re-read when it changes, so a sidecar can refresh it)
Kafka (`KafkaSettings`)
  RAPPORT_KAFKA_SECURITY_PROTOCOL  PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
  RAPPORT_KAFKA_SSL_CAFILE, _SSL_CERTFILE, _SSL_KEYFILE   PEM files (client cert for mTLS)
  RAPPORT_KAFKA_SASL_MECHANISM     PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512, with
  RAPPORT_KAFKA_SASL_USERNAME, RAPPORT_KAFKA_SASL_PASSWORD
Neo4j (`Neo4jSettings`): TLS is chosen by the URI scheme, as the driver defines it:
  bolt:// neo4j://           plaintext (local default)
  bolt+s:// neo4j+s://       TLS, certificate verified against the system's trust store
  bolt+ssc:// neo4j+ssc://   TLS, any (self-signed) certificate accepted: encrypts, but does not
                             authenticate the server; for test rigs only
  RAPPORT_NEO4J_CA_FILE      with bolt:// or neo4j://: TLS verified against this private CA
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
NEO4J_SCHEMES = ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")
JWT_ALGORITHMS = ("HS256", "RS256", "ES256")

INTERACTIONS_TOPIC = "rapport.interactions.v1"
DEAD_LETTER_TOPIC = "rapport.interactions.dlq.v1"
CUSTOMER_UPDATES_TOPIC = "rapport.customer-updates.v1"


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, got {raw!r}")


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str = "127.0.0.1:9092"
    interactions_topic: str = INTERACTIONS_TOPIC
    dead_letter_topic: str = DEAD_LETTER_TOPIC
    customer_updates_topic: str = CUSTOMER_UPDATES_TOPIC
    interactions_partitions: int = 6
    # Seconds; bounds every admin, produce and metadata call.
    request_timeout: float = 10.0
    # Transport security and credentials; the local default is PLAINTEXT on 127.0.0.1.
    security_protocol: str = "PLAINTEXT"
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if self.security_protocol not in KAFKA_SECURITY_PROTOCOLS:
            raise ValueError(
                f"RAPPORT_KAFKA_SECURITY_PROTOCOL must be one of {', '.join(KAFKA_SECURITY_PROTOCOLS)}, "
                f"got {self.security_protocol!r}"
            )
        if self.uses_sasl:
            if self.sasl_mechanism not in KAFKA_SASL_MECHANISMS:
                raise ValueError(
                    f"RAPPORT_KAFKA_SASL_MECHANISM must be one of {', '.join(KAFKA_SASL_MECHANISMS)} "
                    f"with {self.security_protocol}, got {self.sasl_mechanism!r}"
                )
            if not self.sasl_username or not self.sasl_password:
                raise ValueError("RAPPORT_KAFKA_SASL_USERNAME and RAPPORT_KAFKA_SASL_PASSWORD are required for SASL")
            if self.security_protocol == "SASL_PLAINTEXT" and self.sasl_mechanism == "PLAIN":
                raise ValueError("SASL PLAIN over SASL_PLAINTEXT sends the password in clear: use SASL_SSL or SCRAM")
        elif self.sasl_mechanism or self.sasl_username or self.sasl_password:
            raise ValueError(f"RAPPORT_KAFKA_SASL_* are set but the security protocol is {self.security_protocol}")
        if not self.uses_ssl and (self.ssl_cafile or self.ssl_certfile or self.ssl_keyfile):
            raise ValueError(f"RAPPORT_KAFKA_SSL_* are set but the security protocol is {self.security_protocol}")
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise ValueError("RAPPORT_KAFKA_SSL_CERTFILE and RAPPORT_KAFKA_SSL_KEYFILE go together")

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """A verifying client context (hostname checked) for SSL / SASL_SSL, else None."""
        if not self.uses_ssl:
            return None
        context = ssl.create_default_context(cafile=self.ssl_cafile or None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.ssl_certfile:
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        return context

    def kafka_python_kwargs(self) -> dict[str, Any]:
        """Security arguments for kafka-python's KafkaProducer / KafkaConsumer / KafkaAdminClient."""
        if self.security_protocol == "PLAINTEXT":
            return {}
        kwargs: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.uses_ssl:
            kwargs["ssl_check_hostname"] = True
            if self.ssl_cafile:
                kwargs["ssl_cafile"] = self.ssl_cafile
            if self.ssl_certfile:
                kwargs["ssl_certfile"] = self.ssl_certfile
                kwargs["ssl_keyfile"] = self.ssl_keyfile
        if self.uses_sasl:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password
        return kwargs

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Security arguments for aiokafka's AIOKafkaProducer / AIOKafkaConsumer."""
        if self.security_protocol == "PLAINTEXT":
            return {}
        kwargs: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.uses_ssl:
            kwargs["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password
        return kwargs

    def faust_credentials(self) -> Any:
        """`broker_credentials` for faust.App (None for PLAINTEXT)."""
        if self.security_protocol == "PLAINTEXT":
            return None
        from faust.auth import SASLCredentials, SSLCredentials

        if self.uses_sasl:
            return SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password,
                mechanism=self.sasl_mechanism,
                ssl_context=self.ssl_context(),
            )
        return SSLCredentials(self.ssl_context())

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaSettings:
        env = os.environ if env is None else env
        return cls(
            bootstrap_servers=env.get("RAPPORT_KAFKA_BOOTSTRAP", cls.bootstrap_servers),
            interactions_topic=env.get("RAPPORT_INTERACTIONS_TOPIC", cls.interactions_topic),
            dead_letter_topic=env.get("RAPPORT_DEAD_LETTER_TOPIC", cls.dead_letter_topic),
            customer_updates_topic=env.get("RAPPORT_CUSTOMER_UPDATES_TOPIC", cls.customer_updates_topic),
            interactions_partitions=_int(env, "RAPPORT_INTERACTIONS_PARTITIONS", cls.interactions_partitions),
            request_timeout=_float(env, "RAPPORT_KAFKA_TIMEOUT", cls.request_timeout),
            security_protocol=(env.get("RAPPORT_KAFKA_SECURITY_PROTOCOL") or cls.security_protocol).strip().upper(),
            ssl_cafile=env.get("RAPPORT_KAFKA_SSL_CAFILE", ""),
            ssl_certfile=env.get("RAPPORT_KAFKA_SSL_CERTFILE", ""),
            ssl_keyfile=env.get("RAPPORT_KAFKA_SSL_KEYFILE", ""),
            sasl_mechanism=(env.get("RAPPORT_KAFKA_SASL_MECHANISM") or "").strip().upper(),
            sasl_username=env.get("RAPPORT_KAFKA_SASL_USERNAME", ""),
            sasl_password=env.get("RAPPORT_KAFKA_SASL_PASSWORD", ""),
        )


@dataclass(frozen=True)
class Neo4jSettings:
    uri: str = "bolt://127.0.0.1:7687"
    user: str = "neo4j"
    password: str = field(default="rapport-local", repr=False)
    database: str = "neo4j"
    # Seconds; bounds connection acquisition and each transaction.
    timeout: float = 10.0
    max_pool_size: int = 50
    # A private CA for bolt:// or neo4j:// URIs (TLS on, server verified against it).
    ca_file: str = ""

    def __post_init__(self) -> None:
        scheme = self.scheme
        if scheme not in NEO4J_SCHEMES:
            raise ValueError(f"RAPPORT_NEO4J_URI scheme must be one of {', '.join(NEO4J_SCHEMES)}, got {scheme!r}")
        if self.ca_file and "+" in scheme:
            raise ValueError(
                f"RAPPORT_NEO4J_CA_FILE needs a bolt:// or neo4j:// URI (the driver rejects {scheme}:// with a CA)"
            )

    @property
    def scheme(self) -> str:
        return self.uri.partition("://")[0].lower()

    @property
    def encrypted(self) -> bool:
        return "+" in self.scheme or bool(self.ca_file)

    def driver_security_kwargs(self) -> dict[str, Any]:
        """Extra neo4j driver arguments for a private CA (the URI scheme covers the other cases)."""
        if not self.ca_file:
            return {}
        import neo4j

        return {"encrypted": True, "trusted_certificates": neo4j.TrustCustomCAs(self.ca_file)}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Neo4jSettings:
        env = os.environ if env is None else env
        return cls(
            uri=env.get("RAPPORT_NEO4J_URI", cls.uri),
            user=env.get("RAPPORT_NEO4J_USER", cls.user),
            password=env.get("RAPPORT_NEO4J_PASSWORD", "rapport-local"),
            database=env.get("RAPPORT_NEO4J_DATABASE", cls.database),
            timeout=_float(env, "RAPPORT_NEO4J_TIMEOUT", cls.timeout),
            max_pool_size=_int(env, "RAPPORT_NEO4J_POOL_SIZE", cls.max_pool_size),
            ca_file=env.get("RAPPORT_NEO4J_CA_FILE", ""),
        )


@dataclass(frozen=True)
class TlsSettings:
    """What a gRPC server presents; with `client_ca_file`, clients must present a certificate too."""

    cert_file: str = ""
    key_file: str = ""
    client_ca_file: str = ""
    allow_plaintext: bool = False

    def __post_init__(self) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("RAPPORT_TLS_CERT_FILE and RAPPORT_TLS_KEY_FILE go together")
        if self.client_ca_file and not self.cert_file:
            raise ValueError("RAPPORT_TLS_CLIENT_CA_FILE (mutual TLS) needs RAPPORT_TLS_CERT_FILE and _KEY_FILE")

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)

    @property
    def mutual(self) -> bool:
        return bool(self.client_ca_file)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TlsSettings:
        env = os.environ if env is None else env
        return cls(
            cert_file=env.get("RAPPORT_TLS_CERT_FILE", ""),
            key_file=env.get("RAPPORT_TLS_KEY_FILE", ""),
            client_ca_file=env.get("RAPPORT_TLS_CLIENT_CA_FILE", ""),
            allow_plaintext=_bool(env, "RAPPORT_TLS_ALLOW_PLAINTEXT", False),
        )


@dataclass(frozen=True)
class AuthSettings:
    """How a gRPC server checks bearer tokens; with neither a token file nor a JWT key, it does not."""

    tokens_file: str = ""
    jwt_algorithm: str = ""
    jwt_key_file: str = ""
    jwt_issuer: str = ""
    jwt_audience: str = ""
    jwt_roles_claim: str = "roles"
    # Seconds of clock skew tolerated on exp / nbf / iat.
    jwt_leeway: float = 30.0
    policy_file: str = ""
    allow_anonymous: bool = False

    def __post_init__(self) -> None:
        if self.jwt_key_file and self.jwt_algorithm not in JWT_ALGORITHMS:
            raise ValueError(
                f"RAPPORT_AUTH_JWT_ALGORITHM must be one of {', '.join(JWT_ALGORITHMS)} when a JWT key is set, "
                f"got {self.jwt_algorithm!r}"
            )
        if self.jwt_algorithm and not self.jwt_key_file:
            raise ValueError("RAPPORT_AUTH_JWT_ALGORITHM is set but RAPPORT_AUTH_JWT_KEY_FILE is not")
        if not 0 <= self.jwt_leeway <= 300:
            raise ValueError("RAPPORT_AUTH_JWT_LEEWAY must be between 0 and 300 seconds")

    @property
    def enabled(self) -> bool:
        return bool(self.tokens_file or self.jwt_key_file)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AuthSettings:
        env = os.environ if env is None else env
        return cls(
            tokens_file=env.get("RAPPORT_AUTH_TOKENS_FILE", ""),
            jwt_algorithm=(env.get("RAPPORT_AUTH_JWT_ALGORITHM") or "").strip().upper(),
            jwt_key_file=env.get("RAPPORT_AUTH_JWT_KEY_FILE", ""),
            jwt_issuer=env.get("RAPPORT_AUTH_JWT_ISSUER", ""),
            jwt_audience=env.get("RAPPORT_AUTH_JWT_AUDIENCE", ""),
            jwt_roles_claim=env.get("RAPPORT_AUTH_JWT_ROLES_CLAIM") or cls.jwt_roles_claim,
            jwt_leeway=_float(env, "RAPPORT_AUTH_JWT_LEEWAY", cls.jwt_leeway),
            policy_file=env.get("RAPPORT_AUTH_POLICY_FILE", ""),
            allow_anonymous=_bool(env, "RAPPORT_AUTH_ALLOW_ANONYMOUS", False),
        )


@dataclass(frozen=True)
class GrpcSettings:
    host: str = "127.0.0.1"
    port: int = 0
    # Seconds given to in-flight calls on SIGTERM.
    grace: float = 10.0
    max_workers: int = 16
    tls: TlsSettings = field(default_factory=TlsSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)

    @classmethod
    def from_env(cls, prefix: str, default_port: int, env: Mapping[str, str] | None = None) -> GrpcSettings:
        """Reads RAPPORT_<PREFIX>_HOST, _PORT, _GRACE and _WORKERS, and the shared RAPPORT_TLS_* and
        RAPPORT_AUTH_* server settings."""
        env = os.environ if env is None else env
        p = f"RAPPORT_{prefix.upper()}_"
        return cls(
            host=env.get(p + "HOST", cls.host),
            port=_int(env, p + "PORT", default_port),
            grace=_float(env, p + "GRACE", cls.grace),
            max_workers=_int(env, p + "WORKERS", cls.max_workers),
            tls=TlsSettings.from_env(env),
            auth=AuthSettings.from_env(env),
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ChannelSettings:
    """How a client dials a Rapport service: TLS (verifying the server) and the bearer token."""

    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    server_name: str = ""
    token: str = field(default="", repr=False)
    token_file: str = ""

    def __post_init__(self) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("RAPPORT_TLS_CLIENT_CERT_FILE and RAPPORT_TLS_CLIENT_KEY_FILE go together")
        if self.token and self.token_file:
            raise ValueError("set RAPPORT_AUTH_TOKEN or RAPPORT_AUTH_TOKEN_FILE, not both")

    @property
    def uses_tls(self) -> bool:
        return self.tls or bool(self.ca_file or self.cert_file)

    @property
    def sends_token(self) -> bool:
        return bool(self.token or self.token_file)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ChannelSettings:
        env = os.environ if env is None else env
        return cls(
            tls=_bool(env, "RAPPORT_TLS_ENABLED", False),
            ca_file=env.get("RAPPORT_TLS_CA_FILE", ""),
            cert_file=env.get("RAPPORT_TLS_CLIENT_CERT_FILE", ""),
            key_file=env.get("RAPPORT_TLS_CLIENT_KEY_FILE", ""),
            server_name=env.get("RAPPORT_TLS_SERVER_NAME", ""),
            token=env.get("RAPPORT_AUTH_TOKEN", "").strip(),
            token_file=env.get("RAPPORT_AUTH_TOKEN_FILE", ""),
        )


# Default ports of the local stack; each service's settings read its own override.
PROFILE_PORT = 50051
TIMELINE_PORT = 50052
ROUTER_PORT = 50053
PROFILE_WORKER_WEB_PORT = 6066
