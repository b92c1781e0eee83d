"""Where a WatchTimeline stream stands, so it can resume with nothing missed or repeated.

A watch delivers interactions in the order they were stored (their `ingested_at`), not in
event-time order: a late email that happened an hour ago is still news to the agent. Writers
on different Kafka partitions can commit slightly out of `ingested_at` order, so a single
high-water mark is not enough. The position is therefore a `floor` plus the ids delivered at
or above it: everything stored before `floor` counts as delivered, and above it exactly the
listed ids were. The floor trails the newest delivered item by `SKEW`, and rises sooner when
more than `MAX_TRACKED` ids would have to be listed, which keeps cursors small.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from rapport_timeline.domain.cursor import WatchToken, encode_watch_token
from rapport_timeline.domain.model import NANOS, Interaction

# How far behind the newest stored interaction a commit from another writer may land.
SKEW = 10 * NANOS
MAX_TRACKED = 64
MAX_REPLAY = 500


def storage_key(interaction: Interaction) -> tuple[int, int, str]:
    """The order a watch delivers in: when stored, then event time, then id."""
    stored = interaction.ingested_at if interaction.ingested_at is not None else interaction.at
    return stored, interaction.at, interaction.event_id


def stored_at(interaction: Interaction) -> int:
    return storage_key(interaction)[0]


@dataclass
class WatchPosition:
    customer_id: str
    floor: int
    # event id -> stored time, for every delivered interaction stored at or after `floor`.
    delivered: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_token(cls, token: WatchToken) -> WatchPosition:
        return cls(token.customer_id, token.floor, dict(token.delivered))

    @classmethod
    def after_all(cls, customer_id: str, newest: Iterable[Interaction]) -> WatchPosition:
        """A position past every interaction stored so far; `newest` holds at least those stored
        within SKEW of the newest one (more are harmless)."""
        items = list(newest)
        if not items:
            return cls(customer_id, 0)
        top = max(stored_at(i) for i in items)
        position = cls(customer_id, top - SKEW)
        for item in items:
            position.mark(item)
        return position

    def seen(self, interaction: Interaction) -> bool:
        return stored_at(interaction) < self.floor or interaction.event_id in self.delivered

    def mark(self, interaction: Interaction) -> None:
        """Record a delivered interaction and trim what the floor now covers."""
        stamp = stored_at(interaction)
        if stamp < self.floor:
            return
        self.delivered[interaction.event_id] = stamp
        newest = max(self.delivered.values())
        floor = max(self.floor, newest - SKEW)
        if len(self.delivered) > MAX_TRACKED:
            stamps = sorted(self.delivered.values(), reverse=True)
            # The lowest stamp that keeps at most MAX_TRACKED ids at or above it; ids sharing the
            # cut stamp are all dropped, so no id below the floor is ever still listed.
            cut = stamps[MAX_TRACKED - 1]
            floor = max(floor, cut + 1 if stamps[MAX_TRACKED] == cut else cut)
        if floor != self.floor:
            self.floor = floor
            self.delivered = {e: s for e, s in self.delivered.items() if s >= floor}

    def follow(self, survivor_id: str) -> None:
        self.customer_id = survivor_id

    def token(self) -> WatchToken:
        ordered = sorted(self.delivered.items(), key=lambda item: (item[1], item[0]))
        return WatchToken(self.customer_id, self.floor, tuple(ordered))

    def cursor(self) -> str:
        return encode_watch_token(self.token())


def unseen_in_order(position: WatchPosition, candidates: Iterable[Interaction]) -> list[Interaction]:
    """The candidates the watcher has not had yet, in delivery order, without duplicates."""
    fresh: dict[str, Interaction] = {}
    for item in candidates:
        if not position.seen(item):
            fresh[item.event_id] = item
    return sorted(fresh.values(), key=storage_key)
