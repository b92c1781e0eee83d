"""The journey report over a scripted week: events through real Kafka and the real profile
worker into Neo4j, then GetJourneyReport on the profile API server and `rapport journeys`.

Every metric has a non-trivial expected value worked out by hand from the script below. The
week is one of the 1990s chosen by the test's uid, so no other test's data falls in it.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import neo4j
import pytest
import typer
from google.protobuf.duration_pb2 import Duration
from typer.testing import CliRunner

from rapport.cli import app
from rapport.cli import journeys as journeys_cli
from rapport.publisher import InteractionPublisher
from rapport.settings import GrpcSettings, KafkaSettings, Neo4jSettings
from rapport.v1 import events_pb2 as ev
from rapport.v1 import journeys_pb2 as jr
from rapport.v1 import journeys_pb2_grpc
from rapport_profile.adapters.graph import seed_graph
from rapport_profile.api.bootstrap import start_profile_api
from rapport_profile.api.config import ProfileApiSettings
from rapport_profile.synthetic import identifier, interaction
from rapport_profile.worker_process import WorkerProcess, free_port, worker_env

pytestmark = pytest.mark.integration

INBOUND = ev.DIRECTION_INBOUND


def cli_app() -> typer.Typer:
    if not any(getattr(c, "name", None) == "journeys" for c in app.registered_commands):
        journeys_cli.register(app)
    return app


def week_of(uid: str) -> datetime:
    return datetime(1991, 1, 7, tzinfo=UTC) + timedelta(weeks=int(uid[:6], 16) % 450)


def scripted_week(uid: str, week: datetime) -> list[ev.InteractionEvent]:
    def at(day: float, hour: int, minute: int = 0) -> datetime:
        return week + timedelta(days=day, hours=hour, minutes=minute)

    def who(name: str) -> ev.Identifier:
        return identifier(f"email:{name}.{uid}@example.com")

    ana, bo, cy, dee, eve = (who(n) for n in ("ana", "bo", "cy", "dee", "eve"))
    order = [ev.Fact(key="order_number", value="A-1")]
    n = iter(range(100))

    def e(person: ev.Identifier, when: datetime, channel: int, kind: int, **fields: object) -> ev.InteractionEvent:
        fields.setdefault("direction", INBOUND)
        return interaction(f"{uid}-{next(n)}", person, at=when, channel=channel, kind=kind, **fields)

    def flow(flow_id: str, step: str = "", exit_reason: str = "") -> ev.SelfService:
        return ev.SelfService(flow_id=flow_id, step=step, exit_reason=exit_reason)

    return [
        # Ana: a billing call before the week, then article "No", the bot gives up, chat, a call.
        e(ana, at(-2, 9), ev.CHANNEL_VOICE, ev.INTERACTION_KIND_CALL, topic="billing",
          outcome=ev.OUTCOME_UNRESOLVED, facts=order),
        e(ana, at(0, 10), ev.CHANNEL_WEB, ev.INTERACTION_KIND_ARTICLE_VIEW, topic="billing",
          self_service=ev.SelfService(article_id="kb-billing", article_title="Understanding your bill")),
        e(ana, at(0, 10, 5), ev.CHANNEL_WEB, ev.INTERACTION_KIND_ARTICLE_FEEDBACK,
          self_service=ev.SelfService(article_id="kb-billing", answer=ev.ARTICLE_ANSWER_NO)),
        e(ana, at(0, 10, 10), ev.CHANNEL_BOT, ev.INTERACTION_KIND_BOT_TURN, intent="dispute_charge",
          topic="billing", self_service=flow("billing-bot")),
        e(ana, at(0, 10, 12), ev.CHANNEL_BOT, ev.INTERACTION_KIND_BOT_TURN, intent="dispute_charge",
          self_service=flow("billing-bot")),
        e(ana, at(0, 10, 15), ev.CHANNEL_BOT, ev.INTERACTION_KIND_BOT_EXIT,
          self_service=flow("billing-bot", step="verify", exit_reason="asked_for_agent")),
        e(ana, at(0, 10, 20), ev.CHANNEL_CHAT, ev.INTERACTION_KIND_MESSAGE, topic="billing",
          outcome=ev.OUTCOME_UNRESOLVED, facts=order),
        e(ana, at(2, 9), ev.CHANNEL_VOICE, ev.INTERACTION_KIND_CALL, topic="billing", outcome=ev.OUTCOME_RESOLVED,
          facts=order),
        # Bo: the bot deals with it; days later an article that helped.
        e(bo, at(1, 8), ev.CHANNEL_BOT, ev.INTERACTION_KIND_BOT_TURN, intent="track_order", topic="delivery",
          self_service=flow("orders-bot")),
        e(bo, at(1, 8, 2), ev.CHANNEL_BOT, ev.INTERACTION_KIND_BOT_TURN, intent="track_order",
          self_service=flow("orders-bot")),
        e(bo, at(4, 12), ev.CHANNEL_WEB, ev.INTERACTION_KIND_ARTICLE_VIEW, topic="delivery",
          self_service=ev.SelfService(article_id="kb-delivery", article_title="Where is my parcel?")),
        e(bo, at(4, 12, 3), ev.CHANNEL_WEB, ev.INTERACTION_KIND_ARTICLE_FEEDBACK,
          self_service=ev.SelfService(article_id="kb-delivery", answer=ev.ARTICLE_ANSWER_YES)),
        # Cy: gives up on the bot; two days later an email, then a call (one contact with its completion).
        e(cy, at(3, 14), ev.CHANNEL_BOT, ev.INTERACTION_KIND_BOT_TURN, intent="track_order", topic="delivery",
          self_service=flow("orders-bot")),
        e(cy, at(3, 14, 1), ev.CHANNEL_BOT, ev.INTERACTION_KIND_BOT_EXIT,
          self_service=flow("orders-bot", step="lookup", exit_reason="gave_up")),
        e(cy, at(5, 9), ev.CHANNEL_EMAIL, ev.INTERACTION_KIND_MESSAGE, topic="delivery",
          outcome=ev.OUTCOME_RESOLVED, facts=[ev.Fact(key="postcode", value="AB1 2CD")]),
        e(cy, at(5, 11), ev.CHANNEL_VOICE, ev.INTERACTION_KIND_CALL, topic="delivery", contact_id=f"con-{uid}",
          outcome=ev.OUTCOME_UNRESOLVED, facts=[ev.Fact(key="Postcode", value="ab1  2cd")]),
        e(cy, at(5, 11, 20), ev.CHANNEL_VOICE, ev.INTERACTION_KIND_CONTACT_COMPLETED, topic="delivery",
          contact_id=f"con-{uid}", outcome=ev.OUTCOME_ESCALATED, agent_id=f"agent-{uid}"),
        # Dee: one chat in the week, one just after it.
        e(dee, at(6, 20), ev.CHANNEL_CHAT, ev.INTERACTION_KIND_MESSAGE, intent="reset_password", topic="password",
          outcome=ev.OUTCOME_RESOLVED),
        e(dee, at(7, 1), ev.CHANNEL_CHAT, ev.INTERACTION_KIND_MESSAGE, topic="password"),
        # Eve: a chat before the week, the brand's email, then a call about the same thing.
        e(eve, at(-1, 15), ev.CHANNEL_CHAT, ev.INTERACTION_KIND_MESSAGE, topic="billing",
          outcome=ev.OUTCOME_RESOLVED),
        e(eve, at(1, 9), ev.CHANNEL_EMAIL, ev.INTERACTION_KIND_NOTIFICATION, direction=ev.DIRECTION_OUTBOUND),
        e(eve, at(1, 9, 30), ev.CHANNEL_VOICE, ev.INTERACTION_KIND_CALL, topic="billing",
          outcome=ev.OUTCOME_RESOLVED),
    ]  # fmt: skip


@pytest.fixture
def served(graph: neo4j.Driver, neo4j_settings: Neo4jSettings, kafka_settings: KafkaSettings) -> Iterator[str]:
    settings = ProfileApiSettings(grpc=GrpcSettings(port=0, max_workers=4), neo4j=neo4j_settings, kafka=kafka_settings)
    running = start_profile_api(settings, driver=graph)
    try:
        yield f"127.0.0.1:{running.port}"
    finally:
        running.stop(1)


def _stored(graph: neo4j.Driver, prefix: str) -> int:
    with graph.session() as session:
        record = session.run(
            "MATCH (i:Interaction) WHERE i.event_id STARTS WITH $p RETURN count(i) AS n", p=prefix
        ).single()
        return int(record["n"]) if record else 0


def _ingest(events: list[ev.InteractionEvent], kafka: KafkaSettings, neo4j_settings: Neo4jSettings,
            graph: neo4j.Driver, uid: str, tmp_path: Path) -> None:  # fmt: skip
    env = worker_env(kafka, neo4j_settings, group=f"test-{uid}", port=free_port(), batch_size=50, linger=0.05)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        shuffled = list(events)
        random.Random(uid).shuffle(shuffled)
        with InteractionPublisher(kafka) as publisher:
            for event in shuffled:
                publisher.publish(event)
            publisher.flush()
        deadline = time.monotonic() + 120
        while _stored(graph, f"{uid}-") < len(events):
            assert time.monotonic() < deadline, f"the worker did not store the week:\n{worker.log_tail()}"
            time.sleep(0.2)
    finally:
        worker.stop()


def test_the_scripted_week_gives_the_expected_report(
    graph: neo4j.Driver,
    neo4j_settings: Neo4jSettings,
    isolated_topics: KafkaSettings,
    served: str,
    uid: str,
    tmp_path: Path,
):
    week = week_of(uid)
    _ingest(scripted_week(uid, week), isolated_topics, neo4j_settings, graph, uid, tmp_path)
    request = jr.GetJourneyReportRequest(max_rows=10)
    request.since.FromDatetime(week)
    request.until.FromDatetime(week + timedelta(days=7))
    with grpc.insecure_channel(served) as channel:
        report = journeys_pb2_grpc.JourneyServiceStub(channel).GetJourneyReport(request, timeout=30).report

    t = report.totals
    assert (t.interactions, t.customers, t.touches, t.contacts, t.journeys, t.self_service_attempts) == (
        19, 5, 18, 6, 8, 5,
    )  # fmt: skip
    assert [(i.intent, i.interactions, i.customers) for i in report.top_intents] == [
        ("track_order", 3, 2),
        ("dispute_charge", 2, 1),
        ("reset_password", 1, 1),
    ]
    billing, delivery, password = report.issues
    assert (billing.topic, billing.contacts, billing.customers, billing.repeat_contacts) == ("billing", 3, 2, 3)
    assert billing.unresolved_rate == pytest.approx(1 / 3) and billing.repeat_rate == 1.0
    assert billing.mean_effort == 35.0  # Ana 70, Eve 0
    assert billing.impact == pytest.approx(3 * (1 / 3 + 1 + 0.35) / 3)
    assert (delivery.topic, delivery.contacts, delivery.unresolved_rate, delivery.repeat_rate) == (
        "delivery", 2, 0.5, 0.5,
    )  # fmt: skip
    assert delivery.mean_effort == 49.0 and delivery.impact == pytest.approx(2 * (0.5 + 0.5 + 0.49) / 3)
    assert (password.topic, password.impact) == ("password", 0.0)
    assert [(p.kind, p.id, p.attempts, p.failed, p.escalations, p.top_exit_step) for p in report.exit_points] == [
        ("article", "kb-billing", 1, 1, 1, ""),
        ("flow", "billing-bot", 1, 1, 1, "verify"),
        ("article", "kb-delivery", 1, 0, 0, ""),
        ("flow", "orders-bot", 2, 1, 0, "lookup"),
    ]
    assert report.exit_points[0].title == "Understanding your bill"
    assert [(c.channel, c.touches, c.customers) for c in report.channel_mix] == [
        (ev.CHANNEL_BOT, 7, 3),
        (ev.CHANNEL_VOICE, 4, 3),
        (ev.CHANNEL_WEB, 4, 2),
        (ev.CHANNEL_CHAT, 2, 2),
        (ev.CHANNEL_EMAIL, 1, 1),
    ]
    assert [(list(p.channels), p.journeys, p.share) for p in report.channel_paths] == [
        ([ev.CHANNEL_EMAIL, ev.CHANNEL_VOICE], 1, 0.5),
        ([ev.CHANNEL_WEB, ev.CHANNEL_BOT, ev.CHANNEL_CHAT], 1, 0.5),
    ]
    b = report.bot
    assert (b.journeys, b.handed_off, b.abandoned, b.contained) == (3, 1, 1, 1)
    assert b.containment_rate == pytest.approx(1 / 3) and b.handoff_rate == pytest.approx(1 / 3)
    assert (report.repeat_contacts.contacts, report.repeat_contacts.repeats) == (6, 4)
    q = report.repeat_questions
    assert (q.facts_given, q.given_again, q.rate) == (4, 3, 0.75)
    assert [(k.key, k.given_again) for k in q.top_keys] == [("order_number", 2), ("postcode", 1)]
    e = report.effort
    assert (e.customers, e.low, e.medium, e.high, e.mean_score) == (5, 3, 1, 1, pytest.approx(133 / 5))

    # The same report from the command line: a table, JSON, and an HTML page with charts.
    runner = CliRunner()
    since, until = week.isoformat(), (week + timedelta(days=7)).isoformat()
    args = ["journeys", "--since", since, "--until", until, "--address", served]
    shown = runner.invoke(cli_app(), args)
    assert shown.exit_code == 0, shown.output
    assert "track_order" in shown.output and "web → bot → chat" in shown.output and "kb-billing" in shown.output
    as_json = runner.invoke(cli_app(), [*args, "--json"])
    assert as_json.exit_code == 0, as_json.output
    parsed = json.loads(as_json.output)
    assert parsed["totals"]["contacts"] == "6" and parsed["issues"][0]["topic"] == "billing"
    page = tmp_path / "week.html"
    written = runner.invoke(cli_app(), [*args, "--html", str(page), "--rows", "2"])
    assert written.exit_code == 0, written.output
    html = page.read_text()
    assert html.count("<svg") >= 6 and "email → voice" in html and "Understanding your bill" in html
    assert "dispute_charge" in html and "reset_password" not in html  # two rows per list


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({}, "since"),
        ({"since": 1_000}, "until"),
        ({"since": 2_000, "until": 1_000}, "until"),
        ({"since": 1_000, "until": 1_000 + 93 * 86_400}, "until"),
        ({"since": 1_000, "until": 2_000, "max_rows": 101}, "max_rows"),
        ({"since": 1_000, "until": 2_000, "max_rows": -1}, "max_rows"),
        ({"since": 1_000, "until": 2_000, "window": 60}, "journey_window"),
        ({"since": -5, "until": 2_000}, "since"),
    ],
)
def test_bad_ranges_are_invalid_argument_naming_the_field(served: str, fields: dict[str, int], field: str):
    request = jr.GetJourneyReportRequest(max_rows=fields.get("max_rows", 0))
    if "since" in fields:
        request.since.seconds = fields["since"]
    if "until" in fields:
        request.until.seconds = fields["until"]
    if "window" in fields:
        request.journey_window.seconds = fields["window"]
    with grpc.insecure_channel(served) as channel, pytest.raises(grpc.RpcError) as raised:
        journeys_pb2_grpc.JourneyServiceStub(channel).GetJourneyReport(request, timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith(f"{field}:")


def test_the_cli_refuses_a_backwards_range_before_calling():
    result = CliRunner().invoke(
        cli_app(), ["journeys", "--since", "2026-11-09", "--until", "2026-11-02", "--address", "127.0.0.1:1"]
    )
    assert result.exit_code == 2
    assert "--until" in result.output


def test_interactions_stored_without_a_digest_count_the_same(graph: neo4j.Driver, served: str, uid: str):
    week = week_of(uid) + timedelta(weeks=500)  # past the range the scripted weeks use
    seed_graph(graph, scripted_week(uid, week))
    request = jr.GetJourneyReportRequest(journey_window=Duration(seconds=6 * 3600))
    request.since.FromDatetime(week)
    request.until.FromDatetime(week + timedelta(days=7))
    with grpc.insecure_channel(served) as channel:
        stub = journeys_pb2_grpc.JourneyServiceStub(channel)
        digested = stub.GetJourneyReport(request, timeout=30).report
        with graph.session() as session:
            # As stored before digests existed, or by an older worker.
            session.run(
                "MATCH (i:Interaction) WHERE i.event_id STARTS WITH $p "
                "SET i.digest = CASE WHEN i.channel = 'bot' THEN null ELSE '1' + i.digest END",
                p=f"{uid}-",
            ).consume()
        undigested = stub.GetJourneyReport(request, timeout=30).report
    assert digested.totals.interactions == 19
    assert undigested == digested
