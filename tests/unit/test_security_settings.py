"""Security settings: what the environment turns on, what is refused, and the client kwargs."""

import ssl
from pathlib import Path

import pytest

from rapport.security.pki import CertificateAuthority
from rapport.security.server import InsecureConfiguration, server_security
from rapport.security.tls import is_local_target, is_loopback, target_host
from rapport.settings import (
    AuthSettings,
    ChannelSettings,
    GrpcSettings,
    KafkaSettings,
    Neo4jSettings,
    TlsSettings,
)

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority.create()
    server_cert, server_key = ca.issue("localhost").write(d, "server")
    client_cert, client_key = ca.issue("client", client=True).write(d, "client")
    tokens = d / "tokens.json"
    tokens.write_text('{"tokens": [{"subject": "a", "roles": ["agent"], "token": "%s"}]}' % ("t" * 40))
    return {
        "ca": str(ca.write(d)),
        "cert": str(server_cert),
        "key": str(server_key),
        "client_cert": str(client_cert),
        "client_key": str(client_key),
        "tokens": str(tokens),
    }


# -- gRPC servers -----------------------------------------------------------------------------


def test_the_server_settings_come_from_the_shared_environment_names(pki: dict[str, str]):
    env = {
        "RAPPORT_TIMELINE_HOST": "[::]",
        "RAPPORT_TLS_CERT_FILE": pki["cert"],
        "RAPPORT_TLS_KEY_FILE": pki["key"],
        "RAPPORT_TLS_CLIENT_CA_FILE": pki["ca"],
        "RAPPORT_AUTH_JWT_ALGORITHM": "rs256",
        "RAPPORT_AUTH_JWT_KEY_FILE": "/keys/idp.pem",
        "RAPPORT_AUTH_JWT_AUDIENCE": "rapport",
        "RAPPORT_AUTH_JWT_LEEWAY": "5",
    }
    settings = GrpcSettings.from_env("timeline", 50052, env)
    assert settings.tls == TlsSettings(pki["cert"], pki["key"], pki["ca"])
    assert settings.tls.enabled and settings.tls.mutual
    assert settings.auth.jwt_algorithm == "RS256" and settings.auth.jwt_leeway == 5.0
    assert settings.auth.enabled
    assert GrpcSettings.from_env("timeline", 50052, {}).tls.enabled is False


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RAPPORT_TLS_CERT_FILE": "a.crt"}, "go together"),
        ({"RAPPORT_TLS_CLIENT_CA_FILE": "ca.crt"}, "needs RAPPORT_TLS_CERT_FILE"),
        ({"RAPPORT_TLS_ALLOW_PLAINTEXT": "maybe"}, "true or false"),
        ({"RAPPORT_AUTH_JWT_KEY_FILE": "k.pem"}, "RAPPORT_AUTH_JWT_ALGORITHM must be one of"),
        ({"RAPPORT_AUTH_JWT_KEY_FILE": "k.pem", "RAPPORT_AUTH_JWT_ALGORITHM": "none"}, "must be one of"),
        ({"RAPPORT_AUTH_JWT_ALGORITHM": "HS256"}, "RAPPORT_AUTH_JWT_KEY_FILE is not"),
        ({"RAPPORT_AUTH_JWT_LEEWAY": "3600", "RAPPORT_AUTH_TOKENS_FILE": "t"}, "between 0 and 300"),
    ],
)
def test_inconsistent_server_settings_are_refused(env: dict[str, str], message: str):
    with pytest.raises(ValueError, match=message):
        GrpcSettings.from_env("profile", 50051, env)


def test_loopback_may_be_plaintext_and_anonymous_but_says_so(caplog: pytest.LogCaptureFixture):
    security = server_security(GrpcSettings())
    assert (security.credentials, security.transport, security.auth) == (None, "plaintext", "off")
    assert "plaintext" in caplog.text and "checks no tokens" in caplog.text


@pytest.mark.parametrize("host", ["[::]", "0.0.0.0", "10.0.0.7", "profile.rapport.svc"])
def test_a_non_loopback_server_needs_tls_and_tokens_unless_explicitly_allowed(host: str, pki: dict[str, str]):
    with pytest.raises(InsecureConfiguration, match="refusing plaintext"):
        server_security(GrpcSettings(host=host, auth=AuthSettings(tokens_file=pki["tokens"])))
    with pytest.raises(InsecureConfiguration, match="refusing unauthenticated"):
        server_security(GrpcSettings(host=host, tls=TlsSettings(pki["cert"], pki["key"])))
    meshed = server_security(
        GrpcSettings(host=host, tls=TlsSettings(allow_plaintext=True), auth=AuthSettings(allow_anonymous=True))
    )
    assert (meshed.transport, meshed.auth) == ("plaintext", "off")
    full = server_security(
        GrpcSettings(host=host, tls=TlsSettings(pki["cert"], pki["key"], pki["ca"]), auth=AuthSettings(pki["tokens"]))
    )
    assert (full.transport, full.auth) == ("mtls", "tokens")
    assert full.credentials is not None


def test_a_server_certificate_that_does_not_match_its_key_is_refused_at_start(pki: dict[str, str], tmp_path: Path):
    other_cert, _ = CertificateAuthority.create().issue("localhost").write(tmp_path, "other")
    with pytest.raises(ValueError, match="does not match"):
        server_security(GrpcSettings(tls=TlsSettings(str(other_cert), pki["key"])))


def test_an_expired_server_certificate_is_refused_at_start(tmp_path: Path):
    from datetime import UTC, datetime, timedelta

    old = CertificateAuthority.create().issue("localhost", valid_from=datetime.now(UTC) - timedelta(days=3), days=1)
    cert, key = old.write(tmp_path, "old")
    with pytest.raises(ValueError, match="expired"):
        server_security(GrpcSettings(tls=TlsSettings(str(cert), str(key))))


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        *[("127.0.0.1", True), ("127.8.9.1", True), ("localhost", True), ("[::1]", True), ("::1", True)],
        *[("[::]", False), ("0.0.0.0", False), ("", False), ("10.1.2.3", False), ("localhost.evil.example", False)],
    ],
)
def test_loopback_addresses(host: str, loopback: bool):
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("target", "host", "local"),
    [
        ("127.0.0.1:50051", "127.0.0.1", True),
        ("localhost:50051", "localhost", True),
        ("[::1]:50051", "::1", True),
        ("dns:///profile.rapport:50051", "profile.rapport", False),
        ("dns://8.8.8.8/localhost:50051", "localhost", True),
        ("ipv4:127.0.0.1:50051", "127.0.0.1", True),
        ("profile.rapport:50051", "profile.rapport", False),
        ("unix:/run/rapport.sock", "unix", True),
    ],
)
def test_target_hosts(target: str, host: str, local: bool):
    if not target.startswith("unix:"):
        assert target_host(target) == host
    assert is_local_target(target) is local


# -- gRPC clients -----------------------------------------------------------------------------


def test_client_settings_turn_tls_on_with_a_ca_and_keep_the_token_out_of_repr():
    settings = ChannelSettings.from_env({"RAPPORT_TLS_CA_FILE": "ca.crt", "RAPPORT_AUTH_TOKEN": " secret-token "})
    assert settings.uses_tls and settings.sends_token and settings.token == "secret-token"
    assert "secret-token" not in repr(settings)
    assert ChannelSettings.from_env({"RAPPORT_TLS_ENABLED": "true"}).uses_tls
    assert not ChannelSettings.from_env({}).uses_tls
    with pytest.raises(ValueError, match="not both"):
        ChannelSettings.from_env({"RAPPORT_AUTH_TOKEN": "a", "RAPPORT_AUTH_TOKEN_FILE": "f"})
    with pytest.raises(ValueError, match="go together"):
        ChannelSettings.from_env({"RAPPORT_TLS_CLIENT_CERT_FILE": "c.crt"})


def test_open_channel_never_sends_a_token_in_plaintext_off_the_machine():
    from rapport.channels import open_channel

    with pytest.raises(ValueError, match="refusing to send a bearer token in plaintext"):
        open_channel("profile.rapport:50051", ChannelSettings(token="t" * 40))
    open_channel("127.0.0.1:1", ChannelSettings(token="t" * 40)).close()  # loopback is fine


# -- Kafka ------------------------------------------------------------------------------------


def test_kafka_defaults_to_plaintext_with_no_extra_arguments():
    settings = KafkaSettings.from_env({})
    assert settings.security_protocol == "PLAINTEXT"
    assert settings.kafka_python_kwargs() == {} and settings.aiokafka_kwargs() == {}
    assert settings.faust_credentials() is None


def test_kafka_sasl_ssl_gives_both_clients_their_arguments(pki: dict[str, str]):
    settings = KafkaSettings.from_env(
        {
            "RAPPORT_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "RAPPORT_KAFKA_SSL_CAFILE": pki["ca"],
            "RAPPORT_KAFKA_SSL_CERTFILE": pki["client_cert"],
            "RAPPORT_KAFKA_SSL_KEYFILE": pki["client_key"],
            "RAPPORT_KAFKA_SASL_MECHANISM": "scram-sha-512",
            "RAPPORT_KAFKA_SASL_USERNAME": "rapport",
            "RAPPORT_KAFKA_SASL_PASSWORD": "pw",
        }
    )
    assert "pw" not in repr(settings)
    assert settings.kafka_python_kwargs() == {
        "security_protocol": "SASL_SSL",
        "ssl_check_hostname": True,
        "ssl_cafile": pki["ca"],
        "ssl_certfile": pki["client_cert"],
        "ssl_keyfile": pki["client_key"],
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "rapport",
        "sasl_plain_password": "pw",
    }
    aio = settings.aiokafka_kwargs()
    context = aio.pop("ssl_context")
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert aio == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "rapport",
        "sasl_plain_password": "pw",
    }
    credentials = settings.faust_credentials()
    assert type(credentials).__name__ == "SASLCredentials"


def test_kafka_ssl_alone_verifies_the_broker_with_the_system_roots_when_no_ca_is_given():
    settings = KafkaSettings(security_protocol="SSL")
    assert settings.kafka_python_kwargs() == {"security_protocol": "SSL", "ssl_check_hostname": True}
    assert settings.aiokafka_kwargs()["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert type(settings.faust_credentials()).__name__ == "SSLCredentials"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RAPPORT_KAFKA_SECURITY_PROTOCOL": "TLS"}, "must be one of"),
        ({"RAPPORT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "SASL_MECHANISM must be one of"),
        (
            {"RAPPORT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "RAPPORT_KAFKA_SASL_MECHANISM": "PLAIN"},
            "USERNAME and RAPPORT_KAFKA_SASL_PASSWORD are required",
        ),
        (
            {
                "RAPPORT_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "RAPPORT_KAFKA_SASL_MECHANISM": "PLAIN",
                "RAPPORT_KAFKA_SASL_USERNAME": "u",
                "RAPPORT_KAFKA_SASL_PASSWORD": "p",
            },
            "password in clear",
        ),
        ({"RAPPORT_KAFKA_SASL_USERNAME": "u"}, "security protocol is PLAINTEXT"),
        ({"RAPPORT_KAFKA_SSL_CAFILE": "ca.crt"}, "security protocol is PLAINTEXT"),
        ({"RAPPORT_KAFKA_SECURITY_PROTOCOL": "SSL", "RAPPORT_KAFKA_SSL_CERTFILE": "c.crt"}, "go together"),
    ],
)
def test_inconsistent_kafka_security_is_refused(env: dict[str, str], message: str):
    with pytest.raises(ValueError, match=message):
        KafkaSettings.from_env(env)


# -- Neo4j ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "encrypted"),
    [
        ("bolt://127.0.0.1:7687", False),
        ("neo4j://graph:7687", False),
        ("bolt+s://graph:7687", True),
        ("neo4j+s://graph:7687", True),
        ("neo4j+ssc://graph:7687", True),
    ],
)
def test_neo4j_tls_follows_the_uri_scheme(uri: str, encrypted: bool):
    settings = Neo4jSettings.from_env({"RAPPORT_NEO4J_URI": uri})
    assert settings.encrypted is encrypted
    assert settings.driver_security_kwargs() == {}


def test_a_private_ca_for_neo4j_needs_a_plain_scheme(pki: dict[str, str]):
    settings = Neo4jSettings.from_env({"RAPPORT_NEO4J_URI": "neo4j://graph:7687", "RAPPORT_NEO4J_CA_FILE": pki["ca"]})
    kwargs = settings.driver_security_kwargs()
    assert settings.encrypted and kwargs["encrypted"] is True
    assert type(kwargs["trusted_certificates"]).__name__ == "TrustCustomCAs"
    with pytest.raises(ValueError, match="needs a bolt:// or neo4j:// URI"):
        Neo4jSettings.from_env({"RAPPORT_NEO4J_URI": "neo4j+s://graph:7687", "RAPPORT_NEO4J_CA_FILE": pki["ca"]})
    with pytest.raises(ValueError, match="scheme must be one of"):
        Neo4jSettings.from_env({"RAPPORT_NEO4J_URI": "http://graph:7474"})
