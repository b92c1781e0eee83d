"""All of the ProfileService's Cypher: reads of the customer graph, bounded by the caller's deadline.

Every query's transaction timeout, the wait for a connection and the retries all fit in the
time the gRPC call has left, so an unreachable Neo4j becomes UNAVAILABLE before the client's
deadline passes. Reads are auto-commit queries: one network round trip each. GetCustomer is one
round trip (a few more when the id asked for was merged away): every list of the view is
aggregated in Cypher, in scoped subqueries over the customer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

import grpc
import neo4j
import neo4j.exceptions
import neo4j.time
from opentelemetry import trace

from rapport.errors import NotFound, RapportError, Unavailable
from rapport_profile.api.candidate_pages import CandidateQuery, CandidateRow
from rapport_profile.api.customer_view import (
    NANOS,
    OPEN_CASE_STATUSES,
    CustomerLookup,
    IdentityRow,
    ViewLimits,
    ViewRow,
)

log = logging.getLogger(__name__)
tracer = trace.get_tracer("rapport_profile.api")

T = TypeVar("T")

# A merged-away customer points at its survivor; chains longer than this mean a broken graph.
MAX_MERGE_HOPS = 16
# The first retry after a transient error waits this long, doubling, while the budget allows.
_FIRST_RETRY_DELAY = 0.05
_MIN_TIMEOUT = 0.01


class DeadlineExceeded(RapportError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


@dataclass(frozen=True)
class FoundCustomer:
    row: ViewRow
    # The merged-away id the lookup reached first, when it did not land on a live customer.
    merged_customer_id: str | None


@dataclass(frozen=True)
class FoundIdentity:
    customer_id: str
    identity: IdentityRow


class ProfileReader(Protocol):
    """What the servicer needs from the graph; `timeout` is the seconds the read may take."""

    def customer_view(self, lookup: CustomerLookup, limits: ViewLimits, timeout: float) -> FoundCustomer | None: ...

    def resolve_identity(self, key: str, timeout: float) -> FoundIdentity | None: ...

    def merge_candidates(self, query: CandidateQuery, timeout: float) -> list[CandidateRow]:
        """Up to page_size + 1 rows after the cursor; NotFound when the filter customer is unknown."""
        ...


_BY_ID = "MATCH (c:Customer {id: $id})"
_BY_IDENTITY = "MATCH (:Identity {key: $key})-[:IDENTIFIES]->(c:Customer)"

# Each CALL ends in an aggregation, so it yields exactly one row even when it matches nothing.
# Merge history: the worker points every customer ever absorbed into `c` (directly or through
# a chain) straight at `c`, so their Merge records are exactly c's history; a customer never
# merged costs one index lookup on Customer.merged_into and no Merge reads at all.
_VIEW = """
WITH c LIMIT 1
CALL (c) {
  MATCH (i:Identity)-[:IDENTIFIES]->(c)
  RETURN collect(i {.key, .kind, .value, .verified, .verification_method, .first_seen_at}) AS identities
}
CALL (c) {
  MATCH (c)-[:OWNS]->(d:Device)
  WITH d ORDER BY d.id
  RETURN collect(d {.id, .model, .firmware}) AS devices
}
CALL (c) {
  MATCH (c)-[:HAS_CASE]->(k:Case) WHERE k.status IN $open_statuses
  WITH k ORDER BY coalesce(k.updated_at, k.opened_at) DESC, k.id
  RETURN collect(k {.id, .status, .title, .owner_agent_id, .proactive, .opened_at, .updated_at}) AS open_cases
}
CALL (c) {
  MATCH (c)-[:HAD]->(x:Interaction)
  WITH x.channel AS channel, count(*) AS n, min(x.at) AS first_at, max(x.at) AS last_at
  ORDER BY n DESC, channel
  RETURN collect({channel: channel, count: n, first_at: first_at, last_at: last_at}) AS channels
}
CALL (c) {
  MATCH (c)-[:HAD]->(x:Interaction) WHERE x.agent_id IS NOT NULL
  WITH x ORDER BY x.at DESC, x.event_id DESC
  WITH x.agent_id AS agent_id,
       collect(x {.at, .channel, .outcome}) AS handled,
       count(*) AS n,
       count(CASE WHEN x.outcome = 'resolved' THEN 1 END) AS resolved,
       avg(x.csat) AS average_csat
  WITH agent_id, n, resolved, average_csat, handled[0] AS last,
       [h IN handled WHERE h.outcome IS NOT NULL][0] AS decided
  ORDER BY last.at DESC, agent_id
  LIMIT $max_agents
  RETURN collect({agent_id: agent_id, count: n, resolved: resolved, average_csat: average_csat,
                  last_at: last.at, last_channel: last.channel,
                  last_outcome: decided.outcome, last_outcome_at: decided.at}) AS agents
}
CALL (c) {
  MATCH (c)-[:HAD]->(x:Interaction) WHERE x.topic IS NOT NULL
  WITH x.topic AS topic, count(*) AS n, max(x.at) AS last_at
  ORDER BY n DESC, last_at DESC, topic
  LIMIT $max_topics
  RETURN collect({topic: topic, count: n, last_at: last_at}) AS topics
}
CALL (c) {
  MATCH (c)-[:HAD]->(x:Interaction) WHERE x.sentiment IS NOT NULL
  WITH x ORDER BY x.at DESC, x.event_id DESC
  LIMIT $max_sentiments
  RETURN collect(x.sentiment) AS sentiments
}
CALL (c) {
  WITH c WHERE c.merged_into IS NULL
  MATCH (absorbed:Customer {merged_into: c.id})
  MATCH (m:Merge {absorbed_id: absorbed.id}) WHERE m.undone_at IS NULL
  WITH m ORDER BY m.at DESC, m.id
  LIMIT $max_merges
  RETURN collect(m {.id, .at, .event_id, .survivor_id, .absorbed_id, .linking_keys, .absorbed_identity_keys,
                    absorbed_event_count: size(coalesce(m.absorbed_event_ids, []))}) AS merges
}
CALL (c) {
  MATCH (c)-[:HAD]->(x:Interaction)
  WHERE x.at >= datetime({epochSeconds: $effort_since_s, nanosecond: $effort_since_n})
    AND x.at <= datetime({epochSeconds: $effort_until_s, nanosecond: $effort_until_n})
  WITH x ORDER BY x.at DESC, x.event_id DESC
  LIMIT $max_touchpoints
  RETURN collect(x {.channel, .kind, .direction, .topic, .intent, .outcome, .answer, .article_id, .flow_id,
                    .step, .contact_id, .facts, at_s: x.at.epochSeconds, at_n: x.at.nanosecond}) AS touchpoints
}
RETURN c.id AS id, c.merged_into AS merged_into,
       c {.language, .tier, .segment, .display_name, .created_at} AS attributes,
       identities, devices, open_cases, channels, agents, topics, sentiments, merges, touchpoints
"""

_SURVIVOR_OF = "MATCH (c:Customer {id: $id}) RETURN c.merged_into AS merged_into"

_IDENTITY = """
MATCH (i:Identity {key: $key})-[:IDENTIFIES]->(c:Customer)
RETURN c.id AS customer_id, c.merged_into AS merged_into,
       i {.key, .kind, .value, .verified, .verification_method, .first_seen_at} AS identity
LIMIT 1
"""

_CANDIDATE_FIELDS = """
WITH a, b, collect(r.keys) AS keys, max(r.at) AS linked_at
ORDER BY a.id, b.id
LIMIT $limit
RETURN a.id AS customer_id, b.id AS other_id, a.display_name AS display_name,
       b.display_name AS other_display_name, keys, linked_at
"""

# The worker links a pair once, lower id first; ordering each link's ends keeps older links too.
# Starting from the links (a relationship type scan), not from every customer: the graph holds
# far more customers than candidates.
_ALL_CANDIDATES = (
    """
MATCH (x:Customer)-[r:MAYBE_SAME]->(y:Customer) WHERE x <> y
WITH CASE WHEN x.id < y.id THEN x ELSE y END AS a, CASE WHEN x.id < y.id THEN y ELSE x END AS b, r
WHERE a.merged_into IS NULL AND b.merged_into IS NULL
  AND (a.id > $after_customer OR (a.id = $after_customer AND b.id > $after_other))
"""
    + _CANDIDATE_FIELDS
)

_CANDIDATES_OF = (
    """
MATCH (a:Customer {id: $id})-[r:MAYBE_SAME]-(b:Customer)
WHERE b.merged_into IS NULL AND b.id <> a.id AND b.id > $after_other
"""
    + _CANDIDATE_FIELDS
)


def _native(value: Any) -> Any:
    """Neo4j temporal values to Python datetimes, through lists and maps."""
    if isinstance(value, neo4j.time.DateTime | neo4j.time.Date):
        return value.to_native()
    if isinstance(value, list):
        return [_native(v) for v in value]
    if isinstance(value, dict):
        return {k: _native(v) for k, v in value.items()}
    return value


class _Reads:
    """Auto-commit reads in one session (one round trip each), each bounded by what is left."""

    def __init__(self, session: neo4j.Session, deadline: float) -> None:
        self._session = session
        self._deadline = deadline

    def rows(self, query: str, **params: Any) -> list[dict[str, Any]]:
        left = max(self._deadline - time.monotonic(), _MIN_TIMEOUT)
        result = self._session.run(neo4j.Query(query, timeout=left), params)  # type: ignore[arg-type]
        return [cast(dict[str, Any], _native(record.data())) for record in result]

    def single(self, query: str, **params: Any) -> dict[str, Any] | None:
        rows = self.rows(query, **params)
        return rows[0] if rows else None


def _survivor(tx: _Reads, merged_into: str, start: str) -> str | None:
    """Follows `merged_into` from `start` to the live customer; None when the chain is dangling."""
    seen = [start]
    current = merged_into
    while True:
        if current in seen or len(seen) > MAX_MERGE_HOPS:
            raise RapportError(f"merge chain from {start} does not end: {seen}")
        seen.append(current)
        row = tx.single(_SURVIVOR_OF, id=current)
        if row is None:
            log.warning("merge chain points at a missing customer", extra={"customer_id": start, "chain": seen})
            return None
        if row["merged_into"] is None:
            return current
        current = row["merged_into"]


class GraphProfileReader:
    def __init__(self, driver: neo4j.Driver, database: str = "neo4j") -> None:
        self._driver = driver
        self._database = database

    def customer_view(self, lookup: CustomerLookup, limits: ViewLimits, timeout: float) -> FoundCustomer | None:
        params = {
            "open_statuses": list(OPEN_CASE_STATUSES),
            "max_agents": limits.agents,
            "max_topics": limits.topics,
            "max_sentiments": limits.sentiments,
            "max_merges": limits.merges,
            "max_touchpoints": limits.touchpoints,
        }
        params["effort_since_s"], params["effort_since_n"] = divmod(limits.effort_end - limits.effort_window, NANOS)
        params["effort_until_s"], params["effort_until_n"] = divmod(limits.effort_end, NANOS)

        def work(tx: _Reads) -> FoundCustomer | None:
            if lookup.customer_id is not None:
                row = tx.single(_BY_ID + _VIEW, id=lookup.customer_id, **params)
            else:
                row = tx.single(_BY_IDENTITY + _VIEW, key=lookup.identity_key, **params)
            if row is None:
                return None
            if row["merged_into"] is None:
                return FoundCustomer(cast(ViewRow, row), None)
            merged_id = row["id"]
            survivor = _survivor(tx, row["merged_into"], merged_id)
            if survivor is None:
                return None
            # A merged-away customer keeps no relationships: the view is read again at the survivor.
            row = tx.single(_BY_ID + _VIEW, id=survivor, **params)
            return None if row is None else FoundCustomer(cast(ViewRow, row), merged_id)

        return self._read("customer_view", work, timeout)

    def resolve_identity(self, key: str, timeout: float) -> FoundIdentity | None:
        def work(tx: _Reads) -> FoundIdentity | None:
            row = tx.single(_IDENTITY, key=key)
            if row is None:
                return None
            customer = row["customer_id"]
            if row["merged_into"] is not None:
                customer = _survivor(tx, row["merged_into"], customer)
                if customer is None:
                    return None
            return FoundIdentity(customer, cast(IdentityRow, row["identity"]))

        return self._read("resolve_identity", work, timeout)

    def merge_candidates(self, query: CandidateQuery, timeout: float) -> list[CandidateRow]:
        limit = query.page_size + 1

        def work(tx: _Reads) -> list[CandidateRow]:
            if query.customer_id is None:
                rows = tx.rows(
                    _ALL_CANDIDATES,
                    after_customer=query.after.customer_id,
                    after_other=query.after.other_id,
                    limit=limit,
                )
                return cast(list[CandidateRow], rows)
            found = tx.single(_SURVIVOR_OF, id=query.customer_id)
            if found is None:
                raise NotFound(f"customer {query.customer_id} not found")
            live: str | None = query.customer_id
            if found["merged_into"] is not None:
                live = _survivor(tx, found["merged_into"], query.customer_id)
            if live is None:
                raise NotFound(f"customer {query.customer_id} not found")
            rows = tx.rows(_CANDIDATES_OF, id=live, after_other=query.after.other_id, limit=limit)
            return cast(list[CandidateRow], rows)

        return self._read("merge_candidates", work, timeout)

    def _read(self, name: str, work: Callable[[_Reads], T], timeout: float) -> T:
        """Runs `work` within `timeout` seconds, retried on transient errors while time allows."""
        deadline = time.monotonic() + timeout
        delay = _FIRST_RETRY_DELAY
        with tracer.start_as_current_span(f"neo4j.read {name}") as span:
            span.set_attribute("db.system", "neo4j")
            span.set_attribute("db.name", self._database)
            while True:
                left = max(deadline - time.monotonic(), _MIN_TIMEOUT)
                try:
                    with self._driver.session(
                        database=self._database,
                        default_access_mode=neo4j.READ_ACCESS,
                        connection_acquisition_timeout=left,
                        # The view names optional properties; "property key does not exist" is no news.
                        notifications_min_severity=neo4j.NotificationMinimumSeverity.OFF,
                    ) as session:
                        return work(_Reads(session, deadline))
                except neo4j.exceptions.ClientError as exc:
                    if exc.code and "TransactionTimedOut" in exc.code:
                        raise DeadlineExceeded(f"{name} took longer than the call's {timeout:.2f}s") from exc
                    raise
                except (neo4j.exceptions.DriverError, neo4j.exceptions.Neo4jError) as exc:
                    unreachable = exc.is_retryable() or isinstance(
                        exc, neo4j.exceptions.ConnectionAcquisitionTimeoutError
                    )
                    if not unreachable:
                        raise
                    if deadline - time.monotonic() < delay * 2:
                        span.record_exception(exc)
                        raise Unavailable(f"customer graph unavailable: {type(exc).__name__}") from exc
                    log.info("graph read failed, retrying", extra={"read": name, "error": type(exc).__name__})
                    time.sleep(delay)
                    delay *= 2
