"""Planning an unmerge from a merge's evidence and what the merged customer holds now (no graph)."""

from dataclasses import replace

import pytest

from rapport_profile.domain.unmerge import (
    AbsorbedCustomer,
    HeldInteraction,
    Holding,
    MergeEvidence,
    plan_unmerge,
)

pytestmark = pytest.mark.unit

ANA_EMAIL, ANA_CRM = "email:ana@example.com", "crm:C-1"
BOB_PHONE, BOB_DEVICE = "phone:+447700900123", "device:D-9"

# Ana (the survivor) absorbed Bob through an event carrying her email and his phone.
MERGE = MergeEvidence(
    id="mrg_1",
    survivor_id="cus_ana",
    absorbed_id="cus_bob",
    linking_keys=frozenset({ANA_EMAIL, BOB_PHONE}),
    identity_keys=frozenset({BOB_PHONE}),
    event_ids=frozenset({"bob-1", "bob-2"}),
    device_ids=frozenset({"dev-bob"}),
    case_ids=frozenset({"case-bob"}),
    attributes={"display_name": "Bob", "language": "de"},
    survivor_attributes={"language": "en", "traits_at": "2025-01-06T09:00:00+00:00"},
)


def held(event_id: str, *keys: str, before: bool = False, **fields: str) -> HeldInteraction:
    return HeldInteraction(event_id, keys, before, **fields)  # type: ignore[arg-type]


def holding(*interactions: HeldInteraction, keys: frozenset[str] | None = None, **fields: object) -> Holding:
    everything = frozenset({ANA_EMAIL, ANA_CRM, BOB_PHONE}) if keys is None else keys
    return Holding("cus_ana", everything, interactions, **fields)  # type: ignore[arg-type]


BEFORE = (
    held("ana-1", ANA_EMAIL, before=True),
    held("ana-2", ANA_CRM, ANA_EMAIL, before=True),
    held("bob-1", BOB_PHONE, before=True),
    held("bob-2", BOB_PHONE, before=True),
    held("link", ANA_EMAIL, BOB_PHONE),
)


def test_the_absorbed_customer_gets_its_own_identities_and_interactions_back():
    plan = plan_unmerge(MERGE, holding(*BEFORE))
    assert plan.identity_keys == [BOB_PHONE]
    assert plan.event_ids == ["bob-1", "bob-2"]  # the linking event stays with the survivor


def test_later_interactions_go_where_the_identifiers_they_carried_belong():
    later = (
        held("bob-3", BOB_PHONE),
        held("ana-3", ANA_CRM),
        held("both", ANA_CRM, BOB_PHONE),
        held("bare"),
    )
    plan = plan_unmerge(MERGE, holding(*BEFORE, *later))
    assert plan.event_ids == ["bob-1", "bob-2", "bob-3"]


def test_a_key_first_given_after_the_merge_follows_the_interactions_that_carried_it():
    later = (
        held("bob-3", BOB_PHONE, BOB_DEVICE),
        held("bob-4", BOB_DEVICE),
    )
    plan = plan_unmerge(MERGE, holding(*BEFORE, *later, keys=frozenset({ANA_EMAIL, ANA_CRM, BOB_PHONE, BOB_DEVICE})))
    assert plan.identity_keys == [BOB_DEVICE, BOB_PHONE]
    assert plan.event_ids == ["bob-1", "bob-2", "bob-3", "bob-4"]


def test_a_new_key_also_given_with_the_survivors_identifiers_ties_its_interactions_to_the_survivor():
    later = (
        held("bob-3", BOB_PHONE, BOB_DEVICE),
        held("ana-3", ANA_CRM, BOB_DEVICE),
    )
    plan = plan_unmerge(MERGE, holding(*BEFORE, *later, keys=frozenset({ANA_EMAIL, ANA_CRM, BOB_PHONE, BOB_DEVICE})))
    assert plan.identity_keys == [BOB_PHONE]
    assert plan.event_ids == ["bob-1", "bob-2"]


def test_the_survivors_own_weak_key_carried_by_an_absorbed_event_stays_the_survivors():
    cookie = "cookie:abc"
    plan = plan_unmerge(
        replace(MERGE, event_ids=frozenset({"bob-1"})),
        holding(
            held("ana-1", ANA_EMAIL, cookie, before=True),
            held("bob-1", BOB_PHONE, cookie, before=True),
            held("bob-2", BOB_PHONE, cookie),
            keys=frozenset({ANA_EMAIL, BOB_PHONE, cookie}),
        ),
    )
    assert plan.identity_keys == [BOB_PHONE]
    assert plan.event_ids == ["bob-1"]  # bob-2 also carried the survivor's cookie


def test_identities_no_longer_held_are_not_restored():
    plan = plan_unmerge(MERGE, holding(*BEFORE, keys=frozenset({ANA_EMAIL, ANA_CRM})))
    assert plan.identity_keys == []
    assert plan.event_ids == ["bob-1", "bob-2"]


def test_devices_and_cases_go_back_and_shared_ones_stay_with_both():
    interactions = (
        held("ana-1", ANA_EMAIL, before=True, device_id="dev-shared", case_id="case-ana"),
        held("bob-1", BOB_PHONE, before=True, device_id="dev-bob", case_id="case-bob"),
        held("bob-3", BOB_PHONE, device_id="dev-new", case_id="case-ana"),
    )
    plan = plan_unmerge(
        replace(MERGE, event_ids=frozenset({"bob-1"}), device_ids=frozenset({"dev-bob", "dev-shared"})),
        holding(
            *interactions,
            device_ids=frozenset({"dev-bob", "dev-shared", "dev-new", "dev-ana"}),
            case_ids=frozenset({"case-bob", "case-ana"}),
        ),
    )
    assert plan.event_ids == ["bob-1", "bob-3"]
    assert (plan.device_ids, plan.released_device_ids) == (["dev-bob", "dev-new", "dev-shared"], ["dev-bob", "dev-new"])
    assert (plan.case_ids, plan.released_case_ids) == (["case-ana", "case-bob"], ["case-bob"])


def test_customers_merged_into_the_absorbed_one_earlier_follow_it_and_later_ones_stay():
    absorbed = (
        AbsorbedCustomer("mrg_1", "cus_bob", "cus_ana", frozenset({BOB_PHONE})),
        # Bob had absorbed Bea, who had absorbed Ben; Ana absorbed Cid after Bob.
        AbsorbedCustomer("mrg_bea", "cus_bea", "cus_bob", frozenset({"crm:BEA"})),
        AbsorbedCustomer("mrg_ben", "cus_ben", "cus_bea", frozenset({"crm:BEN"})),
        AbsorbedCustomer("mrg_cid", "cus_cid", "cus_ana", frozenset({"crm:CID"})),
    )
    plan = plan_unmerge(MERGE, holding(*BEFORE, absorbed=absorbed))
    assert plan.followers == ["cus_bea", "cus_ben"]
    assert plan.renamed_merges == []


def test_a_customer_merged_later_through_the_restored_identifiers_alone_follows_them():
    # Dan was created after the merge (phone + his CRM id), then merged into Ana through Bob's phone.
    dan = "crm:DAN"
    absorbed = (AbsorbedCustomer("mrg_dan", "cus_dan", "cus_ana", frozenset({dan})),)
    later = (held("dan-1", dan), held("dan-link", dan, BOB_PHONE))
    plan = plan_unmerge(
        MERGE,
        holding(*BEFORE, *later, keys=frozenset({ANA_EMAIL, ANA_CRM, BOB_PHONE, dan}), absorbed=absorbed),
    )
    assert plan.event_ids == ["bob-1", "bob-2", "dan-1", "dan-link"]
    assert plan.followers == ["cus_dan"]
    assert plan.renamed_merges == ["mrg_dan"]


def test_the_survivor_drops_attributes_it_only_had_from_the_absorbed_customer():
    now = {"display_name": "Bob", "language": "en"}
    plan = plan_unmerge(MERGE, holding(*BEFORE, attributes=now, traits_at="2025-01-06T09:00:00+00:00"))
    assert plan.cleared_attributes == ["display_name"]


def test_attributes_stay_when_newer_traits_arrived_or_the_merge_did_not_record_them():
    now = {"display_name": "Bob"}
    newer = plan_unmerge(MERGE, holding(*BEFORE, attributes=now, traits_at="2025-02-01T00:00:00+00:00"))
    unrecorded = plan_unmerge(replace(MERGE, survivor_attributes=None), holding(*BEFORE, attributes=now))
    assert newer.cleared_attributes == [] and unrecorded.cleared_attributes == []
