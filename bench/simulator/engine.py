"""The discrete-event loop: arrivals, queueing, abandonment, completions and callbacks.

A policy decides who takes a contact. `pick` is asked on arrival (with the free eligible
agents) and, while contacts wait, `assign` is asked whenever capacity frees (the default
assigns the waiting contacts first come, first served, through `pick`).
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .model import Agent, Arrival, World, outcome

CALLBACK_BASE = 1_000_000


@dataclass
class AgentState:
    agent: Agent
    active: dict[str, int]
    idle_since: float = 0.0  # when the agent last became free of every contact
    busy_since: float | None = None
    busy_time: float = 0.0

    def load(self) -> int:
        return sum(self.active.values())

    def has_room(self, channel: str) -> bool:
        return self.active[channel] < self.agent.capacity[channel]


@dataclass
class Record:
    index: int
    customer: int
    channel: str
    topic: str
    arrived: float
    wait: float = 0.0
    abandoned: bool = False
    agent: int = -1
    resolved: bool = False
    csat: int = 0
    p_resolve: float = 0.0
    callback: bool = False
    handle: float = 0.0


class Policy(Protocol):
    name: str

    def start(self, sim: Simulation) -> None: ...

    def pick(self, sim: Simulation, arrival: Arrival, free: list[AgentState]) -> int | None:
        """The agent index to offer the contact to, or None to queue it."""
        ...

    def assign(self, sim: Simulation, waiting: list[Arrival]) -> list[tuple[Arrival, int]]: ...

    def completed(
        self, sim: Simulation, arrival: Arrival, agent: int, resolved: bool, csat: int, handle: float
    ) -> None: ...

    def abandoned(self, sim: Simulation, arrival: Arrival) -> None: ...

    def finish(self, sim: Simulation) -> None: ...


class BasePolicy:
    """First come, first served over `pick`; no side effects."""

    name = "base"

    def start(self, sim: Simulation) -> None:
        return None

    def pick(self, sim: Simulation, arrival: Arrival, free: list[AgentState]) -> int | None:
        raise NotImplementedError

    def assign(self, sim: Simulation, waiting: list[Arrival]) -> list[tuple[Arrival, int]]:
        pairs = []
        for arrival in waiting:
            free = sim.eligible(arrival)
            if not free:
                continue
            chosen = self.pick(sim, arrival, free)
            if chosen is not None:
                pairs.append((arrival, chosen))
                sim.book(arrival, chosen)
        return pairs

    def completed(
        self, sim: Simulation, arrival: Arrival, agent: int, resolved: bool, csat: int, handle: float
    ) -> None:
        return None

    def abandoned(self, sim: Simulation, arrival: Arrival) -> None:
        return None

    def finish(self, sim: Simulation) -> None:
        return None


@dataclass
class Simulation:
    world: World
    policy: Policy
    now: float = 0.0
    states: list[AgentState] = field(default_factory=list)
    records: dict[int, Record] = field(default_factory=dict)
    waiting: dict[int, Arrival] = field(default_factory=dict)  # in arrival order
    _events: list[tuple[float, int, str, Arrival, int]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    _booked: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.states = [AgentState(a, {ch: 0 for ch in a.capacity}) for a in self.world.agents]

    def _push(self, at: float, kind: str, arrival: Arrival, agent: int = -1) -> None:
        heapq.heappush(self._events, (at, next(self._seq), kind, arrival, agent))

    def eligible(self, arrival: Arrival) -> list[AgentState]:
        language = self.world.customers[arrival.customer].language
        return [
            s
            for s in self.states
            if s.has_room(arrival.channel) and language in s.agent.languages and s.agent.index not in self._booked
        ]

    def book(self, arrival: Arrival, agent: int) -> None:
        """Marks an agent's slot as taken during one `assign` round (before `_start` runs)."""
        state = self.states[agent]
        if state.active[arrival.channel] + 1 >= state.agent.capacity[arrival.channel]:
            self._booked.add(agent)

    def run(self) -> list[Record]:
        horizon = self.world.config.hours * 3600
        for arrival in self.world.arrivals:
            self._push(arrival.time, "arrive", arrival)
        self.policy.start(self)
        while self._events:
            at, _, kind, arrival, agent = heapq.heappop(self._events)
            self.now = at
            if kind == "arrive":
                self._arrive(arrival, horizon)
            elif kind == "abandon":
                if arrival.index in self.waiting:
                    del self.waiting[arrival.index]
                    rec = self.records[arrival.index]
                    rec.abandoned, rec.wait = True, at - arrival.time
                    self.policy.abandoned(self, arrival)
            elif kind == "complete":
                self._complete(arrival, agent, horizon)
                # Completions at the same instant free capacity together.
                while self._events and self._events[0][0] == at and self._events[0][2] == "complete":
                    _, _, _, a2, g2 = heapq.heappop(self._events)
                    self._complete(a2, g2, horizon)
                self._dispatch()
        self.policy.finish(self)
        for s in self.states:
            if s.busy_since is not None:
                s.busy_time += self.now - s.busy_since
                s.busy_since = None
        return [self.records[k] for k in sorted(self.records)]

    def _arrive(self, arrival: Arrival, horizon: float) -> None:
        self.records[arrival.index] = Record(
            arrival.index, arrival.customer, arrival.channel, arrival.topic, arrival.time, callback=arrival.parent >= 0
        )
        chosen = None
        # A free agent is never eligible for a waiting contact (the queue is served whenever
        # capacity frees), so an arrival that finds one takes it at once.
        free = self.eligible(arrival)
        if free or self._routes_everything():
            chosen = self.policy.pick(self, arrival, free)
        if chosen is None:
            self.waiting[arrival.index] = arrival
            self._push(arrival.time + arrival.patience, "abandon", arrival)
        else:
            self._start(arrival, chosen)

    def _routes_everything(self) -> bool:
        return bool(getattr(self.policy, "routes_everything", False))

    def _dispatch(self) -> None:
        if not self.waiting:
            return
        self._booked.clear()
        pairs = self.policy.assign(self, list(self.waiting.values()))
        self._booked.clear()
        for arrival, agent in pairs:
            if arrival.index in self.waiting:
                del self.waiting[arrival.index]
                self._start(arrival, agent)

    def _start(self, arrival: Arrival, agent: int) -> None:
        state = self.states[agent]
        rec = self.records[arrival.index]
        rec.wait = self.now - arrival.time
        load = state.load()
        result = outcome(self.world, arrival, state.agent, load, rec.wait)
        rec.agent, rec.resolved, rec.csat, rec.p_resolve = agent, result.resolved, result.csat, result.p_resolve
        rec.handle = result.handle_seconds
        if load == 0:
            state.busy_since = self.now
        state.active[arrival.channel] += 1
        self._push(self.now + result.handle_seconds, "complete", arrival, agent)

    def _complete(self, arrival: Arrival, agent: int, horizon: float) -> None:
        state = self.states[agent]
        state.active[arrival.channel] -= 1
        if state.load() == 0:
            state.idle_since = self.now
            if state.busy_since is not None:
                state.busy_time += self.now - state.busy_since
                state.busy_since = None
        rec = self.records[arrival.index]
        self.policy.completed(self, arrival, agent, rec.resolved, rec.csat, rec.handle)
        if not rec.resolved and arrival.u_callback < self.world.config.callback_prob:
            at = self.now + arrival.callback_delay * self.world.config.callback_minutes * 60
            if at < horizon:
                child = self.world.callback_arrival(arrival, at, CALLBACK_BASE + arrival.index)
                self._push(at, "arrive", child)


def summarize(records: list[Record], sim: Simulation) -> dict[str, float]:
    served = [r for r in records if not r.abandoned and r.agent >= 0]
    late = [r for r in served if r.arrived >= sim.world.config.hours * 1800]
    waits = np.array([r.wait for r in records if r.agent >= 0 or r.abandoned] or [0.0])
    served_waits = np.array([r.wait for r in served] or [0.0])
    horizon = max(sim.now, 1.0)
    occupancy = np.array([s.busy_time / horizon for s in sim.states])
    return {
        "contacts": float(len(records)),
        "served": float(len(served)),
        # Resolution over every contact (an abandoned contact is not resolved).
        "resolution": sum(r.resolved for r in served) / max(1, len(records)),
        "resolution_served": sum(r.resolved for r in served) / max(1, len(served)),
        "expected_resolution": float(np.mean([r.p_resolve for r in served])) if served else 0.0,
        # The same over the second half of the run: what a learning policy has picked up.
        "expected_resolution_late": float(np.mean([r.p_resolve for r in late])) if late else 0.0,
        "csat": float(np.mean([r.csat for r in served])) if served else 0.0,
        "avg_wait": float(served_waits.mean()),
        "p90_wait": float(np.percentile(served_waits, 90)),
        "avg_wait_all": float(waits.mean()),
        "abandonment": sum(r.abandoned for r in records) / max(1, len(records)),
        "callbacks": float(sum(r.callback for r in records)),
        "occupancy_mean": float(occupancy.mean()),
        "occupancy_spread": float(occupancy.std()),
    }
