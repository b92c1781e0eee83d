"""The customer's effort as the router's priority input, through the real router and graph."""

from __future__ import annotations

from collections.abc import Iterator

import neo4j
import pytest
from test_router_support import (  # type: ignore[import-not-found]
    RouterHarness,
    agent,
    cleanup_fixture,  # noqa: F401
    days_ago,
    email,
    eventually,
    serve_router,
)

from rapport.settings import KafkaSettings, Neo4jSettings
from rapport.v1 import events_pb2 as ev
from rapport.v1 import router_pb2 as rt
from rapport_profile.adapters.graph import seed_graph
from rapport_profile.synthetic import interaction

pytestmark = pytest.mark.integration


@pytest.fixture
def router(
    neo4j_settings: Neo4jSettings, isolated_topics: KafkaSettings, graph: neo4j.Driver, cleanup: str
) -> Iterator[RouterHarness]:
    harness = serve_router(neo4j_settings, isolated_topics, driver=graph)
    yield harness
    harness.close()


def struggled(uid: str, who: ev.Identifier) -> list[ev.InteractionEvent]:
    """An article that did not help, a bot that gave up, then chat and a call about billing:
    failed self-service 2 x 10, channel switches web -> bot -> chat -> voice 3 x 8, one repeat
    contact 12: effort 56."""
    return [
        interaction(f"{uid}-s1", who, at=days_ago(2), channel=ev.CHANNEL_WEB,
                    kind=ev.INTERACTION_KIND_ARTICLE_FEEDBACK,
                    self_service=ev.SelfService(article_id="kb-1", answer=ev.ARTICLE_ANSWER_NO)),
        interaction(f"{uid}-s2", who, at=days_ago(1.9), channel=ev.CHANNEL_BOT, kind=ev.INTERACTION_KIND_BOT_EXIT),
        interaction(f"{uid}-s3", who, at=days_ago(1.5), channel=ev.CHANNEL_CHAT, topic="billing"),
        interaction(f"{uid}-s4", who, at=days_ago(0.5), channel=ev.CHANNEL_VOICE, kind=ev.INTERACTION_KIND_CALL,
                    topic="billing"),
    ]  # fmt: skip


def test_a_contact_without_priority_takes_it_from_the_customer_effort(
    router: RouterHarness, graph: neo4j.Driver, uid: str
):
    team = f"{uid}-team"
    a = f"{uid}-a"
    router.add_agents(agent(a, team, skills={"billing": 4}))
    calm, tried_hard = email(f"calm.{uid}"), email(f"hard.{uid}")
    seed_graph(
        graph,
        [
            interaction(f"{uid}-c1", calm, at=days_ago(1), channel=ev.CHANNEL_CHAT, topic="billing"),
            *struggled(uid, tried_hard),
        ],
    )
    busy = router.route(contact_id=f"{uid}-busy", identifier=email(f"first.{uid}"), topic="billing", team=team)
    assert busy.offer.agent_id == a

    first = router.route(contact_id=f"{uid}-calm", identifier=calm, topic="billing", team=team)
    second = router.route(contact_id=f"{uid}-hard", identifier=tried_hard, topic="billing", team=team)
    hinted = router.route(contact_id=f"{uid}-hint", identifier=tried_hard, topic="billing", team=team, priority=2)
    assert (first.priority, second.priority, hinted.priority) == (0, 5, 2)
    # Created later, the customer who tried hard waits ahead of the calm one (and of the hint 2).
    queued = router.stub.GetQueue(rt.GetQueueRequest(team=team), timeout=10)
    assert [c.id for c in queued.contacts] == [second.id, hinted.id, first.id]

    router.stub.AcceptOffer(rt.AcceptOfferRequest(offer_id=busy.offer.offer_id, agent_id=a), timeout=5)
    router.stub.CompleteContact(rt.CompleteContactRequest(contact_id=busy.id, resolved=True), timeout=5)
    offered = eventually(lambda: (x := router.contact(second.id)).state == rt.CONTACT_STATE_OFFERED and x)
    explanation = offered.offer.explanation
    (effort,) = [e for e in explanation.evidence if e.kind == rt.EVIDENCE_KIND_CUSTOMER_EFFORT]
    assert (effort.factor, effort.effort_score, effort.customer_id) == ("priority", 56, offered.customer_id)
    assert "web → bot → chat → voice" in effort.description and "set priority 5" in effort.description
    priority = next(f for f in explanation.factors if f.name == "priority")
    assert "priority 5 from customer effort 56/100" in priority.detail
    assert priority.value > 0
