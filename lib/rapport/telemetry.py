"""OpenTelemetry set-up, configured only through the standard OTEL_* variables.

With neither OTEL_TRACES_EXPORTER nor OTEL_EXPORTER_OTLP_ENDPOINT set, spans still get ids (so
logs carry trace ids and context crosses Kafka) but are not recorded, unless a caller's sampled
trace arrives: nothing would read them, and recording cost the router 7% of its CPU.
Exporters: `otlp` (gRPC, OTEL_EXPORTER_OTLP_ENDPOINT), `console`, `none`; OTEL_SDK_DISABLED=true
exports nothing. The SDK itself reads the rest (OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER,
OTEL_METRIC_EXPORT_INTERVAL, OTEL_EXPORTER_OTLP_HEADERS, ...). Metric names and units live in
`rapport.metrics`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.util.types import Attributes

if TYPE_CHECKING:
    import grpc

# The OTLP exporters installed with Rapport speak gRPC only.
SUPPORTED_OTLP_PROTOCOLS = ("grpc",)


class RecordedWhenExported(Sampler):
    """The configured sampler (OTEL_TRACES_SAMPLER) once spans are exported; before that, only a
    sampled parent's trace is recorded, so a trace that other services export stays whole."""

    def __init__(self, configured: Sampler) -> None:
        self.configured = configured
        self.exported = False

    def should_sample(  # noqa: PLR0917 (the SDK's signature)
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = trace.get_current_span(parent_context).get_span_context()
        if self.exported or (parent.is_valid and parent.trace_flags.sampled):
            return self.configured.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)
        return SamplingResult(Decision.DROP, None, parent.trace_state if parent.is_valid else None)

    def get_description(self) -> str:
        return f"RecordedWhenExported{{{self.configured.get_description()}}}"


@dataclass
class Telemetry:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def shutdown(self) -> None:
        """Flush and stop exporters; called last on SIGTERM."""
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def _exporter_name(env: Mapping[str, str], signal: str) -> str:
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return "none"
    name = env.get(f"OTEL_{signal}_EXPORTER", "").strip().lower()
    if not name:
        name = "otlp" if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") else "none"
    name = name.split(",")[0].strip()
    if name == "otlp":
        protocol = (
            env.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc"
        ).strip()
        if protocol not in SUPPORTED_OTLP_PROTOCOLS:
            raise ValueError(f"OTLP protocol {protocol!r} is not supported; Rapport exports OTLP over grpc")
    return name


def _span_exporter(name: str) -> SpanExporter | None:
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if name == "console":
        return ConsoleSpanExporter()
    return None


def _metric_exporter(name: str) -> MetricExporter | None:
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter()
    if name == "console":
        return ConsoleMetricExporter()
    return None


def configure_telemetry(
    service: str,
    env: Mapping[str, str] | None = None,
    *,
    span_exporter: SpanExporter | None = None,
    metric_reader: MetricReader | None = None,
) -> Telemetry:
    """Install global tracer and meter providers for `service` (OTEL_SERVICE_NAME wins).

    Tests pass an in-memory `span_exporter` / `metric_reader`.
    """
    env = os.environ if env is None else env
    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", service)})
    sampler = RecordedWhenExported(TracerProvider().sampler)  # the SDK reads OTEL_TRACES_SAMPLER
    tracer_provider = TracerProvider(resource=resource, sampler=sampler)
    exporter = span_exporter or _span_exporter(_exporter_name(env, "TRACES"))
    if exporter is not None:
        tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
        sampler.exported = True
    readers: list[MetricReader] = []
    if metric_reader is not None:
        readers.append(metric_reader)
    else:
        metric_exporter = _metric_exporter(_exporter_name(env, "METRICS"))
        if metric_exporter is not None:
            readers.append(PeriodicExportingMetricReader(metric_exporter))
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    return Telemetry(tracer_provider, meter_provider)


def traced_channel(channel: grpc.Channel) -> grpc.Channel:
    """Wraps a client channel so every call gets a client span and carries trace context."""
    from opentelemetry.instrumentation.grpc import client_interceptor
    from opentelemetry.instrumentation.grpc.grpcext import intercept_channel

    return intercept_channel(channel, client_interceptor())  # type: ignore[no-any-return]


@functools.cache
def capture_spans() -> InMemorySpanExporter:
    """For tests: an in-memory exporter fed by the global tracer provider, one per process.

    Installs Rapport's providers (exporting nothing else) unless an SDK tracer provider is
    already installed, in which case it listens to that one. Spans are exported as they end.
    Call `.clear()` before acting and `.get_finished_spans()` after.
    """
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = configure_telemetry("rapport-test", env={}).tracer_provider
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    if isinstance(provider.sampler, RecordedWhenExported):
        provider.sampler.exported = True
    return exporter
