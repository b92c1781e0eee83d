"""In-process baseline policies, and the oracle that knows the hidden model (the ceiling)."""

from __future__ import annotations

import numpy as np

from .engine import AgentState, BasePolicy, Simulation
from .model import Arrival, resolve_probability


class RandomPolicy(BasePolicy):
    name = "random"

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng([seed, 17])

    def pick(self, sim: Simulation, arrival: Arrival, free: list[AgentState]) -> int | None:
        return free[int(self.rng.integers(len(free)))].agent.index if free else None


def _idle_key(s: AgentState) -> tuple[int, float, int]:
    # Fully idle agents first, longest idle first; then the least loaded.
    return (0 if s.load() == 0 else 1, s.idle_since if s.load() == 0 else float(s.load()), s.agent.index)


class LongestIdlePolicy(BasePolicy):
    """The default of TaskRouter and Amazon Connect: the agent idle the longest."""

    name = "longest_idle"

    def pick(self, sim: Simulation, arrival: Arrival, free: list[AgentState]) -> int | None:
        return min(free, key=_idle_key).agent.index if free else None


class SkillsOnlyPolicy(BasePolicy):
    """The best declared skill level on the topic; ties go to the agent idle the longest."""

    name = "skills_only"

    def pick(self, sim: Simulation, arrival: Arrival, free: list[AgentState]) -> int | None:
        if not free:
            return None
        return min(free, key=lambda s: (-s.agent.declared[arrival.topic], *_idle_key(s))).agent.index


class OraclePolicy(BasePolicy):
    """Greedy on the hidden model's resolution probability (it knows skill and rapport)."""

    name = "oracle"

    def pick(self, sim: Simulation, arrival: Arrival, free: list[AgentState]) -> int | None:
        if not free:
            return None
        return max(
            free, key=lambda s: (resolve_probability(sim.world, arrival, s.agent, s.load()), -s.agent.index)
        ).agent.index


BASELINES = {p.name: p for p in (RandomPolicy, LongestIdlePolicy, SkillsOnlyPolicy, OraclePolicy)}


def baseline(name: str, seed: int) -> BasePolicy:
    if name == "random":
        return RandomPolicy(seed)
    return BASELINES[name]()  # type: ignore[call-arg]
