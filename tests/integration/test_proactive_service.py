"""Proactive device cases and self-service escalations end to end: events through the real Kafka
into the real profile worker process and Neo4j, contacts offered by a real router, context from a
real timeline server (both through gRPC).

The worker queues its outreach and escalation contacts in this module's team only, so routers of
other tests never see them; every test scopes ids with its `uid` and removes what it made.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
import neo4j
import pytest
from test_router_support import (  # type: ignore[import-not-found]
    CALL_TIMEOUT,
    RouterHarness,
    agent,
    cleanup_graph,
    serve_router,
)
from test_timeline_support import Harness, serve  # type: ignore[import-not-found]

from rapport.publisher import InteractionPublisher
from rapport.settings import KafkaSettings, Neo4jSettings
from rapport.topics import ensure_topics
from rapport.v1 import events_pb2 as ev
from rapport.v1 import router_pb2 as rt
from rapport.v1 import timeline_pb2 as tl
from rapport_profile.adapters.graph import seed_graph
from rapport_profile.synthetic import interaction
from rapport_profile.worker_process import WorkerProcess, free_port, worker_env

pytestmark = pytest.mark.integration

T = TypeVar("T")
TEAM = f"proactive-{uuid.uuid4().hex[:8]}"
NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass
class Stack:
    kafka: KafkaSettings
    worker: WorkerProcess
    router: RouterHarness
    timeline: Harness
    publisher: InteractionPublisher
    graph: neo4j.Driver

    def send(self, *events: ev.InteractionEvent) -> None:
        for e in events:
            self.publisher.publish(e)
        self.publisher.flush(10)

    def rows(self, query: str, **params: Any) -> list[dict[str, Any]]:
        records, _, _ = self.graph.execute_query(query, params)
        return [dict(r) for r in records]

    def eventually(self, probe: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
        deadline = datetime.now(UTC) + timedelta(seconds=timeout)
        while True:
            value = probe()
            if value:
                return value
            if datetime.now(UTC) > deadline:
                raise AssertionError(f"{what} not seen within {timeout} s\nworker log:\n{self.worker.log_tail()}")
            self.worker_alive()
            time.sleep(0.2)

    def worker_alive(self) -> None:
        assert self.worker.popen is not None and self.worker.popen.poll() is None, self.worker.log_tail()

    def handoff(self, identifier: ev.Identifier) -> tl.GetHandoffContextResponse:
        return self.timeline.stub.GetHandoffContext(
            tl.GetHandoffContextRequest(customer=tl.CustomerRef(identifier=identifier)), timeout=CALL_TIMEOUT
        )


@pytest.fixture(scope="module")
def stack(
    kafka_settings: KafkaSettings, neo4j_settings: Neo4jSettings, graph: neo4j.Driver, tmp_path_factory: Any
) -> Iterator[Stack]:
    suffix = uuid.uuid4().hex[:8]
    topics = dataclasses.replace(
        kafka_settings,
        interactions_topic=f"test.{suffix}.interactions",
        dead_letter_topic=f"test.{suffix}.dlq",
        customer_updates_topic=f"test.{suffix}.customer-updates",
        interactions_partitions=3,
    )
    ensure_topics(topics)
    env = worker_env(
        topics,
        neo4j_settings,
        group=f"test-{suffix}",
        port=free_port(),
        batch_size=200,
        linger=0.05,
        extra={"RAPPORT_PROFILE_OUTREACH_TEAM": TEAM, "RAPPORT_PROFILE_ESCALATION_TEAM": TEAM},
    )
    log_dir: Path = tmp_path_factory.mktemp("proactive")
    worker = WorkerProcess(env, log_dir / "worker.log").start()
    router = serve_router(neo4j_settings, topics, driver=graph)
    timeline = serve(neo4j_settings, topics, graph)
    publisher = InteractionPublisher(topics)
    try:
        yield Stack(topics, worker, router, timeline, publisher, graph)
    finally:
        publisher.close(5)
        timeline.close()
        timeline.server.stop(1.0)
        router.close()
        worker.stop()


@pytest.fixture
def uid(graph: neo4j.Driver) -> Iterator[str]:
    uid = uuid.uuid4().hex[:10]
    yield uid
    graph.execute_query(
        "MATCH (k:Identity)-[:IDENTIFIES]->(c:Customer) WHERE k.value CONTAINS $uid "
        "MATCH (x:Contact {customer_id: c.id}) DETACH DELETE x",
        uid=uid,
    )
    cleanup_graph(graph, uid)


def email(local: str) -> ev.Identifier:
    return ev.Identifier(kind=ev.IDENTIFIER_KIND_EMAIL, value=f"{local}@example.com", verified=True)


def device(device_id: str) -> ev.Identifier:
    return ev.Identifier(kind=ev.IDENTIFIER_KIND_DEVICE_ID, value=device_id)


def alert(event_id: str, who: list[ev.Identifier], severity: int, at: datetime, device_id: str) -> ev.InteractionEvent:
    return interaction(
        event_id,
        *who,
        at=at,
        channel=ev.CHANNEL_DEVICE,
        kind=ev.INTERACTION_KIND_DEVICE_ALERT,
        device=ev.Device(id=device_id, model="HB-5"),
        alert=ev.DeviceAlert(fault_code="E42", severity=severity, readings={"temp_c": 81.5}),  # type: ignore[arg-type]
        topic="outage",
    )


def factor(contact: rt.Contact, name: str) -> rt.ScoreFactor:
    return next(f for f in contact.offer.explanation.factors if f.name == name)


def test_an_alert_sent_twice_opens_one_case_whose_owner_gets_the_customer_call_an_hour_later(stack: Stack, uid: str):
    owner, expert = f"{uid}-owner", f"{uid}-expert"
    # The expert is stronger on billing; only the owner-to-be knows the HB-5.
    stack.router.add_agents(
        agent(expert, TEAM, skills={"billing": 5}, chat=0, voice=1),
        agent(owner, TEAM, skills={"billing": 2, "device:hb-5": 3}, chat=0, voice=1),
    )
    hub = f"{uid}-hub"
    who = [device(hub), email(f"ann.{uid}")]
    first = alert(f"{uid}-alert-1", who, ev.ALERT_SEVERITY_WARNING, NOW - timedelta(hours=2), hub)
    resent = alert(f"{uid}-alert-2", who, ev.ALERT_SEVERITY_WARNING, NOW - timedelta(hours=2, minutes=-1), hub)
    stack.send(first)
    stack.send(resent, first)  # the device resends, and the first record is delivered twice

    def case() -> dict[str, Any] | None:
        found = stack.rows("MATCH (k:Case {device_id: $d}) WHERE k.alerts = 2 RETURN k {.*} AS k", d=hub)
        return found[0]["k"] if found else None

    proactive = stack.eventually(case, "the proactive case with both alerts")
    assert len(stack.rows("MATCH (k:Case {device_id: $d}) RETURN k.id", d=hub)) == 1
    assert proactive["severity"] == "warning" and proactive["status"] == "open"

    # The router offers the outreach to the agent skilled in the device, who takes the case up.
    outreach_id = proactive["outreach_contact_id"]
    offered = stack.eventually(
        lambda: (c := stack.router.contact(outreach_id)).state == rt.CONTACT_STATE_OFFERED and c,
        "the outreach offer",
    )
    assert offered.offer.agent_id == owner and offered.origin == rt.CONTACT_ORIGIN_PROACTIVE_OUTREACH
    assert offered.case_id == proactive["id"] and offered.attributes["proactive.fault_code"] == "E42"
    stack.router.stub.AcceptOffer(
        rt.AcceptOfferRequest(offer_id=offered.offer.offer_id, agent_id=owner), timeout=CALL_TIMEOUT
    )
    stack.router.stub.CompleteContact(
        rt.CompleteContactRequest(contact_id=outreach_id, resolved=True, notes="reset the hub remotely"),
        timeout=CALL_TIMEOUT,
    )
    assert stack.rows("MATCH (k:Case {id: $id}) RETURN k.owner_agent_id AS o", id=proactive["id"]) == [{"o": owner}]

    # An hour later (event time) the customer calls about billing; the call joins the case.
    call = interaction(f"{uid}-call", email(f"ann.{uid}"), at=NOW - timedelta(hours=1), channel=ev.CHANNEL_VOICE,
                       kind=ev.INTERACTION_KIND_CALL, direction=ev.DIRECTION_INBOUND, topic="billing")  # fmt: skip
    stack.send(call)
    stack.eventually(
        lambda: stack.rows(
            "MATCH (:Interaction {event_id: $e})-[:IN_CASE]->(k:Case {id: $k}) RETURN k.id",
            e=call.event_id,
            k=proactive["id"],
        ),
        "the call in the proactive case",
    )
    routed = stack.router.route(
        contact_id=f"{uid}-c1", identifier=email(f"ann.{uid}"), channel=ev.CHANNEL_VOICE, topic="billing", team=TEAM
    )
    assert routed.state == rt.CONTACT_STATE_OFFERED and routed.offer.agent_id == owner, routed.offer.explanation
    assert routed.case_id == proactive["id"]
    assert f"owns the customer's open case {proactive['id']}" in factor(routed, "continuity").detail
    assert routed.offer.explanation.runner_ups[0].agent_id == expert

    # The agent's handoff context leads with the alert.
    context = stack.handoff(email(f"ann.{uid}"))
    assert context.probable_reason.startswith("Probably about the E42 fault on their HB-5: HB-5 reported E42")
    lead = context.open_cases[0]
    assert (lead.case_id, lead.fault_code, lead.device_id, lead.owner_agent_id) == (proactive["id"], "E42", hub, owner)
    assert lead.proactive and lead.severity == ev.ALERT_SEVERITY_WARNING and lead.alerts == 2


def test_a_no_on_an_article_escalates_to_the_agent_who_resolved_that_intent(stack: Stack, uid: str):
    resolver, other = f"{uid}-resolver", f"{uid}-other"
    intent = f"reset_password_{uid}"  # this test's own, so no one else's outcomes count
    # Equal on paper; `other` has been idle longer, so it wins every tie.
    stack.router.add_agents(agent(other, TEAM, skills={"password": 3}))
    stack.router.add_agents(agent(resolver, TEAM, skills={"password": 3}))
    seed_graph(
        stack.graph,
        [
            interaction(f"{uid}-h{n}", email(f"past{n}.{uid}"), at=NOW - timedelta(days=3 + n),
                        channel=ev.CHANNEL_CHAT, kind=ev.INTERACTION_KIND_CONTACT_COMPLETED, agent_id=resolver,
                        topic="account", intent=intent, outcome=ev.OUTCOME_RESOLVED, csat=5)
            for n in range(2)
        ],
    )  # fmt: skip

    who = email(f"bo.{uid}")
    title = "Reset your password"
    stack.send(
        interaction(f"{uid}-turn", who, at=NOW - timedelta(minutes=12), channel=ev.CHANNEL_BOT,
                    kind=ev.INTERACTION_KIND_BOT_TURN, intent=intent, topic="password",
                    self_service=ev.SelfService(flow_id="pw", step="ask", intent_confidence=0.9)),
        interaction(f"{uid}-view", who, at=NOW - timedelta(minutes=10), channel=ev.CHANNEL_WEB,
                    kind=ev.INTERACTION_KIND_ARTICLE_VIEW, topic="password",
                    self_service=ev.SelfService(article_id=f"kb-{uid}", article_title=title)),
    )  # fmt: skip
    no = interaction(f"{uid}-no", who, at=NOW - timedelta(minutes=9), channel=ev.CHANNEL_WEB,
                     kind=ev.INTERACTION_KIND_ARTICLE_FEEDBACK, topic="password",
                     self_service=ev.SelfService(article_id=f"kb-{uid}", answer=ev.ARTICLE_ANSWER_NO))  # fmt: skip
    stack.send(no)
    stack.send(no)  # delivered twice

    def escalation() -> rt.Contact | None:
        found = stack.rows(
            "MATCH (:Identity {key: $k})-[:IDENTIFIES]->(c:Customer) MATCH (x:Contact {customer_id: c.id}) "
            "RETURN x.id AS id",
            k=f"email:bo.{uid}@example.com",
        )
        if len(found) != 1:
            return None
        contact = stack.router.contact(found[0]["id"])
        return contact if contact.state == rt.CONTACT_STATE_OFFERED else None

    offered = stack.eventually(escalation, "the escalation offer")
    assert offered.origin == rt.CONTACT_ORIGIN_SELF_SERVICE_ESCALATION
    assert offered.offer.agent_id == resolver, offered.offer.explanation
    assert (offered.intent, offered.topic, offered.channel) == (intent, "password", ev.CHANNEL_CHAT)
    assert offered.attributes["escalation.article_title"] == title
    assert offered.attributes["escalation.tried"] == f'article "{title}" (answered no); bot: {intent}'
    records = [e for e in offered.offer.explanation.evidence if e.kind == rt.EVIDENCE_KIND_SIMILAR_CUSTOMERS_RECORD]
    assert [(e.intent, e.contacts, e.resolved) for e in records] == [(intent, 2, 2)]
    assert offered.offer.explanation.runner_ups[0].agent_id == other

    # The handoff shows the way the customer came and the article that did not help.
    context = stack.handoff(who)
    path = [(ev.InteractionKind.Name(s.kind), s.article_id or s.intent) for s in context.self_service.path]
    assert path == [
        ("INTERACTION_KIND_BOT_TURN", intent),
        ("INTERACTION_KIND_ARTICLE_VIEW", f"kb-{uid}"),
        ("INTERACTION_KIND_ARTICLE_FEEDBACK", f"kb-{uid}"),
    ]
    (article,) = context.self_service.articles
    assert (article.title, article.answer) == (title, ev.ARTICLE_ANSWER_NO)
    assert f'article "{title}" did not help' in context.probable_reason


def test_an_info_alert_notifies_in_the_app_and_calls_nobody(stack: Stack, uid: str):
    hub = f"{uid}-hub"
    who = [device(hub), email(f"cy.{uid}")]
    stack.send(alert(f"{uid}-info", who, ev.ALERT_SEVERITY_INFO, NOW - timedelta(minutes=30), hub))

    def notifications() -> list[tl.Interaction]:
        try:
            page = stack.timeline.stub.ListInteractions(
                tl.ListInteractionsRequest(
                    customer=tl.CustomerRef(identifier=email(f"cy.{uid}")),
                    filter=tl.InteractionFilter(kinds=[ev.INTERACTION_KIND_NOTIFICATION]),
                ),
                timeout=CALL_TIMEOUT,
            )
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:  # the worker has not stored the customer yet
                return []
            raise
        return list(page.interactions)

    (note,) = stack.eventually(notifications, "the notification")
    assert note.direction == ev.DIRECTION_OUTBOUND and note.channel == ev.CHANNEL_APP
    assert "E42" in note.summary and note.case_id.startswith("pc_")
    (case,) = stack.rows("MATCH (k:Case {device_id: $d}) RETURN k {.*} AS k", d=hub)
    assert case["k"]["severity"] == "info" and case["k"].get("outreach_contact_id") is None
    assert (
        stack.rows("MATCH (c:Customer {id: $c}) MATCH (x:Contact {customer_id: c.id}) RETURN x.id", c=note.customer_id)
        == []
    )


def test_a_customer_calling_while_the_outreach_waits_takes_it_over(stack: Stack, uid: str):
    # Nobody knows the device: the outreach waits (its skill relaxes only after a minute).
    stack.router.add_agents(agent(f"{uid}-a", TEAM, skills={"outage": 3}, chat=0, voice=1))
    hub = f"{uid}-hub"
    who = [device(hub), email(f"di.{uid}")]
    stack.send(alert(f"{uid}-alert", who, ev.ALERT_SEVERITY_CRITICAL, NOW - timedelta(minutes=5), hub))

    def waiting_outreach() -> str | None:
        found = stack.rows("MATCH (k:Case {device_id: $d}) RETURN k.outreach_contact_id AS id", d=hub)
        return found[0]["id"] if found and found[0]["id"] else None

    outreach_id = stack.eventually(waiting_outreach, "the outreach contact")
    queued = stack.router.contact(outreach_id)
    assert queued.state == rt.CONTACT_STATE_WAITING and queued.priority == 6
    assert [(s.name, s.min_level) for s in queued.required_skills] == [("device:hb-5|fault:e42", 1)]

    routed = stack.router.route(
        contact_id=f"{uid}-c1", identifier=email(f"di.{uid}"), channel=ev.CHANNEL_VOICE, team=TEAM
    )
    assert routed.state == rt.CONTACT_STATE_OFFERED and routed.offer.agent_id == f"{uid}-a"
    assert routed.origin == rt.CONTACT_ORIGIN_ROUTED and routed.topic == "outage"
    assert routed.case_id == queued.case_id and routed.attributes["proactive.severity"] == "critical"
    superseded = stack.router.contact(outreach_id)
    assert superseded.state == rt.CONTACT_STATE_CANCELLED
    assert stack.rows(
        "MATCH (c:Contact {id: $id}) RETURN c.end_reason AS r, c.superseded_by AS by", id=outreach_id
    ) == [{"r": "superseded", "by": f"{uid}-c1"}]
