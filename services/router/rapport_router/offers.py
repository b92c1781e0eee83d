"""Offer streams for agent desktops, fed by this process and by the graph.

Offers this process makes are pushed to its subscribers at once. Offers made or withdrawn by
another router replica are found by one poll of the graph per `poll` seconds for all the agents
streaming from this process, so a desktop may connect to any replica.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from rapport_router.adapters.graph import GRAPH_ERRORS, RouterGraph
from rapport_router.deadline import deadline_scope
from rapport_router.domain.contact import ContactRecord
from rapport_router.domain.model import ContactState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OfferMade:
    contact: ContactRecord


@dataclass(frozen=True)
class OfferWithdrawn:
    offer_id: str
    contact_id: str
    reason: str


OfferEvent = OfferMade | OfferWithdrawn


@dataclass(eq=False)
class Subscription:
    agent_id: str
    events: queue.Queue[OfferEvent | None] = field(default_factory=queue.Queue)
    # Offers sent to this desktop and not yet withdrawn: offer id -> contact id.
    open: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False

    def offer(self, contact: ContactRecord) -> None:
        if contact.offer is None:
            return
        with self.lock:
            if contact.offer.offer_id in self.open:
                return
            self.open[contact.offer.offer_id] = contact.id
        self.events.put(OfferMade(contact))

    def withdraw(self, offer_id: str, contact_id: str, reason: str) -> None:
        with self.lock:
            if self.open.pop(offer_id, None) is None:
                return
        self.events.put(OfferWithdrawn(offer_id, contact_id, reason))

    def forget(self, offer_id: str) -> None:
        with self.lock:
            self.open.pop(offer_id, None)

    def close(self) -> None:
        self.closed = True
        self.events.put(None)


class OfferBroker:
    def __init__(self, graph: RouterGraph, *, poll: float = 0.25, graph_timeout: float = 5.0) -> None:
        self._graph = graph
        self._poll = poll
        self._graph_timeout = graph_timeout
        self._subs: dict[str, set[Subscription]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def subscribe(self, agent_id: str) -> Subscription:
        sub = Subscription(agent_id)
        with self._lock:
            self._subs.setdefault(agent_id, set()).add(sub)
        with deadline_scope(self._graph_timeout):
            pending = self._graph.offered_to(agent_id)
        for contact in pending:
            sub.offer(contact)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.agent_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[sub.agent_id]

    def _each(self, agent_id: str, action: Callable[[Subscription], None]) -> None:
        with self._lock:
            subs = list(self._subs.get(agent_id, ()))
        for sub in subs:
            action(sub)

    def offered(self, contact: ContactRecord) -> None:
        if contact.offer is not None:
            self._each(contact.offer.agent_id, lambda s: s.offer(contact))

    def withdrawn(self, agent_id: str, offer_id: str, contact_id: str, reason: str) -> None:
        self._each(agent_id, lambda s: s.withdraw(offer_id, contact_id, reason))

    def accepted(self, agent_id: str, offer_id: str) -> None:
        self._each(agent_id, lambda s: s.forget(offer_id))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="router-offer-streams", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            subs = [s for group in self._subs.values() for s in group]
        for sub in subs:
            sub.close()
        if self._thread is not None:
            self._thread.join(self._poll * 4 + 1)

    def poll_once(self) -> None:
        with self._lock:
            by_agent = {agent: list(subs) for agent, subs in self._subs.items() if subs}
        if not by_agent:
            return
        with deadline_scope(self._graph_timeout):
            offers = self._graph.offers_for_agents(sorted(by_agent))
            current: dict[str, dict[str, ContactRecord]] = {}
            for contact in offers:
                if contact.offer is not None:
                    current.setdefault(contact.offer.agent_id, {})[contact.offer.offer_id] = contact
            for agent_id, subs in by_agent.items():
                now_open = current.get(agent_id, {})
                for sub in subs:
                    for contact in now_open.values():
                        sub.offer(contact)
                    with sub.lock:
                        gone = [(o, c) for o, c in sub.open.items() if o not in now_open]
                    for offer_id, contact_id in gone:
                        self._settle(sub, offer_id, contact_id)

    def _settle(self, sub: Subscription, offer_id: str, contact_id: str) -> None:
        """An offer left the graph's open set: accepted (quietly forgotten) or withdrawn."""
        contact = self._graph.get_contact(contact_id)
        if (
            contact is not None
            and contact.state in (ContactState.ASSIGNED, ContactState.COMPLETED)
            and contact.offer is not None
            and contact.offer.offer_id == offer_id
        ):
            sub.forget(offer_id)
            return
        reason = "withdrawn"
        if contact is not None:
            reason = contact.last_offer_end or ("cancelled" if contact.state is ContactState.CANCELLED else reason)
        sub.withdraw(offer_id, contact_id, reason)

    def _run(self) -> None:
        while not self._stop.wait(self._poll):
            try:
                self.poll_once()
            except GRAPH_ERRORS as exc:
                log.warning("offer stream poll failed", extra={"error": str(exc)})
            except Exception:
                log.exception("offer stream poll failed")
