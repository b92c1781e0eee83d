"""Fixtures and helpers shared by the timeline integration tests (this module holds no tests).

The timeline server runs in-process on a free port against the real Neo4j, tailing a per-test
customer-updates topic; the graph is seeded through the profile worker's own GraphWriter.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import grpc
import neo4j
import pytest
from kafka import KafkaProducer

from rapport.serving import RunningServer, start_server
from rapport.settings import GrpcSettings, KafkaSettings, Neo4jSettings
from rapport.v1 import events_pb2 as ev
from rapport.v1 import timeline_pb2 as tl
from rapport.v1 import timeline_pb2_grpc
from rapport_profile.adapters.graph import BatchResult, seed_graph
from rapport_profile.synthetic import BASE_TIME, identifier, interaction
from rapport_timeline.bootstrap import SERVICE_NAME, TimelineApp, build
from rapport_timeline.config import TimelineSettings

__all__ = ["BASE_TIME", "Harness", "identifier", "interaction", "timeline_server"]

CALL_TIMEOUT = 10.0


@dataclass
class Harness:
    stub: timeline_pb2_grpc.TimelineServiceStub
    server: RunningServer
    app: TimelineApp
    settings: TimelineSettings
    graph: neo4j.Driver
    _producer: KafkaProducer | None = None

    def seed(self, events: Iterable[ev.InteractionEvent], *, announce: bool = False) -> BatchResult:
        """Writes the events as the profile worker does; `announce` also publishes the
        CustomerUpdated records the worker sends after its commit."""
        result = seed_graph(self.graph, list(events))
        if announce:
            self.announce(result)
        return result

    def announce(self, result: BatchResult) -> None:
        if self._producer is None:
            self._producer = KafkaProducer(bootstrap_servers=self.settings.kafka.bootstrap_servers, acks="all")
        for change in result.changes:
            message = ev.CustomerUpdated(
                customer_id=change.customer_id,
                event_ids=change.event_ids,
                merged_customer_ids=change.merged_customer_ids,
            )
            message.committed_at.GetCurrentTime()
            self._producer.send(
                self.settings.kafka.customer_updates_topic,
                key=change.customer_id.encode(),
                value=message.SerializeToString(),
            )
        self._producer.flush(10)

    def customer_of(self, identity_key: str) -> str:
        records, _, _ = self.graph.execute_query(
            "MATCH (:Identity {key: $k})-[:IDENTIFIES]->(c:Customer) RETURN c.id AS id", k=identity_key
        )
        (record,) = records
        return str(record["id"])

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(5)


def by_id(customer_id: str) -> tl.CustomerRef:
    return tl.CustomerRef(customer_id=customer_id)


def by_identifier(text: str) -> tl.CustomerRef:
    return tl.CustomerRef(identifier=identifier(text, verified=False))


def at(minutes: float) -> datetime:
    return BASE_TIME + timedelta(minutes=minutes)


def serve(neo4j_settings: Neo4jSettings, kafka: KafkaSettings, graph: neo4j.Driver, **overrides: object) -> Harness:
    settings = TimelineSettings(
        grpc=GrpcSettings(host="127.0.0.1", port=0, max_workers=24, grace=1.0),
        neo4j=neo4j_settings,
        kafka=kafka,
        max_watchers=8,
        live_wait=15.0,
    )
    for name, value in overrides.items():
        object.__setattr__(settings, name, value)
    app = build(settings)
    server = start_server(settings.grpc, app.register, [SERVICE_NAME])
    server.on_stop.append(app.close)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    server.on_stop.append(channel.close)
    return Harness(timeline_pb2_grpc.TimelineServiceStub(channel), server, app, settings, graph)


@pytest.fixture(name="timeline")
def timeline_server(
    neo4j_settings: Neo4jSettings, isolated_topics: KafkaSettings, graph: neo4j.Driver
) -> Iterator[Harness]:
    harness = serve(neo4j_settings, isolated_topics, graph)
    yield harness
    harness.close()
    harness.server.stop(1.0)
