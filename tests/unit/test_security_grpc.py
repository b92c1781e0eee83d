"""Authentication and permissions through a real gRPC server on loopback (TLS is covered by
tests/integration/test_tls.py): each boundary is called both ways."""

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from rapport.channels import open_channel
from rapport.errors import InvalidArgument
from rapport.security import current_principal
from rapport.serving import RunningServer, start_server
from rapport.settings import AuthSettings, ChannelSettings, GrpcSettings
from rapport.v1 import profile_pb2, profile_pb2_grpc
from rapport_profile.api.bootstrap import start_profile_api
from rapport_profile.api.config import ProfileApiSettings

pytestmark = pytest.mark.unit

SECRET = b"k" * 40
TOKENS = {role: f"{role}-token-{'x' * 32}" for role in ("agent", "integrator", "supervisor", "admin")}
P, T, R = "rapport.v1.ProfileService", "rapport.v1.TimelineService", "rapport.v1.RouterService"


class Probe:
    """A tiny servicer standing in for every Rapport method: answers with the caller's subject
    and counts how many requests it had to decode."""

    def __init__(self) -> None:
        self.decoded = 0
        self._lock = threading.Lock()

    def decode(self, raw: bytes) -> bytes:
        with self._lock:
            self.decoded += 1
        if raw.startswith(b"\xff"):
            raise ValueError("not a message")
        return raw

    def answer(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        principal = current_principal()
        return b"anonymous" if principal is None else principal.subject.encode()

    def fail(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        raise InvalidArgument(f"attributes[{'k' * 50_000!r}]", "quoted back in full")

    def stream(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        yield self.answer(request, context)
        yield b"more"

    def register(self, server: grpc.Server) -> None:
        unary: grpc.RpcMethodHandler = grpc.unary_unary_rpc_method_handler(self.answer, self.decode)
        methods = {
            P: ["GetCustomer", "ListMergeCandidates", "UnmergeCustomer", "ForgetCustomer"],
            T: ["ListInteractions", "GetHandoffContext"],
            R: ["RouteContact", "AcceptOffer", "UpsertAgent", "GetQueue"],
        }
        for service, names in methods.items():
            handlers = {name: unary for name in names}
            if service == R:
                handlers["StreamOffers"] = grpc.unary_stream_rpc_method_handler(self.stream, self.decode)
            server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(service, handlers)])
        failing: dict[str, grpc.RpcMethodHandler] = {
            "Fail": grpc.unary_unary_rpc_method_handler(self.fail, self.decode)
        }
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("rapport.test.Probe", failing)])


@pytest.fixture(scope="module")
def auth(tmp_path_factory: pytest.TempPathFactory) -> AuthSettings:
    d = tmp_path_factory.mktemp("auth")
    entries = [{"subject": f"{role}-1", "roles": [role], "token": token} for role, token in TOKENS.items()]
    (d / "tokens.json").write_text(json.dumps({"tokens": entries}))
    (d / "jwt.key").write_bytes(SECRET)
    return AuthSettings(
        tokens_file=str(d / "tokens.json"),
        jwt_algorithm="HS256",
        jwt_key_file=str(d / "jwt.key"),
        jwt_audience="rapport",
    )


@pytest.fixture(scope="module")
def probe() -> Probe:
    return Probe()


@pytest.fixture(scope="module")
def server(auth: AuthSettings, probe: Probe) -> Iterator[RunningServer]:
    running = start_server(GrpcSettings(port=0, max_workers=4, auth=auth), probe.register, [P, T, R])
    yield running
    running.stop(0)


@pytest.fixture(scope="module")
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


def raw(channel: grpc.Channel, method: str, streaming: bool = False) -> Any:
    """A bytes-in, bytes-out callable for any method."""
    return channel.unary_stream(method) if streaming else channel.unary_unary(method)


def call(channel: grpc.Channel, method: str, token: str | None = None, request: bytes = b"req") -> bytes:
    metadata = () if token is None else (("authorization", f"Bearer {token}"),)
    return raw(channel, method)(request, metadata=metadata, timeout=5)  # type: ignore[no-any-return]


def bearer(role: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {TOKENS[role]}"),)


def code_of(fn) -> grpc.StatusCode:
    try:
        fn()
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


# -- open methods -----------------------------------------------------------------------------


def test_health_needs_no_token(channel: grpc.Channel):
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=T), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_needs_no_token(channel: grpc.Channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    names = {s.name for reply in replies for s in reply.list_services_response.service}
    assert {P, T, R} <= names


# -- authentication ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ([], "missing bearer token"),
        ([("authorization", "Basic YWdlbnQ6cHc=")], "authorization must be 'Bearer <token>'"),
        ([("authorization", "Bearer")], "authorization must be 'Bearer <token>'"),
        ([("authorization", f"Bearer {TOKENS['agent']}x")], "unknown token"),
        (
            [("authorization", f"Bearer {TOKENS['agent']}"), ("authorization", f"Bearer {TOKENS['admin']}")],
            "more than one authorization header",
        ),
    ],
)
def test_a_missing_or_bad_token_is_unauthenticated(channel: grpc.Channel, metadata: list, reason: str):
    with pytest.raises(grpc.RpcError) as raised:
        raw(channel, f"/{T}/ListInteractions")(b"req", metadata=tuple(metadata), timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert raised.value.details() == reason


def jwt_for(roles: list[str], **extra) -> str:
    now = int(time.time())
    body = {"sub": "ana@idp", "roles": roles, "aud": "rapport", "iat": now, "exp": now + 300, **extra}
    return jwt.encode(body, SECRET, "HS256")


def test_a_jwt_identifies_the_caller_and_an_expired_or_foreign_one_does_not(channel: grpc.Channel):
    assert call(channel, f"/{T}/ListInteractions", jwt_for(["agent"])) == b"ana@idp"
    expired = jwt_for(["agent"], exp=int(time.time()) - 600, iat=int(time.time()) - 900)
    with pytest.raises(grpc.RpcError) as raised:
        call(channel, f"/{T}/ListInteractions", expired)
    assert (raised.value.code(), raised.value.details()) == (grpc.StatusCode.UNAUTHENTICATED, "token expired")
    foreign = jwt.encode(jwt.decode(jwt_for(["admin"]), options={"verify_signature": False}), b"z" * 40, "HS256")
    assert code_of(lambda: call(channel, f"/{P}/ForgetCustomer", foreign)) == grpc.StatusCode.UNAUTHENTICATED
    other_audience = jwt_for(["agent"], aud="billing")
    assert code_of(lambda: call(channel, f"/{T}/ListInteractions", other_audience)) == grpc.StatusCode.UNAUTHENTICATED


# -- permissions, both ways -------------------------------------------------------------------

BOUNDARIES = [
    ("agent", f"/{T}/ListInteractions", "ForgetCustomer", f"/{P}/ForgetCustomer"),
    ("agent", f"/{R}/AcceptOffer", "RouteContact", f"/{R}/RouteContact"),
    ("agent", f"/{P}/GetCustomer", "ListMergeCandidates", f"/{P}/ListMergeCandidates"),
    ("integrator", f"/{R}/RouteContact", "AcceptOffer", f"/{R}/AcceptOffer"),
    ("integrator", f"/{T}/GetHandoffContext", "UpsertAgent", f"/{R}/UpsertAgent"),
    ("supervisor", f"/{P}/UnmergeCustomer", "ForgetCustomer", f"/{P}/ForgetCustomer"),
    ("supervisor", f"/{R}/UpsertAgent", "ForgetCustomer", f"/{P}/ForgetCustomer"),
    ("admin", f"/{P}/ForgetCustomer", "nothing", None),
]


@pytest.mark.parametrize(("role", "allowed", "_name", "denied"), BOUNDARIES, ids=[f"{b[0]}-{b[2]}" for b in BOUNDARIES])
def test_each_role_may_call_its_methods_and_is_denied_the_others(
    channel: grpc.Channel, role: str, allowed: str, _name: str, denied: str | None
):
    assert call(channel, allowed, TOKENS[role]) == f"{role}-1".encode()
    if denied is not None:
        with pytest.raises(grpc.RpcError) as raised:
            call(channel, denied, TOKENS[role])
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert raised.value.details() == f"{role}-1 (roles: {role}) may not call {denied}"


def test_a_jwt_with_no_roles_is_authenticated_but_may_call_nothing(channel: grpc.Channel):
    assert code_of(lambda: call(channel, f"/{T}/ListInteractions", jwt_for([]))) == grpc.StatusCode.PERMISSION_DENIED


def test_server_streaming_methods_are_guarded_too(channel: grpc.Channel):
    offers = raw(channel, f"/{R}/StreamOffers", streaming=True)
    replies = list(offers(b"req", metadata=bearer("agent"), timeout=5))
    assert replies == [b"agent-1", b"more"]
    with pytest.raises(grpc.RpcError) as raised:
        list(offers(b"req", metadata=bearer("integrator"), timeout=5))
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as raised:
        list(offers(b"req", timeout=5))
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_refused_call_is_never_decoded(channel: grpc.Channel, probe: Probe):
    before = probe.decoded
    code_of(lambda: call(channel, f"/{P}/ForgetCustomer", TOKENS["agent"]))
    code_of(lambda: call(channel, f"/{P}/ForgetCustomer"))
    assert probe.decoded == before
    call(channel, f"/{P}/ForgetCustomer", TOKENS["admin"])
    assert probe.decoded == before + 1


def test_an_undecodable_request_from_an_allowed_caller_is_invalid_argument(channel: grpc.Channel):
    with pytest.raises(grpc.RpcError) as raised:
        call(channel, f"/{T}/ListInteractions", TOKENS["agent"], request=b"\xff\x00")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith("request: not a valid")


def test_an_error_quoting_a_huge_value_keeps_its_code_with_bounded_details(channel: grpc.Channel):
    with pytest.raises(grpc.RpcError) as raised:
        call(channel, "/rapport.test.Probe/Fail", TOKENS["admin"])
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # not RESOURCE_EXHAUSTED "Stream removed"
    details = raised.value.details() or ""
    assert details.startswith("attributes['kkk") and details.endswith("(truncated)")
    assert len(details) == 1024


def test_open_channel_sends_the_token_from_a_file_and_rereads_it(server: RunningServer, tmp_path: Path):
    import os

    token_file = tmp_path / "token"
    token_file.write_text(TOKENS["agent"] + "\n")
    target = f"127.0.0.1:{server.port}"
    with open_channel(target, ChannelSettings(token_file=str(token_file))) as ch:
        assert raw(ch, f"/{T}/ListInteractions")(b"req", timeout=5) == b"agent-1"
        token_file.write_text(TOKENS["supervisor"])
        stamp = time.time_ns() + 10**10
        os.utime(token_file, ns=(stamp, stamp))
        assert raw(ch, f"/{T}/ListInteractions")(b"req", timeout=5) == b"supervisor-1"


# -- a real servicer --------------------------------------------------------------------------


class EmptyProfiles:
    def customer_view(self, lookup, limits, timeout):
        return None

    def resolve_identity(self, key, timeout):
        return None

    def merge_candidates(self, query, timeout):
        return []


@pytest.fixture(scope="module")
def profile(auth: AuthSettings) -> Iterator[profile_pb2_grpc.ProfileServiceStub]:
    settings = ProfileApiSettings(grpc=GrpcSettings(port=0, max_workers=2, auth=auth))
    running = start_profile_api(settings, reader=EmptyProfiles())
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            yield profile_pb2_grpc.ProfileServiceStub(ch)
    finally:
        running.stop(0)


def test_the_profile_service_lets_supervisors_review_merges_and_not_agents(profile):
    request = profile_pb2.ListMergeCandidatesRequest(page_size=10)
    reply = profile.ListMergeCandidates(request, metadata=bearer("supervisor"), timeout=5)
    assert list(reply.candidates) == []
    with pytest.raises(grpc.RpcError) as raised:
        profile.ListMergeCandidates(request, metadata=bearer("agent"), timeout=5)
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_the_profile_service_answers_an_agent_with_its_own_status_codes(profile):
    with pytest.raises(grpc.RpcError) as raised:
        profile.GetCustomer(
            profile_pb2.GetCustomerRequest(customer_id="cus_0123456789abcdef"), metadata=bearer("agent"), timeout=5
        )
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as raised:
        profile.GetCustomer(profile_pb2.GetCustomerRequest(customer_id="cus_0123456789abcdef"), timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
