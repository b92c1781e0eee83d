"""CustomerUpdated records go out in batches per partition, partitioned as Kafka's default partitioner."""

import asyncio
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner

from rapport_profile.adapters.kafka import KeyedBatches

pytestmark = pytest.mark.unit


class Batch:
    def __init__(self, room: int) -> None:
        self.room = room
        self.records: list[tuple[bytes, bytes, Any]] = []

    def append(self, *, timestamp: float | None, key: bytes, value: bytes, headers: Any) -> object | None:
        if self.records and len(self.records) >= self.room:
            return None
        self.records.append((key, value, headers))
        return object()


class Producer:
    def __init__(self, partitions: int, room: int) -> None:
        self.partitions = set(range(partitions))
        self.room = room
        self.sent: list[tuple[str, int, list[tuple[bytes, bytes, Any]]]] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return self.partitions

    def create_batch(self) -> Batch:
        return Batch(self.room)

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> asyncio.Future[None]:
        self.sent.append((topic, partition, batch.records))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def test_each_key_goes_to_kafkas_default_partition_in_order_and_full_batches_are_split():
    producer = Producer(partitions=6, room=4)
    records = [(f"cus_{n % 40}".encode(), f"update {n}".encode()) for n in range(120)]
    headers = [("traceparent", b"00-abc")]
    asyncio.run(KeyedBatches().send(producer, "updates", records, headers))  # type: ignore[arg-type]

    default = DefaultPartitioner()
    sent = [(partition, key, value) for _, partition, batch in producer.sent for key, value, _ in batch]
    assert sorted(sent) == sorted((default(k, list(range(6)), list(range(6))), k, v) for k, v in records)
    assert all(len(batch) <= 4 and all(h is headers for *_, h in batch) for _, _, batch in producer.sent)
    for partition in range(6):
        in_partition = [v for p, _, v in sent if p == partition]
        assert in_partition == [v for k, v in records if default(k, list(range(6)), list(range(6))) == partition]


def test_partitions_are_worked_out_again_when_the_topic_grows():
    batches = KeyedBatches()
    keys = [f"cus_{n}".encode() for n in range(50)]
    small, grown = Producer(partitions=2, room=100), Producer(partitions=12, room=100)
    asyncio.run(batches.send(small, "u", [(k, b"v") for k in keys], []))  # type: ignore[arg-type]
    asyncio.run(batches.send(grown, "u", [(k, b"v") for k in keys], []))  # type: ignore[arg-type]
    default = DefaultPartitioner()
    assert {(p, k) for _, p, batch in grown.sent for k, _, _ in batch} == {
        (default(k, list(range(12)), list(range(12))), k) for k in keys
    }


def test_nothing_to_send_sends_nothing():
    producer = Producer(partitions=3, room=10)
    asyncio.run(KeyedBatches().send(producer, "u", [], []))  # type: ignore[arg-type]
    assert producer.sent == []
