"""Read-only Kafka figures for the dashboard and `rapport status`: end offsets and consumer lag."""

from __future__ import annotations

from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from rapport.settings import KafkaSettings


def _client_config(settings: KafkaSettings) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.bootstrap_servers,
        "request_timeout_ms": int(settings.request_timeout * 1000),
    }


class KafkaInfo:
    """One consumer (no group) and one admin client, reused between samples; close when done."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self._consumer = KafkaConsumer(client_id="rapport-demo-info", **_client_config(settings))
        self._admin = KafkaAdminClient(client_id="rapport-demo-info", **_client_config(settings))

    def end_offsets(self, topic: str) -> dict[int, int]:
        partitions = self._consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return {}
        return {tp.partition: int(o) for tp, o in self._consumer.end_offsets(tps).items()}

    def record_count(self, topic: str) -> int:
        partitions = self._consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return 0
        ends = self._consumer.end_offsets(tps)
        starts = self._consumer.beginning_offsets(tps)
        return sum(int(ends[tp]) - int(starts[tp]) for tp in tps)

    def lag(self, group: str, topic: str) -> int | None:
        """Records of `topic` not yet committed by `group`; None when the group has no offsets yet."""
        ends = self.end_offsets(topic)
        committed = self._admin.list_group_offsets({group: None}).get(group, {})
        mine = {tp.partition: int(meta.offset) for tp, meta in committed.items() if tp.topic == topic}
        if not mine:
            return None
        return sum(max(0, end - max(mine.get(p, 0), 0)) for p, end in ends.items())

    def close(self) -> None:
        self._consumer.close()
        self._admin.close()

    def __enter__(self) -> KafkaInfo:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
