"""All of merge review's Cypher: undo a merge, approve or reject a candidate, record the decision.

Each call is one write transaction, bounded by the caller's deadline (transient errors such as
deadlocks are retried within it). Locking follows the worker's order, so the two never wait on
each other in a cycle they cannot leave: the Merge node first (two unmerges of one merge
serialise there), then every identity of the customers involved in key order, then the
customers in id order. A worker batch that reads one of those identities therefore waits for
the review to commit and then sees its outcome: the identities' new owner, and the NOT_SAME
between the two customers (rapport.graph.schema) that keeps them apart.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import neo4j
import neo4j.exceptions
import neo4j.time
from opentelemetry import trace

from rapport.errors import FailedPrecondition, NotFound, Unavailable
from rapport_profile.adapters.graph import RECORD_MERGES, absorb, merge_evidence, run
from rapport_profile.domain.merge_decisions import (
    DecisionKind,
    MergeDecision,
    approved_merge_id,
    new_decision_id,
    survivor_and_absorbed,
)
from rapport_profile.domain.resolution import PlannedMerge
from rapport_profile.domain.unmerge import (
    ATTRIBUTES,
    AbsorbedCustomer,
    HeldInteraction,
    Holding,
    MergeEvidence,
    UnmergePlan,
    plan_unmerge,
)

log = logging.getLogger(__name__)
tracer = trace.get_tracer("rapport_profile.merge_review")
T = TypeVar("T")

# merged_into chains are one hop long (the worker shortens them); more means a broken graph.
MAX_MERGE_HOPS = 16
_MIN_TIMEOUT = 0.01

_LOCK_MERGE = """
MATCH (m:Merge {id: $merge_id})
SET m._review_lock = true
REMOVE m._review_lock
RETURN m {.*} AS merge
"""
_CUSTOMER = "MATCH (c:Customer {id: $id}) RETURN c.merged_into AS merged_into, c.created_at AS created_at"
_IDENTITY_KEYS = """
UNWIND $ids AS id
MATCH (i:Identity)-[:IDENTIFIES]->(:Customer {id: id})
RETURN i.key AS key
"""
# Writing a property takes the node's exclusive lock until the transaction ends.
_LOCK_IDENTITIES = """
UNWIND $keys AS key
MATCH (i:Identity {key: key})
SET i._review_lock = true
REMOVE i._review_lock
"""
_LOCK_CUSTOMERS = """
UNWIND $ids AS id
MATCH (c:Customer {id: id})
SET c._review_lock = true
REMOVE c._review_lock
"""

_HELD_INTERACTIONS = """
MATCH (m:Merge {id: $merge_id})
MATCH (:Customer {id: $holder})-[:HAD]->(i:Interaction)
RETURN i.event_id AS event_id, coalesce(i.identity_keys, []) AS keys,
       coalesce(i.ingested_at < m.at, true) AS before, i.device_id AS device_id, i.case_id AS case_id
"""
_HELD = """
MATCH (h:Customer {id: $holder})
RETURN h {.language, .tier, .segment, .display_name, .traits_at} AS attributes,
       COLLECT { MATCH (h)-[:OWNS]->(d:Device) RETURN d.id } AS devices,
       COLLECT { MATCH (h)-[:HAS_CASE]->(k:Case) RETURN k.id } AS cases
"""
_ABSORBED_INTO = """
MATCH (c:Customer {merged_into: $holder})
MATCH (g:Merge {absorbed_id: c.id}) WHERE g.undone_at IS NULL
RETURN g.id AS merge_id, c.id AS customer_id, g.survivor_id AS survivor_id,
       coalesce(g.absorbed_identity_keys, []) AS keys
"""

_RESTORE = """
MATCH (x:Customer {id: $restored})
SET x.merged_into = null, x.merged_at = null
WITH x
UNWIND $followers AS id
MATCH (c:Customer {id: id})
SET c.merged_into = x.id
"""
_RENAME_SURVIVOR = """
UNWIND $merge_ids AS id
MATCH (g:Merge {id: id})
SET g.survivor_id = $restored
"""
_MOVE_IDENTITIES = """
MATCH (x:Customer {id: $restored})
UNWIND $keys AS key
MATCH (i:Identity {key: key})-[r:IDENTIFIES]->(:Customer {id: $holder})
CREATE (i)-[:IDENTIFIES]->(x)
DELETE r
"""
_MOVE_INTERACTIONS = """
MATCH (x:Customer {id: $restored})
UNWIND $event_ids AS event_id
MATCH (:Customer {id: $holder})-[r:HAD]->(i:Interaction {event_id: event_id})
CREATE (x)-[:HAD]->(i)
DELETE r
"""
_GIVE_DEVICES = """
MATCH (x:Customer {id: $restored})
UNWIND $ids AS id
MATCH (d:Device {id: id})
MERGE (x)-[:OWNS]->(d)
"""
_RELEASE_DEVICES = """
UNWIND $ids AS id
MATCH (:Customer {id: $holder})-[r:OWNS]->(:Device {id: id})
DELETE r
"""
_GIVE_CASES = """
MATCH (x:Customer {id: $restored})
UNWIND $ids AS id
MATCH (k:Case {id: id})
MERGE (x)-[:HAS_CASE]->(k)
"""
_RELEASE_CASES = """
UNWIND $ids AS id
MATCH (:Customer {id: $holder})-[r:HAS_CASE]->(:Case {id: id})
DELETE r
"""
# A candidate link through keys that went back to the restored customer goes with them.
_SPLIT_CANDIDATES = """
MATCH (h:Customer {id: $holder})-[r:MAYBE_SAME]-(y:Customer)
WITH r, y, [k IN r.keys WHERE k IN $keys] AS going, [k IN r.keys WHERE NOT k IN $keys] AS staying, r.at AS at
WHERE size(going) > 0
FOREACH (_ IN CASE WHEN size(staying) = 0 THEN [1] ELSE [] END | DELETE r)
FOREACH (_ IN CASE WHEN size(staying) > 0 THEN [1] ELSE [] END | SET r.keys = staying)
WITH y, going, at
MATCH (x:Customer {id: $restored}) WHERE x <> y
WITH CASE WHEN x.id < y.id THEN x ELSE y END AS a, CASE WHEN x.id < y.id THEN y ELSE x END AS b, going, at
MERGE (a)-[m:MAYBE_SAME]->(b)
ON CREATE SET m.keys = going, m.at = at
ON MATCH SET m.keys = m.keys + [k IN going WHERE NOT k IN m.keys]
"""
# Contact times and the affinity aggregate, recomputed from the interactions each one holds now:
# exactly what the worker would have counted had the two never merged.
_RECOUNT = """
UNWIND $ids AS id
MATCH (c:Customer {id: id})
CALL (c) {
  OPTIONAL MATCH (c)-[:HAD]->(i:Interaction)
  RETURN min(i.at) AS first_at, max(i.at) AS last_at
}
SET c.first_contact_at = first_at, c.last_contact_at = last_at
WITH c
OPTIONAL MATCH (c)-[s:SERVED_BY]->(:Agent)
DELETE s
"""
_RECOUNT_AFFINITY = """
UNWIND $ids AS id
MATCH (c:Customer {id: id})-[:HAD]->(i:Interaction)
WHERE i.agent_id IS NOT NULL
WITH c, i.agent_id AS agent_id, count(*) AS contacts,
     count(CASE WHEN i.outcome = 'resolved' THEN 1 END) AS resolved,
     sum(coalesce(i.csat, 0)) AS csat_sum, count(i.csat) AS csat_count, max(i.at) AS last_at
MATCH (a:Agent {id: agent_id})
CREATE (c)-[:SERVED_BY {contacts: contacts, resolved: resolved, csat_sum: csat_sum, csat_count: csat_count,
                        last_at: last_at}]->(a)
"""
_MARK_UNDONE = """
MATCH (m:Merge {id: $merge_id})
SET m.undone_at = $now, m.undone_by = $decision_id
"""
_KEEP_APART = """
MATCH (a:Customer {id: $a}), (b:Customer {id: $b})
MERGE (a)-[n:NOT_SAME]->(b)
ON CREATE SET n.decision_id = $decision_id, n.at = $now
"""
_CANDIDATE_KEYS = """
MATCH (:Customer {id: $a})-[r:MAYBE_SAME]-(:Customer {id: $b})
RETURN r.keys AS keys
"""
_DROP_CANDIDATE = """
MATCH (:Customer {id: $a})-[r:MAYBE_SAME]-(:Customer {id: $b})
DELETE r
"""
_RECORD_DECISION = """
CREATE (:MergeDecision {id: $id, kind: $kind, customer_ids: $customer_ids, merge_id: $merge_id,
                        decided_by: $decided_by, reason: $reason, at: $at})
"""
_SIZES = """
UNWIND $ids AS id
MATCH (c:Customer {id: id})
RETURN id, COUNT { (c)-[:HAD]->() } AS interactions,
       COLLECT { MATCH (i:Identity)-[:IDENTIFIES]->(c) RETURN i.key ORDER BY i.key } AS keys
"""


@dataclass(frozen=True)
class Unmerged:
    decision: MergeDecision
    # The live customer that held the merged profile: the merge's survivor, or whoever absorbed it since.
    survivor_id: str
    restored_id: str
    restored_identity_keys: list[str]
    restored_interactions: int
    survivor_interactions: int
    plan: UnmergePlan


@dataclass(frozen=True)
class ApprovedMerge:
    decision: MergeDecision
    merge_id: str
    merged_at: datetime
    survivor_id: str
    absorbed_id: str
    linking_keys: list[str]
    absorbed_identity_keys: list[str]
    absorbed_interactions: int


class MergeReview(Protocol):
    """What the merge review use case needs from the graph; `timeout` is the seconds it may take."""

    def unmerge(self, merge_id: str, decided_by: str, reason: str, timeout: float) -> Unmerged: ...

    def approve(
        self, customer_id: str, other_id: str, decided_by: str, reason: str, timeout: float
    ) -> ApprovedMerge: ...

    def reject(
        self, customer_id: str, other_id: str, decided_by: str, reason: str, timeout: float
    ) -> MergeDecision: ...


def _native(value: Any) -> Any:
    return value.to_native() if isinstance(value, neo4j.time.DateTime | neo4j.time.Date) else value


def _stamp(value: Any) -> str | None:
    """A stored time as the merge evidence writes it (ISO 8601), for comparing the two."""
    value = _native(value)
    return value.isoformat() if isinstance(value, datetime) else value


def _json_object(raw: Any) -> dict[str, str] | None:
    if not isinstance(raw, str):
        return None
    try:
        loaded = json.loads(raw)
    except ValueError:
        log.warning("unreadable JSON on a merge record")
        return None
    return {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else None


def merge_evidence_of(row: dict[str, Any]) -> MergeEvidence:
    return MergeEvidence(
        id=row["id"],
        survivor_id=row["survivor_id"],
        absorbed_id=row["absorbed_id"],
        linking_keys=frozenset(row.get("linking_keys") or ()),
        identity_keys=frozenset(row.get("absorbed_identity_keys") or ()),
        event_ids=frozenset(row.get("absorbed_event_ids") or ()),
        device_ids=frozenset(row.get("absorbed_device_ids") or ()),
        case_ids=frozenset(row.get("absorbed_case_ids") or ()),
        attributes=_json_object(row.get("absorbed_attributes")) or {},
        survivor_attributes=_json_object(row.get("survivor_attributes")),
    )


class GraphMergeReview:
    """Merge review against the customer graph; every method takes the seconds it may use."""

    def __init__(
        self,
        driver: neo4j.Driver,
        database: str = "neo4j",
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._driver = driver
        self._database = database
        self._clock = clock

    # -- the three decisions -----------------------------------------------------------------

    def unmerge(self, merge_id: str, decided_by: str, reason: str, timeout: float) -> Unmerged:
        decision_id = new_decision_id()

        def work(tx: neo4j.ManagedTransaction) -> Unmerged:
            now = self._clock()
            locked = tx.run(_LOCK_MERGE, merge_id=merge_id).single()
            if locked is None:
                raise NotFound(f"merge {merge_id} not found")
            merge = locked["merge"]
            if merge.get("undone_at") is not None:
                raise FailedPrecondition(
                    f"merge {merge_id} was already undone (decision {merge.get('undone_by') or 'unknown'})"
                )
            evidence = merge_evidence_of(merge)
            restored = evidence.absorbed_id
            holder = self._live(tx, evidence.survivor_id, f"merge {merge_id}: survivor")
            absorbed_into = tx.run(_CUSTOMER, id=restored).single()
            if absorbed_into is None or absorbed_into["merged_into"] != holder:
                raise FailedPrecondition(
                    f"merge {merge_id} no longer applies: {restored} is not merged into {holder} any more"
                )
            self._lock(tx, [holder, restored])
            plan = plan_unmerge(evidence, self._holding(tx, merge_id, holder))
            self._carry_out(tx, plan, merge_id, holder, restored)
            decision = MergeDecision(
                decision_id, DecisionKind.UNMERGED, (holder, restored), merge_id, decided_by, reason, now
            )
            tx.run(_MARK_UNDONE, merge_id=merge_id, now=now, decision_id=decision_id).consume()
            self._keep_apart(tx, evidence.survivor_id, restored, decision)
            self._record(tx, decision)
            sizes = {r["id"]: r for r in tx.run(_SIZES, ids=[holder, restored])}
            log.info(
                "merge undone",
                extra={"merge_id": merge_id, "survivor": holder, "restored": restored, "decision_id": decision_id},
            )
            return Unmerged(
                decision=decision,
                survivor_id=holder,
                restored_id=restored,
                restored_identity_keys=list(sizes[restored]["keys"]),
                restored_interactions=int(sizes[restored]["interactions"]),
                survivor_interactions=int(sizes[holder]["interactions"]),
                plan=plan,
            )

        return self._write("unmerge", work, timeout)

    def approve(self, customer_id: str, other_id: str, decided_by: str, reason: str, timeout: float) -> ApprovedMerge:
        decision_id = new_decision_id()

        def work(tx: neo4j.ManagedTransaction) -> ApprovedMerge:
            now = self._clock()
            a, b, keys = self._candidate_pair(tx, customer_id, other_id)
            survivor, absorbed = survivor_and_absorbed(self._created(tx, a), self._created(tx, b))
            merge_id = approved_merge_id(decision_id, absorbed)
            moved = absorb(tx, absorbed, survivor, now)
            row = merge_evidence(
                PlannedMerge(merge_id, "", now, survivor, absorbed, keys, [], [], absorbed_is_new=False), moved, now
            )
            # No event linked the two: a reviewer did.
            row["event_at"] = None
            row["props"].update(event_id=None, decision_id=decision_id)
            run(tx, RECORD_MERGES, merges=[row])
            decision = MergeDecision(decision_id, DecisionKind.APPROVED, (a, b), merge_id, decided_by, reason, now)
            self._record(tx, decision)
            log.info(
                "merge candidate approved",
                extra={"merge_id": merge_id, "survivor": survivor, "absorbed": absorbed, "decision_id": decision_id},
            )
            props = row["props"]
            return ApprovedMerge(
                decision=decision,
                merge_id=merge_id,
                merged_at=now,
                survivor_id=survivor,
                absorbed_id=absorbed,
                linking_keys=keys,
                absorbed_identity_keys=list(props["absorbed_identity_keys"]),
                absorbed_interactions=len(props["absorbed_event_ids"]),
            )

        return self._write("approve_merge_candidate", work, timeout)

    def reject(self, customer_id: str, other_id: str, decided_by: str, reason: str, timeout: float) -> MergeDecision:
        decision_id = new_decision_id()

        def work(tx: neo4j.ManagedTransaction) -> MergeDecision:
            now = self._clock()
            a, b, _keys = self._candidate_pair(tx, customer_id, other_id)
            tx.run(_DROP_CANDIDATE, a=a, b=b).consume()
            decision = MergeDecision(decision_id, DecisionKind.REJECTED, (a, b), None, decided_by, reason, now)
            self._keep_apart(tx, a, b, decision)
            self._record(tx, decision)
            log.info("merge candidate rejected", extra={"customers": [a, b], "decision_id": decision_id})
            return decision

        return self._write("reject_merge_candidate", work, timeout)

    # -- steps -------------------------------------------------------------------------------

    def _live(self, tx: neo4j.ManagedTransaction, customer_id: str, what: str) -> str:
        """The live customer `customer_id` is or was merged into."""
        current = customer_id
        for _ in range(MAX_MERGE_HOPS):
            row = tx.run(_CUSTOMER, id=current).single()
            if row is None:
                if current == customer_id:
                    raise NotFound(f"{what} {customer_id} not found")
                raise FailedPrecondition(f"{what} {customer_id} was merged into {current}, which no longer exists")
            if row["merged_into"] is None:
                return current
            current = row["merged_into"]
        raise FailedPrecondition(f"{what} {customer_id}: merge chain longer than {MAX_MERGE_HOPS}")

    @staticmethod
    def _created(tx: neo4j.ManagedTransaction, customer_id: str) -> tuple[str, datetime | None]:
        row = tx.run(_CUSTOMER, id=customer_id).single()
        return customer_id, _native(row["created_at"]) if row is not None else None

    def _lock(self, tx: neo4j.ManagedTransaction, customer_ids: list[str]) -> None:
        keys = sorted({r["key"] for r in tx.run(_IDENTITY_KEYS, ids=customer_ids)})
        tx.run(_LOCK_IDENTITIES, keys=keys).consume()
        tx.run(_LOCK_CUSTOMERS, ids=sorted(customer_ids)).consume()

    def _candidate_pair(
        self, tx: neo4j.ManagedTransaction, customer_id: str, other_id: str
    ) -> tuple[str, str, list[str]]:
        """The two live customers, lower id first, locked, and the weak keys they share."""
        first = self._live(tx, customer_id, "customer_id: customer")
        second = self._live(tx, other_id, "other_customer_id: customer")
        if first == second:
            raise FailedPrecondition(f"{customer_id} and {other_id} are one customer ({first}) already")
        a, b = sorted((first, second))
        self._lock(tx, [a, b])
        links = list(tx.run(_CANDIDATE_KEYS, a=a, b=b))
        if not links:
            raise FailedPrecondition(f"{a} and {b} are not a merge candidate (ListMergeCandidates)")
        keys = sorted({k for r in links for k in r["keys"] or ()})
        return a, b, keys

    def _holding(self, tx: neo4j.ManagedTransaction, merge_id: str, holder: str) -> Holding:
        keys = frozenset(r["key"] for r in tx.run(_IDENTITY_KEYS, ids=[holder]))
        interactions = tuple(
            HeldInteraction(r["event_id"], tuple(r["keys"]), bool(r["before"]), r["device_id"], r["case_id"])
            for r in tx.run(_HELD_INTERACTIONS, merge_id=merge_id, holder=holder)
        )
        held = tx.run(_HELD, holder=holder).single()
        if held is None:
            raise FailedPrecondition(f"customer {holder} disappeared during the unmerge")
        attributes = held["attributes"]
        absorbed = tuple(
            AbsorbedCustomer(r["merge_id"], r["customer_id"], r["survivor_id"], frozenset(r["keys"]))
            for r in tx.run(_ABSORBED_INTO, holder=holder)
        )
        return Holding(
            holder_id=holder,
            identity_keys=keys,
            interactions=interactions,
            device_ids=frozenset(held["devices"]),
            case_ids=frozenset(held["cases"]),
            absorbed=absorbed,
            attributes={k: v for k in ATTRIBUTES if (v := attributes.get(k)) is not None},
            traits_at=_stamp(attributes.get("traits_at")),
        )

    def _carry_out(
        self, tx: neo4j.ManagedTransaction, plan: UnmergePlan, merge_id: str, holder: str, restored: str
    ) -> None:
        sides: dict[str, Any] = {"holder": holder, "restored": restored}
        tx.run(_RESTORE, restored=restored, followers=plan.followers).consume()
        if plan.renamed_merges:
            tx.run(_RENAME_SURVIVOR, merge_ids=plan.renamed_merges, restored=restored).consume()
        tx.run(_MOVE_IDENTITIES, keys=plan.identity_keys, **sides).consume()
        tx.run(_MOVE_INTERACTIONS, event_ids=plan.event_ids, **sides).consume()
        tx.run(_GIVE_DEVICES, ids=plan.device_ids, restored=restored).consume()
        tx.run(_RELEASE_DEVICES, ids=plan.released_device_ids, holder=holder).consume()
        tx.run(_GIVE_CASES, ids=plan.case_ids, restored=restored).consume()
        tx.run(_RELEASE_CASES, ids=plan.released_case_ids, holder=holder).consume()
        tx.run(_SPLIT_CANDIDATES, keys=plan.identity_keys, **sides).consume()
        if plan.cleared_attributes:
            # Names from ATTRIBUTES only, never from input.
            cleared = ", ".join(f"h.{name} = null" for name in plan.cleared_attributes if name in ATTRIBUTES)
            tx.run(f"MATCH (h:Customer {{id: $holder}}) SET {cleared}", holder=holder).consume()
        tx.run(_RECOUNT, ids=[holder, restored]).consume()
        tx.run(_RECOUNT_AFFINITY, ids=[holder, restored]).consume()

    @staticmethod
    def _keep_apart(tx: neo4j.ManagedTransaction, one: str, other: str, decision: MergeDecision) -> None:
        a, b = sorted((one, other))
        tx.run(_KEEP_APART, a=a, b=b, decision_id=decision.id, now=decision.at).consume()

    @staticmethod
    def _record(tx: neo4j.ManagedTransaction, decision: MergeDecision) -> None:
        tx.run(
            _RECORD_DECISION,
            id=decision.id,
            kind=decision.kind.value,
            customer_ids=list(decision.customer_ids),
            merge_id=decision.merge_id,
            decided_by=decision.decided_by,
            reason=decision.reason,
            at=decision.at,
        ).consume()

    # -- the one way a decision is written ---------------------------------------------------

    def _write(self, name: str, work: Callable[[neo4j.ManagedTransaction], T], timeout: float) -> T:
        """Runs `work` in one write transaction; transient errors (deadlocks) are retried while
        the caller's time lasts, then surface as UNAVAILABLE."""
        budget = max(timeout, _MIN_TIMEOUT)
        with tracer.start_as_current_span(f"neo4j.write {name}") as span:
            span.set_attribute("db.system", "neo4j")
            span.set_attribute("db.name", self._database)
            try:
                with self._driver.session(
                    database=self._database,
                    connection_acquisition_timeout=budget,
                    max_transaction_retry_time=budget,
                    initial_retry_delay=0.05,
                    notifications_min_severity=neo4j.NotificationMinimumSeverity.OFF,
                ) as session:
                    return session.execute_write(neo4j.unit_of_work(timeout=budget)(work))
            except neo4j.exceptions.ClientError as exc:
                if exc.code and "TransactionTimedOut" in exc.code:
                    raise Unavailable(f"{name} took longer than the call's {budget:.2f}s") from exc
                raise
            except (neo4j.exceptions.DriverError, neo4j.exceptions.Neo4jError) as exc:
                if exc.is_retryable() or isinstance(exc, neo4j.exceptions.ConnectionAcquisitionTimeoutError):
                    span.record_exception(exc)
                    raise Unavailable(f"customer graph unavailable: {type(exc).__name__}") from exc
                raise
