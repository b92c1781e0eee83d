"""Every metric Rapport records, declared once: name, instrument kind, unit, meaning.

Services never create instruments themselves; they call the accessor for the metric they record:

    events_ingested().add(len(batch), {"rapport.channel": "chat"})
    with record_duration(graph_write_duration(), {"db.operation.name": "merge_batch"}):
        write(batch)

Names follow the OpenTelemetry naming guidance (dotted namespace, no unit in the name, UCUM units,
seconds for durations, `{thing}` annotations for counts). Instruments come from the global meter
provider installed by `rapport.telemetry.configure_telemetry`; before it is installed they are
no-op proxies that start recording once it is. Tests pass their own `meter_provider`.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeAlias

from opentelemetry import metrics
from opentelemetry.metrics import Counter, Histogram, MeterProvider, UpDownCounter

# The synchronous gauge is exported under a private name while its API settles.
from opentelemetry.metrics import _Gauge as Gauge

METER_NAME = "rapport"

Attributes: TypeAlias = Mapping[str, str | bool | int | float]
Instrument: TypeAlias = Counter | Histogram | Gauge | UpDownCounter


class Kind(enum.Enum):
    COUNTER = "counter"
    HISTOGRAM = "histogram"
    GAUGE = "gauge"
    UP_DOWN_COUNTER = "up_down_counter"


# Seconds: from a 1 ms graph lookup to a 10 s timeout.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000)
SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: Kind
    unit: str
    description: str
    # Attribute keys recorders may set; anything else is a cardinality risk.
    attributes: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None


EVENTS_INGESTED = MetricSpec(
    "rapport.events.ingested",
    Kind.COUNTER,
    "{event}",
    "Interaction events written to the customer graph (after the transaction commits).",
    ("rapport.channel",),
)
EVENTS_DEAD_LETTERED = MetricSpec(
    "rapport.events.dead_lettered",
    Kind.COUNTER,
    "{event}",
    "Records sent to the dead-letter topic instead of the graph.",
    ("rapport.dlq.reason",),
)
EVENTS_ERASED = MetricSpec(
    "rapport.events.erased",
    Kind.COUNTER,
    "{event}",
    "Events the profile worker dropped because they belong to an erased customer (tombstoned).",
)
INTERACTIONS_PURGED = MetricSpec(
    "rapport.retention.purged",
    Kind.COUNTER,
    "{interaction}",
    "Interactions deleted by the retention purge for being older than the configured age.",
)
INGEST_BATCH_SIZE = MetricSpec(
    "rapport.ingest.batch.size",
    Kind.HISTOGRAM,
    "{event}",
    "Events written to the graph in one transaction.",
    buckets=BATCH_BUCKETS,
)
GRAPH_WRITE_DURATION = MetricSpec(
    "rapport.graph.write.duration",
    Kind.HISTOGRAM,
    "s",
    "Duration of one graph write transaction, retries included.",
    ("db.operation.name", "error.type"),
    LATENCY_BUCKETS,
)
CONSUMER_LAG = MetricSpec(
    "rapport.consumer.lag",
    Kind.GAUGE,
    "{message}",
    "Records on a partition not yet processed by the profile worker (high watermark minus position).",
    ("messaging.destination.name", "messaging.destination.partition.id"),
)
ROUTE_DURATION = MetricSpec(
    "rapport.route.duration",
    Kind.HISTOGRAM,
    "s",
    "Time to route one contact: filter, score and reserve an agent, or queue the contact.",
    ("rapport.channel", "rapport.route.outcome"),
    LATENCY_BUCKETS,
)
MATCH_SCORE = MetricSpec(
    "rapport.route.match_score",
    Kind.HISTOGRAM,
    "1",
    "Total score of the agent chosen for a contact, normalised to [0, 1].",
    ("rapport.channel",),
    SCORE_BUCKETS,
)
QUEUE_DEPTH = MetricSpec(
    "rapport.queue.depth",
    Kind.GAUGE,
    "{contact}",
    "Contacts waiting for an eligible agent.",
    ("rapport.channel",),
)
TIMELINE_DURATION = MetricSpec(
    "rapport.timeline.duration",
    Kind.HISTOGRAM,
    "s",
    "Time to answer one timeline request (history page or handoff summary).",
    ("rpc.method",),
    LATENCY_BUCKETS,
)

ALL: tuple[MetricSpec, ...] = (
    EVENTS_INGESTED,
    EVENTS_DEAD_LETTERED,
    EVENTS_ERASED,
    INTERACTIONS_PURGED,
    INGEST_BATCH_SIZE,
    GRAPH_WRITE_DURATION,
    CONSUMER_LAG,
    ROUTE_DURATION,
    MATCH_SCORE,
    QUEUE_DEPTH,
    TIMELINE_DURATION,
)


@lru_cache(maxsize=64)
def _instrument(spec: MetricSpec, provider: MeterProvider | None) -> Instrument:
    meter = (provider or metrics.get_meter_provider()).get_meter(METER_NAME)
    if spec.kind is Kind.COUNTER:
        return meter.create_counter(spec.name, spec.unit, spec.description)
    if spec.kind is Kind.UP_DOWN_COUNTER:
        return meter.create_up_down_counter(spec.name, spec.unit, spec.description)
    if spec.kind is Kind.GAUGE:
        return meter.create_gauge(spec.name, spec.unit, spec.description)
    return meter.create_histogram(
        spec.name,
        spec.unit,
        spec.description,
        explicit_bucket_boundaries_advisory=spec.buckets,
    )


def instrument(spec: MetricSpec, meter_provider: MeterProvider | None = None) -> Any:
    """The instrument for `spec` (created once per provider); prefer the typed accessors below."""
    return _instrument(spec, meter_provider)


def events_ingested(meter_provider: MeterProvider | None = None) -> Counter:
    return instrument(EVENTS_INGESTED, meter_provider)  # type: ignore[no-any-return]


def events_dead_lettered(meter_provider: MeterProvider | None = None) -> Counter:
    return instrument(EVENTS_DEAD_LETTERED, meter_provider)  # type: ignore[no-any-return]


def events_erased(meter_provider: MeterProvider | None = None) -> Counter:
    return instrument(EVENTS_ERASED, meter_provider)  # type: ignore[no-any-return]


def interactions_purged(meter_provider: MeterProvider | None = None) -> Counter:
    return instrument(INTERACTIONS_PURGED, meter_provider)  # type: ignore[no-any-return]


def ingest_batch_size(meter_provider: MeterProvider | None = None) -> Histogram:
    return instrument(INGEST_BATCH_SIZE, meter_provider)  # type: ignore[no-any-return]


def graph_write_duration(meter_provider: MeterProvider | None = None) -> Histogram:
    return instrument(GRAPH_WRITE_DURATION, meter_provider)  # type: ignore[no-any-return]


def consumer_lag(meter_provider: MeterProvider | None = None) -> Gauge:
    return instrument(CONSUMER_LAG, meter_provider)  # type: ignore[no-any-return]


def route_duration(meter_provider: MeterProvider | None = None) -> Histogram:
    return instrument(ROUTE_DURATION, meter_provider)  # type: ignore[no-any-return]


def match_score(meter_provider: MeterProvider | None = None) -> Histogram:
    return instrument(MATCH_SCORE, meter_provider)  # type: ignore[no-any-return]


def queue_depth(meter_provider: MeterProvider | None = None) -> Gauge:
    return instrument(QUEUE_DEPTH, meter_provider)  # type: ignore[no-any-return]


def timeline_duration(meter_provider: MeterProvider | None = None) -> Histogram:
    return instrument(TIMELINE_DURATION, meter_provider)  # type: ignore[no-any-return]


@contextmanager
def record_duration(histogram: Histogram, attributes: Attributes | None = None) -> Iterator[dict[str, Any]]:
    """Records the block's wall time in seconds; on an exception, adds `error.type` and re-raises.

    The yielded dict lets the block add attributes known only at its end (e.g. the outcome).
    """
    extra: dict[str, Any] = {}
    start = time.perf_counter()
    try:
        yield extra
    except BaseException as exc:
        extra.setdefault("error.type", type(exc).__qualname__)
        raise
    finally:
        histogram.record(time.perf_counter() - start, {**(attributes or {}), **extra})
