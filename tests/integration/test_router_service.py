"""RouterService through gRPC against the real Neo4j and Kafka: routing, offers, queue, errors."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator

import grpc
import neo4j
import pytest
from kafka import KafkaConsumer
from test_router_support import (  # type: ignore[import-not-found]
    CALL_TIMEOUT,
    RouterHarness,
    TcpProxy,
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


def factor(contact: rt.Contact, name: str) -> rt.ScoreFactor:
    return next(f for f in contact.offer.explanation.factors if f.name == name)


def test_route_accept_complete_frees_capacity_and_publishes_the_outcome(
    router: RouterHarness, isolated_topics: KafkaSettings, uid: str
):
    team = f"{uid}-team"
    router.add_agents(agent(f"{uid}-a", team, skills={"billing": 4}))
    routed = router.route(contact_id=f"{uid}-c1", identifier=email(f"ana.{uid}"), topic="billing", team=team)
    assert routed.state == rt.CONTACT_STATE_OFFERED
    assert routed.offer.agent_id == f"{uid}-a" and routed.offer.mode == rt.ASSIGNMENT_MODE_DIRECT
    assert routed.offer.explanation.eligible_agents == 1
    assert factor(routed, "skill").value == pytest.approx(0.8)
    assert router.active(f"{uid}-a") == 1
    # Routing the same contact id again is idempotent: no second reservation.
    again = router.route(contact_id=f"{uid}-c1", identifier=email(f"ana.{uid}"), topic="billing", team=team)
    assert again.offer.offer_id == routed.offer.offer_id and router.active(f"{uid}-a") == 1

    accepted = router.stub.AcceptOffer(
        rt.AcceptOfferRequest(offer_id=routed.offer.offer_id, agent_id=f"{uid}-a"), timeout=CALL_TIMEOUT
    ).contact
    assert accepted.state == rt.CONTACT_STATE_ASSIGNED
    done = router.stub.CompleteContact(
        rt.CompleteContactRequest(contact_id=routed.id, resolved=True, csat=5, notes="refund issued"),
        timeout=CALL_TIMEOUT,
    )
    assert done.contact.state == rt.CONTACT_STATE_COMPLETED and done.contact.outcome == ev.OUTCOME_RESOLVED
    assert router.active(f"{uid}-a") == 0
    # Completing twice is idempotent; completing an unknown contact is NOT_FOUND.
    again_done = router.stub.CompleteContact(
        rt.CompleteContactRequest(contact_id=routed.id, resolved=True), timeout=CALL_TIMEOUT
    )
    assert again_done.event_id == done.event_id and router.active(f"{uid}-a") == 0
    with pytest.raises(grpc.RpcError) as missing:
        router.stub.CompleteContact(rt.CompleteContactRequest(contact_id=f"{uid}-nope"), timeout=CALL_TIMEOUT)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND

    consumer = KafkaConsumer(
        isolated_topics.interactions_topic,
        bootstrap_servers=isolated_topics.bootstrap_servers,
        auto_offset_reset="earliest",
        consumer_timeout_ms=15000,
    )
    try:
        events = []
        for record in consumer:
            event = ev.InteractionEvent()
            event.ParseFromString(record.value)
            events.append(event)
            if event.event_id == done.event_id:
                break
    finally:
        consumer.close()
    completed = [e for e in events if e.event_id == done.event_id]
    assert len(completed) == 1
    event = completed[0]
    assert event.kind == ev.INTERACTION_KIND_CONTACT_COMPLETED
    assert (event.agent_id, event.outcome, event.csat, event.summary) == (
        f"{uid}-a",
        ev.OUTCOME_RESOLVED,
        5,
        "refund issued",
    )
    assert event.identifiers[0].value == f"ana.{uid}@example.com" and event.contact_id == routed.id
    # Delivered events leave the outbox.
    eventually(lambda: router.app.outbox.published >= 1)


def test_malformed_requests_are_invalid_argument_naming_the_field(router: RouterHarness, uid: str):
    cases = [
        (lambda: router.route(identifier=email(uid), channel=ev.CHANNEL_UNSPECIFIED), "channel"),
        (lambda: router.route(topic="billing"), "customer"),
        (lambda: router.route(identifier=email(uid), priority=99), "priority"),
        (
            lambda: router.add_agents(agent(f"{uid}-x", "t", skills={"billing": 9})),
            "agent.skills[0].level",
        ),
        (
            lambda: router.stub.SetAgentStatus(rt.SetAgentStatusRequest(agent_id=f"{uid}-x"), timeout=CALL_TIMEOUT),
            "status",
        ),
        (lambda: router.stub.AcceptOffer(rt.AcceptOfferRequest(agent_id="a"), timeout=CALL_TIMEOUT), "offer_id"),
    ]
    for call, field in cases:
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert str(info.value.details()).startswith(field + ":"), info.value.details()
    with pytest.raises(grpc.RpcError) as unknown:
        router.route(customer_id=f"cus_{uid}", channel=ev.CHANNEL_CHAT)
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def test_the_agent_who_resolved_the_issue_last_week_gets_it_when_free_else_the_next_best(
    router: RouterHarness, graph: neo4j.Driver, uid: str
):
    team = f"{uid}-team"
    a, b, c = f"{uid}-a", f"{uid}-b", f"{uid}-c"
    # B is the most skilled; A resolved this customer's billing issue a week ago.
    router.add_agents(
        agent(a, team, skills={"billing": 3}),
        agent(b, team, skills={"billing": 4}),
        agent(c, team, skills={"billing": 3}),
    )
    customer = email(f"bo.{uid}")
    history = interaction(
        f"{uid}-h1",
        customer,
        at=days_ago(7),
        channel=ev.CHANNEL_VOICE,
        kind=ev.INTERACTION_KIND_CALL,
        agent_id=a,
        topic="billing",
        outcome=ev.OUTCOME_RESOLVED,
        csat=5,
    )
    seed_graph(graph, [history])

    first = router.route(contact_id=f"{uid}-c1", identifier=customer, topic="billing", team=team)
    assert first.offer.agent_id == a
    assert str(first.customer_id).startswith("cus_")
    continuity = factor(first, "continuity")
    assert continuity.value > 0.5 and "resolved this customer's billing issue" in continuity.detail
    assert factor(first, "affinity").value > 0
    evidence = {(e.kind, e.event_id) for e in first.offer.explanation.evidence}
    assert (rt.EVIDENCE_KIND_LAST_RESOLVER, f"{uid}-h1") in evidence
    assert (rt.EVIDENCE_KIND_PAST_INTERACTION, f"{uid}-h1") in evidence
    assert first.offer.explanation.runner_ups[0].agent_id == b
    assert a in first.offer.explanation.summary

    # A now holds their one chat slot: the same customer goes to the next best, B.
    second = router.route(contact_id=f"{uid}-c2", identifier=customer, topic="billing", team=team)
    assert second.offer.agent_id == b
    assert factor(second, "continuity").value == 0


def test_a_french_customer_waits_for_a_french_agent_until_the_relaxation_step_allows_any(
    neo4j_settings: Neo4jSettings, isolated_topics: KafkaSettings, graph: neo4j.Driver, cleanup: str
):
    uid = cleanup
    team = f"{uid}-team"
    router = serve_router(neo4j_settings, isolated_topics, driver=graph, relaxation="1.5=any_language")
    try:
        router.add_agents(
            agent(f"{uid}-en", team, skills={"billing": 5}, languages=("en",)),
            agent(f"{uid}-fr", team, skills={"billing": 2}, languages=("fr",)),
        )
        # With a French agent free, the French customer goes to them, not to the stronger English agent.
        to_fr = router.route(contact_id=f"{uid}-c1", identifier=email(f"zoe.{uid}"), language="fr-CA", team=team)
        assert to_fr.offer.agent_id == f"{uid}-fr"
        # The French agent is now busy: the next French customer waits although the English agent is free.
        waiting = router.route(contact_id=f"{uid}-c2", identifier=email(f"leo.{uid}"), language="fr", team=team)
        assert waiting.state == rt.CONTACT_STATE_WAITING
        assert waiting.queue.relaxation.step == 0 and waiting.queue.relaxation.HasField("next_step_at")
        assert waiting.queue.reason == "every qualified agent is at capacity"
        queued = router.stub.GetQueue(rt.GetQueueRequest(team=team), timeout=CALL_TIMEOUT)
        assert [q.id for q in queued.contacts] == [f"{uid}-c2"]
        assert queued.contacts[0].queue.relaxation.description == "original requirements"

        offered = eventually(lambda: (c := router.contact(f"{uid}-c2")).state == rt.CONTACT_STATE_OFFERED and c)
        assert offered.offer.agent_id == f"{uid}-en"
        assert offered.offer.relaxation.step == 1 and offered.offer.relaxation.description == "any language"
        assert offered.offer.mode == rt.ASSIGNMENT_MODE_BATCH
        # Never before the step: the offer was made at least 1.5 s after the contact arrived.
        waited = offered.offer.offered_at.ToMicroseconds() - offered.created_at.ToMicroseconds()
        assert waited >= 1_500_000
    finally:
        router.close()


def test_an_offer_that_times_out_goes_to_the_next_best_and_the_desktop_is_told(
    neo4j_settings: Neo4jSettings, isolated_topics: KafkaSettings, graph: neo4j.Driver, cleanup: str
):
    uid = cleanup
    team = f"{uid}-team"
    router = serve_router(neo4j_settings, isolated_topics, driver=graph, offer_timeout=1.0)
    a, b, c = f"{uid}-a", f"{uid}-b", f"{uid}-c"
    try:
        router.add_agents(
            agent(a, team, skills={"billing": 5}),
            agent(b, team, skills={"billing": 4}),
            agent(c, team, skills={"billing": 1}),
        )
        events: queue.Queue[rt.StreamOffersResponse] = queue.Queue()
        stream = router.stub.StreamOffers(rt.StreamOffersRequest(agent_id=a))

        def read() -> None:
            try:
                for item in stream:
                    events.put(item)
            except grpc.RpcError:
                pass  # cancelled at the end of the test

        threading.Thread(target=read, daemon=True).start()
        time.sleep(0.3)  # let the stream subscribe before the offer is made
        routed = router.route(contact_id=f"{uid}-c1", identifier=email(f"max.{uid}"), topic="billing", team=team)
        assert routed.offer.agent_id == a
        first = events.get(timeout=5)
        assert first.WhichOneof("event") == "offered" and first.offered.offer.offer_id == routed.offer.offer_id

        moved = eventually(lambda: (x := router.contact(routed.id)).offer.agent_id == b and x)
        assert moved.state == rt.CONTACT_STATE_OFFERED and list(moved.declined_by) == [a]
        assert moved.offer.attempt == 2 and moved.offer.offer_id != routed.offer.offer_id
        assert router.active(a) == 0 and router.active(b) == 1
        gone = events.get(timeout=5)
        assert gone.WhichOneof("event") == "withdrawn"
        assert (gone.withdrawn.offer_id, gone.withdrawn.reason) == (routed.offer.offer_id, "expired")
        # The expired offer can no longer be accepted.
        with pytest.raises(grpc.RpcError) as late:
            router.stub.AcceptOffer(rt.AcceptOfferRequest(offer_id=routed.offer.offer_id, agent_id=a), timeout=5)
        assert late.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        stream.cancel()
    finally:
        router.close()


def test_a_rejected_offer_goes_straight_to_the_next_best(router: RouterHarness, uid: str):
    team = f"{uid}-team"
    a, b = f"{uid}-a", f"{uid}-b"
    router.add_agents(agent(a, team, skills={"billing": 5}), agent(b, team, skills={"billing": 2}))
    routed = router.route(contact_id=f"{uid}-c1", identifier=email(f"eve.{uid}"), topic="billing", team=team)
    assert routed.offer.agent_id == a
    with pytest.raises(grpc.RpcError) as wrong_agent:
        router.stub.RejectOffer(rt.RejectOfferRequest(offer_id=routed.offer.offer_id, agent_id=b), timeout=5)
    assert wrong_agent.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    rejected = router.stub.RejectOffer(
        rt.RejectOfferRequest(offer_id=routed.offer.offer_id, agent_id=a, reason="wrong skill"), timeout=5
    ).contact
    assert rejected.state == rt.CONTACT_STATE_OFFERED and rejected.offer.agent_id == b
    assert list(rejected.declined_by) == [a]
    assert router.active(a) == 0 and router.active(b) == 1
    # Cancelling the offered contact frees B too.
    cancelled = router.stub.CancelContact(rt.CancelContactRequest(contact_id=routed.id), timeout=5).contact
    assert cancelled.state == rt.CONTACT_STATE_CANCELLED and router.active(b) == 0


def test_completion_frees_capacity_and_the_batch_step_assigns_the_queue_head(router: RouterHarness, uid: str):
    team = f"{uid}-team"
    a, b = f"{uid}-a", f"{uid}-b"
    router.add_agents(agent(a, team, skills={"billing": 5}), agent(b, team, skills={"billing": 3}))
    c1 = router.route(contact_id=f"{uid}-c1", identifier=email(f"u1.{uid}"), topic="billing", team=team)
    c2 = router.route(contact_id=f"{uid}-c2", identifier=email(f"u2.{uid}"), topic="billing", team=team)
    assert {c1.offer.agent_id, c2.offer.agent_id} == {a, b}
    low = router.route(contact_id=f"{uid}-c3", identifier=email(f"u3.{uid}"), topic="billing", team=team)
    high = router.route(contact_id=f"{uid}-c4", identifier=email(f"u4.{uid}"), topic="billing", team=team, priority=5)
    last = router.route(contact_id=f"{uid}-c5", identifier=email(f"u5.{uid}"), topic="billing", team=team)
    assert low.state == high.state == last.state == rt.CONTACT_STATE_WAITING
    assert high.queue.position == 1 and last.queue.position == 3 and last.queue.waiting == 3
    assert last.queue.HasField("estimated_wait")

    queued = router.stub.GetQueue(rt.GetQueueRequest(team=team), timeout=CALL_TIMEOUT)
    assert [c.id for c in queued.contacts] == [high.id, low.id, last.id]
    assert [c.queue.position for c in queued.contacts] == [1, 2, 3] and queued.total_waiting == 3

    holder_of_a = c1 if c1.offer.agent_id == a else c2
    router.stub.AcceptOffer(rt.AcceptOfferRequest(offer_id=holder_of_a.offer.offer_id, agent_id=a), timeout=5)
    router.stub.CompleteContact(rt.CompleteContactRequest(contact_id=holder_of_a.id, resolved=True), timeout=5)
    head = eventually(lambda: (x := router.contact(high.id)).state == rt.CONTACT_STATE_OFFERED and x)
    assert head.offer.agent_id == a and head.offer.mode == rt.ASSIGNMENT_MODE_BATCH
    assert router.contact(low.id).state == router.contact(last.id).state == rt.CONTACT_STATE_WAITING
    assert router.active(a) == 1
    queued = router.stub.GetQueue(rt.GetQueueRequest(team=team), timeout=CALL_TIMEOUT)
    assert [c.id for c in queued.contacts] == [low.id, last.id]


def test_graph_unreachable_is_unavailable_within_the_deadline_and_recovers(
    neo4j_settings: Neo4jSettings, isolated_topics: KafkaSettings, cleanup: str
):
    uid = cleanup
    host, port = neo4j_settings.uri.removeprefix("bolt://").split(":")
    proxy = TcpProxy((host, int(port)))
    proxy.start()
    proxied = Neo4jSettings(
        uri=f"bolt://127.0.0.1:{proxy.port}",
        user=neo4j_settings.user,
        password=neo4j_settings.password,
        database=neo4j_settings.database,
        timeout=2.0,
    )
    router = serve_router(proxied, isolated_topics)
    team = f"{uid}-team"
    try:
        router.add_agents(agent(f"{uid}-a", team))
        proxy.stop()
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as down:
            router.route(identifier=email(f"kim.{uid}"), team=team)
        assert down.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.RpcError) as down_with_deadline:
            router.stub.RouteContact(
                rt.RouteContactRequest(identifier=email(f"kim.{uid}"), channel=ev.CHANNEL_CHAT, team=team), timeout=1.0
            )
        assert down_with_deadline.value.code() == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - started < CALL_TIMEOUT + 1.0
        proxy.start()
        routed = eventually(lambda: _route_or_none(router, uid, team), timeout=20)
        assert routed.offer.agent_id == f"{uid}-a"
    finally:
        router.close()
        proxy.stop()


def _route_or_none(router: RouterHarness, uid: str, team: str) -> rt.Contact | None:
    try:
        return router.route(contact_id=f"{uid}-c9", identifier=email(f"kim.{uid}"), team=team)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.UNAVAILABLE
        return None


def test_an_agent_going_away_hands_pending_offers_to_the_next_best(router: RouterHarness, uid: str):
    team = f"{uid}-team"
    a, b = f"{uid}-a", f"{uid}-b"
    router.add_agents(agent(a, team, skills={"billing": 5}), agent(b, team, skills={"billing": 2}))
    routed = router.route(contact_id=f"{uid}-c1", identifier=email(f"ivy.{uid}"), topic="billing", team=team)
    assert routed.offer.agent_id == a
    away = router.stub.SetAgentStatus(
        rt.SetAgentStatusRequest(agent_id=a, status=rt.AGENT_STATUS_AWAY), timeout=CALL_TIMEOUT
    )
    assert list(away.withdrawn_contact_ids) == [routed.id]
    assert away.agent.status == rt.AGENT_STATUS_AWAY and router.active(a) == 0
    moved = router.contact(routed.id)
    assert moved.offer.agent_id == b and list(moved.declined_by) == [a]
    # Away agents get nothing new; back to available, they are first again.
    assert router.route(contact_id=f"{uid}-c2", identifier=email(f"jo.{uid}"), team=team).state == (
        rt.CONTACT_STATE_WAITING
    )
    router.stub.SetAgentStatus(rt.SetAgentStatusRequest(agent_id=a, status=rt.AGENT_STATUS_AVAILABLE), timeout=5)
    assert eventually(lambda: router.contact(f"{uid}-c2").offer.agent_id == a)
