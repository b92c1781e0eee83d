"""Merge review against the real graph: unmerge (chains included), approve, reject, and the worker
respecting the decisions afterwards. Events are written with the worker's GraphWriter, phase by
phase, so merges happen the way production makes them."""

from datetime import timedelta
from typing import Any

import neo4j
import pytest

from rapport.errors import FailedPrecondition, NotFound
from rapport.v1 import events_pb2 as ev
from rapport_profile.adapters.graph import seed_graph
from rapport_profile.adapters.merge_review import GraphMergeReview
from rapport_profile.api.customer_view import CustomerLookup, ViewLimits
from rapport_profile.api.graph_reader import GraphProfileReader
from rapport_profile.synthetic import BASE_TIME, identifier, interaction

pytestmark = pytest.mark.integration

HOUR = timedelta(hours=1)


@pytest.fixture
def review(graph: neo4j.Driver) -> GraphMergeReview:
    return GraphMergeReview(graph)


def owner(graph: neo4j.Driver, key: str) -> str:
    records, _, _ = graph.execute_query(
        "MATCH (:Identity {key: $key})-[:IDENTIFIES]->(c:Customer) RETURN c.id AS id", key=key
    )
    (record,) = records
    return str(record["id"])


def customer(graph: neo4j.Driver, customer_id: str) -> dict[str, Any]:
    records, _, _ = graph.execute_query(
        """
        MATCH (c:Customer {id: $id})
        RETURN c {.*} AS c,
               COLLECT { MATCH (c)-[:HAD]->(i) RETURN i.event_id ORDER BY i.event_id } AS events,
               COLLECT { MATCH (i:Identity)-[:IDENTIFIES]->(c) RETURN i.key ORDER BY i.key } AS keys,
               COLLECT { MATCH (c)-[:OWNS]->(d) RETURN d.id ORDER BY d.id } AS devices,
               COLLECT { MATCH (c)-[:HAS_CASE]->(k) RETURN k.id ORDER BY k.id } AS cases,
               COLLECT { MATCH (c)-[s:SERVED_BY]->(a) RETURN [a.id, s.contacts, s.resolved, s.csat_sum, s.csat_count]
                         ORDER BY a.id } AS affinity,
               COLLECT { MATCH (c)-[:MAYBE_SAME]-(o) RETURN o.id } AS candidates
        """,
        id=customer_id,
    )
    (record,) = records
    return dict(record)


def merge_of(graph: neo4j.Driver, absorbed: str) -> dict[str, Any]:
    records, _, _ = graph.execute_query(
        "MATCH (m:Merge {absorbed_id: $id}) RETURN m {.*} AS m ORDER BY m.at DESC LIMIT 1", id=absorbed
    )
    return dict(records[0]["m"])


def test_an_unmerge_after_later_events_restores_both_customers_exactly(
    graph: neo4j.Driver, review: GraphMergeReview, uid: str
):
    ana, bob = f"email:ana.{uid}@example.com", f"crm:BOB-{uid}"
    bob_new = f"account:NEW-{uid}"
    g1, g2 = f"ag1-{uid}", f"ag2-{uid}"
    traits = ev.CustomerTraits(display_name="Bob", language="de")
    seed_graph(graph, [interaction(f"{uid}-a1", ana, at=BASE_TIME, agent_id=g1, outcome=ev.OUTCOME_RESOLVED, csat=5)])
    seed_graph(
        graph,
        [
            interaction(f"{uid}-b1", bob, at=BASE_TIME + HOUR, agent_id=g1, csat=3, traits=traits,
                        device=ev.Device(id=f"dev-{uid}", model="HB-5")),
            interaction(f"{uid}-b2", bob, at=BASE_TIME + 2 * HOUR, agent_id=g2,
                        case=ev.CaseRef(id=f"case-{uid}", status=ev.CASE_STATUS_OPEN)),
        ],
    )  # fmt: skip
    a, b = owner(graph, ana), owner(graph, bob)
    seed_graph(graph, [interaction(f"{uid}-link", ana, bob, at=BASE_TIME + 3 * HOUR)])
    assert owner(graph, bob) == a
    merged = customer(graph, a)
    assert merged["c"]["display_name"] == "Bob"  # taken from Bob by the merge
    seed_graph(
        graph,
        [
            interaction(f"{uid}-a3", ana, at=BASE_TIME + 4 * HOUR, agent_id=g2, outcome=ev.OUTCOME_RESOLVED),
            interaction(f"{uid}-b3", bob, at=BASE_TIME + 5 * HOUR, agent_id=g1, outcome=ev.OUTCOME_RESOLVED, csat=4),
            interaction(f"{uid}-both", ana, bob, at=BASE_TIME + 6 * HOUR, agent_id=g1),
            # A key first given after the merge, with Bob's CRM id ...
            interaction(f"{uid}-b4", bob, bob_new, at=BASE_TIME + 7 * HOUR),
        ],
    )
    # ... and then on its own.
    seed_graph(graph, [interaction(f"{uid}-b5", bob_new, at=BASE_TIME + 8 * HOUR, agent_id=g2)])
    merge = merge_of(graph, b)

    done = review.unmerge(merge["id"], "reviewer-1", "ticket 42: two people", timeout=10)

    assert (done.survivor_id, done.restored_id) == (a, b)
    after_a, after_b = customer(graph, a), customer(graph, b)
    assert after_a["events"] == sorted(f"{uid}-{e}" for e in ("a1", "link", "a3", "both"))
    assert after_b["events"] == sorted(f"{uid}-{e}" for e in ("b1", "b2", "b3", "b4", "b5"))
    assert after_a["keys"] == [ana]
    assert after_b["keys"] == sorted([bob, bob_new])
    assert (after_a["devices"], after_b["devices"]) == ([], [f"dev-{uid}"])
    assert (after_a["cases"], after_b["cases"]) == ([], [f"case-{uid}"])
    # Affinity, exactly as if they had never merged: [agent, contacts, resolved, csat_sum, csat_count].
    assert after_a["affinity"] == [[g1, 2, 1, 5, 1], [g2, 1, 1, 0, 0]]
    assert after_b["affinity"] == [[g1, 2, 1, 7, 2], [g2, 2, 0, 0, 0]]
    assert after_a["c"]["first_contact_at"].to_native() == BASE_TIME
    assert after_a["c"]["last_contact_at"].to_native() == BASE_TIME + 6 * HOUR
    assert after_b["c"]["first_contact_at"].to_native() == BASE_TIME + HOUR
    assert after_b["c"]["last_contact_at"].to_native() == BASE_TIME + 8 * HOUR
    assert after_b["c"].get("merged_into") is None
    assert "display_name" not in after_a["c"] and after_b["c"]["display_name"] == "Bob"
    assert (done.restored_interactions, done.survivor_interactions) == (5, 4)
    assert done.restored_identity_keys == sorted([bob, bob_new])

    undone = merge_of(graph, b)
    assert undone["undone_by"] == done.decision.id and undone["undone_at"] is not None
    records, _, _ = graph.execute_query("MATCH (d:MergeDecision {id: $id}) RETURN d {.*} AS d", id=done.decision.id)
    recorded = records[0]["d"]
    assert (recorded["kind"], recorded["customer_ids"], recorded["merge_id"]) == ("unmerged", [a, b], merge["id"])
    assert (recorded["decided_by"], recorded["reason"]) == ("reviewer-1", "ticket 42: two people")

    with pytest.raises(FailedPrecondition, match="already undone"):
        review.unmerge(merge["id"], "reviewer-1", "again", timeout=10)
    with pytest.raises(NotFound):
        review.unmerge("mrg_" + "0" * 16, "reviewer-1", "unknown", timeout=10)

    # The very next event carrying both identifiers does not merge them again: it joins the survivor.
    result = seed_graph(graph, [interaction(f"{uid}-again", ana, bob, at=BASE_TIME + 9 * HOUR)])
    assert result.merges == [] and result.candidates == 0
    assert result.owners == {f"{uid}-again": a}
    assert (owner(graph, ana), owner(graph, bob)) == (a, b)


def test_unmerging_one_of_two_merges_leaves_the_other_and_takes_what_the_absorbed_one_had_absorbed(
    graph: neo4j.Driver, review: GraphMergeReview, uid: str
):
    ka, kb, kc, kd = (f"crm:{n}-{uid}" for n in "ABCD")
    for n, key in enumerate((ka, kb, kc, kd)):
        seed_graph(graph, [interaction(f"{uid}-{key[4]}", key, at=BASE_TIME + n * HOUR)])
    a, b, c, d = (owner(graph, k) for k in (ka, kb, kc, kd))
    seed_graph(graph, [interaction(f"{uid}-bd", kb, kd, at=BASE_TIME + 5 * HOUR)])  # B absorbs D
    seed_graph(graph, [interaction(f"{uid}-ab", ka, kb, at=BASE_TIME + 6 * HOUR)])  # A absorbs B (with D)
    seed_graph(graph, [interaction(f"{uid}-ac", ka, kc, at=BASE_TIME + 7 * HOUR)])  # A absorbs C
    assert {owner(graph, k) for k in (ka, kb, kc, kd)} == {a}

    done = review.unmerge(merge_of(graph, b)["id"], "reviewer", "B and D are someone else", timeout=10)

    assert done.plan.followers == [d]
    assert (owner(graph, ka), owner(graph, kb), owner(graph, kc), owner(graph, kd)) == (a, b, a, b)
    assert customer(graph, a)["events"] == sorted([f"{uid}-A", f"{uid}-C", f"{uid}-ab", f"{uid}-ac"])
    assert customer(graph, b)["events"] == sorted([f"{uid}-B", f"{uid}-D", f"{uid}-bd"])
    assert customer(graph, d)["c"]["merged_into"] == b
    assert customer(graph, c)["c"]["merged_into"] == a
    # D's merge into B is live again under B; C's stays under A.
    assert merge_of(graph, d).get("undone_at") is None


def test_a_merge_whose_survivor_was_absorbed_since_is_undone_from_the_new_holder(
    graph: neo4j.Driver, review: GraphMergeReview, uid: str
):
    kz, ka, kb = f"crm:Z-{uid}", f"crm:A-{uid}", f"crm:B-{uid}"
    for n, key in enumerate((kz, ka, kb)):
        seed_graph(graph, [interaction(f"{uid}-{n}", key, at=BASE_TIME + n * HOUR)])
    z, a, b = (owner(graph, k) for k in (kz, ka, kb))
    seed_graph(graph, [interaction(f"{uid}-ab", ka, kb, at=BASE_TIME + 4 * HOUR)])
    seed_graph(graph, [interaction(f"{uid}-za", kz, ka, at=BASE_TIME + 5 * HOUR)])
    assert owner(graph, kb) == z

    done = review.unmerge(merge_of(graph, b)["id"], "reviewer", "B is not A", timeout=10)

    assert (done.survivor_id, done.restored_id) == (z, b)
    assert (owner(graph, kz), owner(graph, ka), owner(graph, kb)) == (z, z, b)
    assert customer(graph, b)["events"] == [f"{uid}-2"]
    assert customer(graph, a)["c"]["merged_into"] == z
    # The decision holds for A's whole group: an event naming Z and B attaches to Z, no merge.
    result = seed_graph(graph, [interaction(f"{uid}-zb", kz, kb, at=BASE_TIME + 6 * HOUR)])
    assert result.merges == [] and result.owners == {f"{uid}-zb": z}


def weak(key: str) -> ev.Identifier:
    return identifier(key, verified=False)


def candidate_pair(graph: neo4j.Driver, uid: str) -> tuple[str, str, str, str, str]:
    """Two customers sharing an unverified phone: a merge candidate."""
    ka, kb, phone = f"crm:A-{uid}", f"crm:B-{uid}", f"phone:+447{int(uid[:8], 16) % 10**9:09d}"
    seed_graph(graph, [interaction(f"{uid}-a", ka, weak(phone), at=BASE_TIME, agent_id=f"ag-{uid}")])
    seed_graph(graph, [interaction(f"{uid}-b", kb, weak(phone), at=BASE_TIME + HOUR, agent_id=f"ag-{uid}")])
    a, b = owner(graph, ka), owner(graph, kb)
    assert customer(graph, a)["candidates"] == [b]
    return a, b, ka, kb, phone


def test_an_approved_candidate_merges_like_the_worker_and_an_unmerge_undoes_it(
    graph: neo4j.Driver, review: GraphMergeReview, uid: str
):
    a, b, ka, kb, phone = candidate_pair(graph, uid)

    approved = review.approve(b, a, "supervisor", "same person, confirmed by phone", timeout=10)

    assert (approved.survivor_id, approved.absorbed_id) == (a, b)  # A is older
    assert approved.linking_keys == [phone]
    assert approved.absorbed_identity_keys == [kb]
    assert approved.absorbed_interactions == 1
    assert approved.decision.customer_ids == tuple(sorted((a, b)))
    assert owner(graph, kb) == a
    merged = customer(graph, a)
    assert merged["events"] == [f"{uid}-a", f"{uid}-b"] and merged["candidates"] == []
    assert merged["affinity"] == [[f"ag-{uid}", 2, 0, 0, 0]]
    record = merge_of(graph, b)
    assert (record["id"], record["decision_id"], record.get("event_id")) == (
        approved.merge_id,
        approved.decision.id,
        None,
    )
    with pytest.raises(FailedPrecondition, match="one customer"):
        review.approve(a, b, "supervisor", "twice", timeout=10)

    done = review.unmerge(approved.merge_id, "supervisor", "approved by mistake", timeout=10)

    assert (owner(graph, ka), owner(graph, kb), owner(graph, phone)) == (a, b, a)
    assert customer(graph, a)["events"] == [f"{uid}-a"] and customer(graph, b)["events"] == [f"{uid}-b"]
    assert customer(graph, b)["affinity"] == [[f"ag-{uid}", 1, 0, 0, 0]]
    assert done.decision.merge_id == approved.merge_id


def test_a_rejected_candidate_is_not_proposed_again_by_the_same_weak_identifiers(
    graph: neo4j.Driver, review: GraphMergeReview, uid: str
):
    a, b, _ka, kb, phone = candidate_pair(graph, uid)

    decision = review.reject(a, b, "supervisor", "different people sharing a family phone", timeout=10)

    assert decision.kind.value == "rejected" and decision.merge_id is None
    assert customer(graph, a)["candidates"] == [] and customer(graph, b)["candidates"] == []
    result = seed_graph(graph, [interaction(f"{uid}-b2", kb, weak(phone), at=BASE_TIME + 2 * HOUR)])
    assert result.candidates == 0
    assert customer(graph, a)["candidates"] == []
    with pytest.raises(FailedPrecondition, match="not a merge candidate"):
        review.reject(a, b, "supervisor", "again", timeout=10)
    with pytest.raises(FailedPrecondition, match="not a merge candidate"):
        review.approve(a, b, "supervisor", "changed my mind", timeout=10)
    with pytest.raises(NotFound):
        review.reject(a, "cus_" + "0" * 16, "supervisor", "unknown", timeout=10)


def test_an_undone_merge_is_not_listed_when_the_restored_customer_is_merged_again(
    graph: neo4j.Driver, review: GraphMergeReview, uid: str
):
    ka, kb, ke = f"crm:A-{uid}", f"crm:B-{uid}", f"crm:E-{uid}"
    for n, key in enumerate((ke, ka, kb)):
        seed_graph(graph, [interaction(f"{uid}-{n}", key, at=BASE_TIME + n * HOUR)])
    e, b = owner(graph, ke), owner(graph, kb)
    seed_graph(graph, [interaction(f"{uid}-ab", ka, kb, at=BASE_TIME + 4 * HOUR)])
    undone = review.unmerge(merge_of(graph, b)["id"], "reviewer", "not the same", timeout=10)
    seed_graph(graph, [interaction(f"{uid}-eb", ke, kb, at=BASE_TIME + 5 * HOUR)])  # E (oldest) absorbs B
    assert owner(graph, kb) == e

    found = GraphProfileReader(graph).customer_view(CustomerLookup(customer_id=b), ViewLimits(), timeout=10)

    assert found is not None and found.row["id"] == e
    listed = [(m["survivor_id"], m["absorbed_id"]) for m in found.row["merges"]]
    assert listed == [(e, b)]
    assert undone.decision.merge_id not in [m["id"] for m in found.row["merges"]]


def test_a_merge_does_not_bring_back_a_candidate_the_reviewer_rejected(
    graph: neo4j.Driver, review: GraphMergeReview, uid: str
):
    ka, kb, ky = f"crm:A-{uid}", f"crm:B-{uid}", f"crm:Y-{uid}"
    first, second = weak(f"cookie:1-{uid}"), weak(f"cookie:2-{uid}")
    seed_graph(graph, [interaction(f"{uid}-a", ka, first, at=BASE_TIME)])
    seed_graph(graph, [interaction(f"{uid}-y", ky, first, at=BASE_TIME + HOUR)])
    seed_graph(graph, [interaction(f"{uid}-b", kb, second, at=BASE_TIME + 2 * HOUR)])
    a, b, y = owner(graph, ka), owner(graph, kb), owner(graph, ky)
    review.reject(a, y, "reviewer", "not the same", timeout=10)
    seed_graph(graph, [interaction(f"{uid}-y2", ky, second, at=BASE_TIME + 3 * HOUR)])
    assert customer(graph, b)["candidates"] == [y]

    seed_graph(graph, [interaction(f"{uid}-ab", ka, kb, at=BASE_TIME + 4 * HOUR)])  # A absorbs B and its link

    assert owner(graph, kb) == a
    assert customer(graph, a)["candidates"] == [] and customer(graph, y)["candidates"] == []
