import json
import logging
import re
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Gauge, Histogram, InMemoryMetricReader, Sum

from rapport import metrics
from rapport.logs import JsonFormatter
from rapport.telemetry import _exporter_name, capture_spans, configure_telemetry

pytestmark = pytest.mark.unit

# UCUM units Rapport uses: seconds, dimensionless, and `{annotation}` counts.
UNIT = re.compile(r"^(s|1|\{[a-z]+\})$")
NAME = re.compile(r"^rapport(\.[a-z][a-z_]*)+$")


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def provider(reader: InMemoryMetricReader) -> MeterProvider:
    return MeterProvider(metric_readers=[reader])


def collected(reader: InMemoryMetricReader) -> dict[str, Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}


def test_metric_names_and_units_follow_the_opentelemetry_guidance():
    names = [spec.name for spec in metrics.ALL]
    assert len(names) == len(set(names))
    for spec in metrics.ALL:
        assert NAME.match(spec.name), spec.name
        assert UNIT.match(spec.unit), (spec.name, spec.unit)
        # The unit belongs in `unit`, never in the name.
        assert not re.search(r"(seconds|_ms|millis|_total|count)$", spec.name), spec.name
        if spec.unit == "s":
            assert spec.kind is metrics.Kind.HISTOGRAM and spec.name.endswith(".duration")
        if spec.buckets is not None:
            assert list(spec.buckets) == sorted(set(spec.buckets))


def test_the_issue_s_metrics_are_all_declared():
    declared = {spec.name for spec in metrics.ALL}
    assert declared == {
        "rapport.events.ingested",
        "rapport.events.dead_lettered",
        "rapport.events.erased",
        "rapport.retention.purged",
        "rapport.ingest.batch.size",
        "rapport.graph.write.duration",
        "rapport.consumer.lag",
        "rapport.route.duration",
        "rapport.route.match_score",
        "rapport.queue.depth",
        "rapport.timeline.duration",
    }


def test_every_accessor_records_with_the_declared_unit_and_kind(provider, reader):
    metrics.events_ingested(provider).add(3, {"rapport.channel": "chat"})
    metrics.events_dead_lettered(provider).add(1, {"rapport.dlq.reason": "undecodable"})
    metrics.events_erased(provider).add(2)
    metrics.interactions_purged(provider).add(5)
    metrics.ingest_batch_size(provider).record(3)
    metrics.graph_write_duration(provider).record(0.012, {"db.operation.name": "merge_batch"})
    metrics.consumer_lag(provider).set(42, {"messaging.destination.partition.id": "0"})
    metrics.route_duration(provider).record(0.004, {"rapport.route.outcome": "assigned"})
    metrics.match_score(provider).record(0.83)
    metrics.queue_depth(provider).set(7, {"rapport.channel": "voice"})
    metrics.timeline_duration(provider).record(0.02, {"rpc.method": "ListInteractions"})

    got = collected(reader)
    assert set(got) == {spec.name for spec in metrics.ALL}
    kinds = {metrics.Kind.COUNTER: Sum, metrics.Kind.HISTOGRAM: Histogram, metrics.Kind.GAUGE: Gauge}
    for spec in metrics.ALL:
        metric = got[spec.name]
        assert metric.unit == spec.unit, spec.name
        assert metric.description == spec.description
        assert isinstance(metric.data, kinds[spec.kind]), spec.name
        if isinstance(metric.data, Sum):
            assert metric.data.is_monotonic
        if isinstance(metric.data, Histogram) and spec.buckets:
            (point,) = metric.data.data_points
            assert tuple(point.explicit_bounds) == spec.buckets, spec.name

    (lag,) = got["rapport.consumer.lag"].data.data_points
    assert lag.value == 42
    assert dict(lag.attributes or {}) == {"messaging.destination.partition.id": "0"}
    (ingested,) = got["rapport.events.ingested"].data.data_points
    assert ingested.value == 3


def test_record_duration_marks_the_error_type_and_reraises(provider, reader):
    histogram = metrics.graph_write_duration(provider)
    with pytest.raises(TimeoutError), metrics.record_duration(histogram, {"db.operation.name": "merge_batch"}):
        raise TimeoutError
    with metrics.record_duration(histogram, {"db.operation.name": "merge_batch"}) as extra:
        extra["rapport.batch.kind"] = "replay"

    points = collected(reader)["rapport.graph.write.duration"].data.data_points
    by_attrs = {tuple(sorted((p.attributes or {}).items())): p for p in points}
    failed = by_attrs[(("db.operation.name", "merge_batch"), ("error.type", "TimeoutError"))]
    assert failed.count == 1
    assert failed.sum >= 0
    assert (("db.operation.name", "merge_batch"), ("rapport.batch.kind", "replay")) in by_attrs


def test_accessors_return_one_instrument_per_provider(provider):
    assert metrics.route_duration(provider) is metrics.route_duration(provider)
    assert metrics.route_duration(provider) is not metrics.route_duration(MeterProvider())


@pytest.mark.parametrize(
    ("env", "signal", "expected"),
    [
        ({}, "TRACES", "none"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, "TRACES", "otlp"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, "METRICS", "otlp"),
        ({"OTEL_TRACES_EXPORTER": "console"}, "TRACES", "console"),
        ({"OTEL_TRACES_EXPORTER": "console"}, "METRICS", "none"),
        ({"OTEL_METRICS_EXPORTER": " OTLP , console"}, "METRICS", "otlp"),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, "TRACES", "none"),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, "TRACES", "none"),
    ],
)
def test_exporters_are_chosen_by_the_standard_variables(env, signal, expected):
    assert _exporter_name(env, signal) == expected


def test_an_otlp_protocol_rapport_cannot_speak_fails_at_start_up():
    env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
    with pytest.raises(ValueError, match="http/protobuf"):
        _exporter_name(env, "TRACES")
    env = {"OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/json"}
    with pytest.raises(ValueError, match="http/json"):
        _exporter_name(env, "METRICS")


def test_json_logs_carry_the_ids_of_the_current_span():
    spans = capture_spans()
    from opentelemetry import trace

    record = logging.LogRecord("rapport.test", logging.INFO, __file__, 1, "routed", None, None)
    with trace.get_tracer("test").start_as_current_span("route") as span:
        line = json.loads(JsonFormatter("router").format(record))
    ctx = span.get_span_context()
    assert line["trace_id"] == format(ctx.trace_id, "032x")
    assert line["span_id"] == format(ctx.span_id, "016x")
    assert any(s.context.span_id == ctx.span_id for s in spans.get_finished_spans())
    assert "trace_id" not in json.loads(JsonFormatter("router").format(record))


def _span_in(provider: Any, parent: Any = None) -> tuple[Any, bool, dict[str, Any]]:
    """A span started under `provider`, whether it was recording, and a log line written in it."""
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("route", context=parent) as span:
        line = json.loads(JsonFormatter("router").format(logging.LogRecord("t", logging.INFO, "", 1, "x", None, None)))
        return span, span.is_recording(), line


def test_with_nothing_exporting_a_span_is_not_recorded_but_logs_still_carry_its_trace_id():
    provider = configure_telemetry("rapport-test", env={}).tracer_provider
    span, recording, line = _span_in(provider)
    assert not recording
    assert span.get_span_context().is_valid
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")


def test_a_sampled_caller_s_trace_is_recorded_even_with_nothing_exporting_here():
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    provider = configure_telemetry("rapport-test", env={}).tracer_provider
    caller = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    span, recording, _ = _span_in(provider, trace.set_span_in_context(NonRecordingSpan(caller)))
    assert recording
    assert span.get_span_context().trace_id == 0x1234
    unsampled = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(TraceFlags.DEFAULT))
    _, recording, _ = _span_in(provider, trace.set_span_in_context(NonRecordingSpan(unsampled)))
    assert not recording


def test_spans_are_recorded_once_an_exporter_is_configured():
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    telemetry = configure_telemetry("rapport-test", env={}, span_exporter=exporter)
    _, recording, _ = _span_in(telemetry.tracer_provider)
    assert recording
    telemetry.tracer_provider.force_flush()
    assert [s.name for s in exporter.get_finished_spans()] == ["route"]
