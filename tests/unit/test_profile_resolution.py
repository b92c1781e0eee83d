"""Identity resolution rules for a batch, without a graph."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rapport.events import validate
from rapport.v1 import events_pb2 as ev
from rapport_profile.domain.interactions import InteractionRecord, interaction_record
from rapport_profile.domain.resolution import KnownCustomer, customer_id_for, plan_batch
from rapport_profile.synthetic import identifier, interaction

pytestmark = pytest.mark.unit

NOW = datetime(2025, 3, 1, tzinfo=UTC)
OLD = KnownCustomer("cus_old", NOW - timedelta(days=30))
NEWER = KnownCustomer("cus_newer", NOW - timedelta(days=1))


def record(event_id: str, *ids: str | ev.Identifier, **fields: Any) -> InteractionRecord:
    event = interaction(event_id, *ids, **fields)
    return interaction_record(event, validate(event))


def known(*pairs: tuple[str, KnownCustomer | None]) -> dict[str, KnownCustomer | None]:
    return dict(pairs)


def test_unknown_identifiers_start_a_new_customer_that_owns_them():
    plan = plan_batch([record("e1", "email:ana@example.com")], known(("email:ana@example.com", None)), NOW)
    cid = customer_id_for("e1")
    assert plan.new_customers == [(cid, NOW)]
    assert plan.owners == {"e1": cid}
    assert plan.attachments == {"email:ana@example.com": cid}
    assert cid.startswith("cus_") and len(cid) == 20


def test_a_known_identifier_attaches_the_event_and_new_identifiers():
    plan = plan_batch(
        [record("e1", "email:ana@example.com", "phone:+447700900123")],
        known(("email:ana@example.com", OLD), ("phone:+447700900123", None)),
        NOW,
    )
    assert plan.new_customers == []
    assert plan.owners == {"e1": "cus_old"}
    assert plan.attachments == {"phone:+447700900123": "cus_old"}


def test_two_strong_matches_merge_into_the_oldest_customer():
    plan = plan_batch(
        [record("e1", "email:ana@example.com", "crm:C-1")],
        known(("email:ana@example.com", NEWER), ("crm:C-1", OLD)),
        NOW,
    )
    assert [(m.survivor_id, m.absorbed_id) for m in plan.merges] == [("cus_old", "cus_newer")]
    assert plan.merges[0].linking_keys == ["email:ana@example.com", "crm:C-1"]
    assert plan.owners == {"e1": "cus_old"}
    assert plan.absorbed_into == {"cus_old": ["cus_newer"]}


def test_created_at_ties_are_broken_by_id():
    a, b = KnownCustomer("cus_b", NOW), KnownCustomer("cus_a", NOW)
    plan = plan_batch([record("e1", "crm:1", "crm:2")], known(("crm:1", a), ("crm:2", b)), NOW)
    assert plan.merges[0].survivor_id == "cus_a"


def test_weak_identifier_of_another_customer_is_only_a_candidate():
    plan = plan_batch(
        [record("e1", "crm:C-1", identifier("device:D-9", verified=False))],
        known(("crm:C-1", OLD), ("device:D-9", NEWER)),
        NOW,
    )
    assert plan.merges == []
    assert plan.owners == {"e1": "cus_old"}
    assert plan.candidates == {("cus_newer", "cus_old"): ["device:D-9"]}


def test_unverified_email_shared_by_two_customers_never_merges_them():
    plan = plan_batch(
        [record("e1", identifier("email:x@example.com", verified=False), identifier("phone:+447700900123", False))],
        known(("email:x@example.com", NEWER), ("phone:+447700900123", OLD)),
        NOW,
    )
    assert plan.merges == []
    assert plan.owners == {"e1": "cus_old"}
    assert plan.candidates == {("cus_newer", "cus_old"): ["email:x@example.com"]}


def test_a_batch_resolves_in_order_like_events_written_one_by_one():
    email, phone = "email:ana@example.com", "phone:+447700900123"
    records = [record("e1", email), record("e2", phone), record("e3", email, phone), record("e4", phone)]
    plan = plan_batch(records, known((email, None), (phone, None)), NOW)
    first, second = customer_id_for("e1"), customer_id_for("e2")
    assert [c for c, _ in plan.new_customers] == [first, second]
    assert [(m.survivor_id, m.absorbed_id, m.absorbed_is_new) for m in plan.merges] == [(first, second, True)]
    assert plan.merges[0].batch_event_ids == ["e2"]
    assert plan.merges[0].batch_identity_keys == [phone]
    assert set(plan.owners.values()) == {first}
    assert plan.attachments == {email: first, phone: first}


def test_chained_merges_in_one_batch_end_at_one_survivor():
    ka, kb, kc = "crm:A", "crm:B", "crm:C"
    a = KnownCustomer("cus_a", NOW - timedelta(days=3))
    b = KnownCustomer("cus_b", NOW - timedelta(days=2))
    c = KnownCustomer("cus_c", NOW - timedelta(days=1))
    plan = plan_batch([record("e1", kb, kc), record("e2", ka, kb)], known((ka, a), (kb, b), (kc, c)), NOW)
    assert [(m.survivor_id, m.absorbed_id) for m in plan.merges] == [("cus_b", "cus_c"), ("cus_a", "cus_b")]
    assert plan.final("cus_c") == "cus_a"
    assert plan.owners == {"e1": "cus_a", "e2": "cus_a"}
    assert sorted(plan.absorbed_into["cus_a"]) == ["cus_b", "cus_c"]


def test_a_candidate_between_customers_merged_later_in_the_batch_is_dropped():
    dev = identifier("device:D-1", verified=False)
    plan = plan_batch(
        [record("e1", "crm:A", dev), record("e2", "crm:A", "crm:B")],
        known(("crm:A", OLD), ("crm:B", NEWER), ("device:D-1", NEWER)),
        NOW,
    )
    assert plan.candidates == {}
    assert len(plan.merges) == 1


def test_customers_kept_apart_are_not_merged_and_the_event_joins_the_oldest():
    plan = plan_batch(
        [record("e1", "email:ana@example.com", "crm:C-1", "phone:+447700900123")],
        known(("email:ana@example.com", NEWER), ("crm:C-1", OLD), ("phone:+447700900123", None)),
        NOW,
        apart=[("cus_newer", "cus_old")],
    )
    assert plan.merges == []
    assert plan.candidates == {}
    assert plan.owners == {"e1": "cus_old"}
    assert plan.attachments == {"phone:+447700900123": "cus_old"}


def test_kept_apart_holds_for_customers_merged_earlier_in_the_batch():
    third = KnownCustomer("cus_third", NOW - timedelta(days=10))
    plan = plan_batch(
        # e1 merges NEWER into OLD; e2 then names OLD and THIRD, which the reviewer kept apart from NEWER.
        [record("e1", "crm:C-1", "crm:C-2"), record("e2", "crm:C-1", "crm:C-3")],
        known(("crm:C-1", OLD), ("crm:C-2", NEWER), ("crm:C-3", third)),
        NOW,
        apart=[("cus_third", "cus_newer")],
    )
    assert [(m.survivor_id, m.absorbed_id) for m in plan.merges] == [("cus_old", "cus_newer")]
    assert plan.owners == {"e1": "cus_old", "e2": "cus_old"}
    assert plan.final("cus_third") == "cus_third"


def test_a_weak_identifier_never_proposes_a_pair_kept_apart():
    plan = plan_batch(
        [record("e1", "crm:C-1", identifier("device:D-9", verified=False))],
        known(("crm:C-1", OLD), ("device:D-9", NEWER)),
        NOW,
        apart=[("cus_old", "cus_newer")],
    )
    assert plan.candidates == {}
    assert plan.owners == {"e1": "cus_old"}


def test_only_the_customers_not_kept_apart_merge_and_the_evidence_names_their_keys():
    third = KnownCustomer("cus_third", NOW - timedelta(hours=1))
    plan = plan_batch(
        [record("e1", "crm:C-1", "crm:C-2", "crm:C-3")],
        known(("crm:C-1", OLD), ("crm:C-2", NEWER), ("crm:C-3", third)),
        NOW,
        apart=[("cus_old", "cus_newer")],
    )
    assert [(m.survivor_id, m.absorbed_id) for m in plan.merges] == [("cus_old", "cus_third")]
    assert plan.merges[0].linking_keys == ["crm:C-1", "crm:C-3"]
