"""Live updates: tail `rapport.customer-updates.v1` and fan each record out to this process's watchers.

Every timeline replica reads every partition (no consumer group: each replica serves its own
watchers), starting at the end when it starts. A watcher subscribes before it replays from the
graph, so a commit either shows up in its replay or arrives here afterwards (or both: the
watch position drops repeats).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from google.protobuf.message import DecodeError
from kafka import KafkaConsumer, TopicPartition

from rapport.settings import KafkaSettings
from rapport.v1 import events_pb2
from rapport_timeline.domain.model import NANOS, CustomerUpdate

log = logging.getLogger(__name__)

PARTITION_REFRESH_SECONDS = 30.0
RETRY_SECONDS = 2.0
# An idle tail wakes seldom: it shares the GIL with request threads, and a fetch the broker holds
# returns as soon as a record arrives (so these do not delay live delivery).
FETCH_MAX_WAIT_MS = 500
POLL_MS = 1000


class WatchClosed(Exception):
    """The hub shut down (the server is stopping); the watcher should end its stream."""


class Subscription:
    """One watcher's inbox: the updates of the customers it follows."""

    def __init__(self, hub: WatchHub, customer_ids: set[str]) -> None:
        self._hub = hub
        self.customer_ids = customer_ids
        self._inbox: queue.SimpleQueue[CustomerUpdate | None] = queue.SimpleQueue()
        self.closed = False

    def deliver(self, update: CustomerUpdate | None) -> None:
        self._inbox.put(update)

    def get(self, timeout: float) -> CustomerUpdate | None:
        """The next update, or None when `timeout` passes or the watcher is woken. Raises WatchClosed."""
        if self.closed:
            raise WatchClosed
        try:
            update = self._inbox.get(timeout=timeout)
        except queue.Empty:
            return None
        if update is None and self.closed:
            raise WatchClosed
        return update

    def wake(self) -> None:
        self._inbox.put(None)

    def follow(self, customer_id: str) -> None:
        """Also receive updates of `customer_id` (the survivor of a merge)."""
        self._hub._add(self, {customer_id})

    def cancel(self) -> None:
        self._hub._remove(self)


class WatchHub:
    """Routes each CustomerUpdate to the subscriptions of the customers it names."""

    def __init__(self, max_watchers: int = 0) -> None:
        self._lock = threading.Lock()
        self._by_customer: dict[str, set[Subscription]] = {}
        self._all: set[Subscription] = set()
        self.max_watchers = max_watchers
        self.ready = threading.Event()
        self.closed = False
        # Called with every update, watched or not (the page cache forgets erased customers).
        self._listeners: list[Callable[[CustomerUpdate], None]] = []

    def on_update(self, listener: Callable[[CustomerUpdate], None]) -> None:
        self._listeners.append(listener)

    def subscribe(self, customer_id: str) -> Subscription | None:
        """A new subscription, or None when `max_watchers` are already watching."""
        sub = Subscription(self, set())
        with self._lock:
            if self.closed:
                raise WatchClosed
            if self.max_watchers and len(self._all) >= self.max_watchers:
                return None
            self._all.add(sub)
        self._add(sub, {customer_id})
        return sub

    def _add(self, sub: Subscription, customer_ids: set[str]) -> None:
        with self._lock:
            for cid in customer_ids:
                sub.customer_ids.add(cid)
                self._by_customer.setdefault(cid, set()).add(sub)

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            self._all.discard(sub)
            for cid in sub.customer_ids:
                subs = self._by_customer.get(cid)
                if subs is not None:
                    subs.discard(sub)
                    if not subs:
                        del self._by_customer[cid]

    @property
    def watchers(self) -> int:
        with self._lock:
            return len(self._all)

    def publish(self, update: CustomerUpdate) -> int:
        """Delivers to every watcher of the customers the update names; returns how many."""
        for listener in self._listeners:
            listener(update)
        with self._lock:
            targets = set().union(*(self._by_customer.get(cid, set()) for cid in update.customers))
        for sub in targets:
            sub.deliver(update)
        return len(targets)

    def close(self) -> None:
        """Ends every watch stream (on shutdown), so clients resume elsewhere from their cursor."""
        with self._lock:
            self.closed = True
            subs = list(self._all)
        for sub in subs:
            sub.closed = True
            sub.wake()


def decode_update(payload: bytes) -> CustomerUpdate:
    message = events_pb2.CustomerUpdated()
    message.ParseFromString(payload)
    committed = None
    if message.HasField("committed_at"):
        committed = message.committed_at.seconds * NANOS + message.committed_at.nanos
    return CustomerUpdate(
        customer_id=message.customer_id,
        event_ids=tuple(message.event_ids),
        merged_customer_ids=tuple(message.merged_customer_ids),
        committed_at=committed,
        erased=message.erased,
        history_removed=message.history_removed,
    )


class CustomerUpdatesTail:
    """A daemon thread that reads every partition of the customer-updates topic into a hub."""

    def __init__(self, settings: KafkaSettings, hub: WatchHub, **consumer_overrides: Any) -> None:
        self._settings = settings
        self._hub = hub
        self._overrides = consumer_overrides
        self._stop = threading.Event()
        # Next offset per partition, kept across reconnects so a restart of the consumer loses nothing.
        self._offsets: dict[TopicPartition, int] = {}
        self._thread = threading.Thread(target=self._run, name="customer-updates-tail", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _consumer(self) -> KafkaConsumer:
        config: dict[str, Any] = {
            "bootstrap_servers": self._settings.bootstrap_servers,
            "client_id": "rapport-timeline",
            "group_id": None,
            "enable_auto_commit": False,
            "fetch_max_wait_ms": FETCH_MAX_WAIT_MS,
            "request_timeout_ms": max(int(self._settings.request_timeout * 1000), 1000) + 1000,
        }
        config.update(self._settings.kafka_python_kwargs())
        config.update(self._overrides)
        return KafkaConsumer(**config)

    def _assign(self, consumer: KafkaConsumer, assigned: set[TopicPartition], initial: bool) -> set[TopicPartition]:
        topic = self._settings.customer_updates_topic
        partitions = consumer.partitions_for_topic(topic) or set()
        wanted = {TopicPartition(topic, p) for p in partitions}
        new = wanted - assigned
        if not new:
            return assigned
        consumer.assign(sorted(wanted))
        for tp in sorted(new):
            if tp in self._offsets:
                consumer.seek(tp, self._offsets[tp])
            elif initial:
                consumer.seek_to_end(tp)
            else:
                # A partition added while running holds only records written after we last looked.
                consumer.seek_to_beginning(tp)
            self._offsets[tp] = consumer.position(tp)  # resolve now, so "ready" means positioned
        return wanted

    def _run(self) -> None:
        while not self._stop.is_set():
            consumer = None
            try:
                consumer = self._consumer()
                assigned = self._assign(consumer, set(), initial=True)
                if not assigned:
                    raise RuntimeError(f"topic {self._settings.customer_updates_topic} has no partitions")
                self._hub.ready.set()
                log.info("tailing customer updates", extra={"partitions": len(assigned)})
                refreshed = time.monotonic()
                while not self._stop.is_set():
                    batches = consumer.poll(timeout_ms=POLL_MS)
                    for tp, records in batches.items():
                        for record in records:
                            self._dispatch(record.value)
                            self._offsets[tp] = record.offset + 1
                    if time.monotonic() - refreshed > PARTITION_REFRESH_SECONDS:
                        assigned = self._assign(consumer, assigned, initial=False)
                        refreshed = time.monotonic()
            except Exception:
                self._hub.ready.clear()
                log.exception("customer-updates tail failed; retrying")
                self._stop.wait(RETRY_SECONDS)
            finally:
                if consumer is not None:
                    consumer.close(autocommit=False)

    def _dispatch(self, payload: bytes | None) -> None:
        if not payload:
            return
        try:
            update = decode_update(payload)
        except DecodeError:
            log.warning("skipping an undecodable customer update")
            return
        if update.customer_id:
            self._hub.publish(update)
