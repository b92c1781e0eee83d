"""The producer SDK: how IVRs, bots, CRMs and Rapport's own router publish InteractionEvents."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from kafka import KafkaProducer
from kafka.partitioner import DefaultPartitioner
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Setter
from opentelemetry.trace import SpanKind

from rapport.events import validate
from rapport.identity import partition_key
from rapport.settings import KafkaSettings
from rapport.v1 import events_pb2

log = logging.getLogger(__name__)
tracer = trace.get_tracer("rapport.publisher")


class _HeaderSetter(Setter[list[tuple[str, bytes]]]):
    def set(self, carrier: list[tuple[str, bytes]], key: str, value: str) -> None:
        carrier.append((key, value.encode()))


class RememberedPartitions(DefaultPartitioner):
    """Kafka's default partitioner (murmur2 of the key, as every Kafka client hashes it), with each
    key's partition remembered per topic: a customer's key recurs on all its events, and
    kafka-python hashes in pure Python (~5 us a key, plus sorting the topic's partitions)."""

    MAX_REMEMBERED = 100_000

    def __init__(self) -> None:
        # (topic, key) -> (the topic's partition count then, the partition)
        self._known: dict[tuple[str, bytes], tuple[int, int]] = {}

    def partition(  # noqa: PLR0917 - kafka-python's signature
        self, topic: str, key: Any, serialized_key: bytes | None, value: Any, serialized_value: Any, cluster: Any
    ) -> int:
        partitions = cluster.partitions_for_topic(topic)
        if serialized_key is None or not partitions:
            return int(super().partition(topic, key, serialized_key, value, serialized_value, cluster))
        count = len(partitions)
        known = self._known.get((topic, serialized_key))
        if known is not None and known[0] == count:
            return known[1]
        partition = int(super().partition(topic, key, serialized_key, value, serialized_value, cluster))
        if len(self._known) >= self.MAX_REMEMBERED:
            self._known.clear()
        self._known[(topic, serialized_key)] = (count, partition)
        return partition


class InteractionPublisher:
    """Validates, keys by the customer's primary identifier, and sends with acks=all.

    `publish` returns kafka-python's FutureRecordMetadata, which fails with the delivery error;
    `publish_sync` waits for it.
    The event is validated before sending, so a bad event raises InvalidEvent at the caller.
    """

    def __init__(self, settings: KafkaSettings, **producer_overrides: Any) -> None:
        self.settings = settings
        config: dict[str, Any] = {
            "bootstrap_servers": settings.bootstrap_servers,
            "client_id": "rapport-publisher",
            "acks": "all",
            "compression_type": "gzip",
            "linger_ms": 5,
            "batch_size": 64 * 1024,
            "retries": 5,
            "request_timeout_ms": int(settings.request_timeout * 1000),
            "max_block_ms": int(settings.request_timeout * 1000),
            "partitioner": RememberedPartitions(),
        }
        config.update(settings.kafka_python_kwargs())
        config.update(producer_overrides)
        self._producer = KafkaProducer(**config)

    def publish(self, event: events_pb2.InteractionEvent, topic: str | None = None) -> Any:
        validate(event)
        key = partition_key(list(event.identifiers))
        with tracer.start_as_current_span(
            f"{topic or self.settings.interactions_topic} publish",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": topic or self.settings.interactions_topic,
                "messaging.operation.type": "send",
                "rapport.event_id": event.event_id,
            },
        ):
            headers: list[tuple[str, bytes]] = []
            propagate.inject(headers, setter=_HeaderSetter())
            return self._producer.send(  # type: ignore[no-any-return]
                topic or self.settings.interactions_topic,
                key=key,
                value=event.SerializeToString(),
                headers=headers,
            )

    def publish_sync(self, event: events_pb2.InteractionEvent, timeout: float | None = None) -> Any:
        return self.publish(event).get(timeout=timeout or self.settings.request_timeout)

    def publish_many(self, events: Iterable[events_pb2.InteractionEvent]) -> list[Any]:
        return [self.publish(e) for e in events]

    def flush(self, timeout: float | None = None) -> None:
        self._producer.flush(timeout=timeout or self.settings.request_timeout)

    def close(self, timeout: float | None = None) -> None:
        self._producer.close(timeout=timeout or self.settings.request_timeout)

    def __enter__(self) -> InteractionPublisher:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
