"""The hot-timeline cache forgets a customer on an erased or history-removed notice, and never
keeps what it read from a graph that lost interactions meanwhile."""

from collections.abc import Callable
from typing import Any, cast

import pytest

from rapport_timeline.adapters.cache import CachingTimelineGraph
from rapport_timeline.adapters.graph import Neo4jTimelineGraph
from rapport_timeline.adapters.updates import WatchHub
from rapport_timeline.domain.model import CustomerUpdate, Interaction, Resolved
from rapport_timeline.domain.paging import InteractionFilter, Order, PageQuery

pytestmark = pytest.mark.unit

CUSTOMER = "cus_0000000000000001"


class History:
    """The graph's interactions of one customer, with a hook that runs while a load reads."""

    def __init__(self, count: int) -> None:
        self.items = [Interaction(f"e{n:04d}", CUSTOMER, at=n * 1000, ingested_at=n * 1000) for n in range(count)]
        self.during_load: Callable[[], None] = lambda: None
        self.loads = 0

    def all_interactions(self, customer_id: str, timeout: float | None) -> list[Interaction]:
        self.loads += 1
        items = list(self.items)
        self.during_load()
        return items

    def stored_since(self, customer_id: str, floor: int, after: Any, limit: int, timeout: Any) -> list[Interaction]:
        return [i for i in self.items if (i.ingested_at or 0) >= floor][:limit]


def cache_over(history: History) -> CachingTimelineGraph:
    return CachingTimelineGraph(cast(Neo4jTimelineGraph, history), max_interactions=10_000, min_interactions=1)


def page(cache: CachingTimelineGraph, history: History) -> list[str]:
    query = PageQuery(CUSTOMER, Order.OLDEST_FIRST, InteractionFilter(), 1000)
    return [i.event_id for i in cache.page(Resolved(CUSTOMER, len(history.items)), query, None)]


def test_an_erased_notice_drops_the_cached_index_and_the_next_read_loads_again():
    history = History(5)
    cache = cache_over(history)
    assert len(page(cache, history)) == 5 and history.loads == 1
    page(cache, history)
    assert history.loads == 1  # served from the index
    cache.notice(CustomerUpdate(CUSTOMER, erased=True))
    assert cache._cached(CUSTOMER) is None
    page(cache, history)
    assert history.loads == 2


def test_a_purge_that_keeps_the_count_is_still_seen_through_the_history_removed_notice():
    history = History(5)
    cache = cache_over(history)
    page(cache, history)
    # Two old interactions purged, two new ones stored: same count, different history.
    history.items = history.items[2:] + [Interaction(f"n{n}", CUSTOMER, at=10**9 + n) for n in range(2)]
    cache.notice(CustomerUpdate(CUSTOMER, event_ids=("n0",)))  # an ordinary update changes nothing
    assert page(cache, history)[:2] == ["e0000", "e0001"]
    cache.notice(CustomerUpdate(CUSTOMER, history_removed=True))
    assert page(cache, history) == ["e0002", "e0003", "e0004", "n0", "n1"]


def test_an_index_holding_more_than_the_graph_is_rebuilt():
    history = History(5)
    cache = cache_over(history)
    page(cache, history)
    history.items = history.items[3:]  # removed without a notice reaching us (yet)
    assert page(cache, history) == ["e0003", "e0004"]


def test_a_load_that_overlaps_a_removal_is_served_but_not_kept():
    history = History(5)
    cache = cache_over(history)
    history.during_load = lambda: cache.forget(CUSTOMER)
    assert len(page(cache, history)) == 5
    assert cache._cached(CUSTOMER) is None
    history.during_load = lambda: None
    page(cache, history)
    assert cache._cached(CUSTOMER) is not None and history.loads == 2


def test_the_hub_hands_every_update_to_its_listeners_watched_or_not():
    hub = WatchHub()
    heard: list[CustomerUpdate] = []
    hub.on_update(heard.append)
    update = CustomerUpdate("cus_nobody_watches", erased=True)
    assert hub.publish(update) == 0
    assert heard == [update]
