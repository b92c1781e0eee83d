"""The ingest worker as a real process against the real Kafka and Neo4j.

Each test gets its own topics and consumer group, and ids carrying its `uid`.
"""

import random
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import neo4j
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from rapport.publisher import InteractionPublisher
from rapport.settings import KafkaSettings, Neo4jSettings
from rapport.v1 import events_pb2 as ev
from rapport_profile.adapters import kafka as dlq
from rapport_profile.synthetic import BASE_TIME, identifier, interaction
from rapport_profile.worker_process import WorkerProcess, free_port, worker_env

pytestmark = pytest.mark.integration

StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def start_worker(
    isolated_topics: KafkaSettings, neo4j_settings: Neo4jSettings, graph: neo4j.Driver, uid: str, tmp_path: Path
) -> Iterator[StartWorker]:
    started: list[WorkerProcess] = []

    def start(**overrides: Any) -> WorkerProcess:
        env = worker_env(
            isolated_topics,
            neo4j_settings,
            group=f"test-{uid}",
            port=free_port(),
            batch_size=overrides.pop("batch_size", 200),
            linger=overrides.pop("linger", 0.05),
        )
        worker = WorkerProcess(env, tmp_path / f"worker-{len(started)}.log").start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, worker: WorkerProcess | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    detail = f"\nworker log:\n{worker.log_tail()}" if worker else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}{detail}")


def end_offsets(settings: KafkaSettings, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def caught_up(worker: WorkerProcess, settings: KafkaSettings) -> Callable[[], bool]:
    """True once the worker has acknowledged every record now on the interactions topic."""
    ends = end_offsets(settings, settings.interactions_topic)

    def check() -> bool:
        _, body = worker.health()
        done = {int(p): o + 1 for p, o in body.get("processed_offsets", {}).items()}
        return all(done.get(p, 0) >= end for p, end in ends.items() if end > 0)

    return check


def read_topic(settings: KafkaSettings, topic: str) -> list[Any]:
    ends = end_offsets(settings, topic)
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, consumer_timeout_ms=10_000, enable_auto_commit=False
    )
    try:
        tps = [TopicPartition(topic, p) for p in ends]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records = []
        for record in consumer:
            records.append(record)
            if all(consumer.position(tp) >= ends[tp.partition] for tp in tps):
                break
        return records
    finally:
        consumer.close()


def committed(settings: KafkaSettings, group: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=group, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(settings.interactions_topic) or set()
        offsets = {p: consumer.committed(TopicPartition(settings.interactions_topic, p)) for p in partitions}
        return {p: o for p, o in offsets.items() if o is not None}
    finally:
        consumer.close()


def count(graph: neo4j.Driver, query: str, **params: Any) -> int:
    records, _, _ = graph.execute_query(query, params)
    return int(records[0][0])


def stored(graph: neo4j.Driver, prefix: str) -> int:
    return count(graph, "MATCH (i:Interaction) WHERE i.event_id STARTS WITH $p RETURN count(i)", p=prefix)


def test_duplicate_delivery_of_1000_events_is_stored_and_counted_once(
    start_worker: StartWorker, isolated_topics: KafkaSettings, graph: neo4j.Driver, uid: str
):
    rng = random.Random(4)
    events = [
        interaction(
            f"{uid}-{n}",
            f"crm:{uid}-C{n % 50}",
            at=BASE_TIME + timedelta(seconds=n),
            agent_id=f"{uid}-A{n % 7}",
            outcome=ev.OUTCOME_RESOLVED if n % 3 == 0 else ev.OUTCOME_UNRESOLVED,
            csat=1 + n % 5,
        )
        for n in range(1000)
    ]
    # Every event at least twice, a fifth of them three times, interleaved.
    deliveries = events + events + rng.sample(events, 200)
    rng.shuffle(deliveries)
    # Publisher first, worker second: the worker gets the duplicates in big batches as well.
    with InteractionPublisher(isolated_topics) as publisher:
        for event in deliveries[:1200]:
            publisher.publish(event)
        publisher.flush()
    worker = start_worker()
    with InteractionPublisher(isolated_topics) as publisher:
        for event in deliveries[1200:]:
            publisher.publish(event)
        publisher.flush()
    wait_for(caught_up(worker, isolated_topics), 120, "the worker to process every delivery", worker)

    assert stored(graph, f"{uid}-") == 1000
    assert (
        count(
            graph,
            "MATCH (:Customer)-[h:HAD]->(i:Interaction) WHERE i.event_id STARTS WITH $p RETURN count(h)",
            p=f"{uid}-",
        )
        == 1000
    )
    records, _, _ = graph.execute_query(
        """
        MATCH (c:Customer)-[r:SERVED_BY]->(a:Agent) WHERE a.id STARTS WITH $p
        RETURN count(DISTINCT c) AS customers, sum(r.contacts) AS contacts, sum(r.resolved) AS resolved,
               sum(r.csat_sum) AS csat_sum, sum(r.csat_count) AS csat_count
        """,
        p=f"{uid}-A",
    )
    row = records[0]
    assert row["customers"] == 50
    assert row["contacts"] == 1000
    assert row["resolved"] == sum(1 for n in range(1000) if n % 3 == 0)
    assert row["csat_sum"] == sum(1 + n % 5 for n in range(1000))
    assert row["csat_count"] == 1000
    _, health = worker.health()
    assert health["stored"] == 1000 and health["duplicates"] == 1200


def test_out_of_order_events_are_ordered_by_event_time(
    start_worker: StartWorker, isolated_topics: KafkaSettings, graph: neo4j.Driver, uid: str
):
    key = f"crm:{uid}"
    case_id = f"K-{uid}"
    times = [BASE_TIME + timedelta(minutes=m) for m in range(12)]
    events = [
        interaction(
            f"{uid}-{n:02d}",
            key,
            at=at,
            case=ev.CaseRef(id=case_id, status=ev.CASE_STATUS_OPEN if n < 11 else ev.CASE_STATUS_RESOLVED),
            device=ev.Device(id=f"D-{uid}", model="HB-5", firmware=f"1.{n}"),
            traits=ev.CustomerTraits(tier="gold" if n == 11 else "standard"),
        )
        for n, at in enumerate(times)
    ]
    arrival = list(reversed(events))  # the newest first: every later arrival is older
    worker = start_worker(batch_size=3)  # small batches, so later batches hold older events
    with InteractionPublisher(isolated_topics) as publisher:
        for event in arrival:
            publisher.publish_sync(event)
    wait_for(lambda: stored(graph, f"{uid}-") == 12, 60, "12 interactions", worker)

    records, _, _ = graph.execute_query(
        """
        MATCH (:Identity {key: $key})-[:IDENTIFIES]->(c:Customer)-[:HAD]->(i:Interaction)
        WITH c, i ORDER BY i.at
        RETURN c.first_contact_at AS first, c.last_contact_at AS last, c.tier AS tier,
               collect(i.event_id) AS history,
               [(c)-[:HAS_CASE]->(k:Case) | k.status] AS cases,
               [(c)-[:OWNS]->(d:Device) | d.firmware] AS firmware
        """,
        key=key,
    )
    row = records[0]
    assert row["history"] == [e.event_id for e in events]
    assert row["first"].to_native() == times[0] and row["last"].to_native() == times[-1]
    assert row["cases"] == ["resolved"]  # the newest status wins although it arrived first
    assert row["firmware"] == ["1.11"]
    assert row["tier"] == "gold"


def test_poison_records_go_to_the_dead_letter_topic_and_good_ones_around_them_are_stored(
    start_worker: StartWorker, isolated_topics: KafkaSettings, graph: neo4j.Driver, uid: str
):
    good = [interaction(f"{uid}-good-{n}", f"email:p{n}.{uid}@example.com") for n in range(20)]
    no_id = interaction("placeholder", f"email:x.{uid}@example.com")
    no_id.event_id = ""
    unknown_enum = interaction(f"{uid}-enum", f"email:y.{uid}@example.com")
    unknown_enum.channel = 99  # type: ignore[assignment]
    oversized = interaction(f"{uid}-big", f"email:z.{uid}@example.com", summary="x" * 4000)
    oversized.attributes.update({f"k{n}": "v" * 4200 for n in range(64)})  # over 256 KiB
    bad_identifier = interaction(f"{uid}-badid", ev.Identifier(kind=ev.IDENTIFIER_KIND_EMAIL, value="not-an-email"))
    poison: list[tuple[str, bytes | None, str, str]] = [
        ("garbage", b"\x08\x96\x01\xff\xff\xff garbage", "undecodable", "payload"),
        ("no-id", no_id.SerializeToString(), "invalid", "event_id"),
        ("enum", unknown_enum.SerializeToString(), "invalid", "channel"),
        ("big", oversized.SerializeToString(), "oversized", "payload"),
        ("badid", bad_identifier.SerializeToString(), "invalid", "identifiers[0].value"),
        ("empty", None, "empty", "payload"),
    ]
    producer = KafkaProducer(bootstrap_servers=isolated_topics.bootstrap_servers, acks="all", max_request_size=2**21)
    sent: dict[str, Any] = {}
    for n, event in enumerate(good):
        producer.send(isolated_topics.interactions_topic, key=b"k", value=event.SerializeToString())
        if n % 4 == 0 and poison:
            name, value, _, _ = poison[len(sent)] if len(sent) < len(poison) else poison[-1]
            if name not in sent:
                sent[name] = producer.send(
                    isolated_topics.interactions_topic,
                    key=f"key-{name}".encode(),
                    value=value,
                    headers=[("origin", name.encode())],
                ).get(10)
    producer.flush()
    producer.close()
    assert len(sent) == 5
    worker = start_worker(batch_size=8)
    # the sixth poison record arrives while the worker runs
    producer = KafkaProducer(bootstrap_servers=isolated_topics.bootstrap_servers, acks="all")
    sent["empty"] = producer.send(
        isolated_topics.interactions_topic, key=b"key-empty", value=None, headers=[("origin", b"empty")]
    ).get(10)
    producer.send(
        isolated_topics.interactions_topic,
        key=b"k",
        value=interaction(f"{uid}-good-last", f"crm:{uid}").SerializeToString(),
    ).get(10)
    producer.close()

    wait_for(lambda: stored(graph, f"{uid}-good-") == 21, 60, "every good record", worker)
    wait_for(
        lambda: len(read_topic(isolated_topics, isolated_topics.dead_letter_topic)) >= 6, 30, "six dead letters", worker
    )
    dead = read_topic(isolated_topics, isolated_topics.dead_letter_topic)
    assert len(dead) == 6
    by_origin = {dict(r.headers)["origin"].decode(): r for r in dead}
    for name, value, error, field in poison:
        record = by_origin[name]
        headers = dict(record.headers)
        assert record.key == f"key-{name}".encode()
        assert record.value == value
        assert headers[dlq.DLQ_ERROR].decode() == error, name
        assert headers[dlq.DLQ_FIELD].decode() == field, name
        assert headers[dlq.DLQ_REASON]
        assert headers[dlq.DLQ_SOURCE_TOPIC].decode() == isolated_topics.interactions_topic
        assert int(headers[dlq.DLQ_SOURCE_PARTITION]) == sent[name].partition
        assert int(headers[dlq.DLQ_SOURCE_OFFSET]) == sent[name].offset
    assert stored(graph, f"{uid}-enum") == 0 and stored(graph, f"{uid}-big") == 0
    status, health = worker.health()
    assert status == 200 and health["dead_lettered"] == 6


def test_customer_updates_follow_each_commit_and_sigterm_commits_offsets(
    start_worker: StartWorker, isolated_topics: KafkaSettings, graph: neo4j.Driver, uid: str
):
    email, phone = f"email:u.{uid}@example.com", f"phone:+4477009{int(uid[:6], 16) % 100000:05d}"
    worker = start_worker()
    with InteractionPublisher(isolated_topics) as publisher:
        publisher.publish_sync(interaction(f"{uid}-1", email))
        publisher.publish_sync(interaction(f"{uid}-2", identifier(phone)))
        wait_for(lambda: stored(graph, f"{uid}-") == 2, 60, "two customers", worker)
        publisher.publish_sync(interaction(f"{uid}-3", email, phone))
    wait_for(lambda: stored(graph, f"{uid}-") == 3, 60, "the merging event", worker)
    wait_for(caught_up(worker, isolated_topics), 30, "the acknowledgement", worker)

    assert worker.terminate() == 0
    ends = end_offsets(isolated_topics, isolated_topics.interactions_topic)
    assert committed(isolated_topics, f"test-{uid}") == {p: o for p, o in ends.items() if o > 0}

    updates = [
        ev.CustomerUpdated.FromString(r.value)
        for r in read_topic(isolated_topics, isolated_topics.customer_updates_topic)
    ]
    records, _, _ = graph.execute_query(
        "MATCH (:Identity {key: $k})-[:IDENTIFIES]->(c:Customer) RETURN c.id AS id", k=email
    )
    survivor = records[0]["id"]
    assert sorted(e for u in updates for e in u.event_ids) == [f"{uid}-1", f"{uid}-2", f"{uid}-3"]
    (merged,) = [u for u in updates if u.merged_customer_ids]
    assert merged.customer_id == survivor and list(merged.event_ids) == [f"{uid}-3"]
    absorbed = merged.merged_customer_ids[0]
    assert absorbed != survivor
    assert count(graph, "MATCH (c:Customer {id: $id, merged_into: $s}) RETURN count(c)", id=absorbed, s=survivor) == 1
