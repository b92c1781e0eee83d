"""Publishing contact endings to Kafka, from a transactional outbox in the graph.

CompleteContact and CancelContact mark the Contact `:Outbox` in the same transaction that ends
it, then hand it here. A background thread publishes it with acks=all and, once Kafka has it,
clears the mark. Anything still marked after `retry` seconds (Kafka was down, the process died)
is claimed and published again by whichever router replica gets there first; the event id is
derived from the contact, so a duplicate is stored once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from kafka.errors import KafkaError

from rapport.events import InvalidEvent
from rapport.v1 import events_pb2
from rapport_router.adapters.graph import GRAPH_ERRORS, RouterGraph
from rapport_router.deadline import deadline_scope
from rapport_router.domain.contact import ContactRecord
from rapport_router.domain.outcomes import ending_event

log = logging.getLogger(__name__)


class EventSink(Protocol):
    """What the outbox needs from a Kafka producer (rapport.publisher.InteractionPublisher fits)."""

    def publish(self, event: events_pb2.InteractionEvent, topic: str | None = None) -> Any: ...

    def flush(self, timeout: float | None = None) -> None: ...

    def close(self, timeout: float | None = None) -> None: ...


class Outbox:
    def __init__(
        self,
        graph: RouterGraph,
        sink_factory: Callable[[], EventSink],
        *,
        retry: float = 15.0,
        tick: float = 0.5,
        gather: float = 0.02,
        graph_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._graph = graph
        self._sink_factory = sink_factory
        self._sink: EventSink | None = None
        self._retry = retry
        self._tick = tick
        # After a contact arrives, others are awaited this long so that one wake-up of the thread
        # publishes them all (a wake-up per completion cost the router a thread switch each; the
        # producer holds them up to its linger anyway).
        self._gather = gather
        self._graph_timeout = graph_timeout
        self._clock = clock
        self._pending: queue.Queue[ContactRecord] = queue.Queue()
        self._delivered: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_sweep = 0.0
        self._next_mark = 0.0
        self.published = 0

    def submit(self, contact: ContactRecord) -> None:
        """Publish soon; never blocks the caller (the graph's outbox mark keeps it safe)."""
        self._pending.put(contact)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="router-outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        sink = self._sink
        if sink is not None:
            try:
                sink.flush(timeout)
                self._mark_delivered()
                sink.close(timeout)
            except Exception:
                log.exception("closing the event producer failed")

    def _sink_or_none(self) -> EventSink | None:
        if self._sink is None:
            try:
                self._sink = self._sink_factory()
            except (KafkaError, OSError) as exc:
                log.warning("kafka unavailable; contact events stay in the outbox", extra={"error": str(exc)})
                return None
            except Exception:
                log.exception("cannot create the event producer; contact events stay in the outbox")
                return None
        return self._sink

    def _on_delivered(self, contact_id: str) -> Callable[[Any], None]:
        def done(_metadata: Any) -> None:
            with self._lock:
                self._delivered.append(contact_id)
            self.published += 1

        return done

    @staticmethod
    def _on_failed(contact_id: str) -> Callable[[Any], None]:
        def failed(exc: Any) -> None:
            log.warning("contact event not delivered; will retry", extra={"contact_id": contact_id, "error": str(exc)})

        return failed

    def publish(self, contact: ContactRecord) -> bool:
        """Sends the contact's event; False when Kafka is out of reach (it stays in the outbox)."""
        event = ending_event(contact)
        if event is None:
            log.warning("contact has no identifier to publish its ending under", extra={"contact_id": contact.id})
            with self._lock:
                self._delivered.append(contact.id)
            return True
        sink = self._sink_or_none()
        if sink is None:
            return False
        try:
            future = sink.publish(event)
        except InvalidEvent as exc:
            log.error("contact event invalid; dropped", extra={"contact_id": contact.id, "error": str(exc)})
            with self._lock:
                self._delivered.append(contact.id)
            return True
        except (KafkaError, OSError) as exc:
            log.warning("publishing contact event failed", extra={"contact_id": contact.id, "error": str(exc)})
            return False
        future.add_callback(self._on_delivered(contact.id))
        future.add_errback(self._on_failed(contact.id))
        return True

    def _mark_delivered(self) -> None:
        with self._lock:
            ids, self._delivered = self._delivered, []
        if not ids:
            return
        try:
            with deadline_scope(self._graph_timeout):
                self._graph.outbox_done(ids, self._clock())
        except GRAPH_ERRORS as exc:
            log.warning("could not clear published events from the outbox", extra={"error": str(exc)})
            with self._lock:
                self._delivered.extend(ids)

    def _sweep(self) -> None:
        """Claims and republishes events left unpublished for longer than `retry`."""
        now = self._clock()
        with deadline_scope(self._graph_timeout):
            due = self._graph.outbox_due(now - self._retry, now)
        for contact in due:
            if not self.publish(contact):
                break

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                contact = self._pending.get(timeout=self._tick)
                if self._gather > 0:
                    self._stop.wait(self._gather)
                batch = [contact]
                while True:
                    try:
                        batch.append(self._pending.get_nowait())
                    except queue.Empty:
                        break
                for c in batch:
                    if not self.publish(c):
                        break  # Kafka down: the sweep retries them from the graph
            except queue.Empty:
                pass
            except Exception:
                log.exception("outbox round failed")
            if time.monotonic() >= self._next_mark:
                self._next_mark = time.monotonic() + self._tick
                self._mark_delivered()
            if time.monotonic() >= self._next_sweep:
                self._next_sweep = time.monotonic() + max(self._retry / 2, self._tick)
                try:
                    self._sweep()
                except GRAPH_ERRORS as exc:
                    log.warning("outbox sweep failed", extra={"error": str(exc)})
                except Exception:
                    log.exception("outbox sweep failed")
