"""Settings from the environment, with safe local defaults. Loaded once, in each `main`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

INTERACTIONS_TOPIC = "rapport.interactions.v1"
DEAD_LETTER_TOPIC = "rapport.interactions.dlq.v1"
CUSTOMER_UPDATES_TOPIC = "rapport.customer-updates.v1"


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str = "127.0.0.1:9092"
    interactions_topic: str = INTERACTIONS_TOPIC
    dead_letter_topic: str = DEAD_LETTER_TOPIC
    customer_updates_topic: str = CUSTOMER_UPDATES_TOPIC
    interactions_partitions: int = 6
    # Seconds; bounds every admin, produce and metadata call.
    request_timeout: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaSettings:
        env = os.environ if env is None else env
        return cls(
            bootstrap_servers=env.get("RAPPORT_KAFKA_BOOTSTRAP", cls.bootstrap_servers),
            interactions_topic=env.get("RAPPORT_INTERACTIONS_TOPIC", cls.interactions_topic),
            dead_letter_topic=env.get("RAPPORT_DEAD_LETTER_TOPIC", cls.dead_letter_topic),
            customer_updates_topic=env.get("RAPPORT_CUSTOMER_UPDATES_TOPIC", cls.customer_updates_topic),
            interactions_partitions=_int(env, "RAPPORT_INTERACTIONS_PARTITIONS", cls.interactions_partitions),
            request_timeout=_float(env, "RAPPORT_KAFKA_TIMEOUT", cls.request_timeout),
        )


@dataclass(frozen=True)
class Neo4jSettings:
    uri: str = "bolt://127.0.0.1:7687"
    user: str = "neo4j"
    password: str = field(default="rapport-local", repr=False)
    database: str = "neo4j"
    # Seconds; bounds connection acquisition and each transaction.
    timeout: float = 10.0
    max_pool_size: int = 50

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Neo4jSettings:
        env = os.environ if env is None else env
        return cls(
            uri=env.get("RAPPORT_NEO4J_URI", cls.uri),
            user=env.get("RAPPORT_NEO4J_USER", cls.user),
            password=env.get("RAPPORT_NEO4J_PASSWORD", "rapport-local"),
            database=env.get("RAPPORT_NEO4J_DATABASE", cls.database),
            timeout=_float(env, "RAPPORT_NEO4J_TIMEOUT", cls.timeout),
            max_pool_size=_int(env, "RAPPORT_NEO4J_POOL_SIZE", cls.max_pool_size),
        )


@dataclass(frozen=True)
class GrpcSettings:
    host: str = "127.0.0.1"
    port: int = 0
    # Seconds given to in-flight calls on SIGTERM.
    grace: float = 10.0
    max_workers: int = 16

    @classmethod
    def from_env(cls, prefix: str, default_port: int, env: Mapping[str, str] | None = None) -> GrpcSettings:
        """Reads RAPPORT_<PREFIX>_HOST, _PORT, _GRACE and _WORKERS."""
        env = os.environ if env is None else env
        p = f"RAPPORT_{prefix.upper()}_"
        return cls(
            host=env.get(p + "HOST", cls.host),
            port=_int(env, p + "PORT", default_port),
            grace=_float(env, p + "GRACE", cls.grace),
            max_workers=_int(env, p + "WORKERS", cls.max_workers),
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


# Default ports of the local stack; each service's settings read its own override.
PROFILE_PORT = 50051
TIMELINE_PORT = 50052
ROUTER_PORT = 50053
PROFILE_WORKER_WEB_PORT = 6066
