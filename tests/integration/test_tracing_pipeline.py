"""One event, one trace: emit -> Kafka -> the real ingest worker process -> the graph write.

The worker runs as a child process configured only through the standard OTEL_* variables, as in
Kubernetes, and exports over OTLP/gRPC to a stand-in collector started here; the producer side
is recorded in this process. The spans must form a single trace with the right parents, and the
worker's metrics must arrive with the units declared in rapport.metrics.
"""

import time
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import neo4j
import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.trace import SpanKind

from rapport import metrics
from rapport.publisher import InteractionPublisher
from rapport.settings import KafkaSettings, Neo4jSettings
from rapport.telemetry import capture_spans
from rapport.v1 import events_pb2 as ev
from rapport_profile.worker_process import WorkerProcess, free_port, worker_env

pytestmark = pytest.mark.integration


class Collector(trace_service_pb2_grpc.TraceServiceServicer, metrics_service_pb2_grpc.MetricsServiceServicer):
    """Receives OTLP/gRPC exports and keeps them."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, Any], Span]] = []
        self.metrics: dict[str, Any] = {}

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, trace_service_pb2.ExportTraceServiceRequest):
            for resource_spans in request.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope in resource_spans.scope_spans:
                    self.spans.extend((resource, span) for span in scope.spans)
            return trace_service_pb2.ExportTraceServiceResponse()
        for resource_metrics in request.resource_metrics:
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    self.metrics[metric.name] = metric
        return metrics_service_pb2.ExportMetricsServiceResponse()


@pytest.fixture
def collector() -> Iterator[tuple[Collector, int]]:
    received = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(received, server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(received, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield received, port
    server.stop(0)


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str, worker: WorkerProcess) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; worker log:\n{worker.log_tail()}")


def _event(event_id: str) -> ev.InteractionEvent:
    event = ev.InteractionEvent(
        event_id=event_id,
        channel=ev.CHANNEL_CHAT,
        kind=ev.INTERACTION_KIND_MESSAGE,
        identifiers=[ev.Identifier(kind=ev.IDENTIFIER_KIND_EMAIL, value=f"{event_id}@example.com")],
    )
    event.occurred_at.FromSeconds(1_700_000_000)
    return event


def test_an_emitted_event_is_one_trace_through_the_worker_to_the_graph(
    isolated_topics: KafkaSettings,
    neo4j_settings: Neo4jSettings,
    graph: neo4j.Driver,
    collector: tuple[Collector, int],
    tmp_path: Path,
    uid: str,
):
    received, port = collector
    env = worker_env(
        isolated_topics,
        neo4j_settings,
        group=f"test-{uid}",
        port=free_port(),
        batch_size=50,
        linger=0.05,
        extra={
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_METRIC_EXPORT_INTERVAL": "500",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        },
    )
    spans = capture_spans()
    spans.clear()
    event_id = f"{uid}-{uuid.uuid4().hex[:6]}"

    with WorkerProcess(env, tmp_path / "worker.log") as worker:
        with (
            trace.get_tracer("test").start_as_current_span("emit") as emit,
            InteractionPublisher(isolated_topics) as publisher,
        ):
            publisher.publish_sync(_event(event_id))
        trace_id = emit.get_span_context().trace_id.to_bytes(16, "big")

        def graph_write_exported() -> bool:
            return any(s.trace_id == trace_id and s.kind == Span.SPAN_KIND_CLIENT for _, s in received.spans)

        _wait_for(graph_write_exported, 60, "the worker's graph-write span", worker)
        _wait_for(
            lambda: {metrics.EVENTS_INGESTED.name, metrics.GRAPH_WRITE_DURATION.name} <= set(received.metrics),
            30,
            "the worker's metrics",
            worker,
        )

    with graph.session(database=neo4j_settings.database) as session:
        stored = session.run("MATCH (i:Interaction {event_id: $id}) RETURN count(i) AS n", id=event_id).single()
    assert stored is not None and stored["n"] == 1

    # Producer side, recorded here: emit -> publish.
    (producer,) = [s for s in spans.get_finished_spans() if s.kind is SpanKind.PRODUCER]
    assert producer.parent is not None and producer.parent.span_id == emit.get_span_context().span_id
    producer_id = producer.context.span_id.to_bytes(8, "big")

    # Worker side, exported over OTLP: publish -> process -> write_batch, all in the one trace.
    ours = [(resource, s) for resource, s in received.spans if s.trace_id == trace_id]
    assert {resource["service.name"] for resource, _ in ours} == {"rapport-profile-worker"}
    (consumer,) = [s for _, s in ours if s.kind == Span.SPAN_KIND_CONSUMER]
    writes = [s for _, s in ours if s.kind == Span.SPAN_KIND_CLIENT]
    assert consumer.parent_span_id == producer_id
    assert producer_id in {link.span_id for link in consumer.links}
    consumer_attributes = {a.key: a.value for a in consumer.attributes}
    assert consumer_attributes["messaging.system"].string_value == "kafka"
    assert consumer_attributes["messaging.destination.name"].string_value == isolated_topics.interactions_topic
    assert writes and all(w.parent_span_id == consumer.span_id for w in writes)
    write_attributes = {a.key: a.value for a in writes[-1].attributes}
    assert write_attributes["db.system.name"].string_value == "neo4j"
    assert write_attributes["db.namespace"].string_value == neo4j_settings.database

    # Metrics crossed the process boundary with the units declared in one place.
    for spec in (metrics.EVENTS_INGESTED, metrics.GRAPH_WRITE_DURATION, metrics.INGEST_BATCH_SIZE):
        assert received.metrics[spec.name].unit == spec.unit, spec.name
