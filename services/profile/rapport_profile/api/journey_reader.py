"""The journey report's Cypher: every interaction of a range, with its customer, in one read.

The read is columnar: three lists in a single record per time slice (customers, event times, digests). Half a
million rows cost the driver seconds to decode one by one, the same values as three lists a
fraction of that; and each interaction costs one short property read (its digest) instead of a
dozen. Interactions stored before digests existed (or with an older digest format) come back
in a second, row-by-row read and are digested here.
"""

from __future__ import annotations

import contextvars
import itertools
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import neo4j
import neo4j.exceptions
from opentelemetry import trace

from rapport.errors import Unavailable
from rapport.journeys import digest
from rapport.journeys.report import ReportQuery
from rapport.journeys.scan import RangeScan
from rapport_profile.api.graph_reader import DeadlineExceeded

log = logging.getLogger(__name__)
tracer = trace.get_tracer("rapport_profile.api")

NANOS = 1_000_000_000
_MS = 1_000_000
_MIN_TIMEOUT = 0.01
_RANGE = """
MATCH (i:Interaction)
WHERE i.at >= datetime({epochSeconds: $since_s, nanosecond: $since_n})
  AND i.at < datetime({epochSeconds: $until_s, nanosecond: $until_n})
"""
# Customers by internal node id: the report only groups by customer, and the id costs no read.
_DIGESTS = (
    _RANGE
    + """MATCH (c:Customer)-[:HAD]->(i)
RETURN collect(id(c)) AS customers, collect(i.at.epochMillis) AS ats, collect(coalesce(i.digest, '')) AS digests
"""
)
_FIELDS = ("channel", "kind", "direction", "topic", "intent", "outcome", "answer", "article_id", "article_title",
           "flow_id", "step", "contact_id")  # fmt: skip
_UNDIGESTED = (
    _RANGE
    + f"""  AND (i.digest IS NULL OR NOT i.digest STARTS WITH '{digest.VERSION}')
MATCH (c:Customer)-[:HAD]->(i)
RETURN id(c) AS customer, i.at.epochMillis AS at, i.facts AS facts,
       [{", ".join("i." + f for f in _FIELDS)}] AS fields
"""
)


class JourneyReader(Protocol):
    def scan(self, query: ReportQuery, timeout: float) -> RangeScan:
        """Every interaction in [query.read_since, query.until); `timeout` seconds at most."""
        ...


def _facts(raw: Any) -> list[tuple[str, str]]:
    if not raw:
        return []
    try:
        parsed = json.loads(raw)
    except (TypeError, ValueError):
        return []
    if not isinstance(parsed, list):
        return []
    return [(str(f.get("key", "")), str(f.get("value", ""))) for f in parsed if isinstance(f, dict)]


@dataclass
class _Slice:
    customers: list[int]
    ats: list[int]
    digests: list[str]
    undigested: int = 0


class GraphJourneyReader:
    """Reads a range in `slices` consecutive time slices at once (one session each): Neo4j runs
    each query on one thread, so slices keep its cores busy while the driver decodes."""

    def __init__(self, driver: neo4j.Driver, database: str = "neo4j", *, slices: int = 4) -> None:
        self._driver = driver
        self._database = database
        self._slices = max(1, slices)

    def scan(self, query: ReportQuery, timeout: float) -> RangeScan:
        deadline = time.monotonic() + timeout
        bounds = [query.read_since + (query.until - query.read_since) * k // self._slices for k in range(self._slices)]
        bounds.append(query.until)
        with tracer.start_as_current_span("neo4j.read journey_range") as span:
            span.set_attribute("db.system", "neo4j")
            with ThreadPoolExecutor(max_workers=self._slices, thread_name_prefix="journey-read") as pool:
                futures = [
                    pool.submit(contextvars.copy_context().run, self._read, lo, hi, deadline, timeout)
                    for lo, hi in itertools.pairwise(bounds)
                ]
                parts = [f.result() for f in futures]
            scan = RangeScan()
            for part in parts:
                scan.extend(part.customers, part.ats, part.digests)
            undigested = sum(p.undigested for p in parts)
            span.set_attribute("rapport.interactions", len(scan.digests))
        if undigested:
            log.info("journey report read interactions without a digest", extra={"count": undigested})
        return scan

    def _read(self, since: int, until: int, deadline: float, timeout: float) -> _Slice:
        params: dict[str, int] = {}
        params["since_s"], params["since_n"] = divmod(since, NANOS)
        params["until_s"], params["until_n"] = divmod(until, NANOS)
        try:
            with self._driver.session(
                database=self._database,
                default_access_mode=neo4j.READ_ACCESS,
                connection_acquisition_timeout=max(deadline - time.monotonic(), _MIN_TIMEOUT),
                notifications_min_severity=neo4j.NotificationMinimumSeverity.OFF,
            ) as session:
                record = self._run(session, _DIGESTS, params, deadline).single(strict=True)
                customers, ats, digests = record["customers"], record["ats"], record["digests"]
                version = digest.VERSION
                current = [d[:1] == version for d in digests]
                if not all(current):
                    customers, ats, digests = (
                        [x for x, ok in zip(column, current, strict=True) if ok] for column in (customers, ats, digests)
                    )
                part = _Slice(customers, [at * _MS for at in ats], digests)
                if len(digests) < len(current):
                    for row in self._run(session, _UNDIGESTED, params, deadline):
                        properties = dict(zip(_FIELDS, row["fields"], strict=True))
                        part.customers.append(row["customer"])
                        part.ats.append(int(row["at"]) * _MS)
                        part.digests.append(digest.encode(properties, _facts(row["facts"])))
                        part.undigested += 1
                return part
        except neo4j.exceptions.ClientError as exc:
            if exc.code and "TransactionTimedOut" in exc.code:
                raise DeadlineExceeded(f"the journey report took longer than the call's {timeout:.2f}s") from exc
            raise
        except (neo4j.exceptions.DriverError, neo4j.exceptions.Neo4jError) as exc:
            trace.get_current_span().record_exception(exc)
            raise Unavailable(f"customer graph unavailable: {type(exc).__name__}") from exc

    @staticmethod
    def _run(session: neo4j.Session, text: str, params: dict[str, int], deadline: float) -> neo4j.Result:
        left = max(deadline - time.monotonic(), _MIN_TIMEOUT)
        return session.run(neo4j.Query(text, timeout=left), params)  # type: ignore[arg-type]
