"""The retention purge against the real graph: old interactions go in bounded batches, the
aggregates built from them are corrected exactly, concurrent purges take turns, the timeline is
told, and the schedule and the CLI run the same purge.

The shared graph holds other tests' data from 2011 on; these tests write interactions dated
1970-1971 and purge only what is older than 1972.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import neo4j
import pytest
import typer
from kafka import KafkaConsumer, TopicPartition
from typer.testing import CliRunner

from rapport.cli import profile as profile_cli
from rapport.events import validate
from rapport.settings import GrpcSettings, KafkaSettings, Neo4jSettings
from rapport.v1 import events_pb2 as ev
from rapport_profile.adapters.graph import GraphWriter
from rapport_profile.adapters.notices import KafkaCustomerNotices
from rapport_profile.adapters.retention import GraphRetention
from rapport_profile.api.bootstrap import start_profile_api
from rapport_profile.api.config import ProfileApiSettings, RetentionSettings
from rapport_profile.retention import RetentionService
from rapport_profile.synthetic import BASE_TIME, interaction

pytestmark = pytest.mark.integration

OLD = datetime(1971, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def days_before_1972() -> float:
    """A retention age whose cutoff is 1972-01-01 today: only these tests' data is older."""
    return (datetime.now(UTC) - datetime(1972, 1, 1, tzinfo=UTC)) / DAY


def write(graph: neo4j.Driver, events: list[ev.InteractionEvent]) -> dict[str, str]:
    return GraphWriter(graph).write_batch([(e, validate(e)) for e in events]).owners


def rows(graph: neo4j.Driver, query: str, **params: Any) -> list[dict[str, Any]]:
    records, _, _ = graph.execute_query(query, params)
    return [r.data() for r in records]


def affinity(graph: neo4j.Driver, customer_id: str) -> dict[str, dict[str, Any]]:
    found = rows(
        graph,
        "MATCH (:Customer {id: $id})-[s:SERVED_BY]->(a:Agent) RETURN a.id AS agent, s {.*} AS s",
        id=customer_id,
    )
    return {r["agent"]: r["s"] for r in found}


def contact_times(graph: neo4j.Driver, customer_id: str) -> tuple[Any, Any]:
    (row,) = rows(graph, "MATCH (c:Customer {id: $id}) RETURN c.first_contact_at AS f, c.last_contact_at AS l",
                  id=customer_id)  # fmt: skip
    return (row["f"].to_native() if row["f"] else None, row["l"].to_native() if row["l"] else None)


def history_removed(settings: KafkaSettings, wanted: set[str], timeout: float = 20) -> set[str]:
    """Customer ids of history-removed notices on the topic, read until `wanted` are all seen."""
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False)
    try:
        topic = settings.customer_updates_topic
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        seen: set[str] = set()
        deadline = time.monotonic() + timeout
        while not wanted <= seen and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    update = ev.CustomerUpdated.FromString(record.value)
                    if update.history_removed:
                        seen.add(update.customer_id)
        return seen
    finally:
        consumer.close()


@pytest.fixture
def purge_old(graph: neo4j.Driver) -> Iterator[None]:
    """Leaves nothing older than 1972 behind, whatever the test did."""
    yield
    graph.execute_query("MATCH (i:Interaction) WHERE i.at < datetime('1972-01-01T00:00:00Z') DETACH DELETE i")


def seed_two_customers(graph: neo4j.Driver, uid: str) -> tuple[str, str, str, str]:
    a, b = f"{uid}-ag-a", f"{uid}-ag-b"
    owners = write(graph, [
        interaction(f"{uid}-x1", f"crm:X-{uid}", at=OLD, agent_id=a, outcome=ev.OUTCOME_RESOLVED, csat=5),
        interaction(f"{uid}-y1", f"crm:Y-{uid}", at=OLD + 31 * DAY, agent_id=a, outcome=ev.OUTCOME_RESOLVED, csat=3),
        interaction(f"{uid}-x2", f"crm:X-{uid}", at=OLD + 59 * DAY, agent_id=b, outcome=ev.OUTCOME_RESOLVED),
        interaction(f"{uid}-x3", f"crm:X-{uid}", at=OLD + 151 * DAY, agent_id=a, outcome=ev.OUTCOME_UNRESOLVED,
                    csat=2),
        interaction(f"{uid}-x4", f"crm:X-{uid}", at=BASE_TIME, agent_id=a, outcome=ev.OUTCOME_RESOLVED, csat=4),
        interaction(f"{uid}-x5", f"crm:X-{uid}", at=BASE_TIME + DAY),
    ])  # fmt: skip
    return owners[f"{uid}-x1"], owners[f"{uid}-y1"], a, b


def test_a_purge_takes_old_interactions_and_their_contributions_back_exactly(
    graph: neo4j.Driver, isolated_topics: KafkaSettings, uid: str, purge_old: None
):
    x, y, a, b = seed_two_customers(graph, uid)
    assert affinity(graph, x)[a]["contacts"] == 3 and affinity(graph, x)[b]["contacts"] == 1
    assert affinity(graph, y)[a]["contacts"] == 1
    notices = KafkaCustomerNotices(isolated_topics)
    service = RetentionService(GraphRetention(graph), notices, batch_size=2)
    try:
        dry = service.purge(days_before_1972(), dry_run=True)
        assert (dry.interactions, dry.customers, dry.batches) == (4, 2, 0)
        assert len(rows(graph, "MATCH (i:Interaction) WHERE i.event_id STARTS WITH $p RETURN i", p=f"{uid}-")) == 6

        report = service.purge(days_before_1972())
    finally:
        notices.close()
    assert abs(report.cutoff - datetime(1972, 1, 1, tzinfo=UTC)) < timedelta(minutes=5)
    assert (report.interactions, report.customers, report.batches) == (4, 2, 2)
    assert (report.affinity_updated, report.affinity_removed) == (2, 2)

    left = rows(graph, "MATCH (i:Interaction) WHERE i.event_id STARTS WITH $p RETURN i.event_id AS e ORDER BY e",
                p=f"{uid}-")  # fmt: skip
    assert [r["e"] for r in left] == [f"{uid}-x4", f"{uid}-x5"]
    # X keeps only the contribution of its one recent interaction with agent A; B's link goes.
    (kept,) = affinity(graph, x).values()
    assert affinity(graph, x).keys() == {a}
    assert (kept["contacts"], kept["resolved"], kept["csat_sum"], kept["csat_count"]) == (1, 1, 4, 1)
    assert kept["last_at"].to_native() == BASE_TIME
    assert contact_times(graph, x) == (BASE_TIME, BASE_TIME + DAY)
    # Y had only old interactions: still known by its identifier, with nothing left to count.
    assert affinity(graph, y) == {}
    assert contact_times(graph, y) == (None, None)
    assert rows(graph, "MATCH (:Identity {key: $k})-[:IDENTIFIES]->(c) RETURN c.id AS id", k=f"crm:Y-{uid}") == [
        {"id": y}
    ]
    assert history_removed(isolated_topics, {x, y}) == {x, y}

    again = RetentionService(GraphRetention(graph), KafkaCustomerNotices(isolated_topics)).purge(days_before_1972())
    assert (again.interactions, again.batches) == (0, 0)


def test_purges_running_at_once_take_turns_and_count_nothing_twice(
    graph: neo4j.Driver, isolated_topics: KafkaSettings, uid: str, purge_old: None
):
    agent = f"{uid}-ag"
    events = [
        interaction(
            f"{uid}-old-{n}",
            f"crm:Z-{uid}",
            at=OLD + n * DAY,
            agent_id=agent,
            outcome=ev.OUTCOME_RESOLVED,
            csat=1 + n % 5,
        )
        for n in range(40)
    ] + [interaction(f"{uid}-new", f"crm:Z-{uid}", at=BASE_TIME, agent_id=agent, outcome=ev.OUTCOME_RESOLVED, csat=5)]
    customer = write(graph, events)[f"{uid}-new"]
    reports = []

    def purge() -> None:
        notices = KafkaCustomerNotices(isolated_topics)
        try:
            reports.append(RetentionService(GraphRetention(graph), notices, batch_size=3).purge(days_before_1972()))
        finally:
            notices.close()

    replicas = [threading.Thread(target=purge) for _ in range(3)]
    for replica in replicas:
        replica.start()
    for replica in replicas:
        replica.join(120)
    assert len(reports) == 3
    assert sum(r.interactions for r in reports) == 40
    (served,) = affinity(graph, customer).values()
    assert (served["contacts"], served["resolved"], served["csat_sum"], served["csat_count"]) == (1, 1, 5, 1)
    (run,) = rows(graph, "MATCH (r:RetentionRun {name: 'interactions'}) RETURN r.finished_at AS f")
    assert run["f"] is not None


def test_the_profile_service_runs_the_purge_on_its_schedule(
    graph: neo4j.Driver, neo4j_settings: Neo4jSettings, isolated_topics: KafkaSettings, uid: str, purge_old: None
):
    customer = write(graph, [
        interaction(f"{uid}-old", f"crm:S-{uid}", at=OLD), interaction(f"{uid}-new", f"crm:S-{uid}", at=BASE_TIME),
    ])[f"{uid}-new"]  # fmt: skip
    settings = ProfileApiSettings(
        grpc=GrpcSettings(port=0, max_workers=2),
        neo4j=neo4j_settings,
        kafka=isolated_topics,
        retention=RetentionSettings(days=days_before_1972(), interval=3600, batch_size=100),
    )
    running = start_profile_api(settings, driver=graph)
    try:
        deadline = time.monotonic() + 30
        while (
            rows(graph, "MATCH (i:Interaction {event_id: $e}) RETURN i", e=f"{uid}-old") and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        assert rows(graph, "MATCH (i:Interaction {event_id: $e}) RETURN i", e=f"{uid}-old") == []
        assert rows(graph, "MATCH (i:Interaction {event_id: $e}) RETURN i.event_id AS e", e=f"{uid}-new") == [
            {"e": f"{uid}-new"}
        ]
        assert customer in history_removed(isolated_topics, {customer})
    finally:
        running.stop(1)


def test_the_cli_counts_then_purges(graph: neo4j.Driver, isolated_topics: KafkaSettings, uid: str, purge_old: None):
    write(graph, [interaction(f"{uid}-old-{n}", f"crm:C-{uid}", at=OLD + n * DAY) for n in range(3)])
    app = typer.Typer()

    @app.callback()
    def group() -> None:
        pass

    profile_cli.register(app)
    env = {
        "RAPPORT_KAFKA_BOOTSTRAP": isolated_topics.bootstrap_servers,
        "RAPPORT_CUSTOMER_UPDATES_TOPIC": isolated_topics.customer_updates_topic,
    }
    days = f"{days_before_1972():.3f}"
    runner = CliRunner()
    dry = runner.invoke(app, ["retention", "purge", "--older-than", days, "--dry-run", "--json"], env=env)
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.output) | {"cutoff": None} == {
        "cutoff": None, "dry_run": True, "interactions": 3, "customers": 1,
        "affinity_updated": 0, "affinity_removed": 0, "batches": 0,
    }  # fmt: skip
    done = runner.invoke(app, ["retention", "purge", "--older-than", days, "--batch-size", "2"], env=env)
    assert done.exit_code == 0, done.output
    assert "purged 3 interactions of 1 customers" in done.output and "in 2 batches" in done.output
    assert rows(graph, "MATCH (i:Interaction) WHERE i.event_id STARTS WITH $p RETURN i", p=f"{uid}-") == []
    bad = runner.invoke(app, ["retention", "purge", "--older-than", "0"], env=env)
    assert bad.exit_code == 2
