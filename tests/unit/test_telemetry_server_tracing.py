"""Server spans while nothing is exported: bare spans with ids, full spans for a sampled caller."""

from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind

from rapport.telemetry import RecordedWhenExported, ServerTracing

pytestmark = pytest.mark.unit

SERVICE = "rapport.test.Traced"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def _seen() -> bytes:
    """What the handler sees: its span's trace id, and whether the span is recorded."""
    span = trace.get_current_span()
    ctx = span.get_span_context()
    return f"{ctx.trace_id:032x} {ctx.span_id:016x} {span.is_recording()}".encode()


def _say(_request: bytes, _context: grpc.ServicerContext) -> bytes:
    return _seen()


def _say_twice(_request: bytes, _context: grpc.ServicerContext) -> Iterator[bytes]:
    yield _seen()
    yield _seen()


@pytest.fixture(scope="module")
def traced() -> Iterator[tuple[grpc.Channel, InMemorySpanExporter]]:
    sampler = RecordedWhenExported(ALWAYS_ON)  # exports nothing: `exported` stays False
    provider = TracerProvider(sampler=sampler)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), interceptors=[ServerTracing(provider)])
    handlers: dict[str, grpc.RpcMethodHandler] = {
        "Say": grpc.unary_unary_rpc_method_handler(_say),
        "SayTwice": grpc.unary_stream_rpc_method_handler(_say_twice),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel, exporter
    server.stop(0)


def _call(channel: grpc.Channel, method: str, metadata: tuple[tuple[str, str], ...] = ()) -> list[str]:
    if method == "SayTwice":
        stream: Any = channel.unary_stream(f"/{SERVICE}/SayTwice")
        return [r.decode() for r in stream(b"", timeout=5, metadata=metadata)]
    say: Any = channel.unary_unary(f"/{SERVICE}/Say")
    return [say(b"", timeout=5, metadata=metadata).decode()]


@pytest.mark.parametrize("method", ["Say", "SayTwice"])
def test_without_a_caller_trace_the_handler_runs_in_an_unrecorded_span_with_ids(traced, method):
    channel, exporter = traced
    exporter.clear()
    seen = _call(channel, method)
    for line in seen:
        trace_id, span_id, recording = line.split()
        assert int(trace_id, 16) != 0 and int(span_id, 16) != 0
        assert recording == "False"
    assert len({line.split()[0] for line in seen}) == 1
    assert exporter.get_finished_spans() == ()
    assert _call(channel, method)[0].split()[0] != seen[0].split()[0]  # a new trace per call


@pytest.mark.parametrize("method", ["Say", "SayTwice"])
def test_an_unsampled_caller_trace_continues_unrecorded(traced, method):
    channel, exporter = traced
    exporter.clear()
    (trace_id, span_id, recording), *_ = [
        line.split() for line in _call(channel, method, (("traceparent", f"00-{CALLER_TRACE}-{CALLER_SPAN}-00"),))
    ]
    assert trace_id == CALLER_TRACE and span_id != CALLER_SPAN
    assert recording == "False"
    assert exporter.get_finished_spans() == ()


@pytest.mark.parametrize("method", ["Say", "SayTwice"])
def test_a_sampled_caller_trace_is_recorded_with_the_full_server_span(traced, method):
    channel, exporter = traced
    exporter.clear()
    seen = _call(channel, method, (("traceparent", f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"),))
    assert all(line.split()[0] == CALLER_TRACE and line.split()[2] == "True" for line in seen)
    (span,) = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert span.name == f"/{SERVICE}/{method}"
    assert span.parent is not None and f"{span.parent.span_id:016x}" == CALLER_SPAN
    assert span.attributes is not None
    assert span.attributes["rpc.service"] == SERVICE and span.attributes["rpc.method"] == method
