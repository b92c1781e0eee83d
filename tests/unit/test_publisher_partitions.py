"""The publisher's partitioner: Kafka's default answer for every key, remembered."""

import pytest
from kafka.partitioner import DefaultPartitioner

from rapport.publisher import RememberedPartitions

pytestmark = pytest.mark.unit


class Cluster:
    def __init__(self, partitions: int) -> None:
        self.partitions = set(range(partitions))

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions


def test_every_key_gets_the_default_partitioners_answer_first_time_and_again():
    remembered, default, cluster = RememberedPartitions(), DefaultPartitioner(), Cluster(12)
    keys = [f"crm:C-{n}".encode() for n in range(500)]
    expected = [default.partition("t", k, k, None, b"v", cluster) for k in keys]
    assert len(set(expected)) == 12
    for _ in range(2):
        assert [remembered.partition("t", k, k, None, b"v", cluster) for k in keys] == expected


def test_a_topic_that_grows_partitions_is_hashed_again():
    remembered, default = RememberedPartitions(), DefaultPartitioner()
    keys = [f"email:c{n}@example.com".encode() for n in range(200)]
    for k in keys:
        remembered.partition("t", k, k, None, b"v", Cluster(3))
    grown = Cluster(12)
    assert [remembered.partition("t", k, k, None, b"v", grown) for k in keys] == [
        default.partition("t", k, k, None, b"v", grown) for k in keys
    ]


def test_records_without_a_key_are_spread_as_before():
    cluster = Cluster(6)
    chosen = {RememberedPartitions().partition("t", None, None, None, b"v", cluster) for _ in range(200)}
    assert chosen <= cluster.partitions and len(chosen) > 1
