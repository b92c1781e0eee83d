"""`python -m rapport.demo --scenario-only` end to end, on its own topics, ports and consumer group.

The demo runs as a real process tree (the demo and its four service children). The test waits
for its report, checks the outcomes through the services' gRPC APIs while they still run
(--keep-running), then stops the demo with SIGTERM and checks that no process is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import neo4j
import psutil
import pytest
from kafka import KafkaConsumer, TopicPartition

from rapport.demo.processes import free_port
from rapport.events import InvalidEvent, decode
from rapport.settings import KafkaSettings
from rapport.v1 import events_pb2 as ev
from rapport.v1 import router_pb2 as rt
from rapport.v1 import router_pb2_grpc, timeline_pb2, timeline_pb2_grpc

pytestmark = pytest.mark.e2e
REPORT_TIMEOUT = 240.0


def dead_lettered_ids(settings: KafkaSettings) -> set[str]:
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False, consumer_timeout_ms=3000
    )
    try:
        partitions = consumer.partitions_for_topic(settings.dead_letter_topic) or set()
        tps = [TopicPartition(settings.dead_letter_topic, p) for p in partitions]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ids = set()
        for record in consumer:
            try:
                ids.add(decode(record.value).event_id)
            except InvalidEvent:
                continue
        return ids
    finally:
        consumer.close()


def in_graph(driver: neo4j.Driver, ids: list[str]) -> set[str]:
    records, _, _ = driver.execute_query(
        "MATCH (i:Interaction) WHERE i.event_id IN $ids RETURN i.event_id AS id", ids=ids, database_="neo4j"
    )
    return {r["id"] for r in records}


def wait_for_report(path: Path, demo: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
    deadline = time.monotonic() + REPORT_TIMEOUT
    while time.monotonic() < deadline:
        if demo.poll() is not None:
            pytest.fail(f"demo exited with {demo.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        if path.exists():
            try:
                return json.loads(path.read_text())  # type: ignore[no-any-return]
            except ValueError:
                pass  # being written
        time.sleep(0.5)
    pytest.fail(f"no demo report after {REPORT_TIMEOUT} s:\n{log.read_text(errors='replace')[-3000:]}")


def test_demo_scenario_end_to_end(isolated_topics: KafkaSettings, graph: neo4j.Driver, uid: str, tmp_path: Path):
    ports = {name: free_port() for name in ("profile", "timeline", "router", "worker")}
    env = {
        **os.environ,
        "RAPPORT_KAFKA_BOOTSTRAP": isolated_topics.bootstrap_servers,
        "RAPPORT_INTERACTIONS_TOPIC": isolated_topics.interactions_topic,
        "RAPPORT_DEAD_LETTER_TOPIC": isolated_topics.dead_letter_topic,
        "RAPPORT_CUSTOMER_UPDATES_TOPIC": isolated_topics.customer_updates_topic,
        "RAPPORT_PROFILE_GROUP": f"demo-test-{uid}",
        "RAPPORT_PROFILE_PORT": str(ports["profile"]),
        "RAPPORT_TIMELINE_PORT": str(ports["timeline"]),
        "RAPPORT_ROUTER_PORT": str(ports["router"]),
        "RAPPORT_PROFILE_WORKER_PORT": str(ports["worker"]),
        "RAPPORT_DEMO_LOG_DIR": str(tmp_path / "logs"),
        "RAPPORT_LOG_LEVEL": "WARNING",
    }
    report_path = tmp_path / "report.json"
    log = tmp_path / "demo.out"
    with log.open("wb") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "rapport.demo", "--scenario-only", "--plain", "--keep-running",
             "--prefix", f"demo-{uid}", "--report", str(report_path)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    descendants: list[psutil.Process] = []
    try:
        report = wait_for_report(report_path, demo, log)
        descendants = psutil.Process(demo.pid).children(recursive=True)
        assert {p.pid for p in descendants} >= set(report["child_pids"])
        assert report["errors"] == [], report["errors"]
        assert len(report["journeys_done"]) == 7

        # Every event produced is in the graph or in the dead-letter topic, and only the bad one is dead.
        produced = report["published"] + report["dead_letter_expected"] + report["router_events"]
        stored = in_graph(graph, produced)
        dead = dead_lettered_ids(isolated_topics)
        assert [e for e in produced if e not in stored and e not in dead] == []
        assert set(report["dead_letter_expected"]) <= dead
        assert not set(report["published"]) & dead

        with (
            grpc.insecure_channel(f"127.0.0.1:{ports['timeline']}") as tl_channel,
            grpc.insecure_channel(f"127.0.0.1:{ports['router']}") as rt_channel,
        ):
            timeline = timeline_pb2_grpc.TimelineServiceStub(tl_channel)
            router = router_pb2_grpc.RouterServiceStub(rt_channel)

            # Email, then chat, then phone under different identifiers: one customer, three channels.
            merged = report["merged"]
            by_email, by_phone = (
                timeline.ListInteractions(
                    timeline_pb2.ListInteractionsRequest(
                        customer=timeline_pb2.CustomerRef(identifier=ev.Identifier(kind=kind, value=value)),
                        page_size=100,
                    ),
                    timeout=10,
                )
                for kind, value in (
                    (ev.IDENTIFIER_KIND_EMAIL, merged["email"]),
                    (ev.IDENTIFIER_KIND_PHONE, merged["phone"]),
                )
            )
            assert by_email.customer_id == by_phone.customer_id
            assert {ev.CHANNEL_EMAIL, ev.CHANNEL_CHAT, ev.CHANNEL_VOICE} <= {i.channel for i in by_email.interactions}
            assert set(merged["event_ids"]) <= {i.event_id for i in by_email.interactions}

            # The escalation reached an agent, whose handoff context showed the article that failed.
            esc = report["escalation"]
            assert esc["agent_id"] in report["agents"]
            assert {
                "article_id": "kb-wifi-dropouts",
                "title": "Fix Wi-Fi dropouts in three steps",
                "answer": "ARTICLE_ANSWER_NO",
            } in esc["articles"]
            contact = router.GetContact(rt.GetContactRequest(contact_id=esc["contact_id"]), timeout=10).contact
            assert contact.agent_id == esc["agent_id"] and contact.state == rt.CONTACT_STATE_COMPLETED
            kinds = {
                i.kind
                for i in timeline.ListInteractions(
                    timeline_pb2.ListInteractionsRequest(
                        customer=timeline_pb2.CustomerRef(customer_id=esc["customer_id"])
                    ),
                    timeout=10,
                ).interactions
            }
            assert {ev.INTERACTION_KIND_ARTICLE_FEEDBACK, ev.INTERACTION_KIND_CONTACT_COMPLETED} <= kinds

            # No agent ever held more contacts than its capacity (sampled every second), nor does now.
            assert report["overloads"] == []
            agents = router.ListAgents(rt.ListAgentsRequest(team=report["team"], page_size=100), timeout=10).agents
            assert len(agents) == len(report["agents"])
            assert all(c.active <= c.capacity for a in agents for c in a.capacity)
            assert report["completed"] >= 4 and report["routes"] >= 4
    finally:
        demo.send_signal(signal.SIGTERM)
        try:
            code = demo.wait(90)
        except subprocess.TimeoutExpired:
            for p in [psutil.Process(demo.pid), *descendants]:
                if p.is_running():
                    p.kill()
            raise
    assert code == 0, log.read_text(errors="replace")[-3000:]
    left = [p.pid for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert left == []
    final = json.loads(report_path.read_text())
    assert all(c is not None for c in final["exit_codes"].values())
