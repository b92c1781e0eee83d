"""The hot-timeline cache: long customer histories paged in memory, never stale.

Every read already resolves the customer and reads its interaction count in the same query
(`COUNT { (c)-[:HAD]->() }` is a constant-time degree lookup in Neo4j). When the cached index
holds exactly that many interactions it is the customer's timeline as the graph has it, and
the page is served without asking Neo4j to expand and sort thousands of interactions. When the
count grew, only the interactions stored since the newest cached one (less the writers' clock
skew) are fetched; anything else (a merge, an erasure) rebuilds the index from the graph.

Removals are announced on the customer-updates topic (`erased`, `history_removed`): the index
is dropped at once, and a load that was reading the graph meanwhile is served but not kept.
A cached index holding more than the graph counts is stale too, and is rebuilt.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from rapport_timeline.adapters.graph import Neo4jTimelineGraph
from rapport_timeline.domain.index import TimelineIndex
from rapport_timeline.domain.model import CustomerKey, CustomerSnapshot, CustomerUpdate, Interaction, Resolved
from rapport_timeline.domain.paging import PageQuery
from rapport_timeline.domain.watch import SKEW

# Shorter histories are cheap for Neo4j to page directly.
MIN_CACHED_INTERACTIONS = 200


class CachingTimelineGraph:
    def __init__(
        self,
        inner: Neo4jTimelineGraph,
        max_interactions: int,
        min_interactions: int = MIN_CACHED_INTERACTIONS,
    ) -> None:
        self.inner = inner
        self.max_interactions = max_interactions
        self.min_interactions = min_interactions
        self._lock = threading.Lock()
        self._indexes: OrderedDict[str, TimelineIndex] = OrderedDict()
        self._held = 0
        self._loading: dict[str, threading.Lock] = {}
        self.loads = 0  # full builds, for tests and logs
        # Bumped by every removal notice; a load that saw it change does not keep its index.
        self._removals = 0

    # -- the cache --------------------------------------------------------------------------

    def _cached(self, customer_id: str) -> TimelineIndex | None:
        with self._lock:
            index = self._indexes.get(customer_id)
            if index is not None:
                self._indexes.move_to_end(customer_id)
            return index

    def forget(self, customer_id: str) -> None:
        """Drops the customer's index: it was erased, or interactions were removed from it."""
        with self._lock:
            self._removals += 1
            old = self._indexes.pop(customer_id, None)
            self._held -= len(old) if old is not None else 0

    def notice(self, update: CustomerUpdate) -> None:
        if update.erased or update.history_removed:
            self.forget(update.customer_id)

    def _store(self, index: TimelineIndex, removals: int | None = None) -> None:
        with self._lock:
            if removals is not None and removals != self._removals:
                return  # read from a graph something was removed from meanwhile
            old = self._indexes.pop(index.customer_id, None)
            self._held -= len(old) if old is not None else 0
            self._indexes[index.customer_id] = index
            self._held += len(index)
            while self._held > self.max_interactions and len(self._indexes) > 1:
                _, evicted = self._indexes.popitem(last=False)
                self._held -= len(evicted)

    def index(self, customer: Resolved, timeout: float | None) -> TimelineIndex | None:
        """The customer's index holding at least what the graph held at resolution, or None
        when the history is too short (or too long) to be worth caching."""
        count = customer.interactions
        if count < self.min_interactions or count > self.max_interactions:
            return None
        index = self._cached(customer.customer_id)
        if index is not None and len(index) == count:
            return index
        with self._lock:
            loading = self._loading.setdefault(customer.customer_id, threading.Lock())
        with loading:  # one load per customer at a time; the others wait for it
            with self._lock:
                removals = self._removals
            index = self._cached(customer.customer_id)
            if index is not None and len(index) == count:
                return index
            if index is not None and len(index) < count:
                recent = self.inner.stored_since(customer.customer_id, index.newest_stored - SKEW, None, count, timeout)
                grown = index.extended(recent)
                if len(grown) >= count:
                    self._store(grown, removals)
                    return grown
            everything = self.inner.all_interactions(customer.customer_id, timeout)
            rebuilt = TimelineIndex.build(customer.customer_id, everything)
            self.loads += 1
            self._store(rebuilt, removals)
            return rebuilt

    # -- TimelineGraph ----------------------------------------------------------------------

    def resolve(self, key: CustomerKey, timeout: float | None) -> Resolved:
        return self.inner.resolve(key, timeout)

    def page(self, customer: Resolved, query: PageQuery, timeout: float | None) -> list[Interaction]:
        index = self.index(customer, timeout)
        if index is None:
            return self.inner.page(customer, query, timeout)
        return index.page(query)

    def snapshot(self, customer: Resolved, recent_limit: int, timeout: float | None) -> CustomerSnapshot:
        index = self.index(customer, timeout)
        if index is None:
            return self.inner.snapshot(customer, recent_limit, timeout)
        snapshot = self.inner.snapshot(customer, 0, timeout)
        return CustomerSnapshot(
            snapshot.customer,
            snapshot.identities,
            tuple(index.newest(recent_limit)),
            snapshot.cases,
            snapshot.devices,
            snapshot.agents,
        )

    def interaction(self, customer_id: str, event_id: str, timeout: float | None) -> Interaction | None:
        return self.inner.interaction(customer_id, event_id, timeout)

    def interactions_by_id(self, event_ids: Sequence[str], timeout: float | None) -> list[Interaction]:
        return self.inner.interactions_by_id(event_ids, timeout)

    def newest(self, customer_id: str, limit: int, timeout: float | None) -> list[Interaction]:
        return self.inner.newest(customer_id, limit, timeout)

    def newest_stored(self, customer_id: str, limit: int, timeout: float | None) -> list[Interaction]:
        return self.inner.newest_stored(customer_id, limit, timeout)

    def stored_since(
        self, customer_id: str, floor: int, after: tuple[int, int, str] | None, limit: int, timeout: float | None
    ) -> list[Interaction]:
        return self.inner.stored_since(customer_id, floor, after, limit, timeout)
