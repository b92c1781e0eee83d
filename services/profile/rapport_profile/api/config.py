"""The ProfileService's settings, read from the environment once, in `main`.

RAPPORT_PROFILE_HOST / _PORT (default 50051) / _GRACE / _WORKERS for the gRPC server and the
RAPPORT_NEO4J_* variables for the graph (see rapport.settings).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from rapport.settings import PROFILE_PORT, GrpcSettings, Neo4jSettings


@dataclass(frozen=True)
class ProfileApiSettings:
    grpc: GrpcSettings = field(default_factory=lambda: GrpcSettings(port=PROFILE_PORT))
    neo4j: Neo4jSettings = field(default_factory=Neo4jSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProfileApiSettings:
        return cls(grpc=GrpcSettings.from_env("profile", PROFILE_PORT, env), neo4j=Neo4jSettings.from_env(env))
