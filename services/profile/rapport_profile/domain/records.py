"""The Kafka records the worker consumes, and the verdict on one that cannot enter the graph."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class KafkaRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    timestamp_ms: int | None = None


@dataclass(frozen=True)
class Rejected:
    """A record that must not enter the graph; `error` is a short code, `reason` says why."""

    record: KafkaRecord
    error: str
    field: str
    reason: str
