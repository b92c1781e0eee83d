"""Router requests are validated field by field; endings become valid InteractionEvents; config."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration

from rapport.errors import InvalidArgument
from rapport.events import validate
from rapport.v1 import events_pb2, router_pb2
from rapport_router.config import RouterConfig
from rapport_router.domain.contact import ContactRecord, OfferInfo, contact_of_offer, offer_id
from rapport_router.domain.model import AssignmentMode, ContactSpec, ContactState, IdentityRef
from rapport_router.domain.outcomes import ending_event
from rapport_router.entrypoints import messages as m

pytestmark = pytest.mark.unit

EMAIL = events_pb2.Identifier(kind=events_pb2.IDENTIFIER_KIND_EMAIL, value=" Ana@Example.com ")


def route(**kw: Any) -> router_pb2.RouteContactRequest:
    base: dict[str, Any] = {"identifier": EMAIL, "channel": events_pb2.CHANNEL_CHAT}
    base.update(kw)
    return router_pb2.RouteContactRequest(**base)


def test_a_good_route_request_is_normalised():
    req = m.route_in(
        route(
            topic=" Billing ",
            language="FR_ca",
            priority=3,
            required_skills=[router_pb2.SkillRequirement(name="Refunds", min_level=2)],
            preferred_agent_id="agt_1",
            preferred_agent_wait=Duration(seconds=20),
            sentiment=-0.5,
            attributes={"ivr": "menu-2"},
        )
    )
    assert req.identifier is not None and req.identifier.key == "email:ana@example.com"
    assert (req.channel, req.topic, req.language, req.priority) == ("chat", "billing", "fr-ca", 3)
    assert req.required_skills[0].name == "refunds" and req.preferred_wait == 20
    assert req.sentiment == pytest.approx(-0.5)


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (router_pb2.RouteContactRequest(channel=events_pb2.CHANNEL_CHAT), "customer"),
        (route(channel=events_pb2.CHANNEL_UNSPECIFIED), "channel"),
        (route(channel=77), "channel"),
        (
            route(identifier=events_pb2.Identifier(kind=events_pb2.IDENTIFIER_KIND_EMAIL, value="nope")),
            "identifier.value",
        ),
        (route(customer_id="bad id!"), "customer_id"),
        (route(contact_id="x~1"), "contact_id"),
        (route(priority=11), "priority"),
        (route(language="français"), "language"),
        (route(topic="bad topic"), "topic"),
        (
            route(required_skills=[router_pb2.SkillRequirement(name="billing", min_level=6)]),
            "required_skills[0].min_level",
        ),
        (
            route(required_skills=[router_pb2.SkillRequirement(name="a", min_level=1)] * 2),
            "required_skills[1].name",
        ),
        (route(sentiment=2.0), "sentiment"),
        (route(preferred_agent_wait=Duration(seconds=-1)), "preferred_agent_wait"),
        (route(team="a" * 65), "team"),
    ],
)
def test_a_bad_route_request_names_the_field(request_, field):
    with pytest.raises(InvalidArgument) as info:
        m.route_in(request_)
    assert info.value.field == field
    assert str(info.value).startswith(field + ":")


def test_agent_validation_names_the_field():
    good = router_pb2.Agent(
        id="agt_1",
        skills=[router_pb2.AgentSkill(name="Billing", level=4)],
        languages=["EN", "fr-CA"],
        teams=["Tier 2"],
        capacity=[router_pb2.ChannelCapacity(channel=events_pb2.CHANNEL_CHAT, capacity=3)],
    )
    record = m.agent_in(good)
    assert record.skills == {"billing": 4} and record.languages == ("en", "fr-ca") and record.capacity == {"chat": 3}
    for mutate, field in [
        (lambda a: setattr(a, "id", ""), "agent.id"),
        (lambda a: a.skills.add(name="x", level=0), "agent.skills[1].level"),
        (lambda a: a.languages.append("??"), "agent.languages[2]"),
        (lambda a: a.capacity.add(channel=events_pb2.CHANNEL_CHAT, capacity=1), "agent.capacity[1].channel"),
        (lambda a: a.capacity.add(channel=events_pb2.CHANNEL_VOICE, capacity=99), "agent.capacity[1].capacity"),
        (lambda a: a.capacity.add(channel=0, capacity=1), "agent.capacity[1].channel"),
    ]:
        bad = router_pb2.Agent()
        bad.CopyFrom(good)
        mutate(bad)
        with pytest.raises(InvalidArgument) as info:
            m.agent_in(bad)
        assert info.value.field == field


def test_completion_outcome_and_resolved_must_agree():
    assert m.completion_in(router_pb2.CompleteContactRequest(contact_id="c", resolved=True)).outcome == "resolved"
    assert m.completion_in(router_pb2.CompleteContactRequest(contact_id="c")).outcome == "unresolved"
    esc = m.completion_in(router_pb2.CompleteContactRequest(contact_id="c", outcome=events_pb2.OUTCOME_ESCALATED))
    assert esc.outcome == "escalated"
    for req, field in [
        (router_pb2.CompleteContactRequest(resolved=True, outcome=events_pb2.OUTCOME_ESCALATED), "resolved"),
        (router_pb2.CompleteContactRequest(csat=6), "csat"),
        (router_pb2.CompleteContactRequest(notes="x" * 5000), "notes"),
        (router_pb2.CompleteContactRequest(handle_seconds=-1), "handle_seconds"),
        (router_pb2.CompleteContactRequest(outcome=42), "outcome"),  # type: ignore[arg-type]
    ]:
        with pytest.raises(InvalidArgument) as info:
            m.completion_in(req)
        assert info.value.field == field


def test_page_tokens_round_trip_and_forgeries_are_refused():
    assert m.page_token_in(m.page_token_out("agt_9")) == "agt_9"
    with pytest.raises(InvalidArgument, match="page_token"):
        m.page_token_in("not-a-token")


def test_offer_ids_name_their_contact():
    assert contact_of_offer(offer_id("con_abc", 3)) == "con_abc"
    assert contact_of_offer("garbage") is None
    assert contact_of_offer("con_abc~x") is None


def _ended(state: ContactState, identity: IdentityRef | None) -> ContactRecord:
    spec = ContactSpec(id="con_1", channel="voice", created_at=1_800_000_000.0, topic="billing", customer_id="cus_1")
    offer = OfferInfo("con_1~1", "agt_1", 0.71, 1_800_000_001.0, 1_800_000_021.0, AssignmentMode.DIRECT, 1, 1)
    return ContactRecord(
        spec=spec,
        state=state,
        identity=identity,
        offer=offer,
        agent_id="agt_1",
        accepted_at=1_800_000_005.0,
        ended_at=1_800_000_300.0,
        outcome="resolved" if state is ContactState.COMPLETED else None,
        csat=5,
        notes="refund issued",
        handle_seconds=295,
        end_reason="customer_hung_up",
    )


def test_a_completion_becomes_a_valid_event_naming_the_agent():
    event = ending_event(_ended(ContactState.COMPLETED, IdentityRef("email", "ana@example.com", True)))
    assert event is not None
    validate(event)
    assert event.event_id == "con_1.completed" and event.kind == events_pb2.INTERACTION_KIND_CONTACT_COMPLETED
    assert (event.agent_id, event.outcome, event.csat, event.handle_seconds) == (
        "agt_1",
        events_pb2.OUTCOME_RESOLVED,
        5,
        295,
    )
    assert event.contact_id == "con_1" and event.source == "rapport-router"
    assert event.attributes["router.wait_seconds"] == "5.0"


def test_an_abandonment_names_no_agent_and_social_handles_keep_their_platform():
    event = ending_event(_ended(ContactState.CANCELLED, IdentityRef("social", "x/ana", False)))
    assert event is not None
    validate(event)
    assert event.agent_id == "" and event.outcome == events_pb2.OUTCOME_ABANDONED
    assert (event.identifiers[0].platform, event.identifiers[0].value) == ("x", "ana")
    assert ending_event(_ended(ContactState.COMPLETED, None)) is None


def test_config_reads_weights_and_relaxation_and_refuses_nonsense():
    cfg = RouterConfig.from_env(
        {
            "RAPPORT_ROUTER_WEIGHT_AFFINITY": "0.5",
            "RAPPORT_ROUTER_RELAXATION": "5=any_language",
            "RAPPORT_ROUTER_OFFER_TIMEOUT": "2.5",
            "RAPPORT_ROUTER_PORT": "0",
            "RAPPORT_ROUTER_REQUEST_TIMEOUT": "2",
            "RAPPORT_NEO4J_TIMEOUT": "10",
        }
    )
    assert cfg.weights.affinity == 0.5 and cfg.relaxation.text == "5=any_language"
    assert cfg.offer_timeout == 2.5 and cfg.grpc.port == 0 and cfg.neo4j.timeout == 2
    assert RouterConfig.from_env({}).grpc.port == 50053
    for env in (
        {"RAPPORT_ROUTER_WEIGHT_SKILL": "-1"},
        {"RAPPORT_ROUTER_RELAXATION": "soon=any_language"},
        {"RAPPORT_ROUTER_OFFER_TIMEOUT": "fast"},
    ):
        with pytest.raises(ValueError):
            RouterConfig.from_env(env)
