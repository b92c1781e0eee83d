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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.grpc import server_interceptor
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

from rapport.security.handlers import Behaviour, WrappedHandlers, rewrap

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


class _Method(grpc.HandlerCallDetails):
    """What OpenTelemetry's interceptor reads of a call's details: its method."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


_KINDS = {
    (False, False): "unary_unary",
    (False, True): "unary_stream",
    (True, False): "stream_unary",
    (True, True): "stream_stream",
}


class ServerTracing(grpc.ServerInterceptor):
    """A SERVER span per call, as OpenTelemetry's interceptor makes it, at a fraction of its cost
    when the span is not recorded.

    That interceptor builds the span's attributes (the metadata copied twice, the peer address
    parsed twice) and wraps the servicer context on every call: ~65 us of server CPU a call (a
    health check costs ~340 us in all), for spans nothing records while nothing is exported (see
    RecordedWhenExported).
    Calls whose span may be recorded (spans are exported, or the caller's trace is sampled) go
    through it unchanged; the others get a bare span, in the caller's trace when one arrives, so
    logs still carry trace ids and the context still travels on.
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._provider = tracer_provider
        self._full: grpc.ServerInterceptor = server_interceptor(tracer_provider=tracer_provider)
        self._tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        self._wrapped = WrappedHandlers()

    def _recording_all(self) -> bool:
        provider = self._provider or trace.get_tracer_provider()
        sampler = getattr(provider, "sampler", None)
        return not isinstance(sampler, RecordedWhenExported) or sampler.exported

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        if self._recording_all():
            return self._full.intercept_service(continuation, handler_call_details)  # type: ignore[no-any-return]
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        return self._wrapped.get(method, handler, lambda: rewrap(handler, self._bare_spans(method, handler)))

    def _bare_spans(self, method: str, handler: grpc.RpcMethodHandler) -> Callable[[Behaviour, bool, bool], Behaviour]:
        tracer = self._tracer
        full = self._full

        def wrap(behaviour: Behaviour, request_streaming: bool, response_streaming: bool) -> Behaviour:
            kind = _KINDS[(request_streaming, response_streaming)]

            def recorded(request: Any, context: grpc.ServicerContext) -> Any:
                traced = full.intercept_service(lambda _details: handler, _Method(method))
                return getattr(traced, kind)(request, context)

            if response_streaming:

                def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                    caller = _caller_context(context)
                    if caller is not None and _sampled(caller):
                        yield from recorded(request, context)
                        return
                    token = otel_context.attach(caller) if caller is not None else None
                    try:
                        with tracer.start_as_current_span(method, kind=SpanKind.SERVER):
                            yield from behaviour(request, context)
                    finally:
                        if token is not None:
                            otel_context.detach(token)

                return stream

            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                caller = _caller_context(context)
                if caller is not None and _sampled(caller):
                    return recorded(request, context)
                token = otel_context.attach(caller) if caller is not None else None
                try:
                    with tracer.start_as_current_span(method, kind=SpanKind.SERVER):
                        return behaviour(request, context)
                finally:
                    if token is not None:
                        otel_context.detach(token)

            return unary

        return wrap


def _caller_context(context: grpc.ServicerContext) -> Context | None:
    """The trace context the caller sent, if it sent any."""
    fields = propagate.get_global_textmap().fields
    metadata = context.invocation_metadata()
    if not any(md.key in fields for md in metadata):  # type: ignore[attr-defined]
        return None
    return propagate.extract({md.key: md.value for md in metadata})  # type: ignore[attr-defined]


def _sampled(caller: Context) -> bool:
    parent = trace.get_current_span(caller).get_span_context()
    return parent.is_valid and parent.trace_flags.sampled


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
