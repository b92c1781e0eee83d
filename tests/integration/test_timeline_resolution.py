"""One resolution round against the real Neo4j: ids and identity keys together, merge chains
followed hop by hop for all keys at once, each key's own outcome; and concurrent resolves."""

from __future__ import annotations

import threading

import neo4j
import pytest

from rapport.errors import FailedPrecondition, NotFound
from rapport.settings import Neo4jSettings
from rapport_timeline.adapters.graph import MAX_MERGE_HOPS, Neo4jTimelineGraph
from rapport_timeline.domain.model import CustomerKey, Resolved

pytestmark = pytest.mark.integration


def customers(graph: neo4j.Driver, uid: str) -> None:
    """live (3 interactions, email), x -> y -> z (z live, 2 interactions; x's phone still points
    at x), w -> a missing customer, twin1/twin2 (both live, sharing crm), and a chain one hop too
    long."""
    graph.execute_query(
        """
        CREATE (live:Customer {id: $u + '-live'})
        CREATE (:Identity {key: 'email:' + $u + '@example.com'})-[:IDENTIFIES]->(live)
        FOREACH (n IN range(1, 3) | CREATE (live)-[:HAD]->(:Interaction {event_id: $u + '-live-' + n}))
        CREATE (z:Customer {id: $u + '-z'})
        FOREACH (n IN range(1, 2) | CREATE (z)-[:HAD]->(:Interaction {event_id: $u + '-z-' + n}))
        CREATE (y:Customer {id: $u + '-y', merged_into: $u + '-z'})
        CREATE (x:Customer {id: $u + '-x', merged_into: $u + '-y'})
        CREATE (:Identity {key: 'phone:' + $u})-[:IDENTIFIES]->(x)
        CREATE (:Customer {id: $u + '-w', merged_into: $u + '-missing'})
        CREATE (t1:Customer {id: $u + '-twin1'}), (t2:Customer {id: $u + '-twin2'})
        CREATE (crm:Identity {key: 'crm:' + $u}), (crm)-[:IDENTIFIES]->(t1), (crm)-[:IDENTIFIES]->(t2)
        CREATE (both:Identity {key: 'crm:' + $u + '-both'}), (both)-[:IDENTIFIES]->(x), (both)-[:IDENTIFIES]->(z)
        FOREACH (n IN range(0, $hops) |
            CREATE (:Customer {id: $u + '-long' + n, merged_into: $u + '-long' + (n + 1)}))
        CREATE (:Customer {id: $u + '-long' + ($hops + 1)})
        """,
        u=uid,
        hops=MAX_MERGE_HOPS,
    )


def test_one_round_resolves_every_kind_of_key_to_its_own_outcome(
    graph: neo4j.Driver, neo4j_settings: Neo4jSettings, uid: str
):
    customers(graph, uid)
    reader = Neo4jTimelineGraph(graph, neo4j_settings.database)
    keys = {
        "live by id": CustomerKey("id", f"{uid}-live"),
        "live by email": CustomerKey("identity", f"email:{uid}@example.com"),
        "absorbed by id": CustomerKey("id", f"{uid}-x"),
        "absorbed by phone": CustomerKey("identity", f"phone:{uid}"),
        "both ends of one merge": CustomerKey("identity", f"crm:{uid}-both"),
        "unknown id": CustomerKey("id", f"{uid}-nobody"),
        "unknown identity": CustomerKey("identity", f"email:nobody.{uid}@example.com"),
        "broken chain": CustomerKey("id", f"{uid}-w"),
        "two customers": CustomerKey("identity", f"crm:{uid}"),
        "chain too long": CustomerKey("id", f"{uid}-long0"),
        "chain just long enough": CustomerKey("id", f"{uid}-long1"),
    }
    got = reader.resolve_many(list(keys.values()), 10.0)

    outcome = {name: got[key] for name, key in keys.items()}
    assert outcome["live by id"] == outcome["live by email"] == Resolved(f"{uid}-live", 3)
    z = Resolved(f"{uid}-z", 2)
    assert outcome["absorbed by id"] == outcome["absorbed by phone"] == outcome["both ends of one merge"] == z
    assert outcome["chain just long enough"] == Resolved(f"{uid}-long{MAX_MERGE_HOPS + 1}", 0)
    errors = {name: (type(o), str(o)) for name, o in outcome.items() if not isinstance(o, Resolved)}
    assert errors == {
        "unknown id": (NotFound, f"customer: no customer with id {uid}-nobody"),
        "unknown identity": (NotFound, f"customer: no customer known by email:nobody.{uid}@example.com"),
        "broken chain": (NotFound, f"customer: {uid}-w was merged into {uid}-missing, which does not exist"),
        "two customers": (
            FailedPrecondition,
            f"customer: crm:{uid} identifies 2 customers ({uid}-twin1, {uid}-twin2); address one by customer_id",
        ),
        "chain too long": (
            FailedPrecondition,
            f"customer: merge chain from {uid}-long0 is longer than {MAX_MERGE_HOPS}",
        ),
    }
    # resolve() raises the same outcomes, one key at a time.
    assert reader.resolve(keys["absorbed by phone"], 10.0) == z
    with pytest.raises(NotFound, match="which does not exist"):
        reader.resolve(keys["broken chain"], 10.0)


def test_concurrent_resolves_each_get_their_customer(graph: neo4j.Driver, neo4j_settings: Neo4jSettings, uid: str):
    customers(graph, uid)
    reader = Neo4jTimelineGraph(graph, neo4j_settings.database)
    expected = {
        CustomerKey("id", f"{uid}-live"): f"{uid}-live",
        CustomerKey("identity", f"phone:{uid}"): f"{uid}-z",
        CustomerKey("id", f"{uid}-y"): f"{uid}-z",
        CustomerKey("id", f"{uid}-nobody"): None,
    }
    plan = list(expected) * 15
    results: list[tuple[CustomerKey, str | None]] = []
    lock = threading.Lock()
    start = threading.Barrier(len(plan))

    def call(key: CustomerKey) -> None:
        start.wait(10)
        try:
            found: str | None = reader.resolve(key, 10.0).customer_id
        except NotFound:
            found = None
        with lock:
            results.append((key, found))

    threads = [threading.Thread(target=call, args=(key,)) for key in plan]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results, key=str) == sorted(((k, expected[k]) for k in plan), key=str)
