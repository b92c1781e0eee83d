"""TimelineService through gRPC against the real Neo4j: paging, filters, merges, handoff, errors."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, timedelta

import grpc
import neo4j
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from test_timeline_support import (  # type: ignore[import-not-found]
    Harness,
    at,
    by_id,
    by_identifier,
    identifier,
    interaction,
    serve,
    timeline_server,  # noqa: F401  (the `timeline` fixture)
)

from rapport.settings import KafkaSettings, Neo4jSettings
from rapport.v1 import events_pb2 as ev
from rapport.v1 import timeline_pb2 as tl

pytestmark = pytest.mark.integration

T = 10.0
NEWEST, OLDEST = tl.TIMELINE_ORDER_NEWEST_FIRST, tl.TIMELINE_ORDER_OLDEST_FIRST


def page_through(h: Harness, request: tl.ListInteractionsRequest, between_pages=None) -> list[tl.Interaction]:
    seen: list[tl.Interaction] = []
    while True:
        response = h.stub.ListInteractions(request, timeout=T)
        seen.extend(response.interactions)
        if between_pages is not None:
            between_pages()
        if not response.next_page_token:
            return seen
        request.page_token = response.next_page_token


def keys(items: list[tl.Interaction]) -> list[tuple[int, int, str]]:
    return [(i.at.seconds, i.at.nanos, i.event_id) for i in items]


def test_paging_newest_first_while_500_newer_arrive_sees_each_once_in_order(timeline: Harness, uid: str):
    email = f"email:pager.{uid}@example.com"
    timeline.seed(interaction(f"{uid}-old-{n}", email, at=at(n)) for n in range(1000))
    writer_done = threading.Event()

    def write_newer() -> None:
        for batch in range(20):
            timeline.seed(interaction(f"{uid}-new-{batch}-{n}", email, at=at(2000 + batch * 25 + n)) for n in range(25))
        writer_done.set()

    writer = threading.Thread(target=write_newer)
    writer.start()
    seen = page_through(timeline, tl.ListInteractionsRequest(customer=by_identifier(email), page_size=50, order=NEWEST))
    writer.join(120)
    assert writer_done.is_set()

    ids = [i.event_id for i in seen]
    assert len(ids) == len(set(ids)), "an interaction was returned twice"
    assert keys(seen) == sorted(keys(seen), reverse=True)
    # Every interaction that existed when paging began is there exactly once; the newer ones sit
    # before the first cursor, so only those stored before the first page can have shown up.
    assert [e for e in ids if "-old-" in e] == [f"{uid}-old-{n}" for n in range(999, -1, -1)]
    head = timeline.stub.ListInteractions(
        tl.ListInteractionsRequest(customer=by_identifier(email), page_size=5), timeout=T
    )
    assert [i.event_id for i in head.interactions] == [f"{uid}-new-19-{n}" for n in range(24, 19, -1)]


def test_paging_oldest_first_while_500_arrive_sees_all_1500_once_in_order(timeline: Harness, uid: str):
    email = f"email:tail.{uid}@example.com"
    timeline.seed(interaction(f"{uid}-{n:04d}", email, at=at(n)) for n in range(1000))
    batches = iter(range(20))

    def one_more_batch() -> None:  # 25 newer interactions land between every two pages
        batch = next(batches, None)
        if batch is not None:
            timeline.seed(
                interaction(f"{uid}-{1000 + batch * 25 + n:04d}", email, at=at(1000 + batch * 25 + n))
                for n in range(25)
            )

    seen = page_through(
        timeline, tl.ListInteractionsRequest(customer=by_identifier(email), page_size=50, order=OLDEST), one_more_batch
    )
    assert [i.event_id for i in seen] == [f"{uid}-{n:04d}" for n in range(1500)]


def test_filters_combine_and_the_token_is_bound_to_them(timeline: Harness, uid: str):
    phone = f"phone:+4477009{int(uid[:5], 16) % 100000:05d}"
    agent, case = f"ag-{uid}", f"case-{uid}"
    plan = [
        # (channel, kind, topic, agent, case, minute)
        (ev.CHANNEL_VOICE, ev.INTERACTION_KIND_CALL, "billing", agent, case, 1),  # all match
        (ev.CHANNEL_CHAT, ev.INTERACTION_KIND_MESSAGE, "billing", agent, case, 2),  # all match
        (ev.CHANNEL_EMAIL, ev.INTERACTION_KIND_MESSAGE, "billing", agent, case, 3),  # channel
        (ev.CHANNEL_VOICE, ev.INTERACTION_KIND_CALL, "roaming", agent, case, 4),  # topic
        (ev.CHANNEL_VOICE, ev.INTERACTION_KIND_CALL, "billing", "someone-else", case, 5),  # agent
        (ev.CHANNEL_VOICE, ev.INTERACTION_KIND_CALL, "billing", agent, "", 6),  # case
        (ev.CHANNEL_CHAT, ev.INTERACTION_KIND_BOT_TURN, "billing", agent, case, 7),  # kind
        (ev.CHANNEL_CHAT, ev.INTERACTION_KIND_MESSAGE, "billing", agent, case, 8),  # all match
        (ev.CHANNEL_VOICE, ev.INTERACTION_KIND_CALL, "billing", agent, case, 90),  # after `until`
        (ev.CHANNEL_CHAT, ev.INTERACTION_KIND_MESSAGE, "billing", agent, case, 0),  # before `since`
    ]
    events = []
    for n, (channel, kind, topic, who, case_id, minute) in enumerate(plan):
        fields: dict[str, object] = {"topic": topic, "agent_id": who}
        if case_id:
            fields["case"] = ev.CaseRef(id=case_id, status=ev.CASE_STATUS_OPEN)
        events.append(
            interaction(f"{uid}-{n}", phone, at=at(minute) + timedelta(seconds=1), channel=channel, kind=kind, **fields)
        )
    timeline.seed(events)
    flt = tl.InteractionFilter(
        channels=[ev.CHANNEL_VOICE, ev.CHANNEL_CHAT],
        kinds=[ev.INTERACTION_KIND_CALL, ev.INTERACTION_KIND_MESSAGE],
        topics=["billing"],
        agent_id=agent,
        case_id=case,
    )
    flt.since.FromDatetime(at(1))
    flt.until.FromDatetime(at(60))
    request = tl.ListInteractionsRequest(customer=by_identifier(phone), filter=flt, page_size=2, order=OLDEST)
    first = timeline.stub.ListInteractions(request, timeout=T)
    assert [i.event_id for i in first.interactions] == [f"{uid}-0", f"{uid}-1"]
    assert first.interactions[0].channel == ev.CHANNEL_VOICE and first.interactions[0].case_id == case

    request.page_token = first.next_page_token
    second = timeline.stub.ListInteractions(request, timeout=T)
    assert [i.event_id for i in second.interactions] == [f"{uid}-7"]
    assert second.next_page_token == ""

    other = tl.ListInteractionsRequest(customer=by_identifier(phone), page_token=first.next_page_token, order=OLDEST)
    with pytest.raises(grpc.RpcError) as err:
        timeline.stub.ListInteractions(other, timeout=T)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith("page_token")


def test_a_secondary_identifier_after_a_merge_returns_the_merged_history(timeline: Harness, uid: str):
    email, phone = f"email:merge.{uid}@example.com", f"phone:+4477008{int(uid[:5], 16) % 100000:05d}"
    timeline.seed(interaction(f"{uid}-e{n}", email, at=at(n * 2)) for n in range(3))  # minutes 0, 2, 4
    timeline.seed(interaction(f"{uid}-p{n}", phone, at=at(n * 2 + 1)) for n in range(3))  # minutes 1, 3, 5
    by_phone_before = timeline.customer_of(phone)
    first = timeline.stub.ListInteractions(
        tl.ListInteractionsRequest(customer=by_identifier(phone), page_size=1), timeout=T
    )
    assert [i.event_id for i in first.interactions] == [f"{uid}-p2"]

    result = timeline.seed([interaction(f"{uid}-both", email, phone, at=at(10))])
    (merge,) = result.merges
    survivor = merge.survivor_id

    # The page token from before the merge keeps paging the (now merged) history, no repeats.
    rest = page_through(
        timeline,
        tl.ListInteractionsRequest(customer=by_identifier(phone), page_size=2, page_token=first.next_page_token),
    )
    assert [i.event_id for i in rest] == [f"{uid}-e2", f"{uid}-p1", f"{uid}-e1", f"{uid}-p0", f"{uid}-e0"]

    whole = timeline.stub.ListInteractions(tl.ListInteractionsRequest(customer=by_identifier(phone)), timeout=T)
    assert whole.customer_id == survivor
    assert {i.customer_id for i in whole.interactions} == {survivor}
    assert [i.event_id for i in whole.interactions][:2] == [f"{uid}-both", f"{uid}-p2"]
    assert len(whole.interactions) == 7
    absorbed = by_phone_before if by_phone_before != survivor else merge.absorbed_id
    via_old_id = timeline.stub.ListInteractions(tl.ListInteractionsRequest(customer=by_id(absorbed)), timeout=T)
    assert via_old_id.customer_id == survivor and len(via_old_id.interactions) == 7


def test_handoff_after_the_bot_shows_facts_masked_the_failed_article_and_the_last_intent(timeline: Harness, uid: str):
    crm = f"crm:C-{uid}"
    card = "4111 1111 1111 1111"
    ident = identifier(crm, verified=True, method="otp")
    timeline.seed(
        [
            interaction(
                f"{uid}-1",
                ident,
                at=at(0),
                channel=ev.CHANNEL_WEB,
                kind=ev.INTERACTION_KIND_ARTICLE_VIEW,
                topic="delivery",
                self_service=ev.SelfService(article_id="kb-12", article_title="Where is my order?"),
            ),
            interaction(
                f"{uid}-2",
                ident,
                at=at(1),
                channel=ev.CHANNEL_WEB,
                kind=ev.INTERACTION_KIND_ARTICLE_FEEDBACK,
                topic="delivery",
                self_service=ev.SelfService(article_id="kb-12", answer=ev.ARTICLE_ANSWER_NO),
            ),
            interaction(
                f"{uid}-3",
                ident,
                at=at(2),
                channel=ev.CHANNEL_BOT,
                kind=ev.INTERACTION_KIND_BOT_TURN,
                intent="track_order",
                topic="delivery",
                facts=[ev.Fact(key="order_number", value="A-1001")],
            ),
            interaction(
                f"{uid}-4",
                ident,
                at=at(3),
                channel=ev.CHANNEL_BOT,
                kind=ev.INTERACTION_KIND_BOT_TURN,
                intent="refund_request",
                topic="delivery",
                sentiment=-0.6,
                facts=[
                    ev.Fact(key="order_number", value="A-1001"),
                    ev.Fact(key="card_number", value=card, sensitive=True),
                ],
            ),
            interaction(
                f"{uid}-5",
                ident,
                at=at(4),
                channel=ev.CHANNEL_BOT,
                kind=ev.INTERACTION_KIND_BOT_EXIT,
                self_service=ev.SelfService(flow_id="orders", step="refund", exit_reason="asked_for_agent"),
            ),
        ]
    )
    response = timeline.stub.GetHandoffContext(tl.GetHandoffContextRequest(customer=by_identifier(crm)), timeout=T)

    facts = {f.key: f for f in response.facts}
    assert facts["order_number"].value == "A-1001"
    assert facts["order_number"].times_given == 2  # deduplicated, not listed twice
    assert facts["order_number"].source_channel == ev.CHANNEL_BOT
    assert facts["card_number"].sensitive and facts["card_number"].value.endswith("1111")
    assert "4111" not in facts["card_number"].value
    assert b"4111 1111" not in response.SerializeToString() and b"4111111111111111" not in response.SerializeToString()

    (article,) = response.self_service.articles
    assert (article.article_id, article.title, article.answer) == ("kb-12", "Where is my order?", ev.ARTICLE_ANSWER_NO)
    assert response.self_service.last_bot_intent == "refund_request"
    assert [b.intent for b in response.self_service.bot_intents] == ["refund_request", "track_order"]
    assert response.self_service.exit.exit_reason == "asked_for_agent"
    assert response.verification.level == tl.VERIFICATION_LEVEL_VERIFIED
    assert "otp" in response.verification.description
    # Effort counts the window ending now; this scripted journey is from 2025.
    assert (response.effort.level, response.effort.score) == (tl.EFFORT_LEVEL_LOW, 0)
    assert response.effort.window_end.ToDatetime(tzinfo=UTC) > at(0) + timedelta(days=300)
    assert "delivery" in response.probable_reason and "Where is my order?" in response.probable_reason


def test_bad_arguments_are_invalid_argument_naming_the_field(timeline: Harness, uid: str):
    email = f"email:bad.{uid}@example.com"
    timeline.seed([interaction(f"{uid}-{n}", email, at=at(n)) for n in range(3)])
    other = f"email:other.{uid}@example.com"
    timeline.seed([interaction(f"{uid}-o{n}", other, at=at(n)) for n in range(3)])
    foreign = timeline.stub.ListInteractions(
        tl.ListInteractionsRequest(customer=by_identifier(other), page_size=1), timeout=T
    ).next_page_token
    cases = [
        (tl.ListInteractionsRequest(customer=by_identifier(email), page_token="not-a-token!"), "page_token"),
        (tl.ListInteractionsRequest(customer=by_identifier(email), page_token="AQEAAAA"), "page_token"),
        (tl.ListInteractionsRequest(customer=by_identifier(email), page_token=foreign), "page_token"),
        (tl.ListInteractionsRequest(customer=by_identifier(email), page_size=501), "page_size"),
        (tl.ListInteractionsRequest(), "customer"),
        (
            tl.ListInteractionsRequest(
                customer=tl.CustomerRef(identifier=ev.Identifier(kind=ev.IDENTIFIER_KIND_EMAIL, value="nope"))
            ),
            "customer.identifier.value",
        ),
        (
            tl.ListInteractionsRequest(
                customer=by_identifier(email), filter=tl.InteractionFilter(channels=[ev.CHANNEL_UNSPECIFIED])
            ),
            "filter.channels[0]",
        ),
    ]
    for request, field in cases:
        with pytest.raises(grpc.RpcError) as err:
            timeline.stub.ListInteractions(request, timeout=T)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert (err.value.details() or "").startswith(field), (field, err.value.details())
    with pytest.raises(grpc.RpcError) as err:
        next(
            iter(
                timeline.stub.WatchTimeline(
                    tl.WatchTimelineRequest(customer=by_identifier(email), cursor=foreign), timeout=T
                )
            )
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith("cursor")


def test_unknown_customers_and_interactions_are_not_found(timeline: Harness, uid: str):
    email = f"email:known.{uid}@example.com"
    timeline.seed([interaction(f"{uid}-1", email, at=at(1), summary="hello")])
    for ref in (by_id(f"cus_{uuid.uuid4().hex[:16]}"), by_identifier(f"email:nobody.{uid}@example.com")):
        with pytest.raises(grpc.RpcError) as err:
            timeline.stub.ListInteractions(tl.ListInteractionsRequest(customer=ref), timeout=T)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as err:
            timeline.stub.GetHandoffContext(tl.GetHandoffContextRequest(customer=ref), timeout=T)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    found = timeline.stub.GetInteraction(
        tl.GetInteractionRequest(customer=by_identifier(email), event_id=f"{uid}-1"), timeout=T
    )
    assert found.interaction.summary == "hello"
    with pytest.raises(grpc.RpcError) as err:
        timeline.stub.GetInteraction(
            tl.GetInteractionRequest(customer=by_identifier(email), event_id="nope"), timeout=T
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_every_stored_property_reaches_the_interaction_message(timeline: Harness, uid: str):
    event = interaction(
        f"{uid}-full",
        identifier(f"crm:F-{uid}"),
        at=at(3),
        channel=ev.CHANNEL_DEVICE,
        kind=ev.INTERACTION_KIND_DEVICE_ALERT,
        direction=ev.DIRECTION_INBOUND,
        agent_id=f"ag-{uid}",
        topic="outage",
        intent="report_fault",
        sentiment=-0.25,
        outcome=ev.OUTCOME_ESCALATED,
        csat=2,
        summary="router down",
        contact_id="ct-1",
        handle_seconds=42,
        source="fleet",
        attributes={"region": "north"},
        facts=[ev.Fact(key="serial", value="SN-9")],
        device=ev.Device(id=f"dev-{uid}", model="HB-5"),
        case=ev.CaseRef(id=f"case-{uid}", status=ev.CASE_STATUS_OPEN),
        alert=ev.DeviceAlert(fault_code="E42", severity=ev.ALERT_SEVERITY_CRITICAL, readings={"temp": 81.5}),
        self_service=ev.SelfService(
            article_id="kb-1",
            article_title="Reboot",
            answer=ev.ARTICLE_ANSWER_YES,
            flow_id="diag",
            step="reboot",
            exit_reason="resolved",
            intent_confidence=0.75,
        ),
    )
    timeline.seed([event])
    got = timeline.stub.GetInteraction(
        tl.GetInteractionRequest(customer=by_identifier(f"crm:F-{uid}"), event_id=f"{uid}-full"), timeout=T
    ).interaction
    assert (got.channel, got.kind, got.direction, got.outcome) == (
        ev.CHANNEL_DEVICE,
        ev.INTERACTION_KIND_DEVICE_ALERT,
        ev.DIRECTION_INBOUND,
        ev.OUTCOME_ESCALATED,
    )
    assert (got.topic, got.intent, got.summary, got.contact_id, got.handle_seconds, got.source) == (
        "outage",
        "report_fault",
        "router down",
        "ct-1",
        42,
        "fleet",
    )
    assert got.sentiment == pytest.approx(-0.25) and got.csat == 2 and got.intent_confidence == pytest.approx(0.75)
    assert (got.device_id, got.case_id, got.fault_code, got.severity) == (
        f"dev-{uid}",
        f"case-{uid}",
        "E42",
        ev.ALERT_SEVERITY_CRITICAL,
    )
    assert (got.article_id, got.article_title, got.answer, got.flow_id, got.step, got.exit_reason) == (
        "kb-1",
        "Reboot",
        ev.ARTICLE_ANSWER_YES,
        "diag",
        "reboot",
        "resolved",
    )
    assert dict(got.readings) == {"temp": 81.5} and dict(got.attributes) == {"region": "north"}
    assert [(f.key, f.value) for f in got.facts] == [("serial", "SN-9")]
    assert list(got.identity_keys) == [f"crm:F-{uid}"]
    assert got.at.ToDatetime() == at(3).replace(tzinfo=None) and got.ingested_at.seconds > 0
    assert got.agent_id == f"ag-{uid}"


def test_neo4j_unreachable_is_unavailable_within_the_deadline(
    neo4j_settings: Neo4jSettings, isolated_topics: KafkaSettings, graph: neo4j.Driver
):
    dead = Neo4jSettings(uri="bolt://127.0.0.1:1", user="neo4j", password="x", timeout=30.0)
    harness = serve(dead, isolated_topics, graph)
    try:
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{harness.server.port}"))
        status = health.Check(health_pb2.HealthCheckRequest(service="rapport.v1.TimelineService"), timeout=T).status
        assert status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as err:
            harness.stub.ListInteractions(
                tl.ListInteractionsRequest(customer=by_id("cus_0000000000000000")), timeout=2.0
            )
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value.details()
    finally:
        harness.server.stop(1.0)
