"""Erasure's rules, free of I/O: tombstone hashes, screening events against them, the receipt.

An erased customer leaves tombstones, never its identifiers: each is an HMAC-SHA256 keyed with
the deployment's salt (RAPPORT_ERASURE_SALT), so the graph cannot be searched for a known email
address without the salt. Three kinds are kept: every identity key the customer held, every
event id it had (so a replay of its own events is dropped whole, whatever else they carry), and
its customer ids (so a repeated ForgetCustomer finds the first receipt).

Screening (what the ingest worker does with a batch): an event whose id is tombstoned, or
whose identity keys are all tombstoned, is dropped; an event that also carries fresh
identifiers is kept without the tombstoned ones, so it starts (or joins) someone else.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from typing import Any

from rapport_profile.domain.interactions import InteractionRecord

# Local stacks only: a deployment sets its own secret (a known salt lets anyone holding the
# graph test guesses of an identifier against the tombstones). Changing it orphans existing
# tombstones, so it is set once per deployment and kept like a key.
DEFAULT_ERASURE_SALT = "rapport-local-erasure-salt"

RECEIPT_ID_PREFIX = "era_"
MAX_REASON_LENGTH = 256

KAFKA_NOTE = (
    "raw events stay on the interactions topic until its retention deletes them; tombstones stop "
    "a replay of them from re-creating the customer"
)
TIMELINE_NOTE = (
    "every timeline read resolves the customer in the graph first, so no cached page of it is "
    "served; each replica also drops its cached pages on the erased notice"
)
GRAPH_NOTE = "deleted in one transaction; shared cases and devices kept, detached from the customer"
ROUTER_NOTE = (
    "waiting and offered contacts deleted, the agents' reservations released; ended contacts kept "
    "without personal fields"
)

# Contact properties that say who the customer is or what they said; ended contacts keep the
# rest (channel, team, skills, times, outcome) for the contact centre's statistics.
CONTACT_PERSONAL_FIELDS = (
    "customer_id",
    "identity_kind",
    "identity_value",
    "identity_verified",
    "attributes",
    "notes",
    "topic",
    "intent",
    "sentiment",
    "end_sentiment",
    "case_id",
    "explanation",
    "preferred_agent_id",
    "language",
)


class TombstoneKind:
    IDENTITY = "identity"
    EVENT = "event"
    CUSTOMER = "customer"


@dataclass(frozen=True)
class Tombstones:
    """Hashes identity keys, event ids and customer ids with the deployment's salt."""

    salt: str = DEFAULT_ERASURE_SALT
    # The worker hashes every event id and identity key it sees: the one-shot C HMAC, and each
    # identity key's hash remembered (keys recur on every event of a customer).
    _key: bytes = field(init=False, repr=False, compare=False)
    _identity: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_key", self.salt.encode())
        object.__setattr__(
            self, "_identity", lru_cache(maxsize=65536)(lambda key: self.hash(TombstoneKind.IDENTITY, key))
        )

    def hash(self, kind: str, value: str) -> str:
        return hmac.digest(self._key, f"{kind}\0{value}".encode(), "sha256").hex()

    def identity(self, key: str) -> str:
        return str(self._identity(key))

    def event(self, event_id: str) -> str:
        return self.hash(TombstoneKind.EVENT, event_id)

    def customer(self, customer_id: str) -> str:
        return self.hash(TombstoneKind.CUSTOMER, customer_id)


def receipt_id_for(customer_id: str) -> str:
    """The receipt of erasing `customer_id` (the live one): stable, so a retried transaction
    writes the same receipt."""
    return RECEIPT_ID_PREFIX + hashlib.sha256(f"erasure\0{customer_id}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Screened:
    """A batch after screening: what to write, what was dropped, how many identifiers were cut."""

    kept: list[InteractionRecord]
    dropped: list[str] = field(default_factory=list)
    stripped_identifiers: int = 0


def screen(records: Sequence[InteractionRecord], erased_events: set[str], erased_keys: set[str]) -> Screened:
    """Drops the events of erased customers and cuts tombstoned identifiers out of the others."""
    if not erased_events and not erased_keys:
        return Screened(list(records))
    kept: list[InteractionRecord] = []
    dropped: list[str] = []
    stripped = 0
    for record in records:
        fresh = tuple(s for s in record.identities if s.key not in erased_keys)
        if record.event_id in erased_events or not fresh:
            dropped.append(record.event_id)
            continue
        if len(fresh) == len(record.identities):
            kept.append(record)
            continue
        stripped += len(record.identities) - len(fresh)
        properties = {**record.properties, "identity_keys": [s.key for s in fresh]}
        kept.append(replace(record, identities=fresh, properties=properties))
    return Screened(kept, dropped, stripped)


def count_facts(facts: Iterable[str | None]) -> int:
    """Facts stored on interactions, each interaction's `facts` being a JSON list."""
    total = 0
    for raw in facts:
        if not raw:
            continue
        try:
            parsed = json.loads(raw)
        except ValueError:
            continue  # unreadable, but still deleted with its interaction
        total += len(parsed) if isinstance(parsed, list) else 0
    return total


@dataclass(frozen=True)
class StoreErasure:
    store: str
    removed: Mapping[str, int]
    note: str = ""

    def as_json(self) -> dict[str, object]:
        return {"store": self.store, "removed": dict(self.removed), "note": self.note}

    @classmethod
    def from_json(cls, raw: Mapping[str, object]) -> StoreErasure:
        removed = raw.get("removed")
        counts = {str(k): int(v) for k, v in removed.items()} if isinstance(removed, dict) else {}
        return cls(str(raw.get("store", "")), counts, str(raw.get("note", "")))


@dataclass(frozen=True)
class ErasureReceipt:
    receipt_id: str
    customer_ids: tuple[str, ...]
    erased_at: datetime
    erased_by: str
    reason: str
    stores: tuple[StoreErasure, ...]
    tombstone_count: int
    already_erased: bool = False

    def stores_json(self) -> str:
        return json.dumps([s.as_json() for s in self.stores], sort_keys=True)

    @staticmethod
    def stores_from_json(raw: str | None) -> tuple[StoreErasure, ...]:
        if not raw:
            return ()
        parsed = json.loads(raw)
        return tuple(StoreErasure.from_json(s) for s in parsed if isinstance(s, dict))


def nonzero(counts: Mapping[str, int]) -> dict[str, int]:
    """The counts a receipt shows: kinds with nothing removed are left out."""
    return {k: v for k, v in sorted(counts.items()) if v}


def erasure_stores(
    graph: Mapping[str, int], router: Mapping[str, int], customer_ids: Sequence[str]
) -> tuple[StoreErasure, ...]:
    """The receipt's stores, in a fixed order: graph, router queue, timeline cache, Kafka."""
    return (
        StoreErasure("graph", nonzero(graph), GRAPH_NOTE),
        StoreErasure("router-queue", nonzero(router), ROUTER_NOTE),
        StoreErasure("timeline-cache", {"erased_notices": len(customer_ids)}, TIMELINE_NOTE),
        StoreErasure("kafka", {}, KAFKA_NOTE),
    )
