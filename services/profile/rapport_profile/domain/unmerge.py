"""Undoing a merge, planned from its evidence and what the merged customer holds now (no I/O).

A merge moved everything of the absorbed customer X to the survivor. Since then the profile
(held by the survivor, or by whoever absorbed the survivor later: the *holder*) kept growing.
The plan says what goes back to X; everything else stays with the holder:

- Identities: X's own (the merge's `absorbed_identity_keys` the holder still has). The linking
  keys that were the survivor's stay with it.
- Interactions: X's own (`absorbed_event_ids`). Every other interaction is split by the
  identity keys it carried (`identity_keys`), counting only keys the holder has now:
  * keys carried by an interaction stored before the merge are the survivor's (*anchors*), as
    are the survivor's linking keys; X's keys are never anchors;
  * keys first seen after the merge (*new*) tie together the interactions that carried them;
  * a group of interactions so tied goes to X when it carries one of X's keys and no anchor;
    it stays when it carries an anchor, or none of X's keys.
  So an interaction carrying only X's keys goes back to X, one carrying only the survivor's
  stays, one carrying both (like the linking event itself) stays with the survivor, and a
  key first given after the merge follows the interactions that carried it.
- Devices and cases: X's own, plus those named by interactions that go to X; the holder keeps
  the ones its remaining interactions name, or that never were X's.
- Customers merged into X before the merge point at X again, as do customers merged into the
  holder later whose every identity went back to X (their merge now names X as survivor).
- Attributes: X's node kept its own. The holder drops an attribute it only had from X (empty
  before the merge, X's value now, no newer traits since), when the merge recorded that.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

ATTRIBUTES = ("language", "tier", "segment", "display_name")


@dataclass(frozen=True)
class MergeEvidence:
    """A recorded merge, as stored on its (:Merge) node."""

    id: str
    survivor_id: str
    absorbed_id: str
    linking_keys: frozenset[str]
    identity_keys: frozenset[str]
    event_ids: frozenset[str]
    device_ids: frozenset[str] = frozenset()
    case_ids: frozenset[str] = frozenset()
    # X's traits when it was absorbed.
    attributes: dict[str, str] = field(default_factory=dict)
    # The survivor's traits (and `traits_at`) just before; None for merges recorded before
    # the evidence held them.
    survivor_attributes: dict[str, str] | None = None


@dataclass(frozen=True)
class HeldInteraction:
    event_id: str
    identity_keys: tuple[str, ...]
    # Stored (ingested) before the merge was made.
    before_merge: bool
    device_id: str | None = None
    case_id: str | None = None


@dataclass(frozen=True)
class AbsorbedCustomer:
    """A live merge whose absorbed customer now points at the holder."""

    merge_id: str
    customer_id: str
    survivor_id: str
    identity_keys: frozenset[str]


@dataclass(frozen=True)
class Holding:
    """What the holder has now."""

    holder_id: str
    identity_keys: frozenset[str]
    interactions: tuple[HeldInteraction, ...]
    device_ids: frozenset[str] = frozenset()
    case_ids: frozenset[str] = frozenset()
    absorbed: tuple[AbsorbedCustomer, ...] = ()
    attributes: dict[str, str] = field(default_factory=dict)
    traits_at: str | None = None


@dataclass(frozen=True)
class UnmergePlan:
    identity_keys: list[str]
    event_ids: list[str]
    # OWNS / HAS_CASE the restored customer gets, and the ones the holder gives up.
    device_ids: list[str]
    released_device_ids: list[str]
    case_ids: list[str]
    released_case_ids: list[str]
    # Customers that point at the restored customer again; merges whose survivor becomes it.
    followers: list[str]
    renamed_merges: list[str]
    # Holder attributes to clear.
    cleared_attributes: list[str]


class _Groups:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, item: str) -> str:
        while (up := self.parent.get(item, item)) != item:
            self.parent[item] = self.parent.get(up, up)
            item = self.parent[item]
        return item

    def join(self, a: str, b: str) -> None:
        self.parent[self.find(b)] = self.find(a)


def _split(evidence: MergeEvidence, holding: Holding, restored: frozenset[str]) -> tuple[set[str], set[str]]:
    """The interactions (beyond X's own) and the new keys that go to X."""
    held = holding.identity_keys
    others = [i for i in holding.interactions if i.event_id not in evidence.event_ids]
    keys_of = {i.event_id: {k for k in i.identity_keys if k in held} for i in others}
    anchors = {k for i in others if i.before_merge for k in keys_of[i.event_id]}
    anchors |= evidence.linking_keys & held
    anchors -= restored
    new = held - restored - anchors

    groups = _Groups()
    first_carrier: dict[str, str] = {}
    for i in others:
        for key in keys_of[i.event_id] & new:
            if key in first_carrier:
                groups.join(first_carrier[key], i.event_id)
            else:
                first_carrier[key] = i.event_id
    carried: dict[str, set[str]] = {}
    for i in others:
        carried.setdefault(groups.find(i.event_id), set()).update(keys_of[i.event_id])
    going = {root for root, keys in carried.items() if keys & restored and not keys & anchors}
    events = {i.event_id for i in others if groups.find(i.event_id) in going}
    keys = {k for root in going for k in carried[root] & new}
    return events, keys


def _followers(evidence: MergeEvidence, holding: Holding, restored_keys: set[str]) -> tuple[list[str], list[str]]:
    merges = [m for m in holding.absorbed if m.merge_id != evidence.id and m.customer_id != evidence.absorbed_id]

    def closure(start: set[str]) -> set[str]:
        following = set(start)
        grew = True
        while grew:
            grew = False
            for m in merges:
                if m.survivor_id in following and m.customer_id not in following:
                    following.add(m.customer_id)
                    grew = True
        return following

    subtree = closure({evidence.absorbed_id})
    # Merged into the holder later, but every identity went back to X: they were X's too.
    renamed = [
        m for m in merges if m.customer_id not in subtree and m.identity_keys and m.identity_keys <= restored_keys
    ]
    following = closure(subtree | {m.customer_id for m in renamed})
    following.discard(evidence.absorbed_id)
    return sorted(following), sorted(m.merge_id for m in renamed)


def _owned(
    own: Iterable[str], held: frozenset[str], named_by_restored: set[str], named_by_kept: set[str]
) -> tuple[list[str], list[str]]:
    """(ids the restored customer gets, ids the holder gives up) among `held`."""
    going = (set(own) | named_by_restored) & held
    released = {d for d in going if d not in named_by_kept}
    return sorted(going), sorted(released)


def _cleared(evidence: MergeEvidence, holding: Holding) -> list[str]:
    before = evidence.survivor_attributes
    if before is None or holding.traits_at != before.get("traits_at"):
        return []
    return [
        name
        for name in ATTRIBUTES
        if name not in before
        and evidence.attributes.get(name) is not None
        and holding.attributes.get(name) == evidence.attributes.get(name)
    ]


def plan_unmerge(evidence: MergeEvidence, holding: Holding) -> UnmergePlan:
    restored = evidence.identity_keys & holding.identity_keys
    later_events, new_keys = _split(evidence, holding, restored)
    held_events = {i.event_id for i in holding.interactions}
    events = (evidence.event_ids & held_events) | later_events
    keys = set(restored) | new_keys
    staying = [i for i in holding.interactions if i.event_id not in events]
    going = [i for i in holding.interactions if i.event_id in events]
    devices, released_devices = _owned(
        evidence.device_ids,
        holding.device_ids,
        {i.device_id for i in going if i.device_id},
        {i.device_id for i in staying if i.device_id},
    )
    cases, released_cases = _owned(
        evidence.case_ids,
        holding.case_ids,
        {i.case_id for i in going if i.case_id},
        {i.case_id for i in staying if i.case_id},
    )
    followers, renamed = _followers(evidence, holding, keys)
    return UnmergePlan(
        identity_keys=sorted(keys),
        event_ids=sorted(events),
        device_ids=devices,
        released_device_ids=released_devices,
        case_ids=cases,
        released_case_ids=released_cases,
        followers=followers,
        renamed_merges=renamed,
        cleared_attributes=_cleared(evidence, holding),
    )
