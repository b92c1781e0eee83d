"""The publisher carries W3C trace context to the real Kafka: the worker can continue the producer's trace."""

import re

import pytest
from kafka import KafkaConsumer, TopicPartition
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from rapport.publisher import InteractionPublisher
from rapport.settings import KafkaSettings
from rapport.telemetry import capture_spans
from rapport.v1 import events_pb2 as ev

pytestmark = pytest.mark.integration

TRACEPARENT = re.compile(r"^00-(?P<trace>[0-9a-f]{32})-(?P<span>[0-9a-f]{16})-(?P<flags>[0-9a-f]{2})$")


def _event(event_id: str) -> ev.InteractionEvent:
    event = ev.InteractionEvent(
        event_id=event_id,
        channel=ev.CHANNEL_CHAT,
        kind=ev.INTERACTION_KIND_MESSAGE,
        identifiers=[ev.Identifier(kind=ev.IDENTIFIER_KIND_EMAIL, value="ana@example.com")],
    )
    event.occurred_at.FromSeconds(1_700_000_000)
    return event


def _headers_at(settings: KafkaSettings, partition: int, offset: int) -> dict[str, bytes]:
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, consumer_timeout_ms=10_000)
    try:
        tp = TopicPartition(settings.interactions_topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        record = next(iter(consumer))
    finally:
        consumer.close()
    return dict(record.headers)


def test_the_record_carries_the_producer_span_as_traceparent(isolated_topics: KafkaSettings, uid: str):
    spans = capture_spans()
    spans.clear()
    # The caller's own span (a RouteContact handler, an IVR's request) is the producer span's parent.
    with (
        trace.get_tracer("test").start_as_current_span("RouteContact") as caller,
        InteractionPublisher(isolated_topics) as publisher,
    ):
        metadata = publisher.publish_sync(_event(f"{uid}-1"))

    headers = _headers_at(isolated_topics, metadata.partition, metadata.offset)
    (producer,) = [s for s in spans.get_finished_spans() if s.kind is SpanKind.PRODUCER]
    match = TRACEPARENT.match(headers["traceparent"].decode())
    assert match, headers
    assert match["trace"] == format(producer.context.trace_id, "032x")
    assert match["span"] == format(producer.context.span_id, "016x")
    assert int(match["flags"], 16) & 0x01  # sampled, so the worker's spans are recorded too
    assert producer.context.trace_id == caller.get_span_context().trace_id
    assert producer.parent is not None
    assert producer.parent.span_id == caller.get_span_context().span_id
    assert producer.attributes is not None
    assert producer.attributes["messaging.system"] == "kafka"
    assert producer.attributes["messaging.destination.name"] == isolated_topics.interactions_topic
    assert producer.attributes["rapport.event_id"] == f"{uid}-1"

    # What the worker does on the other side: the extracted context is the producer span.
    extracted = trace.get_current_span(propagate.extract({k: v.decode() for k, v in headers.items()}))
    assert extracted.get_span_context().trace_id == producer.context.trace_id
    assert extracted.get_span_context().span_id == producer.context.span_id
    assert extracted.get_span_context().is_remote


def test_each_record_gets_its_own_producer_span(isolated_topics: KafkaSettings, uid: str):
    spans = capture_spans()
    spans.clear()
    with InteractionPublisher(isolated_topics) as publisher:
        first = publisher.publish_sync(_event(f"{uid}-a"))
        second = publisher.publish_sync(_event(f"{uid}-b"))

    parents = [
        TRACEPARENT.match(_headers_at(isolated_topics, m.partition, m.offset)["traceparent"].decode())
        for m in (first, second)
    ]
    producers = {format(s.context.span_id, "016x") for s in spans.get_finished_spans() if s.kind is SpanKind.PRODUCER}
    assert all(parents)
    assert {p["span"] for p in parents if p} == producers
    assert len(producers) == 2
