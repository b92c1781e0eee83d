"""The one place that builds the ingest worker: the Neo4j driver, the Faust app and its agent."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import faust
import neo4j

from rapport import metrics
from rapport.graph.driver import open_driver
from rapport_profile.adapters import faust_transport
from rapport_profile.adapters.graph import GraphWriter
from rapport_profile.adapters.kafka import KafkaOutbox
from rapport_profile.config import IngestSettings
from rapport_profile.domain.erasure import Tombstones
from rapport_profile.domain.records import KafkaRecord
from rapport_profile.ingest import Graph, IngestService, Outbox, PreparedBatch

log = logging.getLogger(__name__)

# Exit status when a batch fails in a way retrying cannot fix: nothing was acknowledged, so
# the restarted worker (Kubernetes, the test harness) gets the batch again.
EXIT_UNEXPECTED = 70


@dataclass
class Progress:
    """What the worker has finished, per partition, for health and lag."""

    processed: dict[int, int] = field(default_factory=dict)
    batches: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0


@dataclass
class IngestWorker:
    app: faust.App
    service: IngestService
    settings: IngestSettings
    progress: Progress
    driver: neo4j.Driver | None = None

    def close(self) -> None:
        if self.driver is not None:
            self.driver.close()


def _record(event: Any) -> KafkaRecord:
    message = event.message
    headers = message.headers
    if isinstance(headers, dict):
        headers = list(headers.items())
    return KafkaRecord(
        message.topic,
        message.partition,
        message.offset,
        message.key,
        message.value,
        [(k, v if isinstance(v, bytes) else str(v).encode()) for k, v in headers] if headers else [],
        int(message.timestamp * 1000) if message.timestamp else None,
    )


def _die(exc: BaseException) -> None:
    log.critical("unexpected error while handling a batch; exiting unacknowledged", exc_info=exc)
    logging.shutdown()
    os._exit(EXIT_UNEXPECTED)


def build_app(settings: IngestSettings) -> faust.App:
    buffer = max(4096, 2 * settings.batch_size)
    app = faust.App(
        settings.group,
        broker=[f"kafka://{host.strip()}" for host in settings.kafka.bootstrap_servers.split(",")],
        store="memory://",
        datadir=settings.faust_data_dir,
        broker_credentials=settings.kafka.faust_credentials(),
        key_serializer="raw",
        value_serializer="raw",
        autodiscover=False,
        # Topics are provisioned (rapport.provision); the worker only consumes and produces.
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=settings.commit_interval,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=min(3.0, settings.session_timeout / 4),
        producer_acks=-1,
        stream_wait_empty=True,
        stream_buffer_maxsize=buffer,
        # The fetcher hands over at most this many records at a time, so the stream's buffer has
        # room for what is in hand when it pauses fetching (at 1/1.25 full): a delivery to a full
        # buffer waits, and a waiting delivery costs Faust four tasks (every tenth record did).
        broker_max_poll_records=buffer // 8,
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        monitor=faust_transport.QuietMonitor(),
    )
    app.transport = faust_transport.Transport(app.conf.broker_consumer, app)
    return app


def build_ingest_worker(
    settings: IngestSettings,
    *,
    graph: Graph | None = None,
    outbox: Outbox | None = None,
    driver: neo4j.Driver | None = None,
) -> IngestWorker:
    """Nothing connects here; Faust connects when the worker starts, the driver on first write."""
    app = build_app(settings)
    if graph is None:
        driver = driver or open_driver(settings.neo4j)
        graph = GraphWriter(
            driver,
            settings.neo4j.database,
            transaction_timeout=settings.transaction_timeout,
            proactive=settings.proactive,
            tombstones=Tombstones(settings.erasure_salt),
        )
    if outbox is None:

        def producer() -> faust_transport.Producer:
            # build_app's transport makes it; looked up on use, as Faust creates it on start.
            made = app.producer
            if not isinstance(made, faust_transport.Producer):
                raise TypeError(f"the worker's Faust producer is a {type(made).__name__}")
            return made

        outbox = KafkaOutbox(
            producer,
            dead_letter_topic=settings.kafka.dead_letter_topic,
            customer_updates_topic=settings.kafka.customer_updates_topic,
            consumer_group=settings.group,
        )
    service = IngestService(
        graph,
        outbox,
        consumer_group=settings.group,
        database=settings.neo4j.database,
        retry_initial=settings.retry_initial,
        retry_max=settings.retry_max,
    )
    progress = Progress()
    worker = IngestWorker(app, service, settings, progress, driver)

    topic = app.topic(
        settings.kafka.interactions_topic,
        schema=faust_transport.RawRecords(key_type=bytes, value_type=bytes, allow_empty=True),
        allow_empty=True,
    )

    async def ingest(stream: Any) -> None:
        # noack_take: Faust's take() acks a batch when the loop moves on, even if handling
        # failed; here a batch is acked only after the graph commit and the outbox sends.
        # Batches are decoded here and written, in order, by one writer task, so the next batch
        # is read and decoded while the graph commits the previous one.
        pending: asyncio.Queue[tuple[list[Any], PreparedBatch]] = asyncio.Queue(maxsize=1)
        writer = asyncio.ensure_future(write_batches(stream, pending))
        try:
            async for events in stream.noack_take(settings.batch_size, within=settings.linger):
                prepared = service.prepare([_record(e) for e in events])
                await pending.put((list(events), prepared))
                if writer.done():
                    break
        finally:
            if not writer.done():
                # Let the batches in hand finish (Faust waits for their acks on shutdown).
                await pending.join()
                writer.cancel()

    async def write_batches(stream: Any, pending: asyncio.Queue[tuple[list[Any], PreparedBatch]]) -> None:
        while True:
            events, prepared = await pending.get()
            try:
                outcome = await service.commit(prepared)
            except Exception as exc:
                _die(exc)
                raise
            last: dict[int, int] = {}
            for event in events:
                await stream.ack(event)
                message = event.message
                if message.offset > last.get(message.partition, -1):
                    last[message.partition] = message.offset
            for partition, offset in last.items():
                progress.processed[partition] = max(offset, progress.processed.get(partition, -1))
            progress.batches += 1
            progress.stored += outcome.stored
            progress.duplicates += outcome.duplicates
            progress.dead_lettered += outcome.dead_lettered
            pending.task_done()

    app.agent(topic, name="rapport-profile-ingest")(ingest)

    def _health() -> tuple[dict[str, Any], int]:
        body = {
            "status": "ok" if service.graph_available else "degraded",
            "graph_available": service.graph_available,
            "last_error": service.last_error,
            "processed_offsets": {str(p): o for p, o in sorted(progress.processed.items())},
            "batches": progress.batches,
            "stored": progress.stored,
            "duplicates": progress.duplicates,
            "dead_lettered": progress.dead_lettered,
        }
        return body, 200 if service.graph_available else 503

    async def live(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    async def ready(web: Any, request: Any) -> Any:
        body, status = _health()
        return web.json(body, status=status)

    app.page("/live")(live)
    app.page("/health")(ready)
    app.page("/ready")(ready)

    @app.timer(interval=5.0)
    async def report_lag() -> None:
        consumer = app.consumer
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            done = progress.processed.get(tp.partition, -1) + 1
            metrics.consumer_lag().set(
                max(0, highwater - done),
                {"messaging.destination.name": tp.topic, "messaging.destination.partition.id": str(tp.partition)},
            )

    return worker
