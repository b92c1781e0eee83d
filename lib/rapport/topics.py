"""Kafka topics Rapport needs, created idempotently with kafka-python's admin client."""

from __future__ import annotations

import logging

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from rapport.settings import KafkaSettings

log = logging.getLogger(__name__)

# A dead-lettered record is kept for a month so it can be inspected and replayed after a fix.
DLQ_RETENTION_MS = 30 * 24 * 3600 * 1000


def topic_specs(settings: KafkaSettings) -> list[NewTopic]:
    return [
        NewTopic(settings.interactions_topic, settings.interactions_partitions, 1),
        NewTopic(settings.dead_letter_topic, 1, 1, topic_configs={"retention.ms": str(DLQ_RETENTION_MS)}),
        NewTopic(settings.customer_updates_topic, 3, 1),
    ]


def ensure_topics(settings: KafkaSettings, specs: list[NewTopic] | None = None) -> list[str]:
    """Creates missing topics; returns the names it created."""
    specs = topic_specs(settings) if specs is None else specs
    admin = KafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        client_id="rapport-provision",
        request_timeout_ms=int(settings.request_timeout * 1000),
        **settings.kafka_python_kwargs(),
    )
    try:
        existing = set(admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        created = []
        for spec in missing:
            try:
                admin.create_topics([spec], timeout_ms=int(settings.request_timeout * 1000))
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass  # another process won the race; the topic is there, which is all we need
        if created:
            log.info("created topics", extra={"topics": created})
        return created
    finally:
        admin.close()
