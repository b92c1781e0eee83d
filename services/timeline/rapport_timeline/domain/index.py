"""One customer's interactions held in (event time, event id) order, paged in memory.

The hot-timeline cache keeps these for customers with long histories, where asking Neo4j to
expand and sort every interaction on each page would cost milliseconds of database time. The
adapter checks on every read that the graph still holds exactly as many interactions as the
index (interactions are immutable and only ever added, except when a merge or erasure moves
them, which changes the count), so a page served from here is the page the graph would give.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field

from rapport_timeline.domain.model import Interaction
from rapport_timeline.domain.paging import Order, PageQuery
from rapport_timeline.domain.watch import stored_at


@dataclass
class TimelineIndex:
    customer_id: str
    items: list[Interaction] = field(default_factory=list)  # ascending (at, event_id)
    keys: list[tuple[int, str]] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    newest_stored: int = 0

    @classmethod
    def build(cls, customer_id: str, interactions: Iterable[Interaction]) -> TimelineIndex:
        return cls(customer_id).extended(interactions)

    def __len__(self) -> int:
        return len(self.items)

    def extended(self, interactions: Iterable[Interaction]) -> TimelineIndex:
        """A new index that also holds the interactions not held yet (this one is left as it
        is, so readers on other threads never see it change)."""
        fresh = {i.event_id: i for i in interactions if i.event_id not in self.ids}
        if not fresh:
            return self
        items = sorted([*self.items, *fresh.values()], key=lambda i: (i.at, i.event_id))
        return TimelineIndex(
            self.customer_id,
            items,
            [(i.at, i.event_id) for i in items],
            self.ids | fresh.keys(),
            max(self.newest_stored, *(stored_at(i) for i in fresh.values())),
        )

    def page(self, query: PageQuery) -> list[Interaction]:
        """Up to `query.fetch_limit` interactions after the cursor, in the query's order."""
        f = query.filter
        lo = 0 if f.since is None else bisect.bisect_left(self.keys, (f.since, ""))
        hi = len(self.keys) if f.until is None else bisect.bisect_left(self.keys, (f.until, ""))
        after = query.after
        unfiltered = not (f.channels or f.kinds or f.topics or f.agent_id or f.case_id)
        if query.order is Order.NEWEST_FIRST:
            if after is not None:
                hi = min(hi, bisect.bisect_left(self.keys, (after.at, after.event_id)))
            if unfiltered:
                return self.items[max(lo, hi - query.fetch_limit) : hi][::-1]
            picked = []
            for i in range(hi - 1, lo - 1, -1):
                if f.matches(self.items[i]):
                    picked.append(self.items[i])
                    if len(picked) == query.fetch_limit:
                        break
            return picked
        if after is not None:
            lo = max(lo, bisect.bisect_right(self.keys, (after.at, after.event_id)))
        if unfiltered:
            return self.items[lo : min(hi, lo + query.fetch_limit)]
        picked = []
        for i in range(lo, hi):
            if f.matches(self.items[i]):
                picked.append(self.items[i])
                if len(picked) == query.fetch_limit:
                    break
        return picked

    def newest(self, limit: int) -> list[Interaction]:
        return self.items[-limit:][::-1] if limit else []
