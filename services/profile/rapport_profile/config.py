"""The ingest worker's settings, read from the environment once, in `main`.

Kafka topics and bootstrap come from rapport.settings.KafkaSettings (RAPPORT_KAFKA_BOOTSTRAP,
RAPPORT_INTERACTIONS_TOPIC, RAPPORT_DEAD_LETTER_TOPIC, RAPPORT_CUSTOMER_UPDATES_TOPIC, ...) and
the graph from Neo4jSettings (RAPPORT_NEO4J_*). The worker's own:

RAPPORT_PROFILE_GROUP            Faust app id, which is also the Kafka consumer group (rapport-profile)
RAPPORT_PROFILE_BATCH_SIZE       events per graph transaction (1000)
RAPPORT_PROFILE_LINGER           seconds to wait for a batch to fill (0.05)
RAPPORT_PROFILE_COMMIT_INTERVAL  seconds between offset commits of acknowledged records (1.0)
RAPPORT_PROFILE_RETRY_MAX        longest backoff, in seconds, while the graph is unavailable (5)
RAPPORT_PROFILE_WORKER_HOST      health endpoint address (127.0.0.1)
RAPPORT_PROFILE_WORKER_PORT      health endpoint port (6066)
RAPPORT_PROFILE_TX_TIMEOUT       seconds one graph transaction may run (60)
RAPPORT_PROFILE_SESSION_TIMEOUT  seconds before Kafka gives a silent (killed) worker's partitions to
                                 another member of the group (30)
RAPPORT_ERASURE_SALT             secret keying the tombstones of erased customers (HMAC-SHA256); the
                                 worker and the ProfileService must share it. The default is for local
                                 stacks only; set it once per deployment and never change it (tombstones
                                 made with another salt stop matching).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field

from rapport.settings import PROFILE_WORKER_WEB_PORT, KafkaSettings, Neo4jSettings
from rapport_profile.domain.erasure import DEFAULT_ERASURE_SALT
from rapport_profile.proactive_config import ProactiveSettings, proactive_settings


def _get(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip()
    return value or default


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = _get(env, name, str(default))
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def erasure_salt(env: Mapping[str, str]) -> str:
    """RAPPORT_ERASURE_SALT, shared by everything that writes or checks tombstones."""
    return env.get("RAPPORT_ERASURE_SALT", "") or DEFAULT_ERASURE_SALT


@dataclass(frozen=True)
class IngestSettings:
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    neo4j: Neo4jSettings = field(default_factory=Neo4jSettings)
    group: str = "rapport-profile"
    batch_size: int = 1000
    linger: float = 0.05
    commit_interval: float = 1.0
    retry_initial: float = 0.1
    retry_max: float = 5.0
    web_host: str = "127.0.0.1"
    web_port: int = PROFILE_WORKER_WEB_PORT
    transaction_timeout: float = 60.0
    session_timeout: float = 30.0
    # Proactive device cases and escalations: see rapport_profile.proactive_config.
    proactive: ProactiveSettings = field(default_factory=ProactiveSettings)
    erasure_salt: str = field(default=DEFAULT_ERASURE_SALT, repr=False)
    # Faust's own folder; with the in-memory store it holds nothing worth keeping, so by default
    # it goes to the temp dir rather than "<group>-data" in whatever directory the worker started.
    data_dir: str = ""

    @property
    def faust_data_dir(self) -> str:
        return self.data_dir or os.path.join(tempfile.gettempdir(), f"rapport-faust-{self.group}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> IngestSettings:
        env = os.environ if env is None else env
        return cls(
            kafka=KafkaSettings.from_env(env),
            neo4j=Neo4jSettings.from_env(env),
            group=_get(env, "RAPPORT_PROFILE_GROUP", cls.group),
            batch_size=int(_number(env, "RAPPORT_PROFILE_BATCH_SIZE", cls.batch_size, minimum=1)),
            linger=_number(env, "RAPPORT_PROFILE_LINGER", cls.linger, minimum=0.001),
            commit_interval=_number(env, "RAPPORT_PROFILE_COMMIT_INTERVAL", cls.commit_interval, minimum=0.05),
            retry_max=_number(env, "RAPPORT_PROFILE_RETRY_MAX", cls.retry_max, minimum=0.1),
            web_host=_get(env, "RAPPORT_PROFILE_WORKER_HOST", cls.web_host),
            web_port=int(_number(env, "RAPPORT_PROFILE_WORKER_PORT", cls.web_port, minimum=0)),
            transaction_timeout=_number(env, "RAPPORT_PROFILE_TX_TIMEOUT", cls.transaction_timeout, minimum=1),
            # Kafka's broker refuses sessions shorter than group.min.session.timeout.ms (6 s).
            session_timeout=_number(env, "RAPPORT_PROFILE_SESSION_TIMEOUT", cls.session_timeout, minimum=6),
            proactive=proactive_settings(env),
            erasure_salt=erasure_salt(env),
            data_dir=env.get("RAPPORT_PROFILE_DATA_DIR", "").strip(),
        )
