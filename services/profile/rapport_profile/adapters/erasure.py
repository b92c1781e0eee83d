"""ForgetCustomer's Cypher: one write transaction erases a customer from every graph store.

Locking, so that nothing is added to the customer while it is being erased: its identities are
locked first, in key order, then the live customer, the order the worker takes them in (so the
two rarely deadlock); every merge into the customer and every interaction attached to it needs
that lock too. Only then, in later statements that see everything committed before the lock,
are the customers it absorbed found and locked and its data listed. Deadlocks that remain are
transient errors: the driver reruns the whole transaction.

The worker that raced us either committed before the lock (its writes are listed and erased
here) or waits for the lock, then finds the identities gone and the tombstones committed
(it checks them after taking its identity locks), and stores nothing of the customer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import neo4j
import neo4j.exceptions

from rapport.errors import RapportError, Unavailable
from rapport_profile.api.customer_view import CustomerLookup
from rapport_profile.api.graph_reader import MAX_MERGE_HOPS, DeadlineExceeded
from rapport_profile.domain.erasure import (
    CONTACT_PERSONAL_FIELDS,
    ErasureReceipt,
    TombstoneKind,
    Tombstones,
    count_facts,
    erasure_stores,
    receipt_id_for,
)

log = logging.getLogger(__name__)

_FIND_BY_ID = "MATCH (c:Customer {id: $id}) RETURN c.id AS id, c.merged_into AS merged_into"
_FIND_BY_IDENTITY = """
MATCH (:Identity {key: $key})-[:IDENTIFIES]->(c:Customer)
RETURN c.id AS id, c.merged_into AS merged_into
LIMIT 1
"""
_RECEIPT_BY_TOMBSTONE = """
MATCH (t:Tombstone {hash: $hash})
MATCH (r:ErasureReceipt {id: t.receipt_id})
RETURN r {.*} AS receipt
"""

_LOCK_IDENTITIES = """
MATCH (i:Identity)-[:IDENTIFIES]->(:Customer {id: $id})
WITH i ORDER BY i.key
SET i.erasing_at = $now
"""
# The lock: any merge into the customer, or interaction attached to it, waits for us from here.
_LOCK_LIVE = "MATCH (c:Customer {id: $id}) SET c.erasing_at = $now RETURN c.merged_into AS merged_into"
_LOCK_ABSORBED = """
MATCH (c:Customer {merged_into: $id})
SET c.erasing_at = $now
RETURN c.id AS id ORDER BY id
"""

_IDENTITIES = """
MATCH (i:Identity)-[:IDENTIFIES]->(c:Customer)
WHERE c.id IN $ids
RETURN i.key AS key ORDER BY key
"""
_INTERACTIONS = """
MATCH (c:Customer)-[:HAD]->(i:Interaction)
WHERE c.id IN $ids
RETURN i.event_id AS event_id, i.facts AS facts
"""
_AFFINITY = """
MATCH (c:Customer)-[s:SERVED_BY]->(:Agent)
WHERE c.id IN $ids
RETURN count(s) AS links, sum(coalesce(s.contacts, 0)) AS contacts
"""
_LINKS = """
MATCH (c:Customer)-[m:MAYBE_SAME|NOT_SAME]-()
WHERE c.id IN $ids
WITH DISTINCT m
RETURN count(CASE WHEN type(m) = 'MAYBE_SAME' THEN 1 END) AS candidates,
       count(CASE WHEN type(m) = 'NOT_SAME' THEN 1 END) AS kept_apart
"""
# Customers linked to ours by a shared weak identifier (a candidate, or a pair a reviewer kept
# apart) may hold interactions that carried one of our identifiers (the worker records every key
# an event carried); those mentions go too. A linked customer merged since holds them at its survivor.
_SCRUB_MENTIONS = """
MATCH (c:Customer)-[:MAYBE_SAME|NOT_SAME]-(y:Customer)
WHERE c.id IN $ids
WITH DISTINCT coalesce(y.merged_into, y.id) AS holder
WHERE NOT holder IN $ids
MATCH (:Customer {id: holder})-[:HAD]->(i:Interaction)
WHERE any(k IN coalesce(i.identity_keys, []) WHERE k IN $keys)
SET i.identity_keys = [k IN i.identity_keys WHERE NOT k IN $keys]
RETURN count(i) AS scrubbed
"""
# Review decisions about the customer (approve, reject, unmerge); few, so a label scan.
_DELETE_DECISIONS = """
MATCH (d:MergeDecision)
WHERE any(x IN coalesce(d.customer_ids, []) WHERE x IN $ids)
DETACH DELETE d
RETURN count(d) AS deleted
"""
_DELETE_MERGES = """
CALL () {
  UNWIND $ids AS id MATCH (m:Merge {survivor_id: id}) RETURN m
  UNION
  UNWIND $ids AS id MATCH (m:Merge {absorbed_id: id}) RETURN m
}
DETACH DELETE m
RETURN count(m) AS deleted
"""
_DELETE_INTERACTIONS = """
MATCH (c:Customer)-[:HAD]->(i:Interaction)
WHERE c.id IN $ids
DETACH DELETE i
"""
# Cases and devices are shared by id; one nobody else points at any more goes with the customer.
_DETACH_CASES = """
MATCH (c:Customer)-[r:HAS_CASE]->(k:Case)
WHERE c.id IN $ids
DELETE r
WITH DISTINCT k
WITH k, EXISTS { (k)--() } AS shared
FOREACH (_ IN CASE WHEN shared THEN [] ELSE [1] END | DELETE k)
RETURN count(CASE WHEN shared THEN null ELSE 1 END) AS deleted, count(CASE WHEN shared THEN 1 END) AS kept
"""
_DETACH_DEVICES = """
MATCH (c:Customer)-[r:OWNS]->(d:Device)
WHERE c.id IN $ids
DELETE r
WITH DISTINCT d
WITH d, EXISTS { (d)--() } AS shared
FOREACH (_ IN CASE WHEN shared THEN [] ELSE [1] END | DELETE d)
RETURN count(CASE WHEN shared THEN null ELSE 1 END) AS deleted, count(CASE WHEN shared THEN 1 END) AS kept
"""
_DELETE_IDENTITIES = """
MATCH (i:Identity)-[:IDENTIFIES]->(c:Customer)
WHERE c.id IN $ids
DETACH DELETE i
"""
_DELETE_CUSTOMERS = """
MATCH (c:Customer)
WHERE c.id IN $ids
DETACH DELETE c
RETURN count(c) AS deleted
"""

# The router's contacts of the customer, by customer id or by the identifier a contact of an
# unknown customer was routed with.
_CONTACTS = """
CALL () {
  UNWIND $ids AS id MATCH (k:Contact {customer_id: id}) RETURN k
  UNION
  UNWIND $identities AS p MATCH (k:Contact {identity_kind: p.kind, identity_value: p.value}) RETURN k
}
SET k.updated_at = $now
RETURN k.id AS id, k.state AS state, k.event_id AS event_id
ORDER BY id
"""
# The router's reservation rule (rapport_router.adapters.graph): an offered or assigned contact
# holds one unit of `active_<channel>` on its agent; releasing one bumps `rev` so every router
# replica's roster picks the change up, and an agent left with nothing is idle from now.
_RELEASE_AGENTS = """
UNWIND $contact_ids AS cid
MATCH (k:Contact {id: cid})
WHERE k.state IN ['offered', 'assigned']
MATCH (a:Agent {id: k.agent_id})
WITH a, 'active_' + k.channel AS key
SET a[key] = CASE WHEN coalesce(a[key], 0) > 0 THEN a[key] - 1 ELSE 0 END,
    a.updated_at = $now, a.rev = $rev
SET a.idle_since = CASE
      WHEN reduce(s = 0, p IN keys(a) | s + CASE WHEN p STARTS WITH 'active_' THEN a[p] ELSE 0 END) = 0
      THEN coalesce(a.idle_since, $now) ELSE a.idle_since END
RETURN count(*) AS released
"""
_DELETE_OPEN_CONTACTS = """
UNWIND $contact_ids AS cid
MATCH (k:Contact {id: cid})
WHERE k.state IN ['waiting', 'offered', 'assigned']
DETACH DELETE k
"""
# Ended contacts stay for statistics, without what says who or what; an ending event not yet
# published never will be (it would carry the identifier; the tombstones would drop it anyway).
_SCRUB_ENDED_CONTACTS = (
    """
UNWIND $contact_ids AS cid
MATCH (k:Contact {id: cid})
WHERE NOT k.state IN ['waiting', 'offered', 'assigned']
SET """
    + ", ".join(f"k.{name} = null" for name in CONTACT_PERSONAL_FIELDS)
    + """, k.erased_at = $now
REMOVE k:Outbox
"""
)

_TOMBSTONES = """
UNWIND $tombstones AS t
MERGE (s:Tombstone {hash: t.hash})
ON CREATE SET s.kind = t.kind, s.receipt_id = $receipt_id, s.at = $now
"""
_RECEIPT = """
MERGE (r:ErasureReceipt {id: $id})
ON CREATE SET r.customer_ids = $customer_ids, r.erased_at = $now, r.erased_by = $erased_by, r.reason = $reason,
              r.stores = $stores, r.tombstone_count = $tombstone_count
RETURN r {.*} AS receipt
"""


class Eraser(Protocol):
    def forget(self, lookup: CustomerLookup, reason: str, erased_by: str, timeout: float) -> ErasureReceipt | None:
        """The receipt (`already_erased` when an earlier call erased it), or None when unknown."""
        ...


@dataclass(frozen=True)
class _Erasure:
    customer_ids: list[str]
    receipt: ErasureReceipt


def _native(value: Any) -> Any:
    return value.to_native() if hasattr(value, "to_native") else value


def receipt_from(row: dict[str, Any], *, already_erased: bool) -> ErasureReceipt:
    erased_at = _native(row.get("erased_at"))
    return ErasureReceipt(
        receipt_id=str(row["id"]),
        customer_ids=tuple(row.get("customer_ids") or ()),
        erased_at=erased_at if isinstance(erased_at, datetime) else datetime.fromtimestamp(0, UTC),
        erased_by=str(row.get("erased_by") or ""),
        reason=str(row.get("reason") or ""),
        stores=ErasureReceipt.stores_from_json(row.get("stores")),
        tombstone_count=int(row.get("tombstone_count") or 0),
        already_erased=already_erased,
    )


def _identity_pair(key: str) -> dict[str, str]:
    kind, _, value = key.partition(":")
    return {"kind": kind, "value": value}


class GraphEraser:
    def __init__(
        self,
        driver: neo4j.Driver,
        database: str = "neo4j",
        *,
        tombstones: Tombstones | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._driver = driver
        self._database = database
        self._tombstones = tombstones or Tombstones()
        self._clock = clock

    def forget(self, lookup: CustomerLookup, reason: str, erased_by: str, timeout: float) -> ErasureReceipt | None:
        def work(tx: neo4j.ManagedTransaction) -> ErasureReceipt | None:
            return self._forget(tx, lookup, reason, erased_by)

        try:
            with self._driver.session(
                database=self._database,
                connection_acquisition_timeout=timeout,
                notifications_min_severity=neo4j.NotificationMinimumSeverity.OFF,
            ) as session:
                return session.execute_write(neo4j.unit_of_work(timeout=timeout)(work))
        except neo4j.exceptions.ClientError as exc:
            if exc.code and "TransactionTimedOut" in exc.code:
                raise DeadlineExceeded(f"the erasure took longer than the call's {timeout:.2f}s") from exc
            raise
        except (neo4j.exceptions.DriverError, neo4j.exceptions.Neo4jError) as exc:
            if exc.is_retryable() or isinstance(exc, neo4j.exceptions.ConnectionAcquisitionTimeoutError):
                raise Unavailable(f"customer graph unavailable: {type(exc).__name__}") from exc
            raise

    # -- the transaction --------------------------------------------------------------------

    @staticmethod
    def _rows(tx: neo4j.ManagedTransaction, query: str, **params: Any) -> list[dict[str, Any]]:
        return [record.data() for record in tx.run(query, params)]

    def _live(self, tx: neo4j.ManagedTransaction, lookup: CustomerLookup) -> str | None:
        if lookup.customer_id is not None:
            rows = self._rows(tx, _FIND_BY_ID, id=lookup.customer_id)
        else:
            rows = self._rows(tx, _FIND_BY_IDENTITY, key=lookup.identity_key)
        if not rows:
            return None
        current, seen = rows[0], [rows[0]["id"]]
        while current["merged_into"] is not None:
            if len(seen) > MAX_MERGE_HOPS or current["merged_into"] in seen:
                raise RapportError(f"merge chain from {seen[0]} does not end: {seen}")
            found = self._rows(tx, _FIND_BY_ID, id=current["merged_into"])
            if not found:
                return None
            current = found[0]
            seen.append(current["id"])
        return str(current["id"])

    def _earlier_receipt(self, tx: neo4j.ManagedTransaction, lookup: CustomerLookup) -> ErasureReceipt | None:
        if lookup.customer_id is not None:
            hashed = self._tombstones.customer(lookup.customer_id)
        else:
            hashed = self._tombstones.identity(str(lookup.identity_key))
        rows = self._rows(tx, _RECEIPT_BY_TOMBSTONE, hash=hashed)
        return receipt_from(rows[0]["receipt"], already_erased=True) if rows else None

    def _forget(
        self, tx: neo4j.ManagedTransaction, lookup: CustomerLookup, reason: str, erased_by: str
    ) -> ErasureReceipt | None:
        now = self._clock()
        for _ in range(MAX_MERGE_HOPS):
            live = self._live(tx, lookup)
            if live is None:
                return self._earlier_receipt(tx, lookup)
            self._rows(tx, _LOCK_IDENTITIES, id=live, now=now)
            locked = self._rows(tx, _LOCK_LIVE, id=live, now=now)
            if locked and locked[0]["merged_into"] is None:
                break
            # Merged away (or erased) between the read and the lock: look again.
        else:
            raise RapportError(f"{lookup.describe()} kept moving while being erased")
        absorbed = [r["id"] for r in self._rows(tx, _LOCK_ABSORBED, id=live, now=now)]
        ids = [live, *absorbed]
        return self._erase(tx, ids, reason, erased_by, now)

    def _erase(
        self, tx: neo4j.ManagedTransaction, ids: list[str], reason: str, erased_by: str, now: datetime
    ) -> ErasureReceipt:
        keys = [r["key"] for r in self._rows(tx, _IDENTITIES, ids=ids)]
        interactions = self._rows(tx, _INTERACTIONS, ids=ids)
        event_ids = [r["event_id"] for r in interactions]
        affinity = self._rows(tx, _AFFINITY, ids=ids)[0]
        links = self._rows(tx, _LINKS, ids=ids)[0]
        mentions = self._rows(tx, _SCRUB_MENTIONS, ids=ids, keys=keys)[0]["scrubbed"] if keys else 0

        contacts = self._rows(tx, _CONTACTS, ids=ids, identities=[_identity_pair(k) for k in keys], now=now)
        contact_ids = [c["id"] for c in contacts]
        router = {"waiting": 0, "offered": 0, "assigned": 0, "ended_scrubbed": 0}
        for contact in contacts:
            state = contact["state"]
            router[state if state in ("waiting", "offered", "assigned") else "ended_scrubbed"] += 1
        if contact_ids:
            released = self._rows(
                tx, _RELEASE_AGENTS, contact_ids=contact_ids, now=now, rev=int(now.timestamp() * 1000)
            )[0]["released"]
            router["agent_reservations_released"] = released
            self._rows(tx, _DELETE_OPEN_CONTACTS, contact_ids=contact_ids)
            self._rows(tx, _SCRUB_ENDED_CONTACTS, contact_ids=contact_ids, now=now)

        merges = self._rows(tx, _DELETE_MERGES, ids=ids)[0]["deleted"]
        decisions = self._rows(tx, _DELETE_DECISIONS, ids=ids)[0]["deleted"]
        self._rows(tx, _DELETE_INTERACTIONS, ids=ids)
        cases = self._rows(tx, _DETACH_CASES, ids=ids)
        devices = self._rows(tx, _DETACH_DEVICES, ids=ids)
        self._rows(tx, _DELETE_IDENTITIES, ids=ids)
        customers = self._rows(tx, _DELETE_CUSTOMERS, ids=ids)[0]["deleted"]

        graph = {
            "customers": customers,
            "identities": len(keys),
            "interactions": len(event_ids),
            "facts": count_facts(r["facts"] for r in interactions),
            "cases": cases[0]["deleted"] if cases else 0,
            "shared_cases_detached": cases[0]["kept"] if cases else 0,
            "devices": devices[0]["deleted"] if devices else 0,
            "shared_devices_detached": devices[0]["kept"] if devices else 0,
            "merge_records": merges,
            "merge_candidates": links["candidates"],
            "merge_decisions": decisions,
            "kept_apart_links": links["kept_apart"],
            "affinity_links": affinity["links"],
            "affinity_contacts": affinity["contacts"] or 0,
            "mentions_in_other_customers": mentions,
        }
        receipt_id = receipt_id_for(ids[0])
        contact_events = [c["event_id"] for c in contacts if c.get("event_id")]
        tombstones = self._tombstone_rows(ids, keys, [*event_ids, *contact_events])
        self._rows(tx, _TOMBSTONES, tombstones=tombstones, receipt_id=receipt_id, now=now)
        receipt = ErasureReceipt(
            receipt_id=receipt_id,
            customer_ids=tuple(ids),
            erased_at=now,
            erased_by=erased_by,
            reason=reason,
            stores=erasure_stores(graph, router, ids),
            tombstone_count=len(keys),
        )
        stored = self._rows(
            tx,
            _RECEIPT,
            id=receipt_id,
            customer_ids=ids,
            now=now,
            erased_by=erased_by,
            reason=reason,
            stores=receipt.stores_json(),
            tombstone_count=len(keys),
        )
        log.info(
            "customer erased",
            extra={"receipt_id": receipt_id, "customers": len(ids), "identities": len(keys), "events": len(event_ids)},
        )
        return receipt_from(stored[0]["receipt"], already_erased=False)

    def _tombstone_rows(
        self, ids: Sequence[str], keys: Sequence[str], event_ids: Sequence[str]
    ) -> list[dict[str, str]]:
        t = self._tombstones
        rows = [{"hash": t.identity(k), "kind": TombstoneKind.IDENTITY} for k in keys]
        rows += [{"hash": t.event(e), "kind": TombstoneKind.EVENT} for e in sorted(set(event_ids))]
        rows += [{"hash": t.customer(c), "kind": TombstoneKind.CUSTOMER} for c in ids]
        return rows
