"""The background loop of each router process: offer timeouts and batch assignment.

Every `tick` seconds, and at once when capacity frees up in this process (a completion, a
rejection, an agent becoming available), the loop
1. takes back offers nobody accepted in time and offers those contacts to the next best agent;
2. assigns waiting contacts to the free capacity together, by optimal assignment.

Several replicas run this loop at the same time against the same queue. That is safe, because
nothing is decided until the atomic reservation commits: a replica that loses a race for a
contact or a slot is refused and moves on. A separate thread refreshes the agents' outcome
statistics, which take a while to aggregate on a large graph.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rapport import metrics
from rapport_router.adapters.graph import GRAPH_ERRORS, RouterGraph
from rapport_router.config import RouterConfig
from rapport_router.deadline import deadline_scope
from rapport_router.domain.assignment import BatchRow, assign_batch
from rapport_router.domain.contact import ContactRecord, OfferInfo, offer_id
from rapport_router.domain.model import AssignmentMode, ContactState, CustomerContext
from rapport_router.domain.performance import PerformanceHolder
from rapport_router.domain.queue import effective_priority
from rapport_router.domain.relaxation import Requirements
from rapport_router.domain.roster import IntArray, Roster, eligible
from rapport_router.domain.scoring import Match
from rapport_router.routing import Router, policy_of

log = logging.getLogger(__name__)

# Capacity freed in a burst (several completions at once) is assigned in one batch.
_COALESCE = 0.02
_QUEUE_DEPTH_EVERY = 5.0


@dataclass(frozen=True)
class BatchResult:
    considered: int
    offered: list[str]


class Dispatcher:
    def __init__(
        self,
        router: Router,
        graph: RouterGraph,
        performance: PerformanceHolder,
        config: RouterConfig,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.router = router
        self.graph = graph
        self.performance = performance
        self.config = config
        self.clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._queue_depth = metrics.queue_depth()
        self._next_depth = 0.0
        self._next_expiry = 0.0
        # Whether the last look found contacts waiting; completions only wake the loop when so,
        # so a busy router without a queue does not read it after every completion.
        self._maybe_waiting = True
        self.rounds = 0
        router.on_capacity_freed = self.wake
        router.on_queued = self.note_waiting

    def wake(self) -> None:
        """Capacity freed: assign at once if anyone may be waiting (else the next tick looks)."""
        if self._maybe_waiting:
            self._wake.set()

    def note_waiting(self) -> None:
        """A contact joined the queue (in this process)."""
        self._maybe_waiting = True

    def start(self, *, refresh_stats_now: bool = True) -> None:
        if refresh_stats_now:
            self.refresh_stats()
        for target, name in ((self._run, "router-dispatcher"), (self._run_stats, "router-stats")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            woken = self._wake.wait(self.config.tick)
            if self._stop.is_set():
                return
            if woken:
                time.sleep(_COALESCE)
            self._wake.clear()
            try:
                self.round()
            except GRAPH_ERRORS as exc:
                log.warning("dispatcher round failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            except Exception:
                log.exception("dispatcher round failed")

    def _run_stats(self) -> None:
        while not self._stop.wait(self.config.stats_refresh):
            try:
                self.refresh_stats()
            except GRAPH_ERRORS as exc:
                log.warning("statistics refresh failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            except Exception:
                log.exception("statistics refresh failed")

    def refresh_stats(self) -> None:
        started = time.perf_counter()
        with deadline_scope(max(60.0, self.config.request_timeout)):
            self.performance.current = self.graph.performance(self.clock(), self.config.scoring)
        log.info(
            "agent outcome statistics refreshed",
            extra={"keys": len(self.performance.current.tallies), "seconds": round(time.perf_counter() - started, 3)},
        )

    def round(self) -> BatchResult:
        self.rounds += 1
        with deadline_scope(max(self.config.request_timeout, 2 * self.config.tick)):
            if time.monotonic() >= self._next_expiry:
                self._next_expiry = time.monotonic() + self.config.tick
                self.expire_offers()
            result = self.assign_waiting()
            now = time.monotonic()
            if now >= self._next_depth:
                self._next_depth = now + _QUEUE_DEPTH_EVERY
                for channel, waiting in self.graph.queue_depth().items():
                    self._queue_depth.set(waiting, {"rapport.channel": channel})
            return result

    def expire_offers(self) -> list[str]:
        """Offers past their deadline go back to the queue and on to the next best agent."""
        reoffered = []
        for contact_id, offer in self.graph.expired_offers(self.clock()):
            released = self.router.release(contact_id, offer, None, "expired", None)
            if released is not None:
                log.info("offer expired", extra={"contact_id": contact_id, "offer_id": offer})
                after = self.router.offer_waiting(released)
                if after.state is ContactState.OFFERED:
                    reoffered.append(contact_id)
        return reoffered

    def assign_waiting(self) -> BatchResult:
        """Waiting contacts and free capacity, matched together by optimal assignment."""
        # Cheap first: is anyone waiting for the room this process believes there is?
        roster = self.router.roster.get()
        free, teams = _room(roster)
        if not free:
            return BatchResult(0, [])
        if not self.graph.waiting_for_batch(sorted(free), teams, 1):
            self._maybe_waiting = False
            return BatchResult(0, [])
        self._maybe_waiting = True
        roster = self.router.roster.fresh(since=self.clock() - self.config.tick)
        free, teams = _room(roster)
        if not free:
            return BatchResult(0, [])
        waiting = self.graph.waiting_for_batch(sorted(free), teams, self.config.batch_limit)
        if not waiting:
            return BatchResult(0, [])
        now = self.clock()
        customers = self.router.customers_of(waiting)
        intent_records = self.router.intent_records([r.spec for r in waiting])
        rows: list[BatchRow] = []
        plans: list[tuple[ContactRecord, Match, Requirements]] = []
        for record in waiting:
            spec = record.spec
            req = policy_of(spec.relaxation).requirements(spec, spec.age(now))
            mask, _ = eligible(roster, req)
            if not mask.any():
                continue
            customer = customers.get(spec.customer_id or "") or CustomerContext.unknown(record.identity)
            match = Match(
                spec,
                customer,
                roster,
                performance=self.performance.current,
                weights=self.config.weights,
                params=self.config.scoring,
                now=now,
                intent_record=intent_records.get(spec.intent or ""),
            )
            scores = np.full(roster.size, -np.inf)
            idx = np.flatnonzero(mask)
            scores[idx] = match.scores(idx)
            rows.append(
                BatchRow(
                    spec.channel,
                    effective_priority(spec.priority, spec.age(now), self.config.ageing_seconds),
                    scores,
                    mask,
                )
            )
            plans.append((record, match, req))
        pairs = assign_batch(rows, free)
        offered = []
        for pair in pairs:
            record, match, req = plans[pair.row]
            ranked, ranked_scores = match.rank(np.flatnonzero(rows[pair.row].eligible))
            explanation = match.explain(pair.agent, ranked, ranked_scores)
            agent_id = roster.ids[pair.agent]
            offer = OfferInfo(
                offer_id=offer_id(record.id, record.attempts + 1),
                agent_id=agent_id,
                score=explanation.score,
                offered_at=now,
                expires_at=now + self.config.offer_timeout,
                mode=AssignmentMode.BATCH,
                relaxation_step=req.step,
                attempt=record.attempts + 1,
                explanation=explanation,
            )
            ok, _waiting, _declined, contact, agent = self.graph.reserve_waiting(
                record.id, offer, record.spec.channel, now
            )
            if agent is not None:
                self.router.roster.note(agent)
            if ok and contact is not None:
                self.router.broker.offered(contact)
                offered.append(record.id)
        if offered:
            log.info("batch assigned", extra={"considered": len(rows), "offered": len(offered)})
        return BatchResult(len(rows), offered)


def _room(roster: Roster) -> tuple[dict[str, IntArray], list[str]]:
    """Free slots per channel (channels with any), and the teams with an agent that has room."""
    free = {ch: roster.free_slots(ch) for ch in roster.capacity}
    free = {ch: slots for ch, slots in free.items() if slots.any()}
    if not free:
        return {}, []
    with_room = np.logical_or.reduce([slots > 0 for slots in free.values()])
    return free, sorted(t for t, members in roster.teams.items() if (members & with_room).any())
