"""Identity resolution against the real graph: attach, merge, candidates, replays and races."""

import json
import threading
from datetime import timedelta
from typing import Any

import neo4j
import pytest

from rapport.v1 import events_pb2 as ev
from rapport_profile.adapters.graph import GraphWriter, seed_graph
from rapport_profile.synthetic import BASE_TIME, identifier, interaction

pytestmark = pytest.mark.integration


def customers_of(graph: neo4j.Driver, *keys: str) -> set[str]:
    records, _, _ = graph.execute_query(
        "UNWIND $keys AS k MATCH (:Identity {key: k})-[:IDENTIFIES]->(c:Customer) RETURN DISTINCT c.id AS id",
        keys=list(keys),
    )
    return {r["id"] for r in records}


def history(graph: neo4j.Driver, customer_id: str) -> list[str]:
    records, _, _ = graph.execute_query(
        "MATCH (:Customer {id: $id})-[:HAD]->(i:Interaction) RETURN i.event_id AS e ORDER BY i.at",
        id=customer_id,
    )
    return [r["e"] for r in records]


def test_chat_by_email_then_call_by_phone_then_both_merges_with_evidence(graph: neo4j.Driver, uid: str):
    email, phone = f"email:ana.{uid}@example.com", f"phone:+4477009{int(uid[:6], 16) % 100000:05d}"
    agent = f"ag-{uid}"
    seed_graph(graph, [interaction(f"{uid}-chat", email, at=BASE_TIME, agent_id=agent, csat=4)])
    seed_graph(
        graph,
        [
            interaction(
                f"{uid}-call",
                phone,
                at=BASE_TIME + timedelta(hours=1),
                channel=ev.CHANNEL_VOICE,
                kind=ev.INTERACTION_KIND_CALL,
                agent_id=agent,
                outcome=ev.OUTCOME_RESOLVED,
                csat=2,
                device=ev.Device(id=f"dev-{uid}", model="HB-5"),
            )
        ],
    )
    (by_email,) = customers_of(graph, email)
    (by_phone,) = customers_of(graph, phone)
    assert by_email != by_phone

    result = seed_graph(graph, [interaction(f"{uid}-both", email, phone, at=BASE_TIME + timedelta(hours=2))])

    survivor = customers_of(graph, email, phone)
    assert survivor == {by_email}  # the email customer is older
    assert history(graph, by_email) == [f"{uid}-chat", f"{uid}-call", f"{uid}-both"]
    records, _, _ = graph.execute_query(
        """
        MATCH (c:Customer {id: $absorbed}) OPTIONAL MATCH (c)-[r]-() RETURN c.merged_into AS into, count(r) AS rels
        """,
        absorbed=by_phone,
    )
    assert records[0]["into"] == by_email and records[0]["rels"] == 0
    merge = graph.execute_query("MATCH (m:Merge {absorbed_id: $a}) RETURN m", a=by_phone)[0]
    assert len(merge) == 1
    m = merge[0]["m"]
    assert m["survivor_id"] == by_email and m["event_id"] == f"{uid}-both"
    assert sorted(m["linking_keys"]) == sorted([email, phone])
    assert m["absorbed_identity_keys"] == [phone]
    assert m["absorbed_event_ids"] == [f"{uid}-call"]
    assert m["absorbed_device_ids"] == [f"dev-{uid}"]
    assert json.loads(m["absorbed_affinity"])[0]["contacts"] == 1
    assert [(x.survivor_id, x.absorbed_id) for x in result.merges] == [(by_email, by_phone)]
    assert result.changes[0].merged_customer_ids == [by_phone]

    affinity = graph.execute_query(
        "MATCH (:Customer {id: $id})-[r:SERVED_BY]->(:Agent {id: $agent}) RETURN r", id=by_email, agent=agent
    )[0]
    assert len(affinity) == 1  # summed into one relationship, not two
    r = affinity[0]["r"]
    assert (r["contacts"], r["resolved"], r["csat_sum"], r["csat_count"]) == (2, 1, 6, 2)
    devices = graph.execute_query("MATCH (:Customer {id: $id})-[:OWNS]->(d:Device) RETURN d.id AS d", id=by_email)[0]
    assert [d["d"] for d in devices] == [f"dev-{uid}"]


def test_weak_identifier_shared_by_two_customers_is_a_candidate_not_a_merge(graph: neo4j.Driver, uid: str):
    device = identifier(f"device:tv-{uid}", verified=False)
    seed_graph(graph, [interaction(f"{uid}-1", f"crm:A-{uid}", device)])
    seed_graph(graph, [interaction(f"{uid}-2", f"crm:B-{uid}", device)])
    (a,) = customers_of(graph, f"crm:A-{uid}")
    (b,) = customers_of(graph, f"crm:B-{uid}")
    assert a != b
    assert customers_of(graph, f"device:tv-{uid}") == {a}
    records, _, _ = graph.execute_query(
        "MATCH (x:Customer)-[m:MAYBE_SAME]-(y:Customer) WHERE x.id = $a AND y.id = $b RETURN m.keys AS keys",
        a=a,
        b=b,
    )
    assert [r["keys"] for r in records] == [[f"device:tv-{uid}"]]
    merged, _, _ = graph.execute_query("MATCH (m:Merge) WHERE m.absorbed_id IN [$a, $b] RETURN m", a=a, b=b)
    assert merged == []


def snapshot(graph: neo4j.Driver, uid: str) -> dict[str, Any]:
    records, _, _ = graph.execute_query(
        """
        MATCH (c:Customer)<-[:IDENTIFIES]-(i:Identity) WHERE i.key CONTAINS $uid
        WITH collect(DISTINCT c) AS cs
        UNWIND cs AS c
        OPTIONAL MATCH (c)-[r]-()
        RETURN c.id AS id, properties(c) AS props, count(r) AS rels,
               [(c)-[s:SERVED_BY]->() | properties(s)] AS served
        ORDER BY id
        """,
        uid=uid,
    )
    return {r["id"]: (r["props"], r["rels"], r["served"]) for r in records}


def test_replaying_a_batch_changes_nothing(graph: neo4j.Driver, uid: str):
    events = [
        interaction(
            f"{uid}-{n}",
            f"crm:{uid}-{n % 3}",
            at=BASE_TIME + timedelta(minutes=n),
            agent_id=f"ag-{uid}",
            outcome=ev.OUTCOME_RESOLVED,
            csat=5,
            traits=ev.CustomerTraits(language="fr"),
        )
        for n in range(9)
    ]
    first = seed_graph(graph, events)
    before = snapshot(graph, uid)
    again = seed_graph(graph, events + events[:4])
    assert len(first.stored) == 9 and again.stored == []
    assert sorted(again.duplicates) == sorted([e.event_id for e in events] + [e.event_id for e in events[:4]])
    # Each replayed event names the customer that holds it, for the CustomerUpdated it re-announces.
    assert again.replayed == first.owners and len(first.owners) == 9
    assert snapshot(graph, uid) == before
    served = [s for _, _, ss in before.values() for s in ss]
    assert sum(s["contacts"] for s in served) == 9


def test_duplicates_within_one_batch_are_stored_once(graph: neo4j.Driver, uid: str):
    event = interaction(f"{uid}-1", f"crm:{uid}", agent_id=f"ag-{uid}")
    assert GraphWriter(graph).write_batch([]).stored == []
    result = seed_graph(graph, [event, event, event])
    assert result.stored == [f"{uid}-1"] and result.duplicates == [f"{uid}-1", f"{uid}-1"]
    (cid,) = customers_of(graph, f"crm:{uid}")
    assert history(graph, cid) == [f"{uid}-1"]


def test_concurrent_merges_of_the_same_people_leave_one_survivor(neo4j_settings, graph: neo4j.Driver, uid: str):
    # Four customers, each known by one CRM id; then eight threads at once each send an event
    # linking a different pair, so every transaction races to merge overlapping customers.
    keys = [f"crm:{uid}-{n}" for n in range(4)]
    for n, key in enumerate(keys):
        seed_graph(graph, [interaction(f"{uid}-seed-{n}", key, agent_id=f"ag-{uid}", csat=3)])
    pairs = [(a, b) for a in range(4) for b in range(a + 1, 4)] + [(0, 3), (1, 2)]
    barrier = threading.Barrier(len(pairs))
    errors: list[BaseException] = []

    def link(n: int, a: int, b: int) -> None:
        try:
            barrier.wait()
            seed_graph(graph, [interaction(f"{uid}-link-{n}", keys[b], keys[a], agent_id=f"ag-{uid}", csat=3)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=link, args=(n, a, b)) for n, (a, b) in enumerate(pairs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []

    survivors = customers_of(graph, *keys)
    assert len(survivors) == 1
    (survivor,) = survivors
    assert len(history(graph, survivor)) == 4 + len(pairs)
    records, _, _ = graph.execute_query(
        "MATCH (m:Merge) WHERE m.event_id STARTS WITH $p RETURN m.absorbed_id AS a, m.survivor_id AS s",
        p=f"{uid}-link-",
    )
    absorbed = [r["a"] for r in records]
    assert len(absorbed) == 3 and len(set(absorbed)) == 3 and survivor not in absorbed
    served, _, _ = graph.execute_query(
        "MATCH (c:Customer)-[r:SERVED_BY]->(:Agent {id: $agent}) RETURN c.id AS c, r.contacts AS n, r.csat_sum AS s",
        agent=f"ag-{uid}",
    )
    assert [(r["c"], r["n"], r["s"]) for r in served] == [(survivor, 4 + len(pairs), 3 * (4 + len(pairs)))]
    # Every absorbed customer points at the survivor and kept nothing.
    rest, _, _ = graph.execute_query(
        """
        UNWIND $ids AS id MATCH (c:Customer {id: id}) OPTIONAL MATCH (c)-[r]-()
        RETURN c.id AS id, c.merged_into AS m, count(r) AS n
        """,
        ids=absorbed,
    )
    assert [(r["m"], r["n"]) for r in rest] == [(survivor, 0)] * 3
