"""The ingest use case with a fake graph and outbox: routing, retries, isolation, announcements."""

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import neo4j.exceptions
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from rapport_profile.adapters.graph import BatchResult, CustomerChange
from rapport_profile.adapters.kafka import DLQ_ERROR, DLQ_SOURCE_OFFSET, customer_updated, dead_letter_headers
from rapport_profile.domain.interactions import InteractionRecord
from rapport_profile.domain.records import KafkaRecord, Rejected
from rapport_profile.ingest import IngestService
from rapport_profile.synthetic import interaction

pytestmark = pytest.mark.unit


class FakeGraph:
    def __init__(self, failures: list[Exception] | None = None, refuse: set[str] | None = None) -> None:
        self.failures = list(failures or [])
        self.refuse = refuse or set()
        self.writes: list[list[str]] = []

    def write_records(self, records: Sequence[InteractionRecord]) -> BatchResult:
        ids = [r.event_id for r in records]
        self.writes.append(ids)
        if self.failures:
            raise self.failures.pop(0)
        if self.refuse & set(ids):
            raise neo4j.exceptions.ConstraintError("Neo.ClientError.Schema.ConstraintValidationFailed")
        return BatchResult(
            stored=ids, changes=[CustomerChange("cus_1", ids, [])], replayed={"old-1": "cus_2"} if ids else {}
        )


class FakeOutbox:
    def __init__(self) -> None:
        self.dead: list[Rejected] = []
        self.updates: list[CustomerChange] = []

    async def dead_letter(self, rejected: Sequence[Rejected]) -> None:
        self.dead.extend(rejected)

    async def customer_updates(self, changes: Sequence[CustomerChange], committed_at: datetime) -> None:
        self.updates.extend(changes)


def record(offset: int, value: bytes | None) -> KafkaRecord:
    return KafkaRecord("t", 0, offset, b"k", value, [("traceparent", b"nonsense")])


def good(offset: int) -> KafkaRecord:
    return record(offset, interaction(f"e{offset}", "crm:C-1").SerializeToString())


def service(graph: FakeGraph, outbox: FakeOutbox, sleeps: list[float] | None = None) -> IngestService:
    async def sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)

    return IngestService(graph, outbox, consumer_group="g", retry_initial=0.1, retry_max=0.4, sleep=sleep)


def test_bad_records_are_dead_lettered_and_the_rest_written_together():
    graph, outbox = FakeGraph(), FakeOutbox()
    unknown = interaction("e9", "crm:C-1")
    unknown.kind = 42  # type: ignore[assignment]
    batch = [good(0), record(1, b"\xff\xff"), good(2), record(3, unknown.SerializeToString()), record(4, None)]
    outcome = asyncio.run(service(graph, outbox).handle(batch))
    assert graph.writes == [["e0", "e2"]]
    assert [(r.record.offset, r.error, r.field) for r in outbox.dead] == [
        (1, "undecodable", "payload"),
        (3, "invalid", "kind"),
        (4, "empty", "payload"),
    ]
    assert (outcome.stored, outcome.dead_lettered) == (2, 3)


def test_an_event_time_past_what_a_datetime_holds_is_dead_lettered_not_raised_out_of_the_batch():
    graph, outbox = FakeGraph(), FakeOutbox()
    far = interaction("e1", "crm:C-1")
    far.occurred_at.seconds = 10**12  # a protobuf int64 like any other, but past year 9999
    outcome = asyncio.run(service(graph, outbox).handle([good(0), record(1, far.SerializeToString())]))
    assert graph.writes == [["e0"]]
    assert [(r.record.offset, r.error, r.field) for r in outbox.dead] == [(1, "invalid", "occurred_at")]
    assert (outcome.stored, outcome.dead_lettered) == (1, 1)


def test_unavailable_graph_is_retried_with_growing_backoff_until_it_answers():
    failures: list[Exception] = [neo4j.exceptions.ServiceUnavailable("down")] * 4 + [
        neo4j.exceptions.TransientError("deadlock")
    ]
    graph, outbox, sleeps = FakeGraph(failures), FakeOutbox(), list[float]()
    svc = service(graph, outbox, sleeps)
    outcome = asyncio.run(svc.handle([good(0), good(1)]))
    assert len(graph.writes) == 6 and outcome.stored == 2
    assert sleeps == [0.1, 0.2, 0.4, 0.4, 0.4]
    assert svc.graph_available and outbox.dead == []


def test_a_record_the_graph_refuses_is_isolated_and_dead_lettered():
    graph, outbox = FakeGraph(refuse={"e2"}), FakeOutbox()
    outcome = asyncio.run(service(graph, outbox).handle([good(n) for n in range(5)]))
    assert [r.record.offset for r in outbox.dead] == [2]
    assert outbox.dead[0].error == "graph_rejected"
    assert outcome.stored == 4


def test_auth_failure_is_waited_out_not_dead_lettered():
    graph, outbox = FakeGraph([neo4j.exceptions.AuthError("bad password")]), FakeOutbox()
    outcome = asyncio.run(service(graph, outbox).handle([good(0)]))
    assert outcome.stored == 1 and outbox.dead == []


def test_replayed_events_are_announced_again_with_the_new_ones():
    graph, outbox = FakeGraph(), FakeOutbox()
    asyncio.run(service(graph, outbox).handle([good(0)]))
    assert sorted((u.customer_id, tuple(u.event_ids)) for u in outbox.updates) == [
        ("cus_1", ("e0",)),
        ("cus_2", ("old-1",)),
    ]


def test_dead_letter_headers_keep_the_original_and_say_where_it_came_from():
    rejected = Rejected(KafkaRecord("t", 2, 17, b"k", b"v", [("origin", b"ivr")], 1700), "invalid", "csat", "bad")
    headers = dead_letter_headers(rejected, "g")
    assert headers[0] == ("origin", b"ivr")
    assert dict(headers)[DLQ_ERROR] == b"invalid" and dict(headers)[DLQ_SOURCE_OFFSET] == b"17"


def test_a_customer_update_carries_the_commit_time_given_as_a_datetime_or_once_converted():
    committed = datetime(2026, 11, 23, 16, 5, 7, 250_000, tzinfo=UTC)
    stamp = Timestamp()
    stamp.FromDatetime(committed)
    change = CustomerChange("cus_1", ["e1", "e2"], ["cus_9"])
    update = customer_updated(change, committed)
    assert update == customer_updated(change, stamp)
    assert update.committed_at.ToDatetime(tzinfo=UTC) == committed
    assert list(update.event_ids) == ["e1", "e2"] and list(update.merged_customer_ids) == ["cus_9"]


def test_the_batch_span_continues_the_producer_trace_and_wraps_the_graph_write():
    from opentelemetry.trace import SpanKind

    from rapport.telemetry import capture_spans

    spans = capture_spans()
    spans.clear()
    trace_id, parent_span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    traced = KafkaRecord(
        "rapport.interactions.v1",
        1,
        5,
        b"k",
        interaction("e1", "crm:C-1").SerializeToString(),
        [("traceparent", f"00-{trace_id}-{parent_span}-01".encode())],
    )
    asyncio.run(service(FakeGraph(), FakeOutbox()).handle([traced, good(6)]))
    finished = spans.get_finished_spans()
    (consumer,) = [s for s in finished if s.kind is SpanKind.CONSUMER]
    (write,) = [s for s in finished if s.kind is SpanKind.CLIENT]
    assert format(consumer.context.trace_id, "032x") == trace_id
    assert consumer.parent is not None and format(consumer.parent.span_id, "016x") == parent_span
    assert [format(link.context.span_id, "016x") for link in consumer.links] == [parent_span]
    assert consumer.attributes is not None
    assert consumer.attributes["messaging.system"] == "kafka"
    assert consumer.attributes["messaging.destination.name"] == "rapport.interactions.v1"
    assert consumer.attributes["messaging.batch.message_count"] == 2
    assert write.parent is not None and write.parent.span_id == consumer.context.span_id
    assert write.attributes is not None and write.attributes["db.system.name"] == "neo4j"
