"""The profile worker's graph writes for device alerts and failed self-service, on the real Neo4j.

Batches go through GraphWriter exactly as the worker writes them; event times are recent, so
contacts are owed. The end-to-end path through Kafka, the worker, router and timeline is in
test_proactive_service.py.
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import neo4j
import pytest

from rapport.events import validate
from rapport.v1 import events_pb2 as ev
from rapport_profile.adapters.graph import BatchResult, GraphWriter
from rapport_profile.domain.proactive import ProactiveSettings
from rapport_profile.synthetic import interaction

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def writer(graph: neo4j.Driver, uid: str) -> Iterator[GraphWriter]:
    yield GraphWriter(graph, clock=lambda: NOW, proactive=ProactiveSettings(outreach_team=f"{uid}-team"))
    graph.execute_query(
        """
        MATCH (k:Identity) WHERE k.value CONTAINS $uid
        OPTIONAL MATCH (k)-[:IDENTIFIES]->(c:Customer)
        OPTIONAL MATCH (c)-[:HAD]->(i:Interaction)
        OPTIONAL MATCH (c)-[:OWNS]->(d:Device)
        OPTIONAL MATCH (c)-[:HAS_CASE]->(cs:Case)
        OPTIONAL MATCH (x:Contact) WHERE x.customer_id = c.id
        DETACH DELETE k, c, i, d, cs, x
        """,
        uid=uid,
    )


def write(writer: GraphWriter, *events: ev.InteractionEvent) -> BatchResult:
    return writer.write_batch([(e, validate(e)) for e in events])


def rows(graph: neo4j.Driver, query: str, **params: Any) -> list[dict[str, Any]]:
    records, _, _ = graph.execute_query(query, params)
    return [dict(r) for r in records]


def alert(uid: str, n: int, severity: int, hours_ago: float, fault: str = "E42") -> ev.InteractionEvent:
    return interaction(
        f"{uid}-alert-{n}",
        f"device:{uid}-hub",
        at=NOW - timedelta(hours=hours_ago),
        channel=ev.CHANNEL_DEVICE,
        kind=ev.INTERACTION_KIND_DEVICE_ALERT,
        device=ev.Device(id=f"{uid}-hub", model="HB-5"),
        alert=ev.DeviceAlert(fault_code=fault, severity=severity, readings={"temp_c": 60.0 + n}),  # type: ignore[arg-type]
        topic="outage",
    )


def cases(graph: neo4j.Driver, uid: str) -> list[dict[str, Any]]:
    return rows(
        graph,
        "MATCH (c:Customer)-[:HAS_CASE]->(k:Case {device_id: $d}) RETURN k {.*} AS case, c.id AS customer",
        d=f"{uid}-hub",
    )


def contacts(graph: neo4j.Driver, customer: str) -> list[dict[str, Any]]:
    return [r["x"] for r in rows(graph, "MATCH (x:Contact {customer_id: $c}) RETURN x {.*} AS x", c=customer)]


def in_case(graph: neo4j.Driver, event_id: str) -> list[str]:
    found = rows(
        graph,
        "MATCH (i:Interaction {event_id: $e}) RETURN i.case_id AS p, [(i)-[:IN_CASE]->(k) | k.id] AS r",
        e=event_id,
    )
    return [found[0]["p"], *found[0]["r"]] if found else []


def test_an_alert_sent_twice_opens_one_case_that_escalates_and_reaches_out_once(
    writer: GraphWriter, graph: neo4j.Driver, uid: str
):
    write(writer, alert(uid, 1, ev.ALERT_SEVERITY_WARNING, 3))
    # The device resends (a new event id), then a critical reading; then the first batch is replayed.
    write(writer, alert(uid, 2, ev.ALERT_SEVERITY_WARNING, 2.9), alert(uid, 3, ev.ALERT_SEVERITY_CRITICAL, 2.8))
    write(writer, alert(uid, 4, ev.ALERT_SEVERITY_INFO, 2.7))
    replay = write(writer, alert(uid, 1, ev.ALERT_SEVERITY_WARNING, 3))
    assert replay.duplicates == [f"{uid}-alert-1"]

    (found,) = cases(graph, uid)
    case = found["case"]
    assert case["proactive"] and case["status"] == "open" and case["fault_code"] == "E42"
    assert case["severity"] == "critical", "an info alert never downgrades the case"
    assert case["alerts"] == 4 and case["readings"] == '{"temp_c": 64.0}'
    for n in range(1, 5):
        assert in_case(graph, f"{uid}-alert-{n}") == [case["id"], case["id"]]

    (outreach,) = contacts(graph, found["customer"])
    assert outreach["id"] == case["outreach_contact_id"] and outreach["state"] == "waiting"
    assert outreach["origin"] == "proactive_outreach" and outreach["case_id"] == case["id"]
    assert outreach["skill_names"] == ["device:hb-5|fault:e42"] and outreach["team"] == f"{uid}-team"
    assert (outreach["identity_kind"], outreach["identity_value"]) == ("device", f"{uid}-hub")

    # Another fault of the same device is another case.
    write(writer, alert(uid, 5, ev.ALERT_SEVERITY_INFO, 2, fault="E7"))
    assert sorted(c["case"]["fault_code"] for c in cases(graph, uid)) == ["E42", "E7"]


def test_info_gives_one_notification_and_no_contact_and_a_later_call_joins_the_case(
    writer: GraphWriter, graph: neo4j.Driver, uid: str
):
    mail = f"email:ivy.{uid}@example.com"
    first = alert(uid, 1, ev.ALERT_SEVERITY_INFO, 5)
    first.identifiers.append(ev.Identifier(kind=ev.IDENTIFIER_KIND_EMAIL, value=mail[6:], verified=True))
    result = write(writer, first)
    write(writer, alert(uid, 2, ev.ALERT_SEVERITY_INFO, 4))
    (found,) = cases(graph, uid)
    case_id = found["case"]["id"]
    notification = f"{case_id}.notification"
    assert result.changes[0].event_ids == [f"{uid}-alert-1", notification]
    (note,) = rows(
        graph,
        "MATCH (c:Customer)-[:HAD]->(i:Interaction {kind: 'notification'}) WHERE c.id = $c RETURN i {.*} AS i",
        c=found["customer"],
    )
    assert note["i"]["event_id"] == notification and note["i"]["direction"] == "outbound"
    assert note["i"]["channel"] == "app" and "E42" in note["i"]["summary"]
    assert contacts(graph, found["customer"]) == []

    # An hour later (event time) the customer calls and chats: both join the case; a call
    # four days later is about something else.
    call = interaction(f"{uid}-call", mail, at=NOW - timedelta(hours=3), channel=ev.CHANNEL_VOICE,
                       kind=ev.INTERACTION_KIND_CALL, direction=ev.DIRECTION_INBOUND)  # fmt: skip
    chat = interaction(f"{uid}-chat", mail, at=NOW - timedelta(hours=2), kind=ev.INTERACTION_KIND_MESSAGE)
    later = interaction(f"{uid}-later", mail, at=NOW + timedelta(days=4), kind=ev.INTERACTION_KIND_MESSAGE)
    write(writer, call, chat, later)
    assert in_case(graph, f"{uid}-call") == [case_id, case_id]
    assert in_case(graph, f"{uid}-chat") == [case_id, case_id]
    assert in_case(graph, f"{uid}-later") == [None]


def test_a_no_on_an_article_escalates_once_with_what_was_tried(writer: GraphWriter, graph: neo4j.Driver, uid: str):
    mail = f"email:bo.{uid}@example.com"
    minutes = [NOW - timedelta(minutes=m) for m in (20, 15, 10)]
    turn = interaction(f"{uid}-turn", mail, at=minutes[0], channel=ev.CHANNEL_BOT, kind=ev.INTERACTION_KIND_BOT_TURN,
                       intent="reset_password", topic="password",
                       self_service=ev.SelfService(flow_id="pw", step="ask"))  # fmt: skip
    view = interaction(f"{uid}-view", mail, at=minutes[1], channel=ev.CHANNEL_WEB,
                       kind=ev.INTERACTION_KIND_ARTICLE_VIEW, topic="password",
                       self_service=ev.SelfService(article_id="kb-9", article_title="Reset your password"))  # fmt: skip
    no = interaction(f"{uid}-no", mail, at=minutes[2], channel=ev.CHANNEL_WEB,
                     kind=ev.INTERACTION_KIND_ARTICLE_FEEDBACK, topic="password",
                     self_service=ev.SelfService(article_id="kb-9", answer=ev.ARTICLE_ANSWER_NO))  # fmt: skip
    write(writer, turn, view)
    write(writer, no)
    write(writer, no)  # replayed
    customer = rows(graph, "MATCH (:Identity {key: $k})-[:IDENTIFIES]->(c) RETURN c.id AS id", k=mail)[0]["id"]
    (escalation,) = contacts(graph, customer)
    assert escalation["origin"] == "self_service_escalation" and escalation["state"] == "waiting"
    assert (escalation["intent"], escalation["topic"], escalation["channel"]) == ("reset_password", "password", "chat")
    assert '"escalation.article_title": "Reset your password"' in escalation["attributes"]
    assert 'article \\"Reset your password\\" (answered no); bot: reset_password' in escalation["attributes"]

    # While that contact waits, the bot giving up again escalates nothing more.
    gave_up = ev.SelfService(exit_reason="gave_up")
    exit_ = interaction(f"{uid}-exit", mail, at=NOW - timedelta(minutes=5), channel=ev.CHANNEL_BOT,
                        kind=ev.INTERACTION_KIND_BOT_EXIT, self_service=gave_up)  # fmt: skip
    write(writer, exit_)
    assert len(contacts(graph, customer)) == 1


def test_old_events_rebuild_cases_but_call_nobody(writer: GraphWriter, graph: neo4j.Driver, uid: str):
    write(writer, alert(uid, 1, ev.ALERT_SEVERITY_CRITICAL, 24 * 30))
    (found,) = cases(graph, uid)
    assert found["case"]["severity"] == "critical" and found["case"].get("outreach_contact_id") is None
    assert contacts(graph, found["customer"]) == []
