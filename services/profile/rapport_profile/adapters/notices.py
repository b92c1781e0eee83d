"""CustomerUpdated notices from the ProfileService: a customer was erased, or lost interactions.

They go to `rapport.customer-updates.v1` like the worker's, keyed by customer id, so every
timeline replica (each tails every partition) drops what it cached of that customer. Each send
waits for the broker's acknowledgement (acks=all): the caller reports success only then.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from kafka import KafkaProducer

from rapport.settings import KafkaSettings
from rapport.v1 import events_pb2

log = logging.getLogger(__name__)


class CustomerNotices(Protocol):
    def erased(self, customer_ids: Sequence[str], timeout: float) -> None:
        """Returns once a notice per customer is on the topic; raises when that cannot be done in time."""

    def history_removed(self, customer_ids: Sequence[str], timeout: float) -> None: ...

    def close(self) -> None: ...


def notice(customer_id: str, *, erased: bool = False, history_removed: bool = False) -> events_pb2.CustomerUpdated:
    update = events_pb2.CustomerUpdated(customer_id=customer_id, erased=erased, history_removed=history_removed)
    update.committed_at.FromDatetime(datetime.now(UTC))
    return update


class KafkaCustomerNotices:
    """Connects on the first notice, not when built."""

    def __init__(self, settings: KafkaSettings, **producer_overrides: Any) -> None:
        self._settings = settings
        self._overrides = producer_overrides
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()

    def _connected(self, timeout: float) -> KafkaProducer:
        with self._lock:
            if self._producer is None:
                config: dict[str, Any] = {
                    "bootstrap_servers": self._settings.bootstrap_servers,
                    "client_id": "rapport-profile-notices",
                    "acks": "all",
                    "retries": 3,
                    "request_timeout_ms": max(int(timeout * 1000), 1000),
                    "max_block_ms": max(int(timeout * 1000), 1000),
                }
                config.update(self._settings.kafka_python_kwargs())
                config.update(self._overrides)
                self._producer = KafkaProducer(**config)
            return self._producer

    def _send(self, updates: Sequence[events_pb2.CustomerUpdated], timeout: float) -> None:
        if not updates:
            return
        producer = self._connected(timeout)
        topic = self._settings.customer_updates_topic
        pending = [producer.send(topic, key=u.customer_id.encode(), value=u.SerializeToString()) for u in updates]
        for future in pending:
            future.get(timeout=timeout)

    def erased(self, customer_ids: Sequence[str], timeout: float) -> None:
        self._send([notice(c, erased=True) for c in customer_ids], timeout)

    def history_removed(self, customer_ids: Sequence[str], timeout: float) -> None:
        self._send([notice(c, history_removed=True) for c in customer_ids], timeout)

    def merged(self, survivor_id: str, absorbed_ids: Sequence[str], timeout: float) -> None:
        """A merge made outside the worker (an approved candidate), announced as the worker announces its own."""
        update = notice(survivor_id)
        update.merged_customer_ids.extend(absorbed_ids)
        self._send([update], timeout)

    def close(self) -> None:
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(timeout=self._settings.request_timeout)
