"""Nothing lost, nothing doubled: the worker killed mid-stream, and Neo4j restarted mid-stream."""

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import neo4j
import pytest

from rapport.devstack.settings import Settings as StackSettings
from rapport.devstack.stack import Stack
from rapport.graph.driver import open_driver
from rapport.graph.schema import apply_migrations
from rapport.identity import partition_key
from rapport.publisher import InteractionPublisher
from rapport.settings import KafkaSettings, Neo4jSettings
from rapport.v1 import events_pb2 as ev
from rapport_profile.synthetic import customer_stream
from rapport_profile.worker_process import WorkerProcess, free_port, worker_env

pytestmark = pytest.mark.integration


def publish(settings: KafkaSettings, events: list[ev.InteractionEvent]) -> None:
    with InteractionPublisher(settings) as publisher:
        for event in events:
            publisher.publish(event)
        publisher.flush(60)


def stored(graph: neo4j.Driver, prefix: str) -> int:
    records, _, _ = graph.execute_query(
        "MATCH (i:Interaction) WHERE i.event_id STARTS WITH $p RETURN count(i) AS n", p=prefix
    )
    return int(records[0]["n"])


def wait_for_count(graph: neo4j.Driver, prefix: str, at_least: int, timeout: float, worker: WorkerProcess) -> int:
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        try:
            n = stored(graph, prefix)
        except neo4j.exceptions.ServiceUnavailable:
            n = 0
        if n >= at_least:
            return n
        time.sleep(0.2)
    raise AssertionError(f"{n} of {at_least} stored after {timeout} s\n{worker.log_tail()}")


def assert_each_event_once(graph: neo4j.Driver, uid: str, events: list[ev.InteractionEvent]) -> None:
    """Counts and sums over the whole graph slice equal what the events add up to, exactly."""
    prefix = f"{uid}-"
    records, _, _ = graph.execute_query(
        """
        MATCH (c:Customer)-[h:HAD]->(i:Interaction) WHERE i.event_id STARTS WITH $p
        RETURN count(h) AS had, count(DISTINCT i) AS interactions, count(DISTINCT c) AS customers
        """,
        p=prefix,
    )
    assert dict(records[0]) == {
        "had": len(events),
        "interactions": len(events),
        "customers": len({e.identifiers[0].value for e in events}),
    }
    expected_contacts: Counter[tuple[str, str]] = Counter()
    expected_csat: Counter[tuple[str, str]] = Counter()
    for e in events:
        if e.agent_id:
            pair = (partition_key([e.identifiers[0]]).decode(), e.agent_id)
            expected_contacts[pair] += 1
            expected_csat[pair] += e.csat
    records, _, _ = graph.execute_query(
        """
        MATCH (i:Identity)-[:IDENTIFIES]->(:Customer)-[r:SERVED_BY]->(a:Agent)
        WHERE i.key STARTS WITH $crm
        RETURN i.key AS key, a.id AS agent, r.contacts AS contacts, r.csat_sum AS csat
        """,
        crm=f"crm:{uid}-",
    )
    assert {(r["key"], r["agent"]): r["contacts"] for r in records} == dict(expected_contacts)
    assert {(r["key"], r["agent"]): r["csat"] for r in records} == dict(expected_csat)


def test_worker_killed_mid_stream_and_restarted_loses_and_doubles_nothing(
    isolated_topics: KafkaSettings, neo4j_settings: Neo4jSettings, graph: neo4j.Driver, uid: str, tmp_path: Path
):
    events = list(customer_stream(1_500, 12_000, prefix=uid, agents=40))
    env = worker_env(
        isolated_topics,
        neo4j_settings,
        group=f"test-{uid}",
        port=free_port(),
        batch_size=500,
        # The killed worker's partitions come back after the session timeout; keep it short.
        extra={"RAPPORT_PROFILE_SESSION_TIMEOUT": "6"},
    )
    publish(isolated_topics, events[:7_000])
    first = WorkerProcess(env, tmp_path / "worker-1.log").start()
    try:
        wait_for_count(graph, f"{uid}-", 1_500, 120, first)
        first.kill()  # SIGKILL: no shutdown, uncommitted offsets and an in-flight batch lost with it
    finally:
        first.stop()
    killed_at = stored(graph, f"{uid}-")
    publish(isolated_topics, events[7_000:])

    second = WorkerProcess(env, tmp_path / "worker-2.log").start()
    try:
        wait_for_count(graph, f"{uid}-", 9_000, 120, second)
        second.kill()  # and once more, while the second half streams in
    finally:
        second.stop()
    with WorkerProcess(env, tmp_path / "worker-3.log") as third:
        wait_for_count(graph, f"{uid}-", len(events), 180, third)
        time.sleep(1)  # let a straggling replay land, if the worker were to double anything
        _, health = third.health()
    assert killed_at < len(events)
    assert stored(graph, f"{uid}-") == len(events)
    assert_each_event_once(graph, uid, events)
    assert health["dead_lettered"] == 0


@pytest.fixture
def private_neo4j(kafka_settings: KafkaSettings, tmp_path: Path) -> Iterator[tuple[Stack, Neo4jSettings]]:
    """A Neo4j of our own on free ports, so stopping it disturbs no other test."""
    port = free_port()
    settings = StackSettings.from_env(
        {
            "RAPPORT_STATE_DIR": str(tmp_path / "stack"),
            "RAPPORT_KAFKA_BOOTSTRAP": kafka_settings.bootstrap_servers,  # use the shared Kafka, start none
            "RAPPORT_KAFKA_PORT": str(free_port()),
            "RAPPORT_KAFKA_CONTROLLER_PORT": str(free_port()),
            "RAPPORT_NEO4J_BOLT_PORT": str(port),
            "RAPPORT_NEO4J_HEAP": "512m",
            "RAPPORT_NEO4J_PAGECACHE": "128m",
        }
    )
    stack = Stack(settings)
    stack.up()
    try:
        yield stack, Neo4jSettings(uri=f"bolt://127.0.0.1:{port}", password=settings.neo4j_password)
    finally:
        stack.down()


def test_neo4j_stopped_and_restarted_mid_stream_loses_and_doubles_nothing(
    isolated_topics: KafkaSettings, private_neo4j: tuple[Stack, Neo4jSettings], uid: str, tmp_path: Path
):
    stack, neo4j_settings = private_neo4j
    driver = open_driver(neo4j_settings)
    try:
        apply_migrations(driver)
        events = list(customer_stream(1_000, 10_000, prefix=uid, agents=40))
        env = worker_env(isolated_topics, neo4j_settings, group=f"test-{uid}", port=free_port(), batch_size=500)
        publish(isolated_topics, events[:6_000])
        with WorkerProcess(env, tmp_path / "worker.log") as worker:
            wait_for_count(driver, f"{uid}-", 1_000, 120, worker)
            stack.down()
            publish(isolated_topics, events[6_000:])  # the stream goes on while the graph is away
            deadline = time.monotonic() + 60
            while worker.health()[0] != 503 and time.monotonic() < deadline:
                time.sleep(0.5)
            status, health = worker.health()
            assert status == 503 and not health["graph_available"], health
            assert worker.running
            stack.up()
            wait_for_count(driver, f"{uid}-", len(events), 240, worker)
            time.sleep(1)
            status, health = worker.health()
        assert status == 200 and health["dead_lettered"] == 0
        assert stored(driver, f"{uid}-") == len(events)
        assert_each_event_once(driver, uid, events)
    finally:
        driver.close()
