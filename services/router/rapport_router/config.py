"""The router's settings, from the environment (read once, in `main`).

Every knob is a `RAPPORT_ROUTER_*` variable (see `RouterConfig.from_env` for names and defaults),
but for the customer-effort window, RAPPORT_EFFORT_WINDOW_DAYS, which the profile API and the
timeline read too (see rapport.effort).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from rapport.effort import DAY, window_from_env
from rapport.settings import ROUTER_PORT, GrpcSettings, KafkaSettings, Neo4jSettings
from rapport_router.domain.relaxation import DEFAULT_POLICY, RelaxationPolicy
from rapport_router.domain.scoring import ScoringParams, Weights

PREFIX = "RAPPORT_ROUTER_"


def _float(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = env.get(PREFIX + name, "")
    if raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{PREFIX}{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{PREFIX}{name} must be at least {minimum}, got {raw!r}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(PREFIX + name, "")
    if raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{PREFIX}{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{PREFIX}{name} must be at least {minimum}, got {raw!r}")
    return value


@dataclass(frozen=True)
class RouterConfig:
    grpc: GrpcSettings = field(default_factory=lambda: GrpcSettings(port=ROUTER_PORT))
    neo4j: Neo4jSettings = field(default_factory=Neo4jSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    weights: Weights = field(default_factory=Weights)
    scoring: ScoringParams = field(default_factory=ScoringParams)
    relaxation: RelaxationPolicy = DEFAULT_POLICY
    # Seconds an agent has to accept an offer before it goes to the next best agent.
    offer_timeout: float = 20.0
    # Seconds of waiting worth one priority level (ageing: nobody waits forever behind newcomers).
    ageing_seconds: float = 60.0
    # Seconds between two rounds of the background loop (offer timeouts, batch assignment).
    tick: float = 0.5
    # Waiting contacts considered together in one batch assignment.
    batch_limit: int = 200
    # The agent roster is re-read when older than this many seconds.
    roster_max_age: float = 0.5
    # Seconds between refreshes of the agents' outcome statistics (similar-customer success).
    stats_refresh: float = 120.0
    # Deadline for a call that brings none (seconds); calls with a deadline keep theirs.
    request_timeout: float = 5.0
    # How often agent desktops' offer streams look for offers made by other router replicas.
    stream_poll: float = 0.25
    # Handle time assumed for the wait estimate until completions say otherwise.
    default_handle_seconds: float = 300.0
    # Seconds after which an unpublished completion event is published again.
    outbox_retry: float = 15.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RouterConfig:
        env = os.environ if env is None else env
        neo4j = Neo4jSettings.from_env(env)
        request_timeout = _float(env, "REQUEST_TIMEOUT", cls.request_timeout, minimum=0.1)
        return cls(
            grpc=GrpcSettings.from_env("router", ROUTER_PORT, env),
            # The router answers within a call's deadline, so it never waits longer than that on Neo4j.
            neo4j=replace(neo4j, timeout=min(neo4j.timeout, request_timeout)),
            kafka=KafkaSettings.from_env(env),
            weights=Weights(
                skill=_float(env, "WEIGHT_SKILL", Weights.skill),
                affinity=_float(env, "WEIGHT_AFFINITY", Weights.affinity),
                similar_customers=_float(env, "WEIGHT_SIMILAR", Weights.similar_customers),
                continuity=_float(env, "WEIGHT_CONTINUITY", Weights.continuity),
                idle_time=_float(env, "WEIGHT_IDLE", Weights.idle_time),
                priority=_float(env, "WEIGHT_PRIORITY", Weights.priority),
                preferred_agent=_float(env, "WEIGHT_PREFERRED", Weights.preferred_agent),
            ).checked(),
            scoring=ScoringParams(
                affinity_half_life_days=_float(
                    env, "AFFINITY_HALF_LIFE_DAYS", ScoringParams.affinity_half_life_days, minimum=0.01
                ),
                continuity_days=_float(env, "CONTINUITY_DAYS", ScoringParams.continuity_days, minimum=0.01),
                idle_saturation=_float(env, "IDLE_SATURATION", ScoringParams.idle_saturation, minimum=1.0),
                # The effort window the 360 view and the handoff context use too (RAPPORT_EFFORT_WINDOW_DAYS).
                effort_days=window_from_env(env) / DAY,
                high_tiers=tuple(
                    t.strip().lower()
                    for t in env.get(PREFIX + "HIGH_TIERS", ",".join(ScoringParams.high_tiers)).split(",")
                    if t.strip()
                ),
                stats_lookback_days=_float(env, "STATS_LOOKBACK_DAYS", ScoringParams.stats_lookback_days, minimum=1.0),
            ),
            relaxation=RelaxationPolicy.parse(env.get(PREFIX + "RELAXATION", DEFAULT_POLICY.text)),
            offer_timeout=_float(env, "OFFER_TIMEOUT", cls.offer_timeout, minimum=0.1),
            ageing_seconds=_float(env, "AGEING_SECONDS", cls.ageing_seconds, minimum=1.0),
            tick=_float(env, "TICK", cls.tick, minimum=0.01),
            batch_limit=_int(env, "BATCH_LIMIT", cls.batch_limit, minimum=1),
            roster_max_age=_float(env, "ROSTER_MAX_AGE", cls.roster_max_age),
            stats_refresh=_float(env, "STATS_REFRESH", cls.stats_refresh, minimum=1.0),
            request_timeout=request_timeout,
            stream_poll=_float(env, "STREAM_POLL", cls.stream_poll, minimum=0.01),
            default_handle_seconds=_float(env, "DEFAULT_HANDLE_SECONDS", cls.default_handle_seconds, minimum=1.0),
            outbox_retry=_float(env, "OUTBOX_RETRY", cls.outbox_retry, minimum=0.1),
        )
