"""Identity resolution for one batch of events: who each event belongs to, and which merge.

Rules (pure; the graph adapter feeds in what the graph says and carries out the plan):
- An event with strong identifiers is decided by them alone: no customer -> a new one; one ->
  attach; several -> merge into the survivor, the oldest customer (created_at, then id).
  Its weak identifiers that belong to another customer only make a merge candidate.
- An event with only weak identifiers attaches to the oldest customer they point at (and links
  the others as candidates), or starts a new customer.
- Identifiers nobody owns yet are attached to the event's customer.
- Customers a reviewer decided are different people (RejectMergeCandidate, UnmergeCustomer:
  `apart`, between live customers) are never merged or linked as candidates, whatever they
  share: an event whose identifiers point at both joins the oldest customer it names, as
  above, and the other keeps its identifiers. The decision holds for everything merged into
  either side later.
Events are resolved in batch order, each seeing the effect of the ones before it, so a batch
gives the same graph as the same events written one by one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rapport.identity import Strength
from rapport_profile.domain.interactions import InteractionRecord

CUSTOMER_ID_PREFIX = "cus_"
MERGE_ID_PREFIX = "mrg_"


def customer_id_for(event_id: str) -> str:
    """The id of the customer an event creates; stable, so a retried transaction makes the same one."""
    return CUSTOMER_ID_PREFIX + hashlib.sha256(b"customer\0" + event_id.encode()).hexdigest()[:16]


def merge_id_for(event_id: str, absorbed_id: str) -> str:
    return MERGE_ID_PREFIX + hashlib.sha256(f"merge\0{event_id}\0{absorbed_id}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class KnownCustomer:
    """A customer the graph already has, as seen through one of the batch's identities."""

    id: str
    created_at: datetime


@dataclass
class PlannedMerge:
    id: str
    event_id: str
    at: datetime
    survivor_id: str
    absorbed_id: str
    linking_keys: list[str]
    # What came from the absorbed customer within this batch (the graph adds what it already had).
    batch_identity_keys: list[str]
    batch_event_ids: list[str]
    absorbed_is_new: bool


@dataclass
class Plan:
    new_customers: list[tuple[str, datetime]] = field(default_factory=list)
    # Identity key -> the customer it is attached to (for identities no customer had).
    attachments: dict[str, str] = field(default_factory=dict)
    merges: list[PlannedMerge] = field(default_factory=list)
    # Event id -> the customer whose history it joins.
    owners: dict[str, str] = field(default_factory=dict)
    # (customer a, customer b) with a < b -> the weak keys they share.
    candidates: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    # Customer -> every customer absorbed into it by this batch, directly or through a chain.
    absorbed_into: dict[str, list[str]] = field(default_factory=dict)

    # Absorbed customer -> its final survivor.
    survivor_of: dict[str, str] = field(default_factory=dict)

    def final(self, customer_id: str) -> str:
        return self.survivor_of.get(customer_id, customer_id)

    @property
    def existing_absorbed(self) -> list[PlannedMerge]:
        return [m for m in self.merges if not m.absorbed_is_new]


class _Batch:
    def __init__(
        self, known: dict[str, KnownCustomer | None], now: datetime, apart: Iterable[tuple[str, str]] = ()
    ) -> None:
        self.owner: dict[str, str] = {k: c.id for k, c in known.items() if c is not None}
        self.created_at: dict[str, datetime] = {c.id: c.created_at for c in known.values() if c is not None}
        self.parent: dict[str, str] = {}
        self.new: set[str] = set()
        self.now = now
        self.keys_of: dict[str, list[str]] = {}
        self.events_of: dict[str, list[str]] = {}
        self.apart = list(apart)
        self.plan = Plan()

    def find(self, customer_id: str) -> str:
        root = customer_id
        while root in self.parent:
            root = self.parent[root]
        return root

    def customer_of(self, key: str) -> str | None:
        owner = self.owner.get(key)
        return self.find(owner) if owner is not None else None

    def kept_apart(self, a: str, b: str) -> bool:
        """Whether a reviewer decided that a's and b's customers (as merged so far) are different people."""
        fa, fb = self.find(a), self.find(b)
        return fa != fb and any({self.find(x), self.find(y)} == {fa, fb} for x, y in self.apart)

    def order(self, customer_id: str) -> tuple[datetime, str]:
        return self.created_at[customer_id], customer_id

    def create(self, event_id: str) -> str:
        cid = customer_id_for(event_id)
        # Customers born in one batch age in event order, so the survivor rule stays deterministic.
        created = self.now + timedelta(microseconds=len(self.plan.new_customers))
        self.created_at[cid] = created
        self.new.add(cid)
        self.plan.new_customers.append((cid, created))
        return cid

    def attach(self, key: str, customer_id: str) -> None:
        self.owner[key] = customer_id
        self.keys_of.setdefault(customer_id, []).append(key)
        self.plan.attachments[key] = customer_id

    def merge(self, absorbed: str, survivor: str, record: InteractionRecord, linking: list[str]) -> None:
        self.plan.merges.append(
            PlannedMerge(
                id=merge_id_for(record.event_id, absorbed),
                event_id=record.event_id,
                at=record.at,
                survivor_id=survivor,
                absorbed_id=absorbed,
                linking_keys=linking,
                batch_identity_keys=list(self.keys_of.pop(absorbed, [])),
                batch_event_ids=list(self.events_of.pop(absorbed, [])),
                absorbed_is_new=absorbed in self.new,
            )
        )
        self.parent[absorbed] = survivor

    def candidate(self, a: str, b: str, key: str) -> None:
        if self.kept_apart(a, b):
            return
        pair = (a, b) if a < b else (b, a)
        keys = self.plan.candidates.setdefault(pair, [])
        if key not in keys:
            keys.append(key)

    def resolve(self, record: InteractionRecord) -> None:
        strong: list[str] = []
        weak: list[str] = []
        for sighting in record.identities:
            (strong if sighting.identifier.strength is Strength.STRONG else weak).append(sighting.key)
        deciding = strong or weak
        found = {c for k in deciding if (c := self.customer_of(k)) is not None}
        matched = sorted(found, key=self.order) if len(found) > 1 else list(found)
        if not matched:
            target = self.create(record.event_id)
        elif strong and len(matched) > 1:
            target = matched[0]
            joining = [c for c in matched if c == target or not self.kept_apart(c, target)]
            linking = [k for k in strong if self.customer_of(k) in joining]
            for other in matched[1:]:
                # Checked again as the target grows: `other` may be apart from one merged just now.
                if not self.kept_apart(other, target):
                    self.merge(other, target, record, linking)
        else:
            target = matched[0]
        for key in strong + weak:
            owner = self.customer_of(key)
            if owner is None:
                self.attach(key, target)
            elif owner != target:
                self.candidate(target, owner, key)
        self.plan.owners[record.event_id] = target
        self.events_of.setdefault(target, []).append(record.event_id)

    def finish(self) -> Plan:
        plan = self.plan
        plan.survivor_of = {c: self.find(c) for c in self.parent}
        plan.owners = {e: self.find(c) for e, c in plan.owners.items()}
        plan.attachments = {k: self.find(c) for k, c in plan.attachments.items()}
        candidates: dict[tuple[str, str], list[str]] = {}
        for (a, b), keys in plan.candidates.items():
            fa, fb = self.find(a), self.find(b)
            if fa != fb and not self.kept_apart(fa, fb):
                pair = (fa, fb) if fa < fb else (fb, fa)
                candidates.setdefault(pair, []).extend(k for k in keys if k not in candidates.get(pair, []))
        plan.candidates = candidates
        for absorbed in self.parent:
            plan.absorbed_into.setdefault(self.find(absorbed), []).append(absorbed)
        return plan


def plan_batch(
    records: Sequence[InteractionRecord],
    known: dict[str, KnownCustomer | None],
    now: datetime,
    apart: Iterable[tuple[str, str]] = (),
) -> Plan:
    """Resolves `records` in order; `known` maps every identity key in them to its customer (or None).

    `apart` lists pairs of the known (live) customers a reviewer decided are different people.
    """
    batch = _Batch(known, now, apart)
    for record in records:
        batch.resolve(record)
    return batch.finish()
