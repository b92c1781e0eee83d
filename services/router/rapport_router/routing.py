"""The router's use cases: route, offer, accept, reject, complete, cancel, queue, agents.

Decisions are made on a moment-old roster and made final only by an atomic reservation in the
graph; a refused reservation corrects the roster and the next best agent is tried. A contact
queues only when a fresh read of the graph shows no eligible agent with room.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from rapport import metrics
from rapport.errors import FailedPrecondition, NotFound
from rapport.identity import NormalisedIdentifier
from rapport_router.adapters.events import Outbox
from rapport_router.adapters.graph import GRAPH_ERRORS, ContactExists, RouterGraph, contact_props, rev
from rapport_router.config import RouterConfig
from rapport_router.deadline import deadline_scope
from rapport_router.domain.contact import ContactRecord, OfferInfo, contact_of_offer, offer_id
from rapport_router.domain.handover import Handover, handover
from rapport_router.domain.model import (
    AgentRecord,
    AgentStatus,
    AssignmentMode,
    ContactSpec,
    ContactState,
    CustomerContext,
    IdentityRef,
    SkillNeed,
)
from rapport_router.domain.outcomes import abandonment_event_id, completion_event_id
from rapport_router.domain.performance import Fresh, PerformanceHolder
from rapport_router.domain.queue import effective_priority, estimated_wait
from rapport_router.domain.relaxation import RelaxationPolicy, Requirements
from rapport_router.domain.roster import Roster, eligible, qualified
from rapport_router.domain.scoring import Match, customer_effort_now, effort_priority
from rapport_router.offers import OfferBroker

log = logging.getLogger(__name__)

# Agents changed this long before a refresh started are re-read too (commits land late).
_REFRESH_OVERLAP = 1.0
# A full re-read now and then catches anything the incremental refreshes could miss.
_FULL_REFRESH_EVERY = 30.0
# Reservation attempts for one contact in one call before it is left in (or put in) the queue.
_MAX_RESERVATION_ROUNDS = 64


@lru_cache(maxsize=64)
def policy_of(text: str) -> RelaxationPolicy:
    return RelaxationPolicy.parse(text)


class RosterCache:
    """The agents, re-read incrementally in the background every `max_age` seconds.

    Requests never wait for a read (except `fresh`, before a contact queues): they use the
    current snapshot, which every reservation, status change and upsert patches at once.
    """

    def __init__(self, graph: RouterGraph, max_age: float, clock: Callable[[], float] = time.time) -> None:
        self._graph = graph
        self._max_age = max_age
        self._clock = clock
        self._roster = Roster(())
        self._records: dict[str, AgentRecord] = {}
        self._lock = threading.Lock()
        # One refresh at a time; it reads the graph without `_lock`, which notes must not wait for.
        self._refreshing = threading.Lock()
        self._refreshed_at = float("-inf")  # local clock at the start of the last refresh
        self._full_at = float("-inf")
        self._dirty = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def refreshed_at(self) -> float:
        return self._refreshed_at

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="router-roster", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self._max_age * 4 + 1)

    def _run(self) -> None:
        while not self._stop.wait(self._max_age):
            try:
                with deadline_scope(max(1.0, self._max_age * 4)):
                    self.refresh()
            except GRAPH_ERRORS as exc:
                log.warning("roster refresh failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            except Exception:
                log.exception("roster refresh failed")

    def get(self) -> Roster:
        if self._refreshed_at == float("-inf") or (
            self._thread is None and self._clock() - self._refreshed_at > self._max_age
        ):
            self.refresh(if_older_than=self._clock() - self._max_age)
        elif self._dirty:
            with self._lock:
                if self._dirty:
                    self._roster = Roster(self._records.values())
                    self._dirty = False
        return self._roster

    def fresh(self, since: float) -> Roster:
        """A roster read from the graph after `since` (local clock)."""
        self.refresh(if_older_than=since)
        return self._roster

    def refresh(self, if_older_than: float | None = None) -> None:
        with self._refreshing:
            if if_older_than is not None and self._refreshed_at >= if_older_than and not self._dirty:
                return
            started = self._clock()
            full = started - self._full_at > _FULL_REFRESH_EVERY
            since = 0 if full else rev(self._refreshed_at - _REFRESH_OVERLAP)
            # Agents as this process last noted them are not decoded again.
            changed = self._graph.agents_changed_since(since, None if full else self._records)
            with self._lock:
                self._apply(changed, full, started)

    def _apply(self, changed: list[AgentRecord], full: bool, started: float) -> None:
        """Holding `_lock`: a refresh's agents become the roster."""
        noted = self._records
        if full:
            self._records = {}
            self._full_at = started
        rebuild = full or self._dirty
        for read in changed:
            # A note made while the graph was being read may be newer than the read.
            known = noted.get(read.id)
            newer = known is not None and known.updated_at and read.updated_at and read.updated_at < known.updated_at
            if newer and not full:
                continue
            record = known if newer and known is not None else read
            self._records[record.id] = record
            if not rebuild and not self._roster.apply(record):
                rebuild = True
        if rebuild:
            self._roster = Roster(self._records.values())
        self._dirty = False
        self._refreshed_at = started

    def forget(self, agent_id: str) -> None:
        """The agent is gone from the graph."""
        with self._lock:
            if self._records.pop(agent_id, None) is not None:
                self._dirty = True

    def note(self, record: AgentRecord) -> None:
        """A fresher state of one agent, straight from a reservation or status change."""
        with self._lock:
            known = self._records.get(record.id)
            if known is not None and known.updated_at and record.updated_at and record.updated_at < known.updated_at:
                return
            self._records[record.id] = record
        if not self._roster.apply(record):
            self._dirty = True


@dataclass(frozen=True)
class RouteRequest:
    contact_id: str | None
    customer_id: str | None
    identifier: NormalisedIdentifier | None
    channel: str
    topic: str | None = None
    intent: str | None = None
    language: str | None = None
    required_skills: tuple[SkillNeed, ...] = ()
    priority: int = 0
    preferred_agent_id: str | None = None
    preferred_wait: float = 0.0
    team: str | None = None
    sentiment: float | None = None
    case_id: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class QueueInfo:
    position: int
    waiting: int
    estimated_wait: float | None
    relaxation_step: int
    relaxation: str
    next_step_at: float | None
    effective_priority: float
    reason: str


@dataclass(frozen=True)
class ContactView:
    record: ContactRecord
    now: float
    queue: QueueInfo | None = None
    relaxation_text: str = ""


@dataclass(frozen=True)
class Completion:
    outcome: str
    csat: int | None = None
    notes: str | None = None
    handle_seconds: int | None = None
    sentiment: float | None = None


class Router:
    def __init__(
        self,
        graph: RouterGraph,
        roster: RosterCache,
        *,
        performance: PerformanceHolder,
        config: RouterConfig,
        broker: OfferBroker,
        outbox: Outbox,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.graph = graph
        self.roster = roster
        self.performance = performance
        self.config = config
        self.broker = broker
        self.outbox = outbox
        self.clock = clock
        self.on_capacity_freed: Callable[[], None] = lambda: None
        self.on_queued: Callable[[], None] = lambda: None
        # Reservations in flight from this process, per agent: keeps concurrent calls off the same agent.
        self._inflight: dict[str, int] = {}
        self._inflight_lock = threading.Lock()
        self._route_duration = metrics.route_duration()
        self._match_score = metrics.match_score()

    # ------------------------------------------------------------ agents

    def upsert_agent(self, agent: AgentRecord, status: AgentStatus | None) -> tuple[AgentRecord, bool]:
        record, created = self.graph.upsert_agent(agent, status, self.clock())
        self.roster.note(record)
        if record.status is AgentStatus.AVAILABLE:
            self.on_capacity_freed()
        return record, created

    def set_agent_status(self, agent_id: str, status: AgentStatus) -> tuple[AgentRecord, list[str]]:
        result = self.graph.set_agent_status(agent_id, status, self.clock())
        if result is None:
            raise NotFound(f"agent {agent_id} not found")
        record, _before = result
        self.roster.note(record)
        withdrawn: list[str] = []
        if status is AgentStatus.AVAILABLE:
            self.on_capacity_freed()
        else:
            for contact in self.graph.offered_to(agent_id):
                if contact.offer is None:
                    continue
                released = self.release(contact.id, contact.offer.offer_id, agent_id, "agent_unavailable", None)
                if released is not None:
                    withdrawn.append(contact.id)
                    self.offer_waiting(released)
            if withdrawn:
                refreshed = self.graph.get_agent(agent_id)
                if refreshed is not None:
                    record = refreshed
        return record, withdrawn

    def get_agent(self, agent_id: str) -> AgentRecord:
        record = self.graph.get_agent(agent_id)
        if record is None:
            raise NotFound(f"agent {agent_id} not found")
        return record

    def list_agents(self, team: str | None, status: AgentStatus | None, after: str, limit: int) -> list[AgentRecord]:
        return self.graph.list_agents(team, status, after, limit)

    # ------------------------------------------------------------ routing

    def _customer(self, req: RouteRequest, now: float) -> CustomerContext:
        params = self.config.scoring
        if req.customer_id:
            customer = self.graph.customer_by_id(req.customer_id, now, params)
            if customer is None:
                raise NotFound(f"customer {req.customer_id} not found")
            return customer
        assert req.identifier is not None
        ident = IdentityRef(req.identifier.kind, req.identifier.value, req.identifier.verified)
        customer = self.graph.customer_by_identity(req.identifier.key, now, params)
        return customer if customer is not None else CustomerContext.unknown(ident)

    def _take_over(self, customer: CustomerContext, req: RouteRequest, contact_id: str, now: float) -> Handover:
        """The customer reached out: contacts Rapport queued for them end, and this one inherits."""
        taken = handover(
            customer,
            topic=req.topic,
            intent=req.intent,
            case_id=req.case_id,
            attributes=dict(req.attributes),
            now=now,
        )
        for raised in taken.superseded:
            ended, agent = self.graph.supersede(raised.id, contact_id, now)
            if agent is not None:
                self.roster.note(agent)
                if raised.offer_id:
                    self.broker.withdrawn(agent.id, raised.offer_id, raised.id, "superseded")
            if ended:
                log.info("contact superseded", extra={"contact_id": raised.id, "by": contact_id})
        return taken

    def route(self, req: RouteRequest) -> ContactView:
        started = time.perf_counter()
        now = self.clock()
        if req.contact_id:
            existing = self.graph.get_contact(req.contact_id)
            if existing is not None:
                return self.view(existing)
        contact_id = req.contact_id or f"con_{uuid.uuid4().hex[:16]}"
        customer = self._customer(req, now)
        taken_over = self._take_over(customer, req, contact_id, now)
        priority, effort = req.priority, None
        if priority == 0:
            effort = customer_effort_now(customer, self.config.scoring, now)
            priority = effort_priority(effort)
        identity = (
            IdentityRef(req.identifier.kind, req.identifier.value, req.identifier.verified)
            if req.identifier is not None
            else customer.identity
        )
        spec = ContactSpec(
            id=contact_id,
            channel=req.channel,
            created_at=now,
            customer_id=customer.customer_id,
            topic=taken_over.topic,
            intent=taken_over.intent,
            language=req.language or customer.language,
            required_skills=req.required_skills,
            priority=priority,
            team=req.team,
            preferred_agent_id=req.preferred_agent_id,
            preferred_wait=req.preferred_wait,
            sentiment=req.sentiment,
            case_id=taken_over.case_id,
            relaxation=self.config.relaxation.text,
            effort=effort.score if effort is not None else None,
            effort_reasons=effort.reasons if effort is not None else (),
        )
        props = contact_props(spec, identity, taken_over.attributes, now)
        position = None
        try:
            record = self._offer(spec, customer, new_props=props, mode=AssignmentMode.DIRECT)
            if record is None:
                position = self.graph.enqueue(props)
                self.on_queued()
                record = ContactRecord(
                    spec=spec, state=ContactState.WAITING, identity=identity, attributes=taken_over.attributes
                )
        except ContactExists:
            existing = self.graph.get_contact(contact_id)
            if existing is None:
                raise
            return self.view(existing)
        view = self.view(record, now=now, position=position)
        outcome = "offered" if record.state is ContactState.OFFERED else "queued"
        self._route_duration.record(
            time.perf_counter() - started, {"rapport.channel": req.channel, "rapport.route.outcome": outcome}
        )
        if record.offer is not None:
            self._match_score.record(max(0.0, min(1.0, record.offer.score)), {"rapport.channel": req.channel})
        return view

    def _claim(self, agent_id: str) -> None:
        with self._inflight_lock:
            self._inflight[agent_id] = self._inflight.get(agent_id, 0) + 1

    def _unclaim(self, agent_id: str) -> None:
        with self._inflight_lock:
            left = self._inflight.get(agent_id, 0) - 1
            if left <= 0:
                self._inflight.pop(agent_id, None)
            else:
                self._inflight[agent_id] = left

    def _without_inflight(self, roster: Roster, channel: str, idx: np.ndarray) -> np.ndarray:
        """Drops agents that reservations in flight from this process would fill; all of them if none stay."""
        with self._inflight_lock:
            if not self._inflight:
                return idx
            claims = dict(self._inflight)
        taken = np.zeros(roster.size, dtype=np.int64)
        for agent_id, n in claims.items():
            i = roster.index.get(agent_id)
            if i is not None:
                taken[i] = n
        room = roster.capacity_on(channel)[idx] - roster.active_on(channel)[idx]
        kept = idx[room > taken[idx]]
        return kept if len(kept) else idx

    def _offer(
        self,
        spec: ContactSpec,
        customer: CustomerContext,
        *,
        new_props: dict[str, Any] | None = None,
        attempts: int = 0,
        mode: AssignmentMode,
    ) -> ContactRecord | None:
        """Offers the contact to the best eligible agent (creating it when `new_props`); None if nobody.

        A contact read back from the queue (`attempts` offers made so far) is offered only while
        it is still waiting; if it no longer is, the record returned says where it is.
        """
        policy = policy_of(spec.relaxation)
        intent_record = self.intent_records([spec]).get(spec.intent or "")
        tried: set[str] = set()
        freshness_checked = False
        for _ in range(_MAX_RESERVATION_ROUNDS):
            now = self.clock()
            req = policy.requirements(spec, spec.age(now))
            roster = self.roster.get()
            mask, _reason = eligible(roster, req)
            idx = np.flatnonzero(mask)
            if tried:
                idx = np.array([i for i in idx if roster.ids[i] not in tried], dtype=np.int64)
            if len(idx) == 0:
                if freshness_checked:
                    return None
                # The roster may be a moment old: ask the graph before giving up.
                freshness_checked = True
                self.roster.fresh(since=now)
                tried.clear()
                continue
            idx = self._without_inflight(roster, spec.channel, idx)
            match = Match(
                spec,
                customer,
                roster,
                performance=self.performance.current,
                weights=self.config.weights,
                params=self.config.scoring,
                now=now,
                intent_record=intent_record,
            )
            ranked, scores = match.rank(idx)
            best = int(ranked[0])
            agent_id = roster.ids[best]
            attempt = 1 if new_props is not None else attempts + 1
            explanation = match.explain(best, ranked, scores)
            offer = OfferInfo(
                offer_id=offer_id(spec.id, attempt),
                agent_id=agent_id,
                score=explanation.score,
                offered_at=now,
                expires_at=now + self.config.offer_timeout,
                mode=mode,
                relaxation_step=req.step,
                attempt=attempt,
                explanation=explanation,
            )
            record: ContactRecord | None
            self._claim(agent_id)
            try:
                if new_props is not None:
                    ok, agent = self.graph.reserve_new(new_props, offer, spec.channel, now)
                    record = (
                        ContactRecord(
                            spec=spec,
                            state=ContactState.OFFERED,
                            identity=_identity_of(new_props),
                            offer=offer,
                            agent_id=agent_id,
                            attributes=_attributes_of(new_props),
                            attempts=1,
                        )
                        if ok
                        else None
                    )
                else:
                    ok, waiting, _declined, record, agent = self.graph.reserve_waiting(
                        spec.id, offer, spec.channel, now
                    )
                    if not waiting:
                        # Taken by another replica, or cancelled, meanwhile.
                        return record
                    if record is not None:
                        attempts = record.attempts
            finally:
                self._unclaim(agent_id)
            if agent is None:
                self.roster.forget(agent_id)
            else:
                self.roster.note(agent)
            if ok and record is not None:
                self.broker.offered(record)
                return record
            tried.add(agent_id)
            freshness_checked = False
        log.warning("gave up reserving an agent after many refusals", extra={"contact_id": spec.id})
        return None

    def offer_waiting(self, record: ContactRecord, customer: CustomerContext | None = None) -> ContactRecord:
        """Tries the next best agent for a contact that went back to waiting; returns its state after."""
        if record.state is not ContactState.WAITING:
            return record
        if customer is None:
            customer = self._customer_of(record)
        offered = self._offer(record.spec, customer, attempts=record.attempts, mode=AssignmentMode.DIRECT)
        if offered is not None:
            return offered
        # Nobody free for it here; the batch loop (or another replica) may have offered it meanwhile,
        # to the very agent this looked for.
        return self.graph.get_contact(record.id) or record

    def _customer_of(self, record: ContactRecord) -> CustomerContext:
        if record.spec.customer_id:
            found = self.graph.customer_by_id(record.spec.customer_id, self.clock(), self.config.scoring)
            if found is not None:
                return found
        return CustomerContext.unknown(record.identity)

    def release(
        self, contact_id: str, offer: str, agent_id: str | None, reason: str, note: str | None
    ) -> ContactRecord | None:
        """Ends an open offer unaccepted: the contact waits again, the agent's capacity is freed."""
        ok, record, agent = self.graph.release_offer(
            contact_id, offer, agent_id=agent_id, reason=reason, note=note, now=self.clock()
        )
        if agent is not None:
            self.roster.note(agent)
        if not ok or record is None:
            return None
        if agent is not None:
            self.broker.withdrawn(agent.id, offer, contact_id, reason)
        self.on_capacity_freed()
        return record

    # ------------------------------------------------------------ offers and endings

    def get_contact(self, contact_id: str) -> ContactView:
        record = self.graph.get_contact(contact_id)
        if record is None:
            raise NotFound(f"contact {contact_id} not found")
        return self.view(record)

    def _contact_for_offer(self, offer: str) -> str:
        contact_id = contact_of_offer(offer)
        if contact_id is None:
            raise NotFound(f"offer {offer} not found")
        return contact_id

    def accept(self, offer: str, agent_id: str) -> ContactView:
        contact_id = self._contact_for_offer(offer)
        ok, record = self.graph.accept_offer(contact_id, offer, agent_id, self.clock())
        if record is None:
            raise NotFound(f"offer {offer} not found")
        if not ok:
            same = record.offer is not None and record.offer.offer_id == offer and record.agent_id == agent_id
            if same and record.state in (ContactState.ASSIGNED, ContactState.COMPLETED):
                return self.view(record)  # accepted already: idempotent
            raise FailedPrecondition(f"offer {offer} is no longer open ({_offer_state(record, offer, agent_id)})")
        self.broker.accepted(agent_id, offer)
        return self.view(record)

    def reject(self, offer: str, agent_id: str, reason: str | None) -> ContactView:
        contact_id = self._contact_for_offer(offer)
        released = self.release(contact_id, offer, agent_id, "rejected", reason)
        if released is None:
            record = self.graph.get_contact(contact_id)
            if record is None:
                raise NotFound(f"offer {offer} not found")
            raise FailedPrecondition(f"offer {offer} is no longer open ({_offer_state(record, offer, agent_id)})")
        return self.view(self.offer_waiting(released))

    def complete(self, contact_id: str, agent_id: str | None, completion: Completion) -> tuple[ContactView, str]:
        event_id = completion_event_id(contact_id)
        ending: dict[str, Any] = {
            "outcome": completion.outcome,
            "csat": completion.csat,
            "notes": completion.notes,
            "end_sentiment": completion.sentiment,
        }
        if completion.handle_seconds:
            ending["handle_seconds"] = completion.handle_seconds
        before, ok, record, agent = self.graph.complete(contact_id, agent_id, ending, event_id, self.clock())
        if record is None:
            raise NotFound(f"contact {contact_id} not found")
        if not ok:
            if before == ContactState.COMPLETED.value and (agent_id is None or record.agent_id == agent_id):
                return self.view(record), record.event_id or event_id
            if before == ContactState.ASSIGNED.value:
                raise FailedPrecondition(f"contact {contact_id} is assigned to {record.agent_id}, not {agent_id}")
            raise FailedPrecondition(f"contact {contact_id} is {before}; only an assigned contact can be completed")
        if agent is not None:
            self.roster.note(agent)
        self.outbox.submit(record)
        self.on_capacity_freed()
        return self.view(record), event_id

    def cancel(self, contact_id: str, reason: str | None) -> ContactView:
        record_before = self.graph.get_contact(contact_id)
        before, ok, record, agent = self.graph.cancel(
            contact_id, reason, abandonment_event_id(contact_id), self.clock()
        )
        if record is None:
            raise NotFound(f"contact {contact_id} not found")
        if not ok:
            if before == ContactState.CANCELLED.value:
                return self.view(record)
            raise FailedPrecondition(
                f"contact {contact_id} is {before}; only a waiting or offered contact can be cancelled"
                + ("; complete it with OUTCOME_ABANDONED instead" if before == ContactState.ASSIGNED.value else "")
            )
        if agent is not None:
            self.roster.note(agent)
            if record_before is not None and record_before.offer is not None:
                self.broker.withdrawn(agent.id, record_before.offer.offer_id, contact_id, "cancelled")
            self.on_capacity_freed()
        self.outbox.submit(record)
        return self.view(record)

    # ------------------------------------------------------------ queue

    def queue(self, channel: str | None, team: str | None, limit: int) -> tuple[list[ContactView], int, float]:
        records, total = self.graph.queue(channel, team, limit)
        now = self.clock()
        views = []
        positions: dict[tuple[str, str | None], int] = {}
        counts: dict[tuple[str, str | None], int] = {}
        for r in records:
            counts[(r.spec.channel, r.spec.team)] = counts.get((r.spec.channel, r.spec.team), 0) + 1
        for r in records:
            key = (r.spec.channel, r.spec.team)
            positions[key] = positions.get(key, 0) + 1
            views.append(self.view(r, now=now, position=(positions[key], counts[key])))
        oldest = max((r.spec.age(now) for r in records), default=0.0)
        return views, total, oldest

    def view(
        self, record: ContactRecord, *, now: float | None = None, position: tuple[int, int] | None = None
    ) -> ContactView:
        now = self.clock() if now is None else now
        if record.state is not ContactState.WAITING:
            return ContactView(record, now)
        if position is None:
            position = self.graph.queue_position(record.id) or (1, 1)
        return ContactView(record, now, self.queue_info(record.spec, position, now))

    def queue_info(self, spec: ContactSpec, position: tuple[int, int], now: float) -> QueueInfo:
        policy = policy_of(spec.relaxation)
        age = spec.age(now)
        req: Requirements = policy.requirements(spec, age)
        roster = self.roster.get()
        _mask, reason = eligible(roster, req)
        if not reason:
            reason = "an eligible agent is free; the next batch assigns it"
        able, _ = qualified(roster, req)
        serving = able & roster.available
        capacity = int(roster.capacity_on(spec.channel)[serving].sum())
        handle = self.performance.current.handle_time(spec.channel, self.config.default_handle_seconds)
        wait = estimated_wait(position[0], capacity, handle) if capacity > 0 else None
        nxt = policy.next_step_after(age)
        return QueueInfo(
            position=position[0],
            waiting=position[1],
            estimated_wait=wait,
            relaxation_step=req.step,
            relaxation=policy.describe(req.step),
            next_step_at=spec.created_at + nxt if nxt is not None else None,
            effective_priority=effective_priority(spec.priority, age, self.config.ageing_seconds),
            reason=reason,
        )

    def describe_relaxation(self, spec: ContactSpec, step: int) -> str:
        return policy_of(spec.relaxation).describe(step)

    def intent_records(self, specs: Sequence[ContactSpec]) -> dict[str, Fresh]:
        """The agents' records with these contacts' intents (no query when none has one)."""
        intents = [s.intent for s in specs if s.intent]
        return self.graph.intent_records(intents, self.clock(), self.config.scoring) if intents else {}

    def customers_of(self, records: Sequence[ContactRecord]) -> dict[str, CustomerContext]:
        ids = [r.spec.customer_id for r in records if r.spec.customer_id]
        return self.graph.customers(ids, self.clock(), self.config.scoring)


def _identity_of(props: dict[str, Any]) -> IdentityRef | None:
    if props.get("identity_kind") and props.get("identity_value"):
        return IdentityRef(props["identity_kind"], props["identity_value"], bool(props.get("identity_verified")))
    return None


def _attributes_of(props: dict[str, Any]) -> dict[str, str]:
    raw = props.get("attributes")
    return dict(json.loads(raw)) if raw else {}


def _offer_state(record: ContactRecord, offer: str, agent_id: str) -> str:
    if record.offer is not None and record.offer.offer_id == offer and record.agent_id != agent_id:
        return f"it was made to {record.agent_id}"
    if record.state is ContactState.CANCELLED:
        return "the contact was cancelled"
    if record.last_offer_end and (record.offer is None or record.offer.offer_id != offer):
        return f"it ended: {record.last_offer_end}"
    return f"the contact is {record.state.value}"
