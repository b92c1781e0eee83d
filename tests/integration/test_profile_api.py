"""The ProfileService through its real gRPC server, against the real customer graph.

The graph is seeded with the worker's GraphWriter, so identity resolution and merges happen the
way production does them. Every id carries the test's `uid`: the graph is shared.
"""

import socket
from collections.abc import Iterator
from datetime import UTC, timedelta

import grpc
import neo4j
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from rapport.settings import GrpcSettings, Neo4jSettings
from rapport.v1 import events_pb2 as ev
from rapport.v1 import profile_pb2 as pb
from rapport.v1 import profile_pb2_grpc
from rapport_profile.adapters.graph import seed_graph
from rapport_profile.api.bootstrap import SERVICE_NAME, start_profile_api
from rapport_profile.api.config import ProfileApiSettings
from rapport_profile.synthetic import BASE_TIME, identifier, interaction

pytestmark = pytest.mark.integration

T0 = BASE_TIME


@pytest.fixture(scope="module")
def channel(graph: neo4j.Driver, neo4j_settings: Neo4jSettings) -> Iterator[grpc.Channel]:
    settings = ProfileApiSettings(grpc=GrpcSettings(port=0, max_workers=4), neo4j=neo4j_settings)
    running = start_profile_api(settings, driver=graph)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield channel
    finally:
        running.stop(1)


@pytest.fixture
def stub(channel: grpc.Channel) -> profile_pb2_grpc.ProfileServiceStub:
    return profile_pb2_grpc.ProfileServiceStub(channel)


def email(address: str, verified: bool = True) -> ev.Identifier:
    return identifier(f"email:{address}", verified=verified, method="otp" if verified else "")


def phone_of(uid: str) -> str:
    # A UK mobile number unique to the test (10 national digits starting with 7).
    return f"+447{int(uid[:8], 16) % 10**9:09d}"


def rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call(request, timeout=10)
    return raised.value


def test_the_360_view_aggregates_every_channel(graph: neo4j.Driver, stub, uid: str):
    mail, crm = f"ana.{uid}@example.com", f"crm:C-{uid}"
    agent_a, agent_b, case_id, device_id = f"ag-a-{uid}", f"ag-b-{uid}", f"case-{uid}", f"dev-{uid}"
    hour = timedelta(hours=1)
    events = [
        interaction(f"{uid}-1", email(mail), crm, at=T0, channel=ev.CHANNEL_CHAT, topic="billing",
                    agent_id=agent_a, outcome=ev.OUTCOME_RESOLVED, csat=4, sentiment=-0.6,
                    traits=ev.CustomerTraits(language="fr", tier="gold", display_name="Ana")),
        interaction(f"{uid}-2", crm, at=T0 + hour, channel=ev.CHANNEL_CHAT, topic="billing",
                    agent_id=agent_a, outcome=ev.OUTCOME_ESCALATED, csat=2, sentiment=-0.4),
        interaction(f"{uid}-3", crm, at=T0 + 2 * hour, channel=ev.CHANNEL_EMAIL, topic="billing", sentiment=-0.2),
        interaction(f"{uid}-4", crm, at=T0 + 3 * hour, channel=ev.CHANNEL_DEVICE,
                    kind=ev.INTERACTION_KIND_DEVICE_ALERT, device=ev.Device(id=device_id, model="HB-5"),
                    case=ev.CaseRef(id=case_id, status=ev.CASE_STATUS_OPEN, title="Router keeps rebooting",
                                    proactive=True)),
        interaction(f"{uid}-5", crm, at=T0 + 4 * hour, channel=ev.CHANNEL_VOICE, kind=ev.INTERACTION_KIND_CALL,
                    topic="router-setup", agent_id=agent_b, outcome=ev.OUTCOME_RESOLVED, sentiment=0.5),
        interaction(f"{uid}-6", crm, at=T0 + 5 * hour, channel=ev.CHANNEL_VOICE, kind=ev.INTERACTION_KIND_CALL,
                    topic="router-setup", agent_id=agent_b, sentiment=0.6),
        interaction(f"{uid}-7", crm, at=T0 + 6 * hour, channel=ev.CHANNEL_CHAT, topic="billing", sentiment=0.7),
        interaction(f"{uid}-8", crm, at=T0 + 7 * hour, channel=ev.CHANNEL_CHAT, sentiment=0.6),
        interaction(f"{uid}-9", crm, at=T0 + 8 * hour, channel=ev.CHANNEL_CHAT, sentiment=0.8),
    ]  # fmt: skip
    # Out of order, as a stream may deliver them: the view is by event time.
    seed_graph(graph, events[4:] + events[:4])

    # Looked up by an identifier written differently from how it was stored.
    shouting = ev.Identifier(kind=ev.IDENTIFIER_KIND_EMAIL, value=f"  {mail.upper()} ")
    reply = stub.GetCustomer(pb.GetCustomerRequest(identifier=shouting, max_agents=1), timeout=10)
    view = reply.customer
    assert reply.merged_customer_id == ""
    assert view.customer_id.startswith("cus_")
    assert (view.attributes.language, view.attributes.tier, view.attributes.display_name) == ("fr", "gold", "Ana")

    assert view.interaction_count == 9
    assert view.first_contact_at.ToDatetime(tzinfo=UTC) == T0
    assert view.last_contact_at.ToDatetime(tzinfo=UTC) == T0 + 8 * hour
    channels = {c.channel: c.interaction_count for c in view.channels}
    assert channels == {ev.CHANNEL_CHAT: 5, ev.CHANNEL_VOICE: 2, ev.CHANNEL_EMAIL: 1, ev.CHANNEL_DEVICE: 1}
    assert view.channels[0].channel == ev.CHANNEL_CHAT  # most used first
    chat = view.channels[0]
    assert (chat.first_at.ToDatetime(tzinfo=UTC), chat.last_at.ToDatetime(tzinfo=UTC)) == (T0, T0 + 8 * hour)

    assert [(t.topic, t.interaction_count) for t in view.top_topics] == [("billing", 4), ("router-setup", 2)]

    # max_agents=1: only the most recent agent, with its last outcome (the last call had none).
    (last_agent,) = view.recent_agents
    assert last_agent.agent_id == agent_b
    assert last_agent.last_contact_at.ToDatetime(tzinfo=UTC) == T0 + 5 * hour
    assert last_agent.last_channel == ev.CHANNEL_VOICE
    assert last_agent.last_outcome == ev.OUTCOME_RESOLVED
    assert last_agent.last_outcome_at.ToDatetime(tzinfo=UTC) == T0 + 4 * hour
    assert (last_agent.interaction_count, last_agent.resolved_count) == (2, 1)
    both = stub.GetCustomer(pb.GetCustomerRequest(customer_id=view.customer_id), timeout=10).customer
    assert [a.agent_id for a in both.recent_agents] == [agent_b, agent_a]
    first_agent = both.recent_agents[1]
    assert first_agent.last_outcome == ev.OUTCOME_ESCALATED and first_agent.average_csat == pytest.approx(3.0)

    assert {i.key: i.strength for i in view.identities} == {
        f"email:{mail}": pb.IDENTITY_STRENGTH_STRONG,
        crm: pb.IDENTITY_STRENGTH_STRONG,
    }
    assert [d.id for d in view.devices] == [device_id] and view.devices[0].model == "HB-5"
    (case,) = view.open_cases
    assert (case.case.id, case.case.status, case.case.proactive) == (case_id, ev.CASE_STATUS_OPEN, True)

    # Latest five scores average 0.64, the three before them -0.4.
    assert view.sentiment.direction == pb.SENTIMENT_DIRECTION_IMPROVING
    assert (view.sentiment.recent_count, view.sentiment.earlier_count) == (5, 3)
    assert view.sentiment.recent_average == pytest.approx(0.64, abs=1e-3)
    assert view.merges == []


def test_after_a_merge_any_identifier_or_old_id_finds_the_survivor(graph: neo4j.Driver, stub, uid: str):
    mail, phone = f"ana.{uid}@example.com", phone_of(uid)
    chat = interaction(f"{uid}-chat", email(mail), at=T0, channel=ev.CHANNEL_CHAT)
    call = interaction(
        f"{uid}-call",
        identifier(f"phone:{phone}", method="ivr-pin"),
        at=T0 + timedelta(hours=1),
        channel=ev.CHANNEL_VOICE,
        kind=ev.INTERACTION_KIND_CALL,
    )
    first = seed_graph(graph, [chat])
    second = seed_graph(graph, [call])
    emailed, called = first.owners[f"{uid}-chat"], second.owners[f"{uid}-call"]
    assert emailed != called
    seed_graph(graph, [interaction(f"{uid}-both", email(mail), f"phone:{phone}", at=T0 + timedelta(hours=2))])

    # By the secondary identifier: the identity moved to the survivor, history and evidence came along.
    national = "0" + phone.removeprefix("+44")
    by_phone = stub.GetCustomer(
        pb.GetCustomerRequest(identifier=ev.Identifier(kind=ev.IDENTIFIER_KIND_PHONE, value=national)), timeout=10
    )
    view = by_phone.customer
    assert view.customer_id == emailed  # the older customer survives
    assert view.interaction_count == 3
    assert {i.key for i in view.identities} == {f"email:{mail}", f"phone:{phone}"}
    (merge,) = view.merges
    assert (merge.survivor_customer_id, merge.absorbed_customer_id) == (emailed, called)
    assert merge.event_id == f"{uid}-both"
    assert sorted(merge.linking_identity_keys) == sorted([f"email:{mail}", f"phone:{phone}"])
    assert list(merge.absorbed_identity_keys) == [f"phone:{phone}"]
    assert merge.absorbed_interaction_count == 1
    assert merge.HasField("merged_at")

    # By the absorbed customer's id: the survivor, saying which id was merged away.
    by_old_id = stub.GetCustomer(pb.GetCustomerRequest(customer_id=called), timeout=10)
    assert by_old_id.customer.customer_id == emailed
    assert by_old_id.merged_customer_id == called
    assert by_old_id.customer.interaction_count == 3

    resolved = stub.ResolveIdentity(pb.ResolveIdentityRequest(identifier=identifier(f"phone:{phone}")), timeout=10)
    assert resolved.customer_id == emailed
    assert resolved.identity_key == f"phone:{phone}"
    assert resolved.verified and resolved.verification_method == "ivr-pin"
    assert resolved.strength == pb.IDENTITY_STRENGTH_STRONG


def test_a_weak_identifier_shared_by_two_customers_is_a_candidate(graph: neo4j.Driver, stub, uid: str):
    device = f"device:box-{uid}"
    seeded = seed_graph(
        graph,
        [
            interaction(f"{uid}-a", f"crm:A-{uid}", identifier(device, verified=False), at=T0,
                        traits=ev.CustomerTraits(display_name="Ana")),
            interaction(f"{uid}-b", f"crm:B-{uid}", identifier(device, verified=False), at=T0 + timedelta(minutes=1)),
            interaction(f"{uid}-c", f"crm:C-{uid}", identifier(device, verified=False), at=T0 + timedelta(minutes=2)),
        ],
    )  # fmt: skip
    a, b, c = (seeded.owners[f"{uid}-{x}"] for x in "abc")
    assert len({a, b, c}) == 3  # weak identifiers never merge

    # One page at a time: stable order, a token to continue, no token after the last page.
    first = stub.ListMergeCandidates(pb.ListMergeCandidatesRequest(customer_id=a, page_size=1), timeout=10)
    assert len(first.candidates) == 1 and first.next_page_token
    second = stub.ListMergeCandidates(
        pb.ListMergeCandidatesRequest(customer_id=a, page_size=1, page_token=first.next_page_token), timeout=10
    )
    assert len(second.candidates) == 1 and second.next_page_token == ""
    candidates = [*first.candidates, *second.candidates]
    assert [x.other_customer_id for x in candidates] == sorted([b, c])
    for candidate in candidates:
        assert candidate.customer_id == a and candidate.display_name == "Ana"
        assert list(candidate.shared_identity_keys) == [device]

    # Unfiltered, every pair appears once, lower id first, in order across pages.
    page = stub.ListMergeCandidates(pb.ListMergeCandidatesRequest(page_size=2), timeout=10)
    pairs = [(x.customer_id, x.other_customer_id) for x in page.candidates]
    if page.next_page_token:
        more = stub.ListMergeCandidates(
            pb.ListMergeCandidatesRequest(page_size=2, page_token=page.next_page_token), timeout=10
        )
        pairs += [(x.customer_id, x.other_customer_id) for x in more.candidates]
    assert pairs and all(x < y for x, y in pairs)
    assert pairs == sorted(set(pairs))

    # A token is bound to the filter it was issued for.
    err = rpc_error(
        stub.ListMergeCandidates, pb.ListMergeCandidatesRequest(customer_id=b, page_token=first.next_page_token)
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and (err.details() or "").startswith("page_token: ")


def test_unknown_customers_and_identifiers_are_not_found(stub, uid: str):
    unknown_id = "cus_" + uid.ljust(16, "0")[:16]
    for call, request in [
        (stub.GetCustomer, pb.GetCustomerRequest(customer_id=unknown_id)),
        (stub.GetCustomer, pb.GetCustomerRequest(identifier=email(f"nobody.{uid}@example.com"))),
        (stub.ResolveIdentity, pb.ResolveIdentityRequest(identifier=identifier(f"crm:NONE-{uid}"))),
        (stub.ListMergeCandidates, pb.ListMergeCandidatesRequest(customer_id=unknown_id)),
    ]:
        err = rpc_error(call, request)
        assert err.code() == grpc.StatusCode.NOT_FOUND, request


@pytest.mark.parametrize(
    ("method", "request_", "field"),
    [
        ("GetCustomer", pb.GetCustomerRequest(customer_id="ana"), "customer_id"),
        ("GetCustomer", pb.GetCustomerRequest(), "lookup"),
        (
            "GetCustomer",
            pb.GetCustomerRequest(identifier=ev.Identifier(kind=ev.IDENTIFIER_KIND_PHONE, value="call me maybe")),
            "identifier.value",
        ),
        ("ResolveIdentity", pb.ResolveIdentityRequest(), "identifier"),
        (
            "ResolveIdentity",
            pb.ResolveIdentityRequest(identifier=ev.Identifier(kind=ev.IDENTIFIER_KIND_SOCIAL_HANDLE, value="ana")),
            "identifier.platform",
        ),
        ("ListMergeCandidates", pb.ListMergeCandidatesRequest(page_token="not-a-token"), "page_token"),
    ],
)
def test_malformed_requests_are_invalid_argument_naming_the_field(stub, method, request_, field):
    err = rpc_error(getattr(stub, method), request_)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.details() or "").startswith(field + ": ")


def test_health_is_serving_and_reflection_lists_the_service(channel: grpc.Channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE_NAME):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    (answer,) = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for s in answer.list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word, like a hung Neo4j."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_an_unreachable_graph_is_unavailable_before_the_deadline(unanswered_port: int):
    # The driver's own timeouts stay long (30 s): only the call's deadline can end this in time.
    graph = Neo4jSettings(uri=f"bolt://127.0.0.1:{unanswered_port}", timeout=30.0)
    running = start_profile_api(ProfileApiSettings(grpc=GrpcSettings(port=0, max_workers=2), neo4j=graph))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = profile_pb2_grpc.ProfileServiceStub(channel)
            with pytest.raises(grpc.RpcError) as raised:
                stub.GetCustomer(pb.GetCustomerRequest(customer_id="cus_0123456789abcdef"), timeout=2)
    finally:
        running.stop(0)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
