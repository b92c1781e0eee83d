"""The ingest use case: one batch of Kafka records in, the graph and the outbox updated.

Decode and validate each record; send the ones that fail to the dead-letter topic with their
reason; write the rest in one graph transaction, waiting out any Neo4j outage; then announce
what changed. Only when `handle` returns may the caller acknowledge the records, so a crash at
any point replays the batch, and replays are no-ops in the graph.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import neo4j.exceptions
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from rapport import metrics
from rapport.events import MAX_EVENT_BYTES, InvalidEvent, decode, validate
from rapport_profile.adapters.graph import BatchResult, CustomerChange
from rapport_profile.domain.interactions import InteractionRecord, interaction_record
from rapport_profile.domain.records import KafkaRecord, Rejected

log = logging.getLogger(__name__)
tracer = trace.get_tracer("rapport.profile.ingest")


class Graph(Protocol):
    def write_records(self, records: Sequence[InteractionRecord]) -> BatchResult: ...


class Outbox(Protocol):
    async def dead_letter(self, rejected: Sequence[Rejected]) -> None:
        """Returns once every record is durably on the dead-letter topic."""

    async def customer_updates(self, changes: Sequence[CustomerChange], committed_at: datetime) -> None:
        """Returns once every update is durably on the customer-updates topic."""


@dataclass
class BatchOutcome:
    stored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    updates: int = 0
    # Events of erased customers, dropped on purpose (acknowledged, not dead-lettered).
    erased: int = 0


@dataclass
class PreparedBatch:
    records: Sequence[KafkaRecord]
    good: list[tuple[KafkaRecord, InteractionRecord]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    parse_ms: float = 0.0


class _HeaderGetter(Getter[list[tuple[str, bytes]]]):
    def get(self, carrier: list[tuple[str, bytes]], key: str) -> list[str] | None:
        values = [v.decode("latin-1") for k, v in carrier if k.lower() == key]
        return values or None

    def keys(self, carrier: list[tuple[str, bytes]]) -> list[str]:
        return [k for k, _ in carrier]


_HEADERS = _HeaderGetter()
_NO_TRACE = otel_context.Context()


def _is_rejection(exc: BaseException) -> bool:
    """Neo4j refused these records themselves (a value or constraint error), not the transaction.

    Anything else -- unavailability, a database that is still starting, auth -- is waited out,
    never answered by dead-lettering good events.
    """
    if isinstance(exc, neo4j.exceptions.ConstraintError | neo4j.exceptions.CypherTypeError):
        return True
    code = getattr(exc, "code", None) or ""
    return (
        isinstance(exc, neo4j.exceptions.ClientError)
        and code.startswith("Neo.ClientError.Statement.")
        and not isinstance(exc, neo4j.exceptions.CypherSyntaxError)
    )


def _is_worth_retrying(exc: BaseException) -> bool:
    if isinstance(exc, neo4j.exceptions.Neo4jError | neo4j.exceptions.DriverError):
        return not _is_rejection(exc)
    return isinstance(exc, OSError | TimeoutError)


def parse(record: KafkaRecord) -> tuple[InteractionRecord | None, Rejected | None]:
    if not record.value:
        return None, Rejected(record, "empty", "payload", "the record has no value")
    if len(record.value) > MAX_EVENT_BYTES:
        return None, Rejected(
            record, "oversized", "payload", f"{len(record.value)} bytes is over the {MAX_EVENT_BYTES}-byte limit"
        )
    try:
        event = decode(record.value)
    except InvalidEvent as exc:
        return None, Rejected(record, "undecodable", exc.field, exc.reason)
    try:
        identifiers = validate(event)
    except InvalidEvent as exc:
        return None, Rejected(record, "invalid", exc.field, exc.reason)
    return interaction_record(event, identifiers), None


class IngestService:
    def __init__(
        self,
        graph: Graph,
        outbox: Outbox,
        *,
        consumer_group: str,
        database: str = "neo4j",
        retry_initial: float = 0.1,
        retry_max: float = 5.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._graph = graph
        self._outbox = outbox
        self._group = consumer_group
        self._database = database
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._sleep = sleep
        # For the health endpoint: False while the graph refuses our writes.
        self.graph_available = True
        self.last_error: str | None = None

    async def handle(self, batch: Sequence[KafkaRecord]) -> BatchOutcome:
        return await self.commit(self.prepare(batch))

    def prepare(self, batch: Sequence[KafkaRecord]) -> PreparedBatch:
        """Decodes and validates (CPU only), so the worker can do it while the previous batch writes."""
        began = time.perf_counter()
        prepared = PreparedBatch(batch)
        for record in batch:
            parsed, rejection = parse(record)
            if parsed is not None:
                prepared.good.append((record, parsed))
            elif rejection is not None:
                prepared.rejected.append(rejection)
        prepared.parse_ms = round((time.perf_counter() - began) * 1000, 1)
        return prepared

    async def commit(self, prepared: PreparedBatch) -> BatchOutcome:
        """Writes the batch, dead-letters and announces; returns once all of it is durable."""
        batch = prepared.records
        if not batch:
            return BatchOutcome()
        # Records without headers carry no trace: most of a batch, when producers do not trace.
        contexts = [propagate.extract(r.headers, getter=_HEADERS) if r.headers else _NO_TRACE for r in batch]
        links = [Link(ctx) for c in contexts if (ctx := trace.get_current_span(c).get_span_context()).is_valid]
        # The first producer's trace is the parent, so a single event's trace reads end to end;
        # every producer is linked, as the messaging conventions ask for batches.
        parent = contexts[0] if links else otel_context.Context()
        topic = batch[0].topic
        with tracer.start_as_current_span(
            f"process {topic}",
            context=parent,
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": topic,
                "messaging.consumer.group.name": self._group,
                "messaging.batch.message_count": len(batch),
            },
        ) as span:
            outcome = await self._commit(prepared)
            span.set_attributes(
                {
                    "rapport.events.stored": outcome.stored,
                    "rapport.events.duplicates": outcome.duplicates,
                    "rapport.events.dead_lettered": outcome.dead_lettered,
                }
            )
            return outcome

    async def _commit(self, prepared: PreparedBatch) -> BatchOutcome:
        batch, good, rejected = prepared.records, prepared.good, list(prepared.rejected)
        parsed_at = time.perf_counter()
        results, refused = await self._store(good)
        stored_at = time.perf_counter()
        rejected += refused
        if rejected:
            await self._outbox.dead_letter(rejected)
            for r in rejected:
                metrics.events_dead_lettered().add(1, {"rapport.dlq.reason": r.error})
                log.warning(
                    "record dead-lettered",
                    extra={
                        "error": r.error,
                        "field": r.field,
                        "reason": r.reason,
                        "topic": r.record.topic,
                        "partition": r.record.partition,
                        "offset": r.record.offset,
                    },
                )

        changes = _announcements(results)
        announced_at = time.perf_counter()
        if changes:
            await self._outbox.customer_updates(changes, datetime.now(UTC))
        log.debug(
            "batch handled",
            extra={
                "records": len(batch),
                "parse_ms": prepared.parse_ms,
                "graph_ms": round((stored_at - parsed_at) * 1000, 1),
                "dead_letter_ms": round((announced_at - stored_at) * 1000, 1),
                "announce_ms": round((time.perf_counter() - announced_at) * 1000, 1),
            },
        )
        outcome = BatchOutcome(
            stored=sum(len(r.stored) for r in results),
            duplicates=sum(len(r.duplicates) for r in results),
            dead_lettered=len(rejected),
            updates=len(changes),
            erased=sum(len(r.erased) for r in results),
        )
        if outcome.erased:
            metrics.events_erased().add(outcome.erased)
        stored_ids = {e for r in results for e in r.stored}
        by_channel: dict[str, int] = {}
        for _, rec in good:
            if rec.event_id in stored_ids:
                channel = str(rec.properties.get("channel", "unknown"))
                by_channel[channel] = by_channel.get(channel, 0) + 1
        for channel, n in by_channel.items():
            metrics.events_ingested().add(n, {"rapport.channel": channel})
        return outcome

    async def _store(
        self, good: list[tuple[KafkaRecord, InteractionRecord]]
    ) -> tuple[list[BatchResult], list[Rejected]]:
        """Writes the batch; if Neo4j rejects it, halves it until the offending records are alone."""
        if not good:
            return [], []
        try:
            return [await self._write_until_stored([rec for _, rec in good])], []
        except Exception as exc:
            if not _is_rejection(exc):
                raise
            if len(good) == 1:
                code = getattr(exc, "code", None) or type(exc).__name__
                return [], [Rejected(good[0][0], "graph_rejected", "payload", f"{code}: {exc}")]
            middle = len(good) // 2
            first, refused_first = await self._store(good[:middle])
            second, refused_second = await self._store(good[middle:])
            return first + second, refused_first + refused_second

    async def _write_until_stored(self, records: list[InteractionRecord]) -> BatchResult:
        """Retries with backoff for as long as the graph is unavailable: events are never skipped."""
        delay = self._retry_initial
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            with tracer.start_as_current_span(
                "write_batch customer-graph",
                kind=SpanKind.CLIENT,
                attributes={
                    "db.system.name": "neo4j",
                    "db.namespace": self._database,
                    "db.operation.name": "write_batch",
                    "db.operation.batch.size": len(records),
                    "rapport.attempt": attempt,
                },
            ) as span:
                try:
                    # The sync driver runs in a thread so the consumer keeps fetching meanwhile;
                    # to_thread copies the context, so driver logs carry this span.
                    result = await asyncio.to_thread(self._graph.write_records, records)
                except Exception as exc:
                    error = type(exc).__name__
                    span.set_status(Status(StatusCode.ERROR, str(exc)[:200]))
                    span.set_attribute("error.type", error)
                    metrics.graph_write_duration().record(
                        time.perf_counter() - started, {"db.operation.name": "write_batch", "error.type": error}
                    )
                    if not _is_worth_retrying(exc):
                        raise
                    self.graph_available = False
                    self.last_error = f"{error}: {exc}"[:500]
                    log.warning(
                        "graph write failed; retrying",
                        extra={"error": self.last_error, "attempt": attempt, "retry_in": round(delay, 3)},
                    )
                    await self._sleep(delay)
                    delay = min(delay * 2, self._retry_max)
                    continue
            metrics.graph_write_duration().record(time.perf_counter() - started, {"db.operation.name": "write_batch"})
            metrics.ingest_batch_size().record(len(records))
            if not self.graph_available:
                log.info("graph writes succeed again", extra={"attempts": attempt})
            self.graph_available = True
            self.last_error = None
            return result


def _announcements(results: Sequence[BatchResult]) -> list[CustomerChange]:
    """One CustomerUpdated per surviving customer, new and replayed events together."""
    events: dict[str, list[str]] = {}
    merged: dict[str, list[str]] = {}
    for result in results:
        for change in result.changes:
            events.setdefault(change.customer_id, []).extend(change.event_ids)
            merged.setdefault(change.customer_id, []).extend(change.merged_customer_ids)
        for event_id, customer_id in result.replayed.items():
            if customer_id is not None:
                events.setdefault(customer_id, []).append(event_id)
    customers = sorted(set(events) | set(merged))
    return [CustomerChange(c, events.get(c, []), merged.get(c, [])) for c in customers]
