"""Creates the Kafka topics and applies the graph schema: `python -m rapport.provision`."""

from __future__ import annotations

import logging

from rapport.graph.driver import open_driver
from rapport.graph.schema import apply_migrations
from rapport.logs import configure_logging
from rapport.settings import KafkaSettings, Neo4jSettings
from rapport.topics import ensure_topics

log = logging.getLogger("rapport.provision")


def provision(kafka: KafkaSettings, graph: Neo4jSettings) -> None:
    ensure_topics(kafka)
    driver = open_driver(graph)
    try:
        apply_migrations(driver, graph.database)
    finally:
        driver.close()


def main() -> None:
    configure_logging("provision")
    provision(KafkaSettings.from_env(), Neo4jSettings.from_env())
    log.info("topics and graph schema ready")


if __name__ == "__main__":
    main()
