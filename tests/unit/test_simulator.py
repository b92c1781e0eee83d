"""The routing-quality simulator (bench/simulator): deterministic per seed, and the oracle
that knows the hidden model beats random routing on a short run."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.simulator.model import SimConfig, build_world
from bench.simulator.report import aggregate, gap_closed, mean_ci, run_baselines

pytestmark = pytest.mark.unit

SHORT = SimConfig(hours=2.0)


def test_same_seed_same_world_and_same_results():
    a, b = build_world(SHORT), build_world(SHORT)
    assert [(x.time, x.customer, x.topic, x.channel) for x in a.arrivals] == [
        (x.time, x.customer, x.topic, x.channel) for x in b.arrivals
    ]
    assert (a.rapport == b.rapport).all()
    assert run_baselines(SHORT) == run_baselines(SHORT)


def test_another_seed_changes_the_world():
    other = build_world(replace(SHORT, seed=2))
    assert [x.time for x in other.arrivals] != [x.time for x in build_world(SHORT).arrivals]


def test_oracle_beats_random_on_every_seed():
    for seed in (1, 2, 3):
        results = run_baselines(replace(SHORT, seed=seed), ("random", "oracle"))
        assert results["oracle"]["expected_resolution"] > results["random"]["expected_resolution"]
        assert results["oracle"]["resolution"] > results["random"]["resolution"]


def test_metrics_are_valid_and_gap_is_measured_against_longest_idle_and_oracle():
    per_seed = {s: run_baselines(replace(SHORT, seed=s)) for s in (1, 2)}
    for results in per_seed.values():
        for m in results.values():
            assert m["contacts"] > 50
            assert 0 <= m["resolution"] <= 1 and 0 <= m["abandonment"] <= 1
            assert 1 <= m["csat"] <= 5 and m["p90_wait"] >= 0 and 0 < m["occupancy_mean"] <= 1
    summary = aggregate(per_seed)
    assert summary["oracle"]["gap_closed"]["mean"] == pytest.approx(1.0)
    assert summary["longest_idle"]["gap_closed"]["mean"] == pytest.approx(0.0)
    assert gap_closed({"resolution": 0.6}, {"resolution": 0.5}, {"resolution": 0.7}) == pytest.approx(0.5)
    assert mean_ci([1.0])["ci95"] == 0.0 and mean_ci([1.0, 3.0])["mean"] == 2.0
