"""TLS and mutual TLS handshakes with throwaway certificates, certificate rotation, and a
Rapport service configured from the environment with TLS and tokens against the real graph."""

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import jwt
import neo4j
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rapport.channels import open_channel
from rapport.security.pki import CertificateAuthority
from rapport.serving import RunningServer, start_server
from rapport.settings import ChannelSettings, GrpcSettings, KafkaSettings, Neo4jSettings, TlsSettings
from rapport.v1 import profile_pb2, profile_pb2_grpc, timeline_pb2, timeline_pb2_grpc
from rapport_profile.api.bootstrap import start_profile_api
from rapport_profile.api.config import ProfileApiSettings
from rapport_timeline.bootstrap import SERVICE_NAME as TIMELINE
from rapport_timeline.bootstrap import build as build_timeline
from rapport_timeline.config import TimelineSettings

pytestmark = pytest.mark.integration

# A fresh connection per channel, so no test rides on another's handshake.
FRESH = [("grpc.use_local_subchannel_pool", 1)]


@dataclass
class Pki:
    dir: Path
    ca: CertificateAuthority
    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_pki(directory: Path, name: str) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority.create(f"{name} CA")
    server_cert, server_key = ca.issue("localhost").write(directory, "server")
    client_cert, client_key = ca.issue(f"{name}-client", client=True).write(directory, "client")
    return Pki(directory, ca, ca.write(directory), server_cert, server_key, client_cert, client_key)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "good", "rapport")


@pytest.fixture
def rogue(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "rogue", "rogue")


def serve(tls: TlsSettings) -> RunningServer:
    return start_server(GrpcSettings(port=0, max_workers=2, tls=tls), lambda _server: None, [])


@pytest.fixture
def tls_server(pki: Pki) -> Iterator[RunningServer]:
    running = serve(TlsSettings(str(pki.server_cert), str(pki.server_key)))
    yield running
    running.stop(0)


@pytest.fixture
def mtls_server(pki: Pki) -> Iterator[RunningServer]:
    running = serve(TlsSettings(str(pki.server_cert), str(pki.server_key), str(pki.ca_file)))
    yield running
    running.stop(0)


def health(target: str, settings: ChannelSettings) -> grpc.StatusCode:
    with open_channel(target, settings, options=FRESH) as channel:
        try:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def localhost(server: RunningServer) -> str:
    return f"localhost:{server.port}"


# -- TLS --------------------------------------------------------------------------------------


def test_a_client_trusting_the_ca_completes_the_handshake(tls_server: RunningServer, pki: Pki):
    assert health(localhost(tls_server), ChannelSettings(ca_file=str(pki.ca_file))) == grpc.StatusCode.OK
    assert health(f"127.0.0.1:{tls_server.port}", ChannelSettings(ca_file=str(pki.ca_file))) == grpc.StatusCode.OK


def test_a_client_trusting_another_ca_refuses_the_server(tls_server: RunningServer, rogue: Pki):
    assert health(localhost(tls_server), ChannelSettings(ca_file=str(rogue.ca_file))) == grpc.StatusCode.UNAVAILABLE


def test_a_plaintext_client_cannot_talk_to_a_tls_server(tls_server: RunningServer):
    assert health(localhost(tls_server), ChannelSettings()) == grpc.StatusCode.UNAVAILABLE


def test_a_certificate_for_another_name_is_refused_unless_that_name_is_expected(pki: Pki, tmp_path: Path):
    cert, key = pki.ca.issue("timeline.rapport", dns_names=("timeline.rapport",), ip_addresses=()).write(
        tmp_path, "named"
    )
    running = serve(TlsSettings(str(cert), str(key)))
    try:
        target = f"127.0.0.1:{running.port}"
        assert health(target, ChannelSettings(ca_file=str(pki.ca_file))) == grpc.StatusCode.UNAVAILABLE
        expecting = ChannelSettings(ca_file=str(pki.ca_file), server_name="timeline.rapport")
        assert health(target, expecting) == grpc.StatusCode.OK
    finally:
        running.stop(0)


# -- mutual TLS -------------------------------------------------------------------------------


def test_mutual_tls_accepts_a_client_certificate_from_the_ca(mtls_server: RunningServer, pki: Pki):
    client = ChannelSettings(ca_file=str(pki.ca_file), cert_file=str(pki.client_cert), key_file=str(pki.client_key))
    assert health(localhost(mtls_server), client) == grpc.StatusCode.OK


def test_mutual_tls_refuses_a_client_without_a_certificate(mtls_server: RunningServer, pki: Pki):
    assert health(localhost(mtls_server), ChannelSettings(ca_file=str(pki.ca_file))) == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_refuses_a_client_certificate_from_an_unknown_ca(mtls_server: RunningServer, pki: Pki, rogue: Pki):
    client = ChannelSettings(ca_file=str(pki.ca_file), cert_file=str(rogue.client_cert), key_file=str(rogue.client_key))
    assert health(localhost(mtls_server), client) == grpc.StatusCode.UNAVAILABLE


# -- rotation ---------------------------------------------------------------------------------


def replace(target: Path, source: Path) -> None:
    """Writes `source` over `target` and moves its mtime on, as a rotation would."""
    target.write_bytes(source.read_bytes())
    stamp = time.time_ns() + 10**10
    os.utime(target, ns=(stamp, stamp))


def test_a_rotated_server_certificate_is_served_to_new_connections(tls_server: RunningServer, pki: Pki, rogue: Pki):
    old_ca, new_ca = ChannelSettings(ca_file=str(pki.ca_file)), ChannelSettings(ca_file=str(rogue.ca_file))
    assert health(localhost(tls_server), old_ca) == grpc.StatusCode.OK
    replace(pki.server_key, rogue.server_key)
    replace(pki.server_cert, rogue.server_cert)
    assert health(localhost(tls_server), new_ca) == grpc.StatusCode.OK
    assert health(localhost(tls_server), old_ca) == grpc.StatusCode.UNAVAILABLE


def test_a_half_finished_rotation_keeps_serving_the_old_certificate(tls_server: RunningServer, pki: Pki, rogue: Pki):
    replace(pki.server_cert, rogue.server_cert)  # the key has not been written yet
    assert health(localhost(tls_server), ChannelSettings(ca_file=str(pki.ca_file))) == grpc.StatusCode.OK
    replace(pki.server_key, rogue.server_key)  # now it has
    assert health(localhost(tls_server), ChannelSettings(ca_file=str(rogue.ca_file))) == grpc.StatusCode.OK


def test_a_rotated_client_ca_changes_which_client_certificates_are_accepted(pki: Pki, rogue: Pki, tmp_path: Path):
    client_ca = tmp_path / "client-ca.crt"
    replace(client_ca, pki.ca_file)
    running = serve(TlsSettings(str(pki.server_cert), str(pki.server_key), str(client_ca)))
    trusted = ChannelSettings(ca_file=str(pki.ca_file), cert_file=str(pki.client_cert), key_file=str(pki.client_key))
    newcomer = ChannelSettings(
        ca_file=str(pki.ca_file), cert_file=str(rogue.client_cert), key_file=str(rogue.client_key)
    )
    try:
        assert health(localhost(running), trusted) == grpc.StatusCode.OK
        assert health(localhost(running), newcomer) == grpc.StatusCode.UNAVAILABLE
        replace(client_ca, rogue.ca_file)
        assert health(localhost(running), newcomer) == grpc.StatusCode.OK
        assert health(localhost(running), trusted) == grpc.StatusCode.UNAVAILABLE
    finally:
        running.stop(0)


# -- services configured from the environment, TLS and tokens on ------------------------------


@dataclass
class Idp:
    key: rsa.RSAPrivateKey
    env: dict[str, str]

    def token(self, *roles: str, subject: str = "ana") -> str:
        now = int(time.time())
        body = {"sub": subject, "roles": list(roles), "iss": "https://idp.test", "aud": "rapport"}
        return jwt.encode({**body, "iat": now, "exp": now + 300}, self.key, "RS256")

    def client(self, directory: Path, *roles: str) -> ChannelSettings:
        token_file = directory / f"token-{'-'.join(roles)}"
        token_file.write_text(self.token(*roles))
        env = {
            "RAPPORT_TLS_CA_FILE": self.env["RAPPORT_TLS_CLIENT_CA_FILE"],
            "RAPPORT_TLS_CLIENT_CERT_FILE": str(directory / "client.crt"),
            "RAPPORT_TLS_CLIENT_KEY_FILE": str(directory / "client.key"),
            "RAPPORT_AUTH_TOKEN_FILE": str(token_file),
        }
        return ChannelSettings.from_env(env)


@pytest.fixture
def idp(pki: Pki) -> Idp:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = pki.dir / "idp.pem"
    public.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    env = {
        "RAPPORT_TLS_CERT_FILE": str(pki.server_cert),
        "RAPPORT_TLS_KEY_FILE": str(pki.server_key),
        "RAPPORT_TLS_CLIENT_CA_FILE": str(pki.ca_file),
        "RAPPORT_AUTH_JWT_ALGORITHM": "RS256",
        "RAPPORT_AUTH_JWT_KEY_FILE": str(public),
        "RAPPORT_AUTH_JWT_ISSUER": "https://idp.test",
        "RAPPORT_AUTH_JWT_AUDIENCE": "rapport",
    }
    return Idp(key, env)


def test_the_profile_service_over_mtls_with_jwts_enforces_roles_against_the_real_graph(
    idp: Idp, pki: Pki, neo4j_settings: Neo4jSettings, graph: neo4j.Driver
):
    env = {**idp.env, "RAPPORT_PROFILE_PORT": "0", "RAPPORT_PROFILE_WORKERS": "2"}
    settings = ProfileApiSettings(grpc=GrpcSettings.from_env("profile", 0, env), neo4j=neo4j_settings)
    running = start_profile_api(settings, driver=graph)
    target = localhost(running)
    unknown = profile_pb2.GetCustomerRequest(customer_id=f"cus_{uuid.uuid4().hex[:16]}")
    try:
        with open_channel(target, idp.client(pki.dir, "agent"), options=FRESH) as channel:
            stub = profile_pb2_grpc.ProfileServiceStub(channel)
            with pytest.raises(grpc.RpcError) as raised:
                stub.GetCustomer(unknown, timeout=10)
            assert raised.value.code() == grpc.StatusCode.NOT_FOUND  # through auth, to the graph
            with pytest.raises(grpc.RpcError) as raised:
                stub.ListMergeCandidates(profile_pb2.ListMergeCandidatesRequest(page_size=5), timeout=10)
            assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with open_channel(target, idp.client(pki.dir, "supervisor"), options=FRESH) as channel:
            stub = profile_pb2_grpc.ProfileServiceStub(channel)
            stub.ListMergeCandidates(profile_pb2.ListMergeCandidatesRequest(page_size=5), timeout=10)
        no_token = ChannelSettings(
            ca_file=str(pki.ca_file), cert_file=str(pki.client_cert), key_file=str(pki.client_key)
        )
        with open_channel(target, no_token, options=FRESH) as channel:
            with pytest.raises(grpc.RpcError) as raised:
                profile_pb2_grpc.ProfileServiceStub(channel).GetCustomer(unknown, timeout=10)
            assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        running.stop(0)


def test_the_timeline_service_over_mtls_lets_agents_read_and_refuses_the_unauthenticated(
    idp: Idp, pki: Pki, neo4j_settings: Neo4jSettings, isolated_topics: KafkaSettings, graph: neo4j.Driver
):
    env = {**idp.env, "RAPPORT_TIMELINE_PORT": "0"}
    settings = TimelineSettings(
        grpc=GrpcSettings.from_env("timeline", 0, env), neo4j=neo4j_settings, kafka=isolated_topics, max_watchers=2
    )
    app = build_timeline(settings)
    running = start_server(settings.grpc, app.register, [TIMELINE])
    running.on_stop.append(app.close)
    request = timeline_pb2.ListInteractionsRequest(
        customer=timeline_pb2.CustomerRef(customer_id=f"cus_{uuid.uuid4().hex[:16]}")
    )
    try:
        with open_channel(localhost(running), idp.client(pki.dir, "agent"), options=FRESH) as channel:
            with pytest.raises(grpc.RpcError) as raised:
                timeline_pb2_grpc.TimelineServiceStub(channel).ListInteractions(request, timeout=10)
            assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        expired = pki.dir / "expired"
        now = int(time.time())
        expired.write_text(
            jwt.encode(
                {"sub": "ana", "roles": ["agent"], "iss": "https://idp.test", "aud": "rapport", "exp": now - 600},
                idp.key,
                "RS256",
            )
        )
        client = ChannelSettings(
            ca_file=str(pki.ca_file),
            cert_file=str(pki.client_cert),
            key_file=str(pki.client_key),
            token_file=str(expired),
        )
        with open_channel(localhost(running), client, options=FRESH) as channel:
            with pytest.raises(grpc.RpcError) as raised:
                timeline_pb2_grpc.TimelineServiceStub(channel).ListInteractions(request, timeout=10)
            assert (raised.value.code(), raised.value.details()) == (grpc.StatusCode.UNAUTHENTICATED, "token expired")
    finally:
        running.stop(1)


def test_a_token_file_with_extra_content_is_refused_by_the_client(tmp_path: Path):
    token_file = tmp_path / "token"
    token_file.write_text(json.dumps({"not": "a token"}) + "\nsecond line")
    with pytest.raises(ValueError, match="one token"):
        open_channel("127.0.0.1:1", ChannelSettings(token_file=str(token_file)))
