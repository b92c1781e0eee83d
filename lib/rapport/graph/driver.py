"""The one place that opens Neo4j drivers, with deadlines on every call."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import neo4j

from rapport.settings import Neo4jSettings


def _driver_options(settings: Neo4jSettings) -> dict[str, Any]:
    return {
        "auth": (settings.user, settings.password),
        "connection_timeout": settings.timeout,
        "connection_acquisition_timeout": settings.timeout,
        "max_transaction_retry_time": settings.timeout,
        "max_connection_pool_size": settings.max_pool_size,
        "liveness_check_timeout": 30.0,
        "user_agent": "rapport",
        **settings.driver_security_kwargs(),
    }


def open_driver(settings: Neo4jSettings) -> neo4j.Driver:
    return neo4j.GraphDatabase.driver(settings.uri, **_driver_options(settings))


class Rows(list[Any]):
    """A list query parameter the driver does not format. The driver builds the text of its debug
    line for every RUN, whatever the log level: for a batch's rows that cost milliseconds."""

    def __repr__(self) -> str:
        return f"<{len(self)} rows>"


def unlogged(params: Mapping[str, Any]) -> dict[str, Any]:
    """`params` with every top-level list as Rows."""
    return {k: Rows(v) if isinstance(v, list) else v for k, v in params.items()}


def run_rows(tx: neo4j.ManagedTransaction, query: str, params: dict[str, Any]) -> list[neo4j.Record]:
    """Every record of `query`; then the Rows among `params` are emptied, as they have been sent.

    The driver keeps each statement's parameters (in its result summary) inside reference cycles
    that only the garbage collector frees: a batch's rows lived on until a collection, and every
    collection walked them. Emptied, they go by reference counting when the caller drops them
    (the summary's `parameters` then shows the lists empty).
    """
    try:
        return list(tx.run(query, params))
    finally:
        for value in params.values():
            if isinstance(value, Rows):
                value.clear()
