"""The ProfileService's settings, read from the environment once, in `main`.

RAPPORT_PROFILE_HOST / _PORT (default 50051) / _GRACE / _WORKERS for the gRPC server and the
RAPPORT_NEO4J_* variables for the graph (see rapport.settings); RAPPORT_EFFORT_WINDOW_DAYS for the
customer-effort window (default 7, see rapport.effort).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from rapport.effort import DEFAULT_WINDOW, window_from_env
from rapport.settings import PROFILE_PORT, GrpcSettings, Neo4jSettings


@dataclass(frozen=True)
class ProfileApiSettings:
    grpc: GrpcSettings = field(default_factory=lambda: GrpcSettings(port=PROFILE_PORT))
    neo4j: Neo4jSettings = field(default_factory=Neo4jSettings)
    # Nanoseconds of history the effort score counts.
    effort_window: int = DEFAULT_WINDOW

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProfileApiSettings:
        return cls(
            grpc=GrpcSettings.from_env("profile", PROFILE_PORT, env),
            neo4j=Neo4jSettings.from_env(env),
            effort_window=window_from_env(os.environ if env is None else env),
        )
