"""The timeline's use cases: resolve the customer, read the graph, apply the domain rules.

The servicer calls these with decoded requests; tests call them with a fake graph and hub.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from rapport.effort import DEFAULT_WINDOW
from rapport.errors import InvalidArgument, NotFound, ResourceExhausted, Unavailable
from rapport_timeline.adapters.updates import WatchClosed, WatchHub
from rapport_timeline.domain.cursor import decode_watch_token
from rapport_timeline.domain.handoff import HandoffContext, handoff_context
from rapport_timeline.domain.model import CustomerKey, CustomerSnapshot, CustomerUpdate, Interaction, Resolved
from rapport_timeline.domain.paging import (
    InteractionFilter,
    Order,
    Page,
    PageQuery,
    make_page,
    page_size,
    read_page_token,
)
from rapport_timeline.domain.watch import MAX_REPLAY, MAX_TRACKED, WatchPosition, storage_key, unseen_in_order

log = logging.getLogger(__name__)

MAX_EVENT_ID_LENGTH = 128
REPLAY_BATCH = 500
HANDOFF_RECENT = 500
# How long a live watch waits on its inbox before checking that the client is still there.
WATCH_POLL_SECONDS = 0.5


class TimelineGraph(Protocol):
    """What the use cases need from the customer graph (see adapters.graph)."""

    def resolve(self, key: CustomerKey, timeout: float | None) -> Resolved: ...

    def page(self, customer: Resolved, query: PageQuery, timeout: float | None) -> list[Interaction]: ...

    def interaction(self, customer_id: str, event_id: str, timeout: float | None) -> Interaction | None: ...

    def interactions_by_id(self, event_ids: Sequence[str], timeout: float | None) -> list[Interaction]: ...

    def newest(self, customer_id: str, limit: int, timeout: float | None) -> list[Interaction]: ...

    def newest_stored(self, customer_id: str, limit: int, timeout: float | None) -> list[Interaction]: ...

    def stored_since(
        self, customer_id: str, floor: int, after: tuple[int, int, str] | None, limit: int, timeout: float | None
    ) -> list[Interaction]: ...

    def snapshot(self, customer: Resolved, recent_limit: int, timeout: float | None) -> CustomerSnapshot: ...


class Deadline:
    """The time left of a call; None means no deadline (adapters then use their own bound)."""

    def __init__(self, seconds: float | None) -> None:
        self._end = None if seconds is None else time.monotonic() + seconds

    def remaining(self) -> float | None:
        return None if self._end is None else max(0.0, self._end - time.monotonic())


@dataclass(frozen=True)
class WatchItem:
    """One streamed item: an interaction, a merge notice, or (neither) the live-point marker."""

    customer_id: str
    cursor: str
    interaction: Interaction | None = None
    merge: CustomerUpdate | None = None


def _event_id(value: str) -> str:
    if not value.strip():
        raise InvalidArgument("event_id", "is required")
    if len(value) > MAX_EVENT_ID_LENGTH:
        raise InvalidArgument("event_id", f"longer than {MAX_EVENT_ID_LENGTH} characters")
    return value


class Timeline:
    def __init__(
        self, graph: TimelineGraph, hub: WatchHub, *, live_wait: float = 5.0, effort_window: int = DEFAULT_WINDOW
    ) -> None:
        self.graph = graph
        self.hub = hub
        self.live_wait = live_wait
        self.effort_window = effort_window

    def _same_customer(self, issued_for: str, customer_id: str, field: str, deadline: Deadline) -> None:
        """A cursor is good for its customer and, after a merge, for the survivor."""
        if issued_for == customer_id:
            return
        try:
            survivor = self.graph.resolve(CustomerKey("id", issued_for), deadline.remaining()).customer_id
        except NotFound:
            survivor = None
        if survivor != customer_id:
            raise InvalidArgument(field, "was issued for another customer")

    # -- ListInteractions / GetInteraction --------------------------------------------------

    def list_interactions(
        self,
        key: CustomerKey,
        *,
        order: Order,
        filter: InteractionFilter,
        page_size_requested: int,
        page_token: str,
        deadline: Deadline,
    ) -> tuple[str, Page]:
        size = page_size(page_size_requested)
        token = read_page_token(page_token, order, filter)
        customer = self.graph.resolve(key, deadline.remaining())
        if token is not None:
            self._same_customer(token.customer_id, customer.customer_id, "page_token", deadline)
        query = PageQuery(customer.customer_id, order, filter, size, None if token is None else token.after)
        return customer.customer_id, make_page(query, self.graph.page(customer, query, deadline.remaining()))

    def get_interaction(self, key: CustomerKey, event_id: str, deadline: Deadline) -> Interaction:
        event_id = _event_id(event_id)
        customer_id = self.graph.resolve(key, deadline.remaining()).customer_id
        found = self.graph.interaction(customer_id, event_id, deadline.remaining())
        if found is None:
            raise NotFound(f"event_id: customer {customer_id} has no interaction {event_id}")
        return found

    # -- GetHandoffContext ------------------------------------------------------------------

    def handoff(self, key: CustomerKey, deadline: Deadline, now: int | None = None) -> HandoffContext:
        customer = self.graph.resolve(key, deadline.remaining())
        snapshot = self.graph.snapshot(customer, HANDOFF_RECENT, deadline.remaining())
        return handoff_context(snapshot, time.time_ns() if now is None else now, self.effort_window)

    # -- WatchTimeline ----------------------------------------------------------------------

    def watch(
        self,
        key: CustomerKey,
        cursor: str,
        replay_last: int,
        alive: Callable[[], bool],
        deadline: Deadline,
    ) -> Iterator[WatchItem]:
        """Replays, marks the live point, then streams until `alive()` turns false.

        Raises Unavailable when the live feed is down or the server is stopping (clients
        resume from their last cursor, possibly on another replica).
        """
        token = decode_watch_token(cursor) if cursor else None
        if replay_last < 0 or replay_last > MAX_REPLAY:
            raise InvalidArgument("replay_last", f"must be 0 to {MAX_REPLAY}")
        if token is not None and replay_last:
            raise InvalidArgument("replay_last", "cannot be combined with a cursor (the cursor says where to resume)")
        customer_id = self.graph.resolve(key, deadline.remaining()).customer_id
        if token is not None:
            self._same_customer(token.customer_id, customer_id, "cursor", deadline)
        if not self.hub.ready.wait(min(self.live_wait, deadline.remaining() or self.live_wait)):
            raise Unavailable("live updates are not available right now (customer-updates feed not connected)")
        try:
            subscription = self.hub.subscribe(customer_id)
        except WatchClosed:
            raise Unavailable("server is shutting down; resume from your last cursor") from None
        if subscription is None:
            raise ResourceExhausted(f"this server already serves {self.hub.max_watchers} watch streams; retry later")
        try:
            # Subscribed first: a merge that landed since we resolved shows up here or in the inbox.
            survivor = self.graph.resolve(CustomerKey("id", customer_id), deadline.remaining()).customer_id
            if token is not None:
                position = WatchPosition.from_token(token)
                position.follow(customer_id)
            else:
                newest = self.graph.newest_stored(customer_id, MAX_TRACKED + 1, deadline.remaining())
                position = WatchPosition.after_all(customer_id, newest)
            if survivor != customer_id:
                subscription.follow(survivor)
                merge = CustomerUpdate(survivor, (), (customer_id,))
                customer_id = survivor
                position.follow(survivor)
                yield WatchItem(customer_id, position.cursor(), merge=merge)
            if token is not None:
                yield from self._replay_from(position, deadline)
            elif replay_last:
                live_point = position.cursor()
                for item in reversed(self.graph.newest(customer_id, replay_last, deadline.remaining())):
                    yield WatchItem(customer_id, live_point, interaction=item)
            yield WatchItem(position.customer_id, position.cursor())
            while alive():
                try:
                    update = subscription.get(WATCH_POLL_SECONDS)
                except WatchClosed:
                    raise Unavailable("server is shutting down; resume from your last cursor") from None
                if update is not None:
                    yield from self._apply(update, position, subscription.follow, deadline)
        finally:
            subscription.cancel()

    def _replay_from(self, position: WatchPosition, deadline: Deadline) -> Iterator[WatchItem]:
        after: tuple[int, int, str] | None = None
        while True:
            rows = self.graph.stored_since(
                position.customer_id, position.floor, after, REPLAY_BATCH, deadline.remaining()
            )
            for item in unseen_in_order(position, rows):
                position.mark(item)
                yield WatchItem(position.customer_id, position.cursor(), interaction=item)
            if len(rows) < REPLAY_BATCH:
                return
            after = storage_key(rows[-1])

    def _apply(
        self,
        update: CustomerUpdate,
        position: WatchPosition,
        follow: Callable[[str], None],
        deadline: Deadline,
    ) -> Iterator[WatchItem]:
        if update.erased and update.customer_id == position.customer_id:
            raise NotFound(f"customer {update.customer_id} was erased")
        if position.customer_id in update.merged_customer_ids:
            follow(update.customer_id)
            position.follow(update.customer_id)
        if update.customer_id != position.customer_id:
            return  # an update of a customer we no longer follow
        if update.merged_customer_ids:
            yield WatchItem(position.customer_id, position.cursor(), merge=update)
        if not update.event_ids:
            return
        rows = self.graph.interactions_by_id(update.event_ids, deadline.remaining())
        mine = [r for r in rows if r.customer_id == position.customer_id]
        for item in unseen_in_order(position, mine):
            position.mark(item)
            yield WatchItem(position.customer_id, position.cursor(), interaction=item)
