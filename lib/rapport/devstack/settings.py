"""Configuration of the local server stack, read from the environment."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rapport.devstack.errors import ConfigError

DEFAULT_KAFKA_PORT = 9092
DEFAULT_KAFKA_CONTROLLER_PORT = 9093
DEFAULT_NEO4J_BOLT_PORT = 7687
DEFAULT_NEO4J_USER = "neo4j"
DEFAULT_NEO4J_PASSWORD = "rapport-local"
LOCAL_HOST = "127.0.0.1"

_POM_MARKER = Path("deploy/local/kafka/pom.xml")


def find_repo_root(env: Mapping[str, str]) -> Path:
    """The checkout that holds deploy/local/ (its poms name the jar sets)."""
    explicit = env.get("RAPPORT_REPO_ROOT")
    if explicit:
        return Path(explicit).resolve()
    starts = [Path(__file__).resolve().parent, Path.cwd().resolve()]
    for start in starts:
        for candidate in (start, *start.parents):
            if (candidate / _POM_MARKER).is_file():
                return candidate
    raise ConfigError(
        f"cannot find the Rapport checkout ({_POM_MARKER} above {starts[0]} or the current folder); "
        "run from the repository or set RAPPORT_REPO_ROOT"
    )


def _get(env: Mapping[str, str], name: str) -> str | None:
    # An empty variable counts as unset, so `FOO= make up` behaves like no FOO at all.
    value = env.get(name, "").strip()
    return value or None


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        port = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a port number") from None
    if not 0 < port < 65536:
        raise ConfigError(f"{name}={port} is outside 1..65535")
    return port


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive")
    return value


def _find_java(env: Mapping[str, str]) -> str:
    explicit = _get(env, "RAPPORT_JAVA")
    if explicit:
        return explicit
    java_home = _get(env, "JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    # Empty when missing: only starting a server needs Java, so status/down still work without it.
    return shutil.which("java", path=env.get("PATH")) or ""


@dataclass(frozen=True)
class Settings:
    repo_root: Path
    state_dir: Path
    cache_dir: Path
    java: str
    mvn: str
    kafka_port: int
    kafka_controller_port: int
    kafka_bootstrap: str
    kafka_external: bool
    kafka_heap: str
    neo4j_bolt_port: int
    neo4j_uri: str
    neo4j_external: bool
    neo4j_user: str
    neo4j_password: str = field(repr=False)
    neo4j_heap: str = "1g"
    neo4j_pagecache: str = "256m"
    neo4j_tx_timeout: str = "60s"
    ready_timeout: float = 120.0
    stop_grace: float = 30.0

    @property
    def kafka_state(self) -> Path:
        return self.state_dir / "kafka"

    @property
    def neo4j_state(self) -> Path:
        return self.state_dir / "neo4j"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        repo_root = find_repo_root(env)
        state = _get(env, "RAPPORT_STATE_DIR")
        state_dir = Path(state).expanduser() if state else repo_root / ".rapport"
        cache = _get(env, "RAPPORT_CACHE_DIR")
        if cache:
            cache_dir = Path(cache).expanduser()
        else:
            xdg = _get(env, "XDG_CACHE_HOME")
            cache_dir = (Path(xdg) if xdg else Path.home() / ".cache") / "rapport" / "jars"

        kafka_port = _port(env, "RAPPORT_KAFKA_PORT", DEFAULT_KAFKA_PORT)
        controller_port = _port(env, "RAPPORT_KAFKA_CONTROLLER_PORT", DEFAULT_KAFKA_CONTROLLER_PORT)
        bolt_port = _port(env, "RAPPORT_NEO4J_BOLT_PORT", DEFAULT_NEO4J_BOLT_PORT)
        if kafka_port == controller_port:
            raise ConfigError("RAPPORT_KAFKA_PORT and RAPPORT_KAFKA_CONTROLLER_PORT must differ")
        if bolt_port in (kafka_port, controller_port):
            raise ConfigError("RAPPORT_NEO4J_BOLT_PORT clashes with a Kafka port")

        bootstrap = _get(env, "RAPPORT_KAFKA_BOOTSTRAP")
        neo4j_uri = _get(env, "RAPPORT_NEO4J_URI")
        neo4j_user = _get(env, "RAPPORT_NEO4J_USER") or DEFAULT_NEO4J_USER
        if neo4j_uri is None and neo4j_user != DEFAULT_NEO4J_USER:
            raise ConfigError(
                f"the local Neo4j only has the user {DEFAULT_NEO4J_USER!r}; "
                "unset RAPPORT_NEO4J_USER or point RAPPORT_NEO4J_URI at your own server"
            )
        return cls(
            repo_root=repo_root,
            state_dir=state_dir.resolve(),
            cache_dir=cache_dir.resolve(),
            java=_find_java(env),
            mvn=_get(env, "RAPPORT_MVN") or "mvn",
            kafka_port=kafka_port,
            kafka_controller_port=controller_port,
            kafka_bootstrap=bootstrap or f"{LOCAL_HOST}:{kafka_port}",
            kafka_external=bootstrap is not None,
            kafka_heap=_get(env, "RAPPORT_KAFKA_HEAP") or "768m",
            neo4j_bolt_port=bolt_port,
            neo4j_uri=neo4j_uri or f"bolt://{LOCAL_HOST}:{bolt_port}",
            neo4j_external=neo4j_uri is not None,
            neo4j_user=neo4j_user,
            neo4j_password=_get(env, "RAPPORT_NEO4J_PASSWORD") or DEFAULT_NEO4J_PASSWORD,
            neo4j_heap=_get(env, "RAPPORT_NEO4J_HEAP") or "1g",
            neo4j_pagecache=_get(env, "RAPPORT_NEO4J_PAGECACHE") or "256m",
            neo4j_tx_timeout=_get(env, "RAPPORT_NEO4J_TX_TIMEOUT") or "60s",
            ready_timeout=_seconds(env, "RAPPORT_READY_TIMEOUT", 120.0),
            stop_grace=_seconds(env, "RAPPORT_STOP_GRACE", 30.0),
        )
