"""Retention's Cypher: purge the oldest interactions in bounded batches, aggregates corrected.

Each batch is one write transaction that first locks the `(:RetentionRun {name})` node, so
replicas running the schedule and an operator running the CLI take turns: the next batch reads
the graph as the previous one left it, and no interaction is counted off an aggregate twice.
A batch that races the worker on a customer (both lock it) may deadlock; the driver reruns it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import neo4j
import neo4j.exceptions

from rapport.errors import Unavailable
from rapport_profile.domain.retention import PurgedInteraction, affinity_contributions

RUN_NAME = "interactions"

_LOCK = """
MERGE (r:RetentionRun {name: $name})
SET r.started_at = coalesce(r.started_at, $now), r.cutoff = $cutoff, r.last_batch_at = $now
"""
# The range index on Interaction.at serves both the filter and the order.
_OLDEST = """
MATCH (i:Interaction)
WHERE i.at < $cutoff
WITH i ORDER BY i.at LIMIT $limit
OPTIONAL MATCH (c:Customer)-[:HAD]->(i)
RETURN i.event_id AS event_id, c.id AS customer_id, i.agent_id AS agent_id, i.outcome AS outcome, i.csat AS csat
"""
_TAKE_AFFINITY = """
UNWIND $contributions AS d
MATCH (:Customer {id: d.customer_id})-[s:SERVED_BY]->(:Agent {id: d.agent_id})
SET s.contacts = coalesce(s.contacts, 0) - d.contacts,
    s.resolved = CASE WHEN coalesce(s.resolved, 0) > d.resolved THEN s.resolved - d.resolved ELSE 0 END,
    s.csat_sum = CASE WHEN coalesce(s.csat_sum, 0) > d.csat_sum THEN s.csat_sum - d.csat_sum ELSE 0 END,
    s.csat_count = CASE WHEN coalesce(s.csat_count, 0) > d.csat_count THEN s.csat_count - d.csat_count ELSE 0 END
WITH s, s.contacts <= 0 AS emptied
FOREACH (_ IN CASE WHEN emptied THEN [1] ELSE [] END | DELETE s)
RETURN count(CASE WHEN emptied THEN null ELSE 1 END) AS updated, count(CASE WHEN emptied THEN 1 END) AS removed
"""
_DELETE = """
UNWIND $event_ids AS id
MATCH (i:Interaction {event_id: id})
DETACH DELETE i
"""
_CONTACT_TIMES = """
UNWIND $ids AS id
MATCH (c:Customer {id: id})
CALL (c) {
  OPTIONAL MATCH (c)-[:HAD]->(i:Interaction)
  RETURN min(i.at) AS first_at, max(i.at) AS last_at
}
SET c.first_contact_at = first_at, c.last_contact_at = last_at
"""
_RECORD = """
MATCH (r:RetentionRun {name: $name})
SET r.purged = coalesce(r.purged, 0) + $purged, r.finished_at = $now
"""
_COUNT = """
MATCH (i:Interaction)
WHERE i.at < $cutoff
OPTIONAL MATCH (c:Customer)-[:HAD]->(i)
RETURN count(i) AS interactions, count(DISTINCT c) AS customers
"""


@dataclass(frozen=True)
class PurgedBatch:
    interactions: int
    customer_ids: list[str]
    affinity_updated: int
    affinity_removed: int


class RetentionGraph(Protocol):
    def purge_batch(self, cutoff: datetime, limit: int, now: datetime, timeout: float) -> PurgedBatch: ...

    def count_older(self, cutoff: datetime, timeout: float) -> tuple[int, int]:
        """(interactions, customers) a purge with this cutoff would touch."""
        ...


class GraphRetention:
    def __init__(self, driver: neo4j.Driver, database: str = "neo4j") -> None:
        self._driver = driver
        self._database = database

    def purge_batch(self, cutoff: datetime, limit: int, now: datetime, timeout: float) -> PurgedBatch:
        def work(tx: neo4j.ManagedTransaction) -> PurgedBatch:
            tx.run(_LOCK, name=RUN_NAME, now=now, cutoff=cutoff).consume()
            purged = [PurgedInteraction(**r.data()) for r in tx.run(_OLDEST, cutoff=cutoff, limit=limit)]
            if not purged:
                return PurgedBatch(0, [], 0, 0)
            taken = tx.run(_TAKE_AFFINITY, contributions=affinity_contributions(purged)).single()
            tx.run(_DELETE, event_ids=[p.event_id for p in purged]).consume()
            customers = sorted({p.customer_id for p in purged if p.customer_id is not None})
            tx.run(_CONTACT_TIMES, ids=customers).consume()
            tx.run(_RECORD, name=RUN_NAME, purged=len(purged), now=now).consume()
            return PurgedBatch(
                len(purged),
                customers,
                int(taken["updated"]) if taken else 0,
                int(taken["removed"]) if taken else 0,
            )

        return self._write(work, timeout)

    def count_older(self, cutoff: datetime, timeout: float) -> tuple[int, int]:
        def work(tx: neo4j.ManagedTransaction) -> tuple[int, int]:
            row = tx.run(_COUNT, cutoff=cutoff).single()
            return (int(row["interactions"]), int(row["customers"])) if row else (0, 0)

        with self._driver.session(database=self._database, default_access_mode=neo4j.READ_ACCESS) as session:
            return session.execute_read(neo4j.unit_of_work(timeout=timeout)(work))

    def _write(self, work: Any, timeout: float) -> PurgedBatch:
        try:
            with self._driver.session(database=self._database) as session:
                return session.execute_write(neo4j.unit_of_work(timeout=timeout)(work))  # type: ignore[no-any-return]
        except neo4j.exceptions.ServiceUnavailable as exc:
            raise Unavailable(f"customer graph unavailable: {type(exc).__name__}") from exc
