"""Shared fixtures: settings for the real local servers, a Neo4j driver, provisioned topics.

The servers are started by `make test` (or `make up`); integration tests never skip when they
are missing: they fail with the reason.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator

import neo4j
import pytest

from rapport.graph.driver import open_driver
from rapport.graph.schema import apply_migrations
from rapport.settings import KafkaSettings, Neo4jSettings
from rapport.topics import ensure_topics


@pytest.fixture(scope="session")
def kafka_settings() -> KafkaSettings:
    return KafkaSettings.from_env()


@pytest.fixture(scope="session")
def neo4j_settings() -> Neo4jSettings:
    return Neo4jSettings.from_env()


@pytest.fixture(scope="session")
def graph(neo4j_settings: Neo4jSettings) -> Iterator[neo4j.Driver]:
    driver = open_driver(neo4j_settings)
    driver.verify_connectivity()
    apply_migrations(driver, neo4j_settings.database)
    yield driver
    driver.close()


@pytest.fixture(scope="session")
def provisioned(kafka_settings: KafkaSettings, graph: neo4j.Driver) -> KafkaSettings:
    ensure_topics(kafka_settings)
    return kafka_settings


@pytest.fixture
def isolated_topics(kafka_settings: KafkaSettings) -> KafkaSettings:
    """Fresh topic names for one test, so concurrent tests and old records never interfere."""
    suffix = uuid.uuid4().hex[:8]
    # replace(), so a run against a secured Kafka keeps its credentials.
    settings = dataclasses.replace(
        kafka_settings,
        interactions_topic=f"test.{suffix}.interactions",
        dead_letter_topic=f"test.{suffix}.dlq",
        customer_updates_topic=f"test.{suffix}.customer-updates",
        interactions_partitions=3,
    )
    ensure_topics(settings)
    return settings


@pytest.fixture
def uid() -> str:
    """A short unique prefix for ids, so tests sharing the graph never collide."""
    return uuid.uuid4().hex[:10]
