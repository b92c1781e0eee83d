"""The ProfileService's settings, read from the environment once, in `main`.

RAPPORT_PROFILE_HOST / _PORT (default 50051) / _GRACE / _WORKERS for the gRPC server and the
RAPPORT_NEO4J_* variables for the graph (see rapport.settings); RAPPORT_EFFORT_WINDOW_DAYS for the
customer-effort window (default 7, see rapport.effort); RAPPORT_JOURNEY_TIMEOUT seconds a journey
report (JourneyService, served here too) may read for (30).

Erasure (ForgetCustomer) and retention:
RAPPORT_ERASURE_SALT         secret keying the tombstones (HMAC-SHA256); the profile worker must
                             use the same one (see rapport_profile.config)
RAPPORT_ERASURE_TIMEOUT      seconds one erasure transaction may take, within the call's deadline (30)
RAPPORT_RETENTION_DAYS       interactions older than this many days are purged on a schedule; unset
                             or 0 keeps everything (the local default)
RAPPORT_RETENTION_INTERVAL   seconds between purge runs (3600)
RAPPORT_RETENTION_BATCH      interactions per purge transaction (500)
RAPPORT_KAFKA_* and RAPPORT_CUSTOMER_UPDATES_TOPIC: where erased / history-removed notices go.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from rapport.effort import DEFAULT_WINDOW, window_from_env
from rapport.settings import PROFILE_PORT, GrpcSettings, KafkaSettings, Neo4jSettings
from rapport_profile.config import erasure_salt
from rapport_profile.domain.erasure import DEFAULT_ERASURE_SALT
from rapport_profile.domain.retention import MAX_RETENTION_DAYS


def _env_number(env: Mapping[str, str], name: str, default: float, minimum: float, maximum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ValueError(f"{name} must be {minimum:g} to {maximum:g}, got {raw!r}")
    return value


@dataclass(frozen=True)
class ErasureSettings:
    salt: str = field(default=DEFAULT_ERASURE_SALT, repr=False)
    timeout: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ErasureSettings:
        return cls(erasure_salt(env), _env_number(env, "RAPPORT_ERASURE_TIMEOUT", cls.timeout, 1, 600))


@dataclass(frozen=True)
class RetentionSettings:
    # 0: retention is off.
    days: float = 0
    interval: float = 3600.0
    batch_size: int = 500

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RetentionSettings:
        return cls(
            days=_env_number(env, "RAPPORT_RETENTION_DAYS", cls.days, 0, MAX_RETENTION_DAYS),
            interval=_env_number(env, "RAPPORT_RETENTION_INTERVAL", cls.interval, 1, 7 * 86_400),
            batch_size=int(_env_number(env, "RAPPORT_RETENTION_BATCH", cls.batch_size, 1, 100_000)),
        )


@dataclass(frozen=True)
class ProfileApiSettings:
    grpc: GrpcSettings = field(default_factory=lambda: GrpcSettings(port=PROFILE_PORT))
    neo4j: Neo4jSettings = field(default_factory=Neo4jSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    erasure: ErasureSettings = field(default_factory=ErasureSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    # Nanoseconds of history the effort score counts.
    effort_window: int = DEFAULT_WINDOW
    # Seconds a journey report may read for, within the call's deadline.
    journey_timeout: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProfileApiSettings:
        return cls(
            grpc=GrpcSettings.from_env("profile", PROFILE_PORT, env),
            neo4j=Neo4jSettings.from_env(env),
            kafka=KafkaSettings.from_env(env),
            erasure=ErasureSettings.from_env(os.environ if env is None else env),
            retention=RetentionSettings.from_env(os.environ if env is None else env),
            effort_window=window_from_env(os.environ if env is None else env),
            journey_timeout=_env_number(os.environ if env is None else env, "RAPPORT_JOURNEY_TIMEOUT", 30.0, 1, 600),
        )
