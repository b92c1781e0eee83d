"""Runs policies over seeds and aggregates the metrics, with confidence intervals over seeds."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from .engine import BasePolicy, Simulation, summarize
from .model import SimConfig, build_world
from .policies import baseline

BASELINE_NAMES = ("random", "longest_idle", "skills_only", "oracle")
# Two-sided 95% Student t quantiles by degrees of freedom.
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def run_policy(config: SimConfig, policy: BasePolicy) -> dict[str, float]:
    sim = Simulation(build_world(config), policy)
    records = sim.run()
    return summarize(records, sim)


def run_baselines(config: SimConfig, names: Sequence[str] = BASELINE_NAMES) -> dict[str, dict[str, float]]:
    return {name: run_policy(config, baseline(name, config.seed)) for name in names}


def mean_ci(values: Sequence[float]) -> dict[str, float]:
    """Mean with a 95% confidence half-width over seeds (0 with a single seed)."""
    n = len(values)
    mean = statistics.fmean(values) if values else float("nan")
    if n < 2:
        return {"mean": mean, "ci95": 0.0, "n": float(n)}
    t = _T95.get(n - 1, 1.96)
    return {"mean": mean, "ci95": t * statistics.stdev(values) / math.sqrt(n), "n": float(n)}


def gap_closed(
    result: dict[str, float], low: dict[str, float], high: dict[str, float], key: str = "resolution"
) -> float:
    """Share of the longest-idle (low) to oracle (high) gap that `result` closes."""
    gap = high[key] - low[key]
    if abs(gap) < 1e-9:
        return float("nan")
    return (result[key] - low[key]) / gap


def aggregate(per_seed: dict[int, dict[str, dict[str, float]]]) -> dict[str, Any]:
    """`per_seed[seed][policy] = metrics` -> per policy: every metric's mean and CI, and gap closed."""
    policies: list[str] = []
    for results in per_seed.values():
        policies += [p for p in results if p not in policies]
    out: dict[str, Any] = {}
    for policy in policies:
        seeds = [s for s in per_seed if policy in per_seed[s]]
        metrics = per_seed[seeds[0]][policy].keys()
        entry: dict[str, Any] = {m: mean_ci([per_seed[s][policy][m] for s in seeds]) for m in metrics}
        for key, label in (
            ("resolution", "gap_closed"),
            # On the hidden model's resolution probability of the pairs made: free of the outcome
            # draws' noise; and over the second half of the run, after some learning.
            ("expected_resolution", "gap_closed_expected"),
            ("expected_resolution_late", "gap_closed_expected_late"),
        ):
            gaps = [
                gap_closed(per_seed[s][policy], per_seed[s]["longest_idle"], per_seed[s]["oracle"], key)
                for s in seeds
                if "longest_idle" in per_seed[s] and "oracle" in per_seed[s] and key in per_seed[s][policy]
            ]
            gaps = [g for g in gaps if not math.isnan(g)]
            if gaps:
                entry[label] = mean_ci(gaps)
        out[policy] = entry
    return out


def seeds_configs(base: SimConfig, seeds: Sequence[int]) -> list[SimConfig]:
    return [replace(base, seed=s) for s in seeds]


def run_all(
    base: SimConfig,
    seeds: Sequence[int],
    extra: Callable[[SimConfig], dict[str, dict[str, float]]] | None = None,
) -> dict[int, dict[str, dict[str, float]]]:
    per_seed: dict[int, dict[str, dict[str, float]]] = {}
    for config in seeds_configs(base, seeds):
        per_seed[config.seed] = run_baselines(config)
        if extra is not None:
            per_seed[config.seed].update(extra(config))
    return per_seed
