"""gRPC spans through the shared server: one in-process server on a free local port, no other servers."""

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from rapport.errors import NotFound
from rapport.serving import RunningServer, start_server
from rapport.settings import GrpcSettings
from rapport.telemetry import capture_spans, traced_channel

pytestmark = pytest.mark.unit

SERVICE = "rapport.test.Echo"


def _say(request: bytes, context: grpc.ServicerContext) -> bytes:
    if request == b"nobody":
        raise NotFound("customer nobody not found")
    if request == b"bug":
        raise RuntimeError("boom")
    return b"hello " + request


def _register(server: grpc.Server) -> None:
    handler: grpc.RpcMethodHandler = grpc.unary_unary_rpc_method_handler(_say)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {"Say": handler})])


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    running = start_server(GrpcSettings(host="127.0.0.1", port=0, grace=0.5, max_workers=2), _register, [SERVICE])
    yield running
    running.stop(0.5)


@pytest.fixture
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


@pytest.fixture
def spans():
    exporter = capture_spans()
    exporter.clear()
    return exporter


def _server_spans(exporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]


def _say_call(channel: grpc.Channel, payload: bytes) -> Any:
    say: Any = channel.unary_unary(f"/{SERVICE}/Say")
    return say(payload, timeout=5)


def test_a_successful_call_yields_a_server_span_with_status_ok(channel, spans):
    assert _say_call(channel, b"ana") == b"hello ana"

    (span,) = _server_spans(spans)
    assert span.name == f"/{SERVICE}/Say"
    assert span.attributes is not None
    assert span.attributes["rpc.system"] == "grpc"
    assert span.attributes["rpc.service"] == SERVICE
    assert span.attributes["rpc.method"] == "Say"
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.OK.value[0]
    assert span.status.status_code is not StatusCode.ERROR


# Semantic conventions: a server span is an error only for server-side faults, not for NOT_FOUND.
@pytest.mark.parametrize(
    ("payload", "code", "span_status"),
    [
        (b"nobody", grpc.StatusCode.NOT_FOUND, StatusCode.UNSET),
        (b"bug", grpc.StatusCode.INTERNAL, StatusCode.ERROR),
    ],
)
def test_a_failed_call_records_the_mapped_status_code_on_the_server_span(channel, spans, payload, code, span_status):
    with pytest.raises(grpc.RpcError) as failure:
        _say_call(channel, payload)
    assert failure.value.code() is code

    (span,) = _server_spans(spans)
    assert span.attributes is not None
    assert span.attributes["rpc.grpc.status_code"] == code.value[0]
    assert span.status.status_code is span_status


def test_health_checks_are_traced_like_any_call(channel, spans):
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    (span,) = _server_spans(spans)
    assert span.attributes is not None
    assert span.attributes["rpc.service"] == "grpc.health.v1.Health"


def test_a_traced_client_channel_links_client_and_server_spans_in_one_trace(channel, spans):
    assert _say_call(traced_channel(channel), b"bo") == b"hello bo"

    finished = spans.get_finished_spans()
    (client,) = [s for s in finished if s.kind is SpanKind.CLIENT]
    (server,) = [s for s in finished if s.kind is SpanKind.SERVER]
    assert server.context.trace_id == client.context.trace_id
    assert server.parent is not None
    assert server.parent.span_id == client.context.span_id
