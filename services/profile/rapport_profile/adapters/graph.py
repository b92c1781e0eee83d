"""The customer graph, written: one write transaction per batch of events.

Locking, so that workers on different partitions never duplicate a customer or lose a merge:
every identity the batch carries is MERGEd and written first, in sorted key order, which takes
Neo4j's exclusive lock on each (and the unique-index lock for new ones). Only then is each
identity's customer read, so what the plan is built on cannot change until we commit: any
other transaction that attaches, moves or merges through those identities waits for us.
Merges lock the absorbed customer before listing what to move, so nothing can be added to it
unseen. Lock cycles that remain (two batches merging through different identities) surface as
Neo4j deadlock errors, which are transient: the driver reruns the whole transaction function,
which re-reads and re-plans.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import neo4j
import neo4j.exceptions

from rapport.events import validate
from rapport.graph.driver import Rows, run_rows, unlogged
from rapport.identity import NormalisedIdentifier
from rapport.v1 import events_pb2
from rapport_profile.adapters.proactive import Links, ProactiveWriter
from rapport_profile.domain.erasure import Tombstones, screen
from rapport_profile.domain.interactions import InteractionRecord, interaction_record
from rapport_profile.domain.proactive import ProactiveSettings
from rapport_profile.domain.resolution import KnownCustomer, Plan, PlannedMerge, plan_batch

log = logging.getLogger(__name__)

# Customers that predate `created_at` (seeded by hand) count as the oldest.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Times travel as integer microseconds since the epoch: the driver's pure-Python packing of
# datetime values was the largest single cost of a batch. DT(x) turns one back into a DateTime.
_MICROSECOND = timedelta(microseconds=1)
_DT = re.compile(r"DT\(([^()]+)\)")


def _cypher(query: str) -> str:
    return _DT.sub(
        r"CASE WHEN \1 IS NULL THEN null "
        r"ELSE datetime({epochSeconds: \1 / 1000000, nanosecond: \1 % 1000000 * 1000}) END",
        query,
    )


def _wire(value: Any) -> Any:
    """Parameters as sent: every datetime, however deep, as epoch microseconds.

    Rows are built ready to send (the batch's big lists), so they are not walked again.
    """
    if isinstance(value, Rows):
        return value
    if isinstance(value, datetime):
        return (value - _EPOCH) // _MICROSECOND
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_wire(v) for v in value]
    return value


def _event_time(record: InteractionRecord) -> datetime:
    return record.at


def _from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _us(value: datetime) -> int:
    return (value - _EPOCH) // _MICROSECOND


# The statements every batch runs keep their first plan (CYPHER replan=skip): they find nodes by
# unique-constraint seeks and expand from nodes already bound, so statistics cannot change the plan,
# while a growing graph made Neo4j plan each again whenever its counts had grown about fourfold
# (0.1-0.4 s of CPU a plan; 20 plans in a 60,000-event bench run).
EXISTING_EVENTS = _cypher(
    """
CYPHER replan=skip
UNWIND $ids AS id
MATCH (i:Interaction {event_id: id})
OPTIONAL MATCH (c:Customer)-[:HAD]->(i)
RETURN collect([i.event_id, c.id]) AS existing
"""
)

# Every identity is written (last_seen_at), which takes its exclusive lock, before its owner is
# read: what the plan is built on cannot change until this transaction ends.
LOCK_IDENTITIES = _cypher(
    """
CYPHER replan=skip
UNWIND $identities AS k
WITH k, DT(k.first_at) AS first_at, DT(k.last_at) AS last_at
MERGE (i:Identity {key: k.key})
ON CREATE SET i.kind = k.kind, i.value = k.value, i.verified = k.verified,
              i.verification_method = k.method, i.first_seen_at = first_at
SET i.last_seen_at = CASE WHEN i.last_seen_at IS NULL OR last_at > i.last_seen_at THEN last_at ELSE i.last_seen_at END
FOREACH (_ IN CASE WHEN (k.verified AND NOT i.verified) OR first_at < i.first_seen_at
                        OR (k.method IS NOT NULL AND k.method <> coalesce(i.verification_method, ''))
                   THEN [1] ELSE [] END |
    SET i.verified = i.verified OR k.verified,
        i.verification_method = coalesce(k.method, i.verification_method),
        i.first_seen_at = CASE WHEN first_at < i.first_seen_at THEN first_at ELSE i.first_seen_at END)
WITH i, k
OPTIONAL MATCH (i)-[:IDENTIFIES]->(c:Customer)
WHERE c.merged_into IS NULL
RETURN collect([k.key, elementId(i), c.id, c.created_at.epochSeconds * 1000000 + c.created_at.microsecond,
                elementId(c)]) AS known
"""
)

# Run after LOCK_IDENTITIES, so an erasure that committed while we waited for a lock is seen.
ERASED = """
CYPHER replan=skip
UNWIND $hashes AS h
MATCH (t:Tombstone {hash: h})
RETURN collect(h) AS erased
"""
# Identities LOCK_IDENTITIES created again for erased customers' events: nobody owns them.
DROP_UNOWNED_IDENTITIES = """
UNWIND $keys AS key
MATCH (i:Identity {key: key})
WHERE NOT (i)-[:IDENTIFIES]->()
DELETE i
"""

CREATE_CUSTOMERS = _cypher(
    """
CYPHER replan=skip
UNWIND $customers AS r
MERGE (c:Customer {id: r.id})
ON CREATE SET c.created_at = DT(r.created_at), c.merged_into = r.merged_into,
              c.merged_at = CASE WHEN r.merged_into IS NULL THEN null ELSE DT($now) END
RETURN collect([r.id, elementId(c)]) AS nodes
"""
)

ATTACH_IDENTITIES = _cypher(
    """
CYPHER replan=skip
UNWIND $attachments AS r
MATCH (i:Identity) WHERE elementId(i) = r.identity
MATCH (c:Customer) WHERE elementId(c) = r.customer
MERGE (i)-[:IDENTIFIES]->(c)
"""
)

# A merge, one statement per step so each step sees the previous one's writes.
# `survivor` is what the survivor had before taking the absorbed customer's attributes.
MERGE_LOCK_ABSORBED = _cypher(
    """
MATCH (x:Customer {id: $absorbed}), (f:Customer {id: $survivor})
WITH x, f, f {.language, .tier, .segment, .display_name, .traits_at} AS survivor
SET x.merged_into = $survivor, x.merged_at = DT($now)
SET f.first_contact_at = CASE WHEN f.first_contact_at IS NULL OR x.first_contact_at < f.first_contact_at
                              THEN x.first_contact_at ELSE f.first_contact_at END,
    f.last_contact_at = CASE WHEN f.last_contact_at IS NULL OR x.last_contact_at > f.last_contact_at
                             THEN x.last_contact_at ELSE f.last_contact_at END,
    f.language = coalesce(f.language, x.language),
    f.tier = coalesce(f.tier, x.tier),
    f.segment = coalesce(f.segment, x.segment),
    f.display_name = coalesce(f.display_name, x.display_name)
RETURN x {.language, .tier, .segment, .display_name, .first_contact_at, .last_contact_at} AS attributes, survivor
"""
)
MERGE_MOVE_IDENTITIES = _cypher(
    """
MATCH (i:Identity)-[r:IDENTIFIES]->(:Customer {id: $absorbed})
MATCH (f:Customer {id: $survivor})
CREATE (i)-[:IDENTIFIES]->(f)
DELETE r
RETURN collect(i.key) AS keys
"""
)
MERGE_MOVE_INTERACTIONS = _cypher(
    """
MATCH (:Customer {id: $absorbed})-[r:HAD]->(i:Interaction)
MATCH (f:Customer {id: $survivor})
CREATE (f)-[:HAD]->(i)
DELETE r
RETURN collect(i.event_id) AS event_ids
"""
)
MERGE_MOVE_DEVICES = _cypher(
    """
MATCH (:Customer {id: $absorbed})-[r:OWNS]->(d:Device)
MATCH (f:Customer {id: $survivor})
MERGE (f)-[:OWNS]->(d)
DELETE r
RETURN collect(d.id) AS device_ids
"""
)
MERGE_MOVE_CASES = _cypher(
    """
MATCH (:Customer {id: $absorbed})-[r:HAS_CASE]->(k:Case)
MATCH (f:Customer {id: $survivor})
MERGE (f)-[:HAS_CASE]->(k)
DELETE r
RETURN collect(k.id) AS case_ids
"""
)
MERGE_MOVE_AFFINITY = _cypher(
    """
MATCH (:Customer {id: $absorbed})-[r:SERVED_BY]->(a:Agent)
MATCH (f:Customer {id: $survivor})
MERGE (f)-[t:SERVED_BY]->(a)
ON CREATE SET t.contacts = 0, t.resolved = 0, t.csat_sum = 0, t.csat_count = 0
SET t.contacts = t.contacts + coalesce(r.contacts, 0),
    t.resolved = t.resolved + coalesce(r.resolved, 0),
    t.csat_sum = t.csat_sum + coalesce(r.csat_sum, 0),
    t.csat_count = t.csat_count + coalesce(r.csat_count, 0),
    t.last_at = CASE WHEN t.last_at IS NULL OR r.last_at > t.last_at THEN r.last_at ELSE t.last_at END
WITH r, a.id AS agent_id, properties(r) AS moved
DELETE r
RETURN collect(moved {agent_id: agent_id, .contacts, .resolved, .csat_sum, .csat_count, .last_at}) AS affinity
"""
)
# A link to a customer a reviewer kept apart from the survivor's group (NOT_SAME) is dropped.
MERGE_MOVE_CANDIDATES = _cypher(
    """
MATCH (:Customer {id: $absorbed})-[r:MAYBE_SAME]-(y:Customer)
MATCH (f:Customer {id: $survivor})
WITH f, y, r, r.keys AS keys, r.at AS at
DELETE r
WITH f, y, keys, at WHERE y <> f
  AND NOT EXISTS {
    MATCH (p:Customer)-[:NOT_SAME]-(q:Customer)
    WHERE (p = f OR p.merged_into IN [f.id, $absorbed]) AND (q = y OR q.merged_into = y.id)
  }
WITH CASE WHEN f.id < y.id THEN f ELSE y END AS a, CASE WHEN f.id < y.id THEN y ELSE f END AS b, keys, at
MERGE (a)-[m:MAYBE_SAME]->(b)
ON CREATE SET m.keys = keys, m.at = at
ON MATCH SET m.keys = m.keys + [k IN keys WHERE NOT k IN m.keys]
"""
)
# Customers absorbed earlier into the one absorbed now point straight at the new survivor.
MERGE_SHORTEN_CHAINS = _cypher(
    """
MATCH (o:Customer {merged_into: $absorbed})
SET o.merged_into = $survivor
"""
)

# Pairs among the given live customers that a reviewer decided are different people: a NOT_SAME
# between them, or between customers merged into them since.
KEPT_APART = _cypher(
    """
UNWIND $ids AS id
CALL (id) {
  MATCH (a:Customer {id: id}) RETURN a
  UNION
  MATCH (a:Customer {merged_into: id}) RETURN a
}
MATCH (a)-[:NOT_SAME]-(b:Customer)
WITH id, coalesce(b.merged_into, b.id) AS other
WHERE other IN $ids AND id < other
RETURN DISTINCT id, other
"""
)

UPSERT_CASES = _cypher(
    """
CYPHER replan=skip
UNWIND $cases AS k
MATCH (c:Customer) WHERE elementId(c) = k.customer_node
MERGE (cs:Case {id: k.id})
WITH c, cs, k, DT(k.first_at) AS first_at, DT(k.last_at) AS last_at
SET cs.opened_at = CASE WHEN cs.opened_at IS NULL OR first_at < cs.opened_at THEN first_at ELSE cs.opened_at END
FOREACH (_ IN CASE WHEN cs.updated_at IS NULL OR last_at >= cs.updated_at THEN [1] ELSE [] END |
    SET cs.status = coalesce(k.status, cs.status),
        cs.title = coalesce(k.title, cs.title),
        cs.owner_agent_id = coalesce(k.owner_agent_id, cs.owner_agent_id),
        cs.proactive = coalesce(k.proactive, cs.proactive, false),
        cs.updated_at = last_at)
MERGE (c)-[:HAS_CASE]->(cs)
"""
)

UPSERT_DEVICES = _cypher(
    """
CYPHER replan=skip
UNWIND $devices AS d
MATCH (c:Customer) WHERE elementId(c) = d.customer_node
MERGE (dv:Device {id: d.id})
WITH c, dv, d, DT(d.last_at) AS last_at
FOREACH (_ IN CASE WHEN dv.updated_at IS NULL OR last_at >= dv.updated_at THEN [1] ELSE [] END |
    SET dv.model = coalesce(d.model, dv.model),
        dv.firmware = coalesce(d.firmware, dv.firmware),
        dv.updated_at = last_at)
MERGE (c)-[:OWNS]->(dv)
"""
)

# Everything the batch's stored events add for their customers, in one statement: agents and
# topics MERGEd once each (sorted, so concurrent batches lock them in one order) and cases looked
# up once each, all referred to by position; then per customer, its contact times and traits, its
# interactions and its customer-agent affinity, so each customer is looked up once (by element
# id, see BatchNodes).
# SERVED_BY is looked for, then created, not MERGEd: MERGE locks the agent too, so concurrent
# batches queued on every agent they share. The customer's lock (taken by the SET on its
# contact times) is enough, as every writer of SERVED_BY (this, merges, unmerges) sets
# properties on the customer first.
# CREATE, not MERGE, for interactions: events already stored were filtered out before, and a
# duplicate racing in from another transaction hits the uniqueness constraint, which reruns
# the whole batch.
WRITE_CUSTOMER_EVENTS = _cypher(
    """
CYPHER replan=skip
CALL () {
  UNWIND $agents AS id
  MERGE (a:Agent {id: id})
  RETURN collect(a) AS agents
}
CALL () {
  UNWIND $topics AS name
  MERGE (t:Topic {name: name})
  RETURN collect(t) AS topics
}
CALL () {
  UNWIND $cases AS id
  OPTIONAL MATCH (k:Case {id: id})
  RETURN collect([x IN [k] WHERE x IS NOT NULL]) AS cases
}
UNWIND $customers AS u
MATCH (c:Customer) WHERE elementId(c) = u.node
WITH c, u, agents, topics, cases, DT(u.first_at) AS first_at, DT(u.last_at) AS last_at, DT(u.traits_at) AS traits_at
SET c.first_contact_at = CASE WHEN c.first_contact_at IS NULL OR first_at < c.first_contact_at
                              THEN first_at ELSE c.first_contact_at END,
    c.last_contact_at = CASE WHEN c.last_contact_at IS NULL OR last_at > c.last_contact_at
                             THEN last_at ELSE c.last_contact_at END
FOREACH (_ IN CASE WHEN traits_at IS NOT NULL AND (c.traits_at IS NULL OR traits_at >= c.traits_at)
                   THEN [1] ELSE [] END |
    SET c.language = coalesce(u.traits.language, c.language),
        c.tier = coalesce(u.traits.tier, c.tier),
        c.segment = coalesce(u.traits.segment, c.segment),
        c.display_name = coalesce(u.traits.display_name, c.display_name),
        c.traits_at = traits_at)
WITH c, u, agents, topics, cases
CALL (c, u, agents, topics, cases) {
  UNWIND u.events AS row
  CREATE (c)-[:HAD]->(i:Interaction {at: DT(row.at), ingested_at: DT($now)})
  SET i += row.props
  FOREACH (a IN CASE WHEN row.agent IS NULL THEN [] ELSE [agents[row.agent]] END | CREATE (i)-[:HANDLED_BY]->(a))
  FOREACH (t IN CASE WHEN row.topic IS NULL THEN [] ELSE [topics[row.topic]] END | CREATE (i)-[:ABOUT]->(t))
  FOREACH (k IN CASE WHEN row.case IS NULL THEN [] ELSE cases[row.case] END | CREATE (i)-[:IN_CASE]->(k))
}
CALL (c, u, agents) {
  UNWIND u.affinity AS s
  WITH c, s, agents[s.agent] AS a, DT(s.last_at) AS last_at
  OPTIONAL MATCH (c)-[r:SERVED_BY]->(a)
  FOREACH (_ IN CASE WHEN r IS NULL THEN [1] ELSE [] END |
    CREATE (c)-[:SERVED_BY {contacts: s.contacts, resolved: s.resolved, csat_sum: s.csat_sum,
                            csat_count: s.csat_count, last_at: last_at}]->(a))
  FOREACH (_ IN CASE WHEN r IS NULL THEN [] ELSE [1] END |
    SET r.contacts = r.contacts + s.contacts,
        r.resolved = r.resolved + s.resolved,
        r.csat_sum = r.csat_sum + s.csat_sum,
        r.csat_count = r.csat_count + s.csat_count,
        r.last_at = CASE WHEN r.last_at IS NULL OR last_at > r.last_at THEN last_at ELSE r.last_at END)
}
RETURN count(*) AS customers
"""
)

LINK_CANDIDATES = _cypher(
    """
CYPHER replan=skip
UNWIND $candidates AS p
MATCH (a:Customer {id: p.a}), (b:Customer {id: p.b})
MERGE (a)-[m:MAYBE_SAME]->(b)
ON CREATE SET m.keys = p.keys, m.at = DT($now)
ON MATCH SET m.keys = m.keys + [k IN p.keys WHERE NOT k IN m.keys]
"""
)

RECORD_MERGES = _cypher(
    """
CYPHER replan=skip
UNWIND $merges AS m
MERGE (g:Merge {id: m.id})
ON CREATE SET g += m.props, g.at = DT(m.at), g.event_at = DT(m.event_at)
"""
)


@dataclass
class BatchNodes:
    """Element ids of the customers and identities a batch's transaction found (LOCK_IDENTITIES)
    or created (CREATE_CUSTOMERS), so its later statements go straight to the node: a unique-index
    seek per row (the B-tree search) was the largest single cost in Neo4j's profile of a batch.
    Valid until the transaction ends: while it holds the identities' locks, nothing deletes these
    nodes (an erasure locks the identities first)."""

    customers: dict[str, str] = field(default_factory=dict)
    identities: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CustomerChange:
    """What one committed batch changed for one (surviving) customer."""

    customer_id: str
    event_ids: list[str]
    merged_customer_ids: list[str]


@dataclass(frozen=True)
class MergeRecord:
    id: str
    survivor_id: str
    absorbed_id: str
    event_id: str
    linking_keys: list[str]


@dataclass(frozen=True)
class BatchResult:
    stored: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    new_customers: list[str] = field(default_factory=list)
    merges: list[MergeRecord] = field(default_factory=list)
    candidates: int = 0
    changes: list[CustomerChange] = field(default_factory=list)
    # Event id -> the customer that holds it after the commit.
    owners: dict[str, str] = field(default_factory=dict)
    # Events already in the graph before this batch -> their customer, so a replay after a
    # crash can announce them again (CustomerUpdated is at-least-once too).
    replayed: dict[str, str] = field(default_factory=dict)
    # Events of erased customers, dropped; and tombstoned identifiers cut from the events kept.
    erased: list[str] = field(default_factory=list)
    stripped_identifiers: int = 0


def _dedupe(records: Iterable[InteractionRecord]) -> tuple[list[InteractionRecord], list[str]]:
    seen: set[str] = set()
    kept, repeated = [], []
    for record in records:
        if record.event_id in seen:
            repeated.append(record.event_id)
        else:
            seen.add(record.event_id)
            kept.append(record)
    return kept, repeated


def _native(value: Any) -> Any:
    return value.to_native() if hasattr(value, "to_native") else value


def _json_ready(value: Any) -> Any:
    value = _native(value)
    return value.isoformat() if isinstance(value, datetime) else value


def run(tx: neo4j.ManagedTransaction, query: str, **params: Any) -> list[neo4j.Record]:
    return run_rows(tx, query, unlogged(_wire(params)))


def absorb(tx: neo4j.ManagedTransaction, absorbed: str, survivor: str, now: datetime) -> dict[str, Any]:
    """Moves everything an existing customer has to its survivor; returns what moved.

    The one way customers merge, for the worker's batches and for an approved merge candidate.
    """
    params = {"absorbed": absorbed, "survivor": survivor, "now": now}
    attributes = run(tx, MERGE_LOCK_ABSORBED, **params)
    moved: dict[str, Any] = {
        "attributes": {k: _json_ready(v) for k, v in attributes[0]["attributes"].items() if v is not None}
        if attributes
        else {},
        "survivor_attributes": {k: _json_ready(v) for k, v in attributes[0]["survivor"].items() if v is not None}
        if attributes
        else {},
    }
    moved["identity_keys"] = run(tx, MERGE_MOVE_IDENTITIES, **params)[0]["keys"]
    moved["event_ids"] = run(tx, MERGE_MOVE_INTERACTIONS, **params)[0]["event_ids"]
    moved["device_ids"] = run(tx, MERGE_MOVE_DEVICES, **params)[0]["device_ids"]
    moved["case_ids"] = run(tx, MERGE_MOVE_CASES, **params)[0]["case_ids"]
    moved["affinity"] = [
        {k: _json_ready(v) for k, v in row.items()} for row in run(tx, MERGE_MOVE_AFFINITY, **params)[0]["affinity"]
    ]
    run(tx, MERGE_MOVE_CANDIDATES, **params)
    run(tx, MERGE_SHORTEN_CHAINS, **params)
    log.info("customers merged", extra={"survivor": survivor, "absorbed": absorbed})
    return moved


def merge_evidence(merge: PlannedMerge, moved: dict[str, Any] | None, now: datetime) -> dict[str, Any]:
    """The row RECORD_MERGES writes for `merge`, given what `absorb` moved (None: nothing existed yet)."""
    moved = moved or {}
    return {
        "id": merge.id,
        # Times beside props, not in them: RECORD_MERGES turns them into DateTimes.
        "at": now,
        "event_at": merge.at,
        "props": {
            "id": merge.id,
            "event_id": merge.event_id,
            "survivor_id": merge.survivor_id,
            "absorbed_id": merge.absorbed_id,
            "linking_keys": merge.linking_keys,
            "absorbed_identity_keys": sorted({*moved.get("identity_keys", []), *merge.batch_identity_keys}),
            "absorbed_event_ids": sorted({*moved.get("event_ids", []), *merge.batch_event_ids}),
            "absorbed_device_ids": sorted(moved.get("device_ids", [])),
            "absorbed_case_ids": sorted(moved.get("case_ids", [])),
            "absorbed_affinity": json.dumps(moved.get("affinity", [])),
            "absorbed_attributes": json.dumps(moved.get("attributes", {})),
            "survivor_attributes": json.dumps(moved.get("survivor_attributes", {})),
        },
    }


class GraphWriter:
    """Writes batches of validated events to the customer graph, idempotently."""

    def __init__(
        self,
        driver: neo4j.Driver,
        database: str = "neo4j",
        *,
        transaction_timeout: float = 60.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        proactive: ProactiveSettings | None = None,
        tombstones: Tombstones | None = None,
    ) -> None:
        self._driver = driver
        self._database = database
        self._timeout = transaction_timeout
        self._clock = clock
        self._proactive = ProactiveWriter(proactive or ProactiveSettings())
        self._tombstones = tombstones or Tombstones()

    def write_batch(
        self, events: Sequence[tuple[events_pb2.InteractionEvent, list[NormalisedIdentifier]]]
    ) -> BatchResult:
        """Stores the batch in one transaction; events already stored are reported as duplicates."""
        return self.write_records([interaction_record(event, identifiers) for event, identifiers in events])

    def write_records(self, records: Sequence[InteractionRecord]) -> BatchResult:
        if not records:
            return BatchResult()
        with self._driver.session(database=self._database) as session:
            write = neo4j.unit_of_work(timeout=self._timeout)(self._write)
            try:
                return session.execute_write(write, list(records))
            except neo4j.exceptions.ConstraintError:
                # Another transaction stored one of these events after our duplicate check; a
                # second run sees it as stored. A second failure is a real error.
                log.info("a concurrent duplicate was refused; writing the batch again")
                return session.execute_write(write, list(records))

    def _run(self, tx: neo4j.ManagedTransaction, query: str, **params: Any) -> list[neo4j.Record]:
        return run(tx, query, **params)

    def _write(self, tx: neo4j.ManagedTransaction, all_records: list[InteractionRecord]) -> BatchResult:
        now = self._clock()
        records, repeated = _dedupe(all_records)
        # One record holding the pairs: a replayed batch paid the driver's per-record work on each.
        existing = self._run(tx, EXISTING_EVENTS, ids=Rows([rec.event_id for rec in records]))[0]["existing"]
        replayed = dict(existing)
        records = [r for r in records if r.event_id not in replayed]
        duplicates = repeated + sorted(replayed)
        if not records:
            return BatchResult(duplicates=duplicates, replayed=replayed)

        known, nodes = self._lock_identities(tx, records)
        records, known, erased, stripped = self._without_erased(tx, records, known)
        if not records:
            return BatchResult(duplicates=duplicates, replayed=replayed, erased=erased)
        plan = plan_batch(records, known, now, self._kept_apart(tx, records, known))

        absorbed_now = {m.absorbed_id: plan.final(m.absorbed_id) for m in plan.merges if m.absorbed_is_new}
        if plan.new_customers:
            created = self._run(
                tx,
                CREATE_CUSTOMERS,
                now=now,
                customers=[
                    {"id": cid, "created_at": at, "merged_into": absorbed_now.get(cid)}
                    for cid, at in plan.new_customers
                ],
            )
            nodes.customers.update(created[0]["nodes"])
        if plan.attachments:
            self._run(
                tx,
                ATTACH_IDENTITIES,
                attachments=[
                    {"identity": nodes.identities[k], "customer": nodes.customers[c]}
                    for k, c in sorted(plan.attachments.items())
                ],
            )
        evidence = {
            m.absorbed_id: absorb(tx, m.absorbed_id, plan.final(m.absorbed_id), now) for m in plan.existing_absorbed
        }
        self._upsert_cases_and_devices(tx, records, plan, nodes)
        links = self._proactive.link(tx, records, plan.owners, nodes.customers)

        stored = records
        self._write_customer_events(tx, stored, plan, links, now, nodes=nodes)
        notified = self._proactive.follow_up(tx, records, plan.owners, links, now)
        if plan.candidates:
            self._run(
                tx,
                LINK_CANDIDATES,
                now=now,
                candidates=[{"a": a, "b": b, "keys": keys} for (a, b), keys in sorted(plan.candidates.items())],
            )
        if plan.merges:
            self._run(
                tx, RECORD_MERGES, merges=[merge_evidence(m, evidence.get(m.absorbed_id), now) for m in plan.merges]
            )

        changes: dict[str, CustomerChange] = {}
        for rec in stored:
            owner = plan.owners[rec.event_id]
            change = changes.get(owner)
            if change is None:
                change = changes[owner] = CustomerChange(owner, [], plan.absorbed_into.get(owner, []))
            change.event_ids.append(rec.event_id)
        for survivor, absorbed in plan.absorbed_into.items():
            changes.setdefault(survivor, CustomerChange(survivor, [], absorbed))
        for owner, event_id in notified:
            changes.setdefault(owner, CustomerChange(owner, [], plan.absorbed_into.get(owner, []))).event_ids.append(
                event_id
            )
        return BatchResult(
            stored=[r.event_id for r in stored],
            duplicates=duplicates,
            new_customers=[cid for cid, _ in plan.new_customers if cid not in absorbed_now],
            merges=[MergeRecord(m.id, m.survivor_id, m.absorbed_id, m.event_id, m.linking_keys) for m in plan.merges],
            candidates=len(plan.candidates),
            changes=list(changes.values()),
            owners={r.event_id: plan.owners[r.event_id] for r in stored},
            replayed=replayed,
            erased=erased,
            stripped_identifiers=stripped,
        )

    def _lock_identities(
        self, tx: neo4j.ManagedTransaction, records: list[InteractionRecord]
    ) -> tuple[dict[str, KnownCustomer | None], BatchNodes]:
        """Locks the batch's identities; returns each one's live customer (None: a new identity)
        and the element ids of the identities and those customers."""
        sightings: dict[str, dict[str, Any]] = {}
        for rec in records:
            at = _us(rec.at)  # times as sent (see _wire), built here as the rows are many
            for s in rec.identities:
                row = sightings.get(s.key)
                if row is None:
                    sightings[s.key] = {
                        "key": s.key,
                        "kind": s.identifier.kind,
                        "value": s.identifier.value,
                        "verified": s.identifier.verified,
                        "method": s.verification_method,
                        "first_at": at,
                        "last_at": at,
                    }
                else:
                    row["verified"] = row["verified"] or s.identifier.verified
                    row["method"] = s.verification_method or row["method"]
                    row["first_at"] = min(row["first_at"], at)
                    row["last_at"] = max(row["last_at"], at)
        # Sorted, so two transactions over the same identities lock them in the same order.
        rows = [sightings[k] for k in sorted(sightings)]
        known: dict[str, KnownCustomer | None] = {}
        nodes = BatchNodes()
        # One record holding every row: the driver's per-record work was most of reading 2,000 rows.
        result = run_rows(tx, LOCK_IDENTITIES, {"identities": Rows(rows)})[0]["known"]
        for key, identity_node, cid, created, customer_node in result:
            nodes.identities[key] = identity_node
            if cid is None:
                known[key] = None
            else:
                known[key] = KnownCustomer(cid, _from_us(created) if created is not None else _EPOCH)
                nodes.customers[cid] = customer_node
        return known, nodes

    def _kept_apart(
        self, tx: neo4j.ManagedTransaction, records: list[InteractionRecord], known: dict[str, KnownCustomer | None]
    ) -> list[tuple[str, str]]:
        """Reviewed-apart pairs among customers the batch could bring together.

        Customers only meet (merge, or become candidates) through identifiers that share an
        event, directly or through keys new to the batch, so only customers whose keys are so
        connected are looked up: the common batch, one customer per event, costs no query.
        """
        parent: dict[str, str] = {}

        def root(key: str) -> str:
            while (up := parent.get(key, key)) != key:
                parent[key] = parent.get(up, up)  # path halving keeps big batches linear
                key = parent[key]
            return key

        for rec in records:
            keys = rec.identity_keys
            for key in keys[1:]:
                parent[root(key)] = root(keys[0])
        customers: dict[str, set[str]] = {}
        for key, customer in known.items():
            if customer is not None:
                customers.setdefault(root(key), set()).add(customer.id)
        involved = sorted({c for group in customers.values() if len(group) > 1 for c in group})
        if not involved:
            return []
        return [(r["id"], r["other"]) for r in self._run(tx, KEPT_APART, ids=involved)]

    def _upsert_cases_and_devices(
        self, tx: neo4j.ManagedTransaction, records: list[InteractionRecord], plan: Plan, nodes: BatchNodes
    ) -> None:
        cases: dict[str, dict[str, Any]] = {}
        devices: dict[tuple[str, str], dict[str, Any]] = {}
        # Event-time order, so the latest event's view of a case or device wins within the batch too.
        for rec in sorted(records, key=lambda r: r.at):
            owner = plan.owners[rec.event_id]
            if rec.case is not None:
                row = cases.setdefault(rec.case.id, {"id": rec.case.id, "first_at": rec.at})
                row.update(customer_node=nodes.customers[owner], last_at=rec.at)
                for name in ("status", "title", "owner_agent_id", "proactive"):
                    value = getattr(rec.case, name)
                    if value is not None:
                        row[name] = value
            if rec.device is not None:
                drow = devices.setdefault(
                    (owner, rec.device.id), {"id": rec.device.id, "customer_node": nodes.customers[owner]}
                )
                drow["last_at"] = rec.at
                if rec.device.model:
                    drow["model"] = rec.device.model
                if rec.device.firmware:
                    drow["firmware"] = rec.device.firmware
        if cases:
            rows = [
                {"status": None, "title": None, "owner_agent_id": None, "proactive": None, **r}
                for r in sorted(cases.values(), key=lambda r: r["id"])
            ]
            self._run(tx, UPSERT_CASES, cases=rows)
        if devices:
            rows = [{"model": None, "firmware": None, **r} for _, r in sorted(devices.items())]
            self._run(tx, UPSERT_DEVICES, devices=rows)

    def _write_customer_events(
        self,
        tx: neo4j.ManagedTransaction,
        stored: list[InteractionRecord],
        plan: Plan,
        links: Links,
        now: datetime,
        *,
        nodes: BatchNodes,
    ) -> None:
        """The interactions, contact times, traits and affinity, grouped by customer (WRITE_CUSTOMER_EVENTS).

        Times go as epoch microseconds, built here: walking every row through `_wire` cost more
        than the rest of the batch's Python.
        """
        agents = sorted({r.agent_id for r in stored if r.agent_id})
        topics = sorted({r.topic for r in stored if r.topic})
        agent_at = {a: n for n, a in enumerate(agents)}
        topic_at = {t: n for n, t in enumerate(topics)}
        case_at: dict[str, int] = {}
        customers: dict[str, dict[str, Any]] = {}
        affinity: dict[str, dict[str, dict[str, Any]]] = {}
        # Event-time order, so the latest traits and the last contact win within the batch too.
        for rec in sorted(stored, key=_event_time):
            owner = plan.owners[rec.event_id]
            at = _us(rec.at)
            c = customers.get(owner)
            if c is None:
                c = customers[owner] = {
                    "node": nodes.customers[owner],
                    "first_at": at,
                    "traits": {},
                    "traits_at": None,
                    "events": [],
                }
            c["last_at"] = at
            if rec.traits:
                c["traits"].update(rec.traits)
                c["traits_at"] = at
            props = dict(rec.properties)
            props.pop("at", None)  # sent beside, in microseconds
            linked_case = links.case_of.get(rec.event_id)
            if linked_case:
                props["case_id"] = linked_case
            case_id = linked_case or (rec.case.id if rec.case else None)
            c["events"].append(
                {
                    "props": props,
                    "at": at,
                    "agent": agent_at.get(rec.agent_id) if rec.agent_id else None,
                    "topic": topic_at.get(rec.topic) if rec.topic else None,
                    "case": None if case_id is None else case_at.setdefault(case_id, len(case_at)),
                }
            )
            if rec.agent_id is not None:
                a = affinity.setdefault(owner, {}).get(rec.agent_id)
                if a is None:
                    a = affinity[owner][rec.agent_id] = {
                        "agent": agent_at[rec.agent_id],
                        "contacts": 0,
                        "resolved": 0,
                        "csat_sum": 0,
                        "csat_count": 0,
                    }
                a["contacts"] += 1
                a["resolved"] += int(rec.resolved)
                if rec.csat is not None:
                    a["csat_sum"] += rec.csat
                    a["csat_count"] += 1
                a["last_at"] = at
        rows = []
        for owner in sorted(customers):
            row = customers[owner]
            pairs = affinity.get(owner, {})
            row["affinity"] = [pairs[agent] for agent in sorted(pairs)]
            rows.append(row)
        params = {
            "agents": Rows(agents),
            "topics": Rows(topics),
            "cases": Rows(case_at),
            "customers": Rows(rows),
            "now": _us(now),
        }
        found = run_rows(tx, WRITE_CUSTOMER_EVENTS, params)[0]["customers"]
        if found != len(rows):
            # A customer node gone under our identities' locks would lose its events silently.
            raise RuntimeError(f"{len(rows) - found} of the batch's {len(rows)} customers were not found by element id")

    def _without_erased(
        self, tx: neo4j.ManagedTransaction, records: list[InteractionRecord], known: dict[str, KnownCustomer | None]
    ) -> tuple[list[InteractionRecord], dict[str, KnownCustomer | None], list[str], int]:
        """Screens the batch against erasure tombstones: one lookup for every event id and key."""
        hashed = {self._tombstones.event(r.event_id): r.event_id for r in records}
        keys = {self._tombstones.identity(k): k for k in known}
        erased = set(self._run(tx, ERASED, hashes=Rows([*hashed, *keys]))[0]["erased"])
        if not erased:
            return records, known, [], 0
        screened = screen(
            records, {e for h, e in hashed.items() if h in erased}, {k for h, k in keys.items() if h in erased}
        )
        kept_keys = {k for r in screened.kept for k in r.identity_keys}
        self._run(tx, DROP_UNOWNED_IDENTITIES, keys=sorted(set(known) - kept_keys))
        log.info(
            "events of erased customers dropped",
            extra={"dropped": len(screened.dropped), "stripped_identifiers": screened.stripped_identifiers},
        )
        kept_known = {k: c for k, c in known.items() if k in kept_keys}
        return screened.kept, kept_known, screened.dropped, screened.stripped_identifiers


def seed_graph(
    driver: neo4j.Driver,
    events: Iterable[events_pb2.InteractionEvent],
    database: str = "neo4j",
    batch_size: int = 500,
) -> BatchResult:
    """Validates and writes `events` synchronously, as the worker would; for tests and demos.

    Raises rapport.events.InvalidEvent on the first bad event, before writing anything.
    """
    writer = GraphWriter(driver, database)
    validated = [(event, validate(event)) for event in events]
    total = BatchResult()
    for start in range(0, len(validated), batch_size):
        result = writer.write_batch(validated[start : start + batch_size])
        total = BatchResult(
            stored=total.stored + result.stored,
            duplicates=total.duplicates + result.duplicates,
            new_customers=total.new_customers + result.new_customers,
            merges=total.merges + result.merges,
            candidates=total.candidates + result.candidates,
            changes=total.changes + result.changes,
            owners={**total.owners, **result.owners},
            replayed={**total.replayed, **result.replayed},
            erased=total.erased + result.erased,
            stripped_identifiers=total.stripped_identifiers + result.stripped_identifiers,
        )
    return total
