"""A protobuf InteractionEvent survives the trip through the real Kafka unchanged."""

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from rapport.settings import KafkaSettings
from rapport.topics import ensure_topics
from rapport.v1 import events_pb2 as ev

pytestmark = pytest.mark.integration


def test_event_round_trips_byte_identical_with_key_and_headers(isolated_topics: KafkaSettings, uid: str):
    event = ev.InteractionEvent(
        event_id=f"{uid}-1",
        channel=ev.CHANNEL_VOICE,
        kind=ev.INTERACTION_KIND_CALL,
        identifiers=[ev.Identifier(kind=ev.IDENTIFIER_KIND_PHONE, value="+447700900123", verified=True)],
        facts=[ev.Fact(key="order_number", value="A-1001")],
        attributes={"queue": "billing"},
    )
    event.occurred_at.FromSeconds(1_700_000_000)
    payload = event.SerializeToString()
    key = b"phone:+447700900123"
    headers = [("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), ("source", b"ivr")]

    producer = KafkaProducer(bootstrap_servers=isolated_topics.bootstrap_servers, acks="all")
    metadata = producer.send(isolated_topics.interactions_topic, key=key, value=payload, headers=headers).get(10)
    producer.close()

    consumer = KafkaConsumer(bootstrap_servers=isolated_topics.bootstrap_servers, consumer_timeout_ms=10_000)
    tp = TopicPartition(isolated_topics.interactions_topic, metadata.partition)
    consumer.assign([tp])
    consumer.seek(tp, metadata.offset)
    record = next(iter(consumer))
    consumer.close()

    assert record.key == key
    assert record.value == payload
    assert list(record.headers) == headers
    assert ev.InteractionEvent.FromString(record.value) == event


def test_topics_are_created_once_with_their_partitions(isolated_topics: KafkaSettings):
    from kafka.admin import KafkaAdminClient

    assert ensure_topics(isolated_topics) == []  # the fixture already created them: a second run is a no-op
    admin = KafkaAdminClient(bootstrap_servers=isolated_topics.bootstrap_servers)
    try:
        described = {t["name"]: t for t in admin.describe_topics([isolated_topics.interactions_topic])}
    finally:
        admin.close()
    assert len(described[isolated_topics.interactions_topic]["partitions"]) == isolated_topics.interactions_partitions
