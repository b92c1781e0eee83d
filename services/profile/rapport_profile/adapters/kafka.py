"""What the ingest worker sends to Kafka: dead letters and CustomerUpdated records.

Sends go through the Faust app's producer (aiokafka, acks=all); each method returns only once
the broker has every record, so the caller may then acknowledge the source records.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
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

    def kafka_producer(self) -> AIOKafkaProducer:
        """The aiokafka producer underneath, for batches."""


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
        self._updates_sender = KeyedBatches()

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
        headers: list[tuple[str, bytes]] = []
        propagate.inject(headers, setter=_HeaderSetter())
        stamp = Timestamp()
        stamp.FromDatetime(committed_at)
        records = [
            (change.customer_id.encode(), customer_updated(change, stamp).SerializeToString()) for change in changes
        ]
        await self._updates_sender.send(self._producer().kafka_producer(), self._updates, records, headers)


class KeyedBatches:
    """Sends keyed records in one batch per partition, partitioned as Kafka's default partitioner
    would (murmur2 of the key), and returns once the broker has all of them.

    A batch announces up to one update per event: sent one by one, aiokafka partitioned every
    record in Python (copying the topic's partition set, hashing the key) and queued each alone,
    ~20 us per record. Keys (customer ids) recur, so their partitions are remembered.
    """

    MAX_REMEMBERED = 100_000

    def __init__(self) -> None:
        self._partitioner = DefaultPartitioner()
        self._partitions: list[int] = []
        self._partition_of: dict[bytes, int] = {}

    def partition(self, key: bytes) -> int:
        partition = self._partition_of.get(key)
        if partition is None:
            if len(self._partition_of) >= self.MAX_REMEMBERED:
                self._partition_of.clear()
            partition = self._partition_of[key] = self._partitioner(key, self._partitions, self._partitions)
        return partition

    async def send(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        records: Sequence[tuple[bytes, bytes]],
        headers: list[tuple[str, bytes]],
    ) -> None:
        if not records:
            return
        partitions = sorted(await producer.partitions_for(topic))
        if partitions != self._partitions:
            self._partitions = partitions
            self._partition_of.clear()
        by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
        for key, value in records:
            by_partition.setdefault(self.partition(key), []).append((key, value))
        pending = []
        for partition, keyed in by_partition.items():
            batch = producer.create_batch()
            for key, value in keyed:
                if batch.append(timestamp=None, key=key, value=value, headers=headers) is None:
                    # Full: send it and start the next (an empty batch takes any first record).
                    pending.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    if batch.append(timestamp=None, key=key, value=value, headers=headers) is None:
                        raise ValueError(f"a record of {len(value)} bytes does not fit a batch")
            pending.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*pending)
