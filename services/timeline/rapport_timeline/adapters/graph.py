"""Every Cypher query of the timeline service: read-only, each bounded by the caller's deadline.

The graph model is the one documented in `rapport.graph.schema`. Times leave Neo4j as
(epochSeconds, nanosecond) pairs and become integer nanoseconds here, so keyset cursors
compare exactly what the database compares.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import neo4j
import neo4j.exceptions

from rapport.errors import FailedPrecondition, NotFound, RapportError, Unavailable
from rapport_timeline.adapters.resolution import Outcome, ResolutionRounds
from rapport_timeline.domain.model import (
    NANOS,
    AgentAffinity,
    Case,
    Customer,
    CustomerKey,
    CustomerSnapshot,
    Device,
    Fact,
    Identity,
    Interaction,
    Resolved,
)
from rapport_timeline.domain.paging import InteractionFilter, Order, PageQuery

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_MERGE_HOPS = 16
# Time kept back from the caller's deadline so an UNAVAILABLE still reaches it in time.
DEADLINE_MARGIN = 0.05
_RETRYABLE = (
    neo4j.exceptions.ServiceUnavailable,
    neo4j.exceptions.SessionExpired,
    neo4j.exceptions.TransientError,
    neo4j.exceptions.ConnectionAcquisitionTimeoutError,
)

_INTERACTION = """i {
    .event_id, .channel, .kind, .direction, .topic, .intent, .intent_confidence, .sentiment,
    .outcome, .csat, .summary, .agent_id, .contact_id, .case_id, .device_id, .article_id,
    .article_title, .answer, .flow_id, .step, .exit_reason, .fault_code, .severity, .readings,
    .handle_seconds, .source, .facts, .attributes, .identity_keys,
    at_s: i.at.epochSeconds, at_n: i.at.nanosecond,
    in_s: i.ingested_at.epochSeconds, in_n: i.ingested_at.nanosecond
}"""
_NO_FILTER = InteractionFilter()
# Every key of a resolution round, by id and by identity key, in one query.
_RESOLVE = """
CALL () {
    UNWIND $ids AS key
    MATCH (c:Customer {id: key})
    RETURN 'id' AS by, key, c
    UNION ALL
    UNWIND $identities AS key
    MATCH (:Identity {key: key})-[:IDENTIFIES]->(c:Customer)
    RETURN 'identity' AS by, key, c
}
RETURN by, key, c.id AS id, c.merged_into AS merged_into, COUNT { (c)-[:HAD]->() } AS degree
"""
# One merge hop for every chain still being followed.
_HOP = (
    "UNWIND $ids AS key MATCH (c:Customer {id: key}) "
    "RETURN key, c.id AS id, c.merged_into AS merged_into, COUNT { (c)-[:HAD]->() } AS degree"
)
# Storage order for watches: when stored (falling back to event time), then event time, id.
_STORED = "coalesce(i.ingested_at, i.at)"


def _ns(seconds: int | None, nanos: int | None) -> int | None:
    if seconds is None:
        return None
    return int(seconds) * NANOS + int(nanos or 0)


def _json(raw: Any, fallback: Any) -> Any:
    if raw is None:
        return fallback
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        log.warning("unreadable JSON property on an interaction")
        return fallback


def interaction_from(row: dict[str, Any], customer_id: str) -> Interaction:
    facts_raw = _json(row.get("facts"), [])
    facts = tuple(
        Fact(str(f.get("key", "")), str(f.get("value", "")), bool(f.get("sensitive", False)))
        for f in facts_raw
        if isinstance(f, dict)
    )
    attributes = _json(row.get("attributes"), {})
    readings = _json(row.get("readings"), {})
    at = _ns(row["at_s"], row["at_n"])
    return Interaction(
        event_id=row["event_id"],
        customer_id=customer_id,
        at=at if at is not None else 0,
        channel=row.get("channel"),
        kind=row.get("kind"),
        direction=row.get("direction"),
        topic=row.get("topic"),
        intent=row.get("intent"),
        intent_confidence=row.get("intent_confidence"),
        sentiment=row.get("sentiment"),
        outcome=row.get("outcome"),
        csat=row.get("csat"),
        summary=row.get("summary"),
        agent_id=row.get("agent_id"),
        contact_id=row.get("contact_id"),
        case_id=row.get("case_id"),
        device_id=row.get("device_id"),
        article_id=row.get("article_id"),
        article_title=row.get("article_title"),
        answer=row.get("answer"),
        flow_id=row.get("flow_id"),
        step=row.get("step"),
        exit_reason=row.get("exit_reason"),
        fault_code=row.get("fault_code"),
        severity=row.get("severity"),
        readings={str(k): float(v) for k, v in readings.items()} if isinstance(readings, dict) else {},
        handle_seconds=row.get("handle_seconds"),
        source=row.get("source"),
        facts=facts,
        attributes={str(k): str(v) for k, v in attributes.items()} if isinstance(attributes, dict) else {},
        identity_keys=tuple(row.get("identity_keys") or ()),
        ingested_at=_ns(row.get("in_s"), row.get("in_n")),
    )


def _page_cypher(query: PageQuery) -> tuple[str, dict[str, Any]]:
    """The keyset query; every clause is a fixed fragment, every value a parameter."""
    params: dict[str, Any] = {"customer_id": query.customer_id, "limit": query.fetch_limit}
    where: list[str] = []
    f = query.filter
    if f.channels:
        where.append("i.channel IN $channels")
        params["channels"] = sorted(f.channels)
    if f.kinds:
        where.append("i.kind IN $kinds")
        params["kinds"] = sorted(f.kinds)
    if f.topics:
        where.append("i.topic IN $topics")
        params["topics"] = sorted(f.topics)
    if f.agent_id is not None:
        where.append("i.agent_id = $agent_id")
        params["agent_id"] = f.agent_id
    if f.case_id is not None:
        where.append("i.case_id = $case_id")
        params["case_id"] = f.case_id
    if f.since is not None:
        where.append("i.at >= datetime({epochSeconds: $since_s, nanosecond: $since_n})")
        params["since_s"], params["since_n"] = divmod(f.since, NANOS)
    if f.until is not None:
        where.append("i.at < datetime({epochSeconds: $until_s, nanosecond: $until_n})")
        params["until_s"], params["until_n"] = divmod(f.until, NANOS)
    newest_first = query.order is Order.NEWEST_FIRST
    if query.after is not None:
        cmp = "<" if newest_first else ">"
        where.append(f"(i.at {cmp} after OR (i.at = after AND i.event_id {cmp} $after_id))")
        params["after_s"], params["after_n"] = divmod(query.after.at, NANOS)
        params["after_id"] = query.after.event_id
    direction = "DESC" if newest_first else "ASC"
    text = (
        ("WITH datetime({epochSeconds: $after_s, nanosecond: $after_n}) AS after\n" if query.after else "")
        + "MATCH (c:Customer {id: $customer_id})-[:HAD]->(i:Interaction)\n"
        + (f"WHERE {' AND '.join(where)}\n" if where else "")
        + f"WITH i ORDER BY i.at {direction}, i.event_id {direction} LIMIT $limit\n"
        # One record holding the page: the driver then decodes one message, not one per row.
        + f"RETURN collect({_INTERACTION}) AS page"
    )
    return text, params


class _AutoCommit:
    """Looks like a transaction to the query code; runs each query as an auto-commit read with
    the server-side timeout the caller's deadline allows."""

    def __init__(self, session: neo4j.Session, timeout: float) -> None:
        self._session = session
        self._timeout = timeout

    def run(self, text: str, parameters: dict[str, Any] | None = None, **kwargs: Any) -> neo4j.Result:
        return self._session.run(neo4j.Query(text, timeout=self._timeout), parameters, **kwargs)  # type: ignore[arg-type]


class Neo4jTimelineGraph:
    """Reads timelines from Neo4j. Every method takes the seconds it may use at most."""

    def __init__(self, driver: neo4j.Driver, database: str = "neo4j", max_timeout: float = 10.0) -> None:
        self._driver = driver
        self._database = database
        self._max_timeout = max_timeout
        self._rounds = ResolutionRounds(self.resolve_many)

    # -- the one way a query runs -----------------------------------------------------------

    def _read(self, work: Callable[[neo4j.ManagedTransaction], T], timeout: float | None) -> T:
        """Runs `work` within `timeout` seconds; each of its queries is one auto-commit read
        transaction (one network round trip; every read here is a single query, bar merge hops).

        Retries connection and transient failures while time is left, then raises Unavailable;
        the driver's own retry loop is not used because it does not know the caller's deadline.
        """
        budget = self._max_timeout if timeout is None else min(timeout, self._max_timeout)
        deadline = time.monotonic() + budget - DEADLINE_MARGIN
        delay = 0.05
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Unavailable("customer graph did not answer within the call's deadline")
            try:
                with self._driver.session(
                    database=self._database,
                    default_access_mode=neo4j.READ_ACCESS,
                    connection_acquisition_timeout=remaining,
                    # Optional properties are often absent; skip the "unknown property" notices.
                    notifications_min_severity=neo4j.NotificationMinimumSeverity.OFF,
                ) as session:
                    return work(_AutoCommit(session, max(remaining, 0.01)))  # type: ignore[arg-type]
            except _RETRYABLE as exc:
                remaining = deadline - time.monotonic()
                if remaining <= delay:
                    raise Unavailable(f"customer graph unavailable: {type(exc).__name__}") from exc
                log.info("retrying graph read", extra={"error": type(exc).__name__})
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
            except neo4j.exceptions.ClientError as exc:
                if "TransactionTimedOut" in (exc.code or ""):
                    raise Unavailable("customer graph did not answer within the call's deadline") from exc
                raise

    # -- customers --------------------------------------------------------------------------

    @staticmethod
    def _follow_merges(
        tx: neo4j.ManagedTransaction, found: Iterable[tuple[str, str | None, int]]
    ) -> dict[str, Resolved | RapportError]:
        """The live customer each found customer is or was merged into, by the found customer's id;
        all chains are followed together, one query per hop."""
        outcomes: dict[str, Resolved | RapportError] = {}
        following = {row[0]: row for row in found}
        for hop in range(MAX_MERGE_HOPS + 1):
            moving = {}
            for start, (customer_id, merged_into, degree) in following.items():
                if merged_into:
                    moving[start] = (customer_id, merged_into)
                else:
                    outcomes[start] = Resolved(customer_id, int(degree))
            if not moving:
                break
            if hop == MAX_MERGE_HOPS:
                for start in moving:
                    outcomes[start] = FailedPrecondition(
                        f"customer: merge chain from {start} is longer than {MAX_MERGE_HOPS}"
                    )
                break
            targets = sorted({merged_into for _, merged_into in moving.values()})
            rows = {r["key"]: (r["id"], r["merged_into"], r["degree"]) for r in tx.run(_HOP, ids=targets)}
            following = {}
            for start, (customer_id, merged_into) in moving.items():
                if merged_into in rows:
                    following[start] = rows[merged_into]
                else:
                    outcomes[start] = NotFound(
                        f"customer: {customer_id} was merged into {merged_into}, which does not exist"
                    )
        return outcomes

    def _resolve_many(self, tx: neo4j.ManagedTransaction, keys: Sequence[CustomerKey]) -> dict[CustomerKey, Outcome]:
        found: dict[CustomerKey, list[tuple[str, str | None, int]]] = {}
        for r in tx.run(
            _RESOLVE,
            ids=sorted({k.value for k in keys if k.by == "id"}),
            identities=sorted({k.value for k in keys if k.by == "identity"}),
        ):
            found.setdefault(CustomerKey(r["by"], r["key"]), []).append((r["id"], r["merged_into"], r["degree"]))
        chains = self._follow_merges(tx, (row for rows in found.values() for row in rows))
        outcomes: dict[CustomerKey, Outcome] = {}
        for key in keys:
            rows = sorted(found.get(key, ()))
            if not rows:
                who = f"with id {key.value}" if key.by == "id" else f"known by {key.value}"
                outcomes[key] = NotFound(f"customer: no customer {who}")
                continue
            ends = [chains[row[0]] for row in rows]
            failed = next((e for e in ends if isinstance(e, RapportError)), None)
            survivors = {e.customer_id: e for e in ends if isinstance(e, Resolved)}
            if failed is not None:
                outcomes[key] = failed
            elif len(survivors) > 1:
                outcomes[key] = FailedPrecondition(
                    f"customer: {key.value} identifies {len(survivors)} customers ({', '.join(sorted(survivors))}); "
                    "address one by customer_id"
                )
            else:
                outcomes[key] = next(iter(survivors.values()))
        return outcomes

    def resolve_many(self, keys: Sequence[CustomerKey], timeout: float | None) -> dict[CustomerKey, Outcome]:
        """For each key, the live customer it names (following merges), or why there is none
        (NotFound, FailedPrecondition). Raises Unavailable when the graph does not answer in time."""
        return self._read(lambda tx: self._resolve_many(tx, keys), timeout)

    def resolve(self, key: CustomerKey, timeout: float | None) -> Resolved:
        """The live customer `key` names (following merges). NotFound when there is none.
        Concurrent calls share queries (see `adapters.resolution`)."""
        return self._rounds.resolve(key, timeout)

    # -- interactions -----------------------------------------------------------------------

    def page(self, customer: Resolved, query: PageQuery, timeout: float | None) -> list[Interaction]:
        text, params = _page_cypher(query)

        def work(tx: neo4j.ManagedTransaction) -> list[Interaction]:
            record = tx.run(text, params).single()
            return [] if record is None else [interaction_from(row, query.customer_id) for row in record["page"]]

        return self._read(work, timeout)

    def interaction(self, customer_id: str, event_id: str, timeout: float | None) -> Interaction | None:
        def work(tx: neo4j.ManagedTransaction) -> Interaction | None:
            record = tx.run(
                f"MATCH (c:Customer {{id: $customer_id}})-[:HAD]->(i:Interaction {{event_id: $event_id}}) "
                f"RETURN {_INTERACTION} AS i",
                customer_id=customer_id,
                event_id=event_id,
            ).single()
            return None if record is None else interaction_from(record["i"], customer_id)

        return self._read(work, timeout)

    def interactions_by_id(self, event_ids: Sequence[str], timeout: float | None) -> list[Interaction]:
        """The interactions with these ids, each with the customer it belongs to now."""
        if not event_ids:
            return []

        def work(tx: neo4j.ManagedTransaction) -> list[Interaction]:
            rows = tx.run(
                f"UNWIND $ids AS id MATCH (c:Customer)-[:HAD]->(i:Interaction {{event_id: id}}) "
                f"RETURN c.id AS customer_id, {_INTERACTION} AS i",
                ids=list(event_ids),
            )
            return [interaction_from(r["i"], r["customer_id"]) for r in rows]

        return self._read(work, timeout)

    def newest(self, customer_id: str, limit: int, timeout: float | None) -> list[Interaction]:
        """The `limit` most recent interactions by event time, newest first."""
        query = PageQuery(customer_id, Order.NEWEST_FIRST, _NO_FILTER, max(limit - 1, 0))
        return self.page(Resolved(customer_id, -1), query, timeout)[:limit]

    def newest_stored(self, customer_id: str, limit: int, timeout: float | None) -> list[Interaction]:
        """The `limit` most recently stored interactions, newest first."""

        def work(tx: neo4j.ManagedTransaction) -> list[Interaction]:
            rows = tx.run(
                f"MATCH (c:Customer {{id: $customer_id}})-[:HAD]->(i:Interaction) "
                f"WITH i ORDER BY {_STORED} DESC, i.at DESC, i.event_id DESC LIMIT $limit "
                f"RETURN {_INTERACTION} AS i",
                customer_id=customer_id,
                limit=limit,
            )
            return [interaction_from(r["i"], customer_id) for r in rows]

        return self._read(work, timeout)

    def stored_since(
        self, customer_id: str, floor: int, after: tuple[int, int, str] | None, limit: int, timeout: float | None
    ) -> list[Interaction]:
        """Interactions stored at or after `floor` (and after the storage key `after`), in storage order."""
        s, n = divmod(floor, NANOS)
        params: dict[str, Any] = {"customer_id": customer_id, "s": s, "n": n, "limit": limit}
        keyset = ""
        if after is not None:
            (params["as"], params["an"]), (params["es"], params["en"]), params["eid"] = (
                divmod(after[0], NANOS),
                divmod(after[1], NANOS),
                after[2],
            )
            keyset = " AND (stored > a OR (stored = a AND (i.at > e OR (i.at = e AND i.event_id > $eid))))"

        def work(tx: neo4j.ManagedTransaction) -> list[Interaction]:
            rows = tx.run(
                "WITH datetime({epochSeconds: $s, nanosecond: $n}) AS floor"
                + (
                    ", datetime({epochSeconds: $as, nanosecond: $an}) AS a, "
                    "datetime({epochSeconds: $es, nanosecond: $en}) AS e"
                    if after
                    else ""
                )
                + f" MATCH (c:Customer {{id: $customer_id}})-[:HAD]->(i:Interaction) WITH i, {_STORED} AS stored"
                + (", a, e" if after else "")
                + f", floor WHERE stored >= floor{keyset}"
                + f" WITH i, stored ORDER BY stored, i.at, i.event_id LIMIT $limit RETURN {_INTERACTION} AS i",
                params,
            )
            return [interaction_from(r["i"], customer_id) for r in rows]

        return self._read(work, timeout)

    # -- the handoff snapshot ---------------------------------------------------------------

    def all_interactions(self, customer_id: str, timeout: float | None) -> list[Interaction]:
        """Every interaction of the customer (for the hot-timeline cache)."""

        def work(tx: neo4j.ManagedTransaction) -> list[Interaction]:
            rows = tx.run(
                f"MATCH (c:Customer {{id: $customer_id}})-[:HAD]->(i:Interaction) RETURN {_INTERACTION} AS i",
                customer_id=customer_id,
            )
            return [interaction_from(r["i"], customer_id) for r in rows]

        return self._read(work, timeout)

    def snapshot(self, customer: Resolved, recent_limit: int, timeout: float | None) -> CustomerSnapshot:
        """Everything the handoff context needs; `recent_limit` 0 leaves `recent` empty."""
        customer_id = customer.customer_id

        def work(tx: neo4j.ManagedTransaction) -> CustomerSnapshot:
            record = tx.run(
                f"""
                MATCH (c:Customer {{id: $customer_id}})
                RETURN c {{
                    .id, .display_name, .language, .tier, .segment,
                    first_s: c.first_contact_at.epochSeconds, first_n: c.first_contact_at.nanosecond,
                    last_s: c.last_contact_at.epochSeconds, last_n: c.last_contact_at.nanosecond
                }} AS customer,
                COLLECT {{
                    MATCH (n:Identity)-[:IDENTIFIES]->(c)
                    RETURN n {{.key, .kind, .value, .verified, .verification_method,
                              seen_s: n.first_seen_at.epochSeconds, seen_n: n.first_seen_at.nanosecond}}
                }} AS identities,
                CASE WHEN $recent > 0 THEN COLLECT {{
                    MATCH (c)-[:HAD]->(i:Interaction)
                    WITH i ORDER BY i.at DESC, i.event_id DESC LIMIT $recent
                    RETURN {_INTERACTION}
                }} ELSE [] END AS recent,
                COLLECT {{
                    MATCH (c)-[:HAS_CASE]->(k:Case)
                    RETURN k {{.id, .status, .title, .owner_agent_id, .proactive,
                              .device_id, .fault_code, .severity, .alerts,
                              opened_s: k.opened_at.epochSeconds, opened_n: k.opened_at.nanosecond,
                              updated_s: k.updated_at.epochSeconds, updated_n: k.updated_at.nanosecond,
                              alert_s: k.last_alert_at.epochSeconds, alert_n: k.last_alert_at.nanosecond}}
                }} AS cases,
                COLLECT {{ MATCH (c)-[:OWNS]->(d:Device) RETURN d {{.id, .model, .firmware}} }} AS devices,
                COLLECT {{
                    MATCH (c)-[s:SERVED_BY]->(a:Agent)
                    RETURN {{agent_id: a.id, contacts: s.contacts, resolved: s.resolved, csat_sum: s.csat_sum,
                            csat_count: s.csat_count, last_s: s.last_at.epochSeconds, last_n: s.last_at.nanosecond}}
                }} AS agents
                """,
                customer_id=customer_id,
                recent=recent_limit,
            ).single()
            if record is None:
                raise NotFound(f"customer: no customer with id {customer_id}")
            c = record["customer"]
            customer = Customer(
                id=c["id"],
                display_name=c.get("display_name"),
                language=c.get("language"),
                tier=c.get("tier"),
                segment=c.get("segment"),
                first_contact_at=_ns(c.get("first_s"), c.get("first_n")),
                last_contact_at=_ns(c.get("last_s"), c.get("last_n")),
            )
            identities = tuple(
                Identity(
                    key=n["key"],
                    kind=n.get("kind") or n["key"].partition(":")[0],
                    value=n.get("value") or n["key"].partition(":")[2],
                    verified=bool(n.get("verified")),
                    verification_method=n.get("verification_method"),
                    first_seen_at=_ns(n.get("seen_s"), n.get("seen_n")),
                )
                for n in record["identities"]
            )
            cases = tuple(
                Case(
                    id=k["id"],
                    status=k.get("status"),
                    title=k.get("title"),
                    owner_agent_id=k.get("owner_agent_id"),
                    proactive=bool(k.get("proactive")),
                    opened_at=_ns(k.get("opened_s"), k.get("opened_n")),
                    updated_at=_ns(k.get("updated_s"), k.get("updated_n")),
                    device_id=k.get("device_id"),
                    fault_code=k.get("fault_code"),
                    severity=k.get("severity"),
                    alerts=int(k.get("alerts") or 0),
                    last_alert_at=_ns(k.get("alert_s"), k.get("alert_n")),
                )
                for k in record["cases"]
            )
            devices = tuple(Device(d["id"], d.get("model"), d.get("firmware")) for d in record["devices"])
            agents = tuple(
                AgentAffinity(
                    agent_id=a["agent_id"],
                    contacts=int(a.get("contacts") or 0),
                    resolved=int(a.get("resolved") or 0),
                    csat_sum=float(a.get("csat_sum") or 0.0),
                    csat_count=int(a.get("csat_count") or 0),
                    last_at=_ns(a.get("last_s"), a.get("last_n")),
                )
                for a in record["agents"]
            )
            recent = tuple(interaction_from(r, customer_id) for r in record["recent"])
            return CustomerSnapshot(customer, identities, recent, cases, devices, agents)

        return self._read(work, timeout)
