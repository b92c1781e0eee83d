"""The routing-quality bench's Rapport policy drives the real router (child process) and the
real ingest worker for a handful of simulated contacts and produces valid metrics."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rapport.settings import KafkaSettings, Neo4jSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.simulator.model import SimConfig
from bench.simulator.rapport import RapportPolicy, rapport_stack
from bench.simulator.report import run_policy

pytestmark = pytest.mark.e2e


def test_rapport_greedy_routes_simulated_contacts_through_the_router(
    neo4j_settings: Neo4jSettings, kafka_settings: KafkaSettings, tmp_path: Path
):
    config = SimConfig(seed=3, hours=0.25, agents=6, customers=20)
    with rapport_stack(neo4j_settings, kafka_settings, log_dir=tmp_path) as stack:
        policy = RapportPolicy(stack, batch=False, seed=config.seed)
        metrics = run_policy(config, policy)
    assert metrics["contacts"] >= 5
    assert policy.calls >= metrics["served"] > 0
    assert sum(policy.modes.values()) == metrics["served"]
    assert policy.modes.get("ASSIGNMENT_MODE_DIRECT", 0) >= metrics["served"] - policy.requeued
    assert 0 <= metrics["resolution"] <= 1 and 1 <= metrics["csat"] <= 5
    assert metrics["avg_wait"] >= 0 and 0 <= metrics["abandonment"] <= 1
