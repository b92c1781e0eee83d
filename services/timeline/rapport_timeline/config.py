"""Timeline settings from the environment, loaded once in `main`.

RAPPORT_TIMELINE_HOST / _PORT (default 50052) / _GRACE / _WORKERS   the gRPC server
RAPPORT_TIMELINE_MAX_WATCHERS   concurrent WatchTimeline streams per process (each holds a
                                worker thread; default: workers - 16, so unary calls keep room)
RAPPORT_TIMELINE_LIVE_WAIT      seconds a new watch waits for the live feed (default 5)
RAPPORT_TIMELINE_CACHE_INTERACTIONS   interactions the hot-timeline cache may hold (default
                                200000, about 100 MB; 0 turns it off)
RAPPORT_EFFORT_WINDOW_DAYS       the customer-effort window (default 7; see rapport.effort)
RAPPORT_NEO4J_* and RAPPORT_KAFKA_* as in rapport.settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

from rapport.effort import DEFAULT_WINDOW, window_from_env
from rapport.settings import TIMELINE_PORT, GrpcSettings, KafkaSettings, Neo4jSettings

DEFAULT_WORKERS = 64
RESERVED_FOR_UNARY = 16


@dataclass(frozen=True)
class TimelineSettings:
    grpc: GrpcSettings
    neo4j: Neo4jSettings
    kafka: KafkaSettings
    max_watchers: int
    live_wait: float = 5.0
    cache_interactions: int = 200_000
    # Nanoseconds of history the effort score counts.
    effort_window: int = DEFAULT_WINDOW

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TimelineSettings:
        env = os.environ if env is None else env
        grpc = GrpcSettings.from_env("timeline", TIMELINE_PORT, env)
        if not env.get("RAPPORT_TIMELINE_WORKERS"):
            grpc = replace(grpc, max_workers=DEFAULT_WORKERS)
        raw_watchers = env.get("RAPPORT_TIMELINE_MAX_WATCHERS", "")
        raw_wait = env.get("RAPPORT_TIMELINE_LIVE_WAIT", "")
        raw_cache = env.get("RAPPORT_TIMELINE_CACHE_INTERACTIONS", "")
        try:
            max_watchers = int(raw_watchers) if raw_watchers else max(1, grpc.max_workers - RESERVED_FOR_UNARY)
            live_wait = float(raw_wait) if raw_wait else 5.0
            cache = int(raw_cache) if raw_cache else 200_000
        except ValueError as exc:
            raise ValueError(f"RAPPORT_TIMELINE_* settings must be numbers: {exc}") from exc
        return cls(
            grpc,
            Neo4jSettings.from_env(env),
            KafkaSettings.from_env(env),
            max_watchers,
            live_wait,
            cache,
            window_from_env(env),
        )
