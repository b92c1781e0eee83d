"""What the ingest worker sends to Kafka: dead letters and CustomerUpdated records.

Sends go through the Faust app's producer (aiokafka, acks=all); each method returns only once
the broker has every record, so the caller may then acknowledge the source records.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry import propagate
from opentelemetry.propagators.textmap import Setter

from rapport.v1 import events_pb2
from rapport_profile.adapters.graph import CustomerChange
from rapport_profile.domain.records import Rejected

# Header names on a dead-lettered record, beside the original headers.
DLQ_ERROR = "rapport.dlq.error"
DLQ_REASON = "rapport.dlq.reason"
DLQ_FIELD = "rapport.dlq.field"
DLQ_SOURCE_TOPIC = "rapport.dlq.source.topic"
DLQ_SOURCE_PARTITION = "rapport.dlq.source.partition"
DLQ_SOURCE_OFFSET = "rapport.dlq.source.offset"
DLQ_SOURCE_TIMESTAMP = "rapport.dlq.source.timestamp"
DLQ_CONSUMER_GROUP = "rapport.dlq.consumer.group"


class Producer(Protocol):
    async def send(  # noqa: PLR0917 - Faust's own signature
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
    ) -> Awaitable[Any]: ...


def dead_letter_headers(rejected: Rejected, consumer_group: str) -> list[tuple[str, bytes]]:
    record = rejected.record
    headers = list(record.headers)
    headers += [
        (DLQ_ERROR, rejected.error.encode()),
        (DLQ_REASON, rejected.reason.encode()),
        (DLQ_FIELD, rejected.field.encode()),
        (DLQ_SOURCE_TOPIC, record.topic.encode()),
        (DLQ_SOURCE_PARTITION, str(record.partition).encode()),
        (DLQ_SOURCE_OFFSET, str(record.offset).encode()),
        (DLQ_CONSUMER_GROUP, consumer_group.encode()),
    ]
    if record.timestamp_ms is not None:
        headers.append((DLQ_SOURCE_TIMESTAMP, str(record.timestamp_ms).encode()))
    return headers


def customer_updated(change: CustomerChange, committed_at: datetime | Timestamp) -> events_pb2.CustomerUpdated:
    """`committed_at` may come converted already: a batch announces up to one update per event."""
    if isinstance(committed_at, datetime):
        stamp = Timestamp()
        stamp.FromDatetime(committed_at)
        committed_at = stamp
    return events_pb2.CustomerUpdated(
        customer_id=change.customer_id,
        event_ids=change.event_ids,
        merged_customer_ids=change.merged_customer_ids,
        committed_at=committed_at,
    )


class _HeaderSetter(Setter[list[tuple[str, bytes]]]):
    def set(self, carrier: list[tuple[str, bytes]], key: str, value: str) -> None:
        carrier.append((key, value.encode()))


class KafkaOutbox:
    def __init__(
        self,
        producer: Callable[[], Producer],
        *,
        dead_letter_topic: str,
        customer_updates_topic: str,
        consumer_group: str,
    ) -> None:
        # The producer is looked up on use: Faust creates it when the app starts.
        self._producer = producer
        self._dlq = dead_letter_topic
        self._updates = customer_updates_topic
        self._group = consumer_group

    async def dead_letter(self, rejected: Sequence[Rejected]) -> None:
        producer = self._producer()
        pending = [
            await producer.send(
                self._dlq,
                r.record.key,
                r.record.value,
                None,
                None,
                dead_letter_headers(r, self._group),
            )
            for r in rejected
        ]
        await asyncio.gather(*pending)

    async def customer_updates(self, changes: Sequence[CustomerChange], committed_at: datetime) -> None:
        producer = self._producer()
        headers: list[tuple[str, bytes]] = []
        propagate.inject(headers, setter=_HeaderSetter())
        stamp = Timestamp()
        stamp.FromDatetime(committed_at)
        pending = [
            await producer.send(
                self._updates,
                change.customer_id.encode(),
                customer_updated(change, stamp).SerializeToString(),
                None,
                None,
                headers,
            )
            for change in changes
        ]
        await asyncio.gather(*pending)
