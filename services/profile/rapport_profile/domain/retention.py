"""Retention's rules, free of I/O: which interactions are too old, and what their removal takes
back from the aggregates built from them.

`SERVED_BY` counts each interaction that names an agent once (contacts, resolved, CSAT sum and
count), so purging one takes exactly its own contribution back; a link left with no contacts
goes. `last_at` stays: a purge takes the oldest interactions first, so the newest one an agent
handled is never purged while any other remains. Customer first/last contact times are read
again from the interactions that remain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

MAX_RETENTION_DAYS = 36_500


def cutoff(now: datetime, days: float) -> datetime:
    """Interactions whose event time is before this are purged."""
    if not 0 < days <= MAX_RETENTION_DAYS:
        raise ValueError(f"retention must be 1 to {MAX_RETENTION_DAYS} days, got {days}")
    return now - timedelta(days=days)


@dataclass(frozen=True)
class PurgedInteraction:
    event_id: str
    customer_id: str | None
    agent_id: str | None
    outcome: str | None
    csat: float | None


def affinity_contributions(purged: Iterable[PurgedInteraction]) -> list[dict[str, Any]]:
    """What to take off each (customer, agent) `SERVED_BY`, sorted so locks come in one order."""
    totals: dict[tuple[str, str], dict[str, Any]] = {}
    for item in purged:
        if item.customer_id is None or item.agent_id is None:
            continue
        row = totals.setdefault(
            (item.customer_id, item.agent_id),
            {
                "customer_id": item.customer_id,
                "agent_id": item.agent_id,
                "contacts": 0,
                "resolved": 0,
                "csat_sum": 0,
                "csat_count": 0,
            },
        )
        row["contacts"] += 1
        row["resolved"] += int(item.outcome == "resolved")
        if item.csat is not None:
            row["csat_sum"] += item.csat
            row["csat_count"] += 1
    return [totals[k] for k in sorted(totals)]


@dataclass
class PurgeReport:
    """What a purge removed (or, dry, would remove)."""

    cutoff: datetime
    interactions: int = 0
    customers: int = 0
    affinity_updated: int = 0
    affinity_removed: int = 0
    batches: int = 0
    dry_run: bool = False
    _seen: set[str] = field(default_factory=set, repr=False)

    def add(self, interactions: int, customers: Iterable[str], updated: int, removed: int) -> None:
        self.interactions += interactions
        self._seen.update(customers)
        self.customers = len(self._seen)
        self.affinity_updated += updated
        self.affinity_removed += removed
        self.batches += 1

    def as_dict(self) -> Mapping[str, Any]:
        return {
            "cutoff": self.cutoff.isoformat(),
            "dry_run": self.dry_run,
            "interactions": self.interactions,
            "customers": self.customers,
            "affinity_updated": self.affinity_updated,
            "affinity_removed": self.affinity_removed,
            "batches": self.batches,
        }
