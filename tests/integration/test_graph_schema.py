"""The graph schema is applied, idempotent, and enforced by Neo4j itself."""

import neo4j
import pytest
from neo4j.exceptions import ConstraintError

from rapport.graph.schema import MIGRATIONS, apply_migrations

pytestmark = pytest.mark.integration


def test_every_uniqueness_constraint_exists(graph: neo4j.Driver):
    records, _, _ = graph.execute_query("SHOW CONSTRAINTS YIELD labelsOrTypes, properties, type")
    unique = {(r["labelsOrTypes"][0], r["properties"][0]) for r in records if r["type"] == "UNIQUENESS"}
    for label, prop in [
        ("Customer", "id"),
        ("Identity", "key"),
        ("Interaction", "event_id"),
        ("Agent", "id"),
        ("Case", "id"),
        ("Device", "id"),
        ("Merge", "id"),
        ("Contact", "id"),
        ("Tombstone", "hash"),
        ("ErasureReceipt", "id"),
        ("RetentionRun", "name"),
    ]:
        assert (label, prop) in unique


def test_interaction_time_has_a_range_index(graph: neo4j.Driver):
    records, _, _ = graph.execute_query("SHOW INDEXES YIELD labelsOrTypes, properties, type")
    assert any(r["labelsOrTypes"] == ["Interaction"] and r["properties"] == ["at"] for r in records)


def test_migrations_are_applied_once(graph: neo4j.Driver):
    assert apply_migrations(graph) == []
    records, _, _ = graph.execute_query("MATCH (m:SchemaMigration) RETURN max(m.version) AS v")
    assert records[0]["v"] == MIGRATIONS[-1].version


def test_a_duplicate_id_is_refused_by_the_database(graph: neo4j.Driver, uid: str):
    cid = f"cus_test_{uid}"
    graph.execute_query("CREATE (:Customer {id: $id})", id=cid)
    try:
        with pytest.raises(ConstraintError):
            graph.execute_query("CREATE (:Customer {id: $id})", id=cid)
    finally:
        graph.execute_query("MATCH (c:Customer {id: $id}) DETACH DELETE c", id=cid)
