"""Erasure's pure rules: salted tombstone hashes, screening a batch, facts counted, the receipt."""

import json
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from kafka.errors import KafkaTimeoutError

from rapport.errors import InvalidArgument, NotFound, Unavailable
from rapport.events import validate
from rapport.v1 import events_pb2 as ev
from rapport.v1 import profile_pb2 as pb
from rapport_profile.api.customer_view import CustomerLookup
from rapport_profile.api.receipts import forget_request, receipt_message
from rapport_profile.domain.erasure import (
    DEFAULT_ERASURE_SALT,
    ErasureReceipt,
    StoreErasure,
    Tombstones,
    count_facts,
    erasure_stores,
    receipt_id_for,
    screen,
)
from rapport_profile.domain.interactions import InteractionRecord, interaction_record
from rapport_profile.erasure import ErasureService
from rapport_profile.synthetic import interaction

pytestmark = pytest.mark.unit


def record(event_id: str, *identifiers: str) -> InteractionRecord:
    event = interaction(event_id, *identifiers)
    return interaction_record(event, validate(event))


def test_tombstones_depend_on_the_salt_and_the_kind():
    local, deployed = Tombstones(), Tombstones("a deployment's own secret")
    key = "email:ana@example.com"
    assert local.salt == DEFAULT_ERASURE_SALT
    assert local.identity(key) == Tombstones().identity(key)  # stable: the worker and the API agree
    assert local.identity(key) != deployed.identity(key)
    assert len({local.identity(key), local.event(key), local.customer(key)}) == 3
    assert len(local.identity(key)) == 64 and key not in local.identity(key)


def test_a_receipt_id_is_stable_per_customer():
    assert receipt_id_for("cus_0123456789abcdef") == receipt_id_for("cus_0123456789abcdef")
    assert receipt_id_for("cus_0123456789abcdef") != receipt_id_for("cus_fedcba9876543210")
    assert receipt_id_for("cus_0123456789abcdef").startswith("era_") and len(receipt_id_for("cus_x")) == 20


def test_screening_with_nothing_erased_keeps_the_batch_as_it_is():
    batch = [record("e1", "crm:C-1"), record("e2", "email:ana@example.com")]
    screened = screen(batch, set(), set())
    assert screened.kept == batch and screened.dropped == [] and screened.stripped_identifiers == 0


def test_an_event_of_an_erased_customer_is_dropped_by_its_id_whatever_it_carries():
    batch = [record("old", "crm:C-1", "crm:C-NEW"), record("other", "crm:C-2")]
    screened = screen(batch, {"old"}, set())
    assert [r.event_id for r in screened.kept] == ["other"] and screened.dropped == ["old"]


def test_an_event_whose_identifiers_are_all_erased_is_dropped():
    batch = [record("late", "crm:C-1", "email:ana@example.com")]
    screened = screen(batch, set(), {"crm:C-1", "email:ana@example.com"})
    assert screened.kept == [] and screened.dropped == ["late"]


def test_erased_identifiers_are_cut_from_an_event_that_also_carries_fresh_ones():
    mixed = record("mixed", "crm:C-1", "email:new@example.com", "phone:+447700900123")
    screened = screen([mixed], set(), {"crm:C-1", "phone:+447700900123"})
    (kept,) = screened.kept
    assert [s.key for s in kept.identities] == ["email:new@example.com"]
    assert kept.properties["identity_keys"] == ["email:new@example.com"]  # no trace in the stored evidence
    assert kept.event_id == "mixed" and kept.at == mixed.at
    assert screened.stripped_identifiers == 2 and screened.dropped == []
    assert mixed.properties["identity_keys"] == ["crm:C-1", "email:new@example.com", "phone:+447700900123"]


def test_facts_are_counted_across_interactions_and_unreadable_ones_count_nothing():
    facts = [json.dumps([{"key": "a"}, {"key": "b"}]), None, "", json.dumps([{"key": "c"}]), "{not json", "{}"]
    assert count_facts(facts) == 3


def test_a_receipt_keeps_its_stores_through_json():
    stores = erasure_stores({"identities": 2, "facts": 0}, {"waiting": 1}, ["cus_a", "cus_b"])
    assert [s.store for s in stores] == ["graph", "router-queue", "timeline-cache", "kafka"]
    assert dict(stores[0].removed) == {"identities": 2}  # kinds with nothing removed are left out
    assert dict(stores[2].removed) == {"erased_notices": 2}
    assert "retention" in stores[3].note and "tombstones" in stores[3].note
    receipt = ErasureReceipt("era_1", ("cus_a",), datetime(2025, 1, 1, tzinfo=UTC), "ana", "why", stores, 2)
    assert ErasureReceipt.stores_from_json(receipt.stores_json()) == stores
    assert StoreErasure.from_json({"store": "x", "removed": "garbage"}) == StoreErasure("x", {}, "")


# -- the ForgetCustomer request and the use case --------------------------------------------------


def test_a_forget_request_needs_a_lookup_and_a_printable_reason_of_at_most_256_characters():
    order = forget_request(pb.ForgetCustomerRequest(customer_id="cus_0123456789abcdef", reason="  ticket 4821 "))
    assert order.lookup == CustomerLookup(customer_id="cus_0123456789abcdef") and order.reason == "ticket 4821"
    by_identifier = pb.ForgetCustomerRequest(
        identifier=ev.Identifier(kind=ev.IDENTIFIER_KIND_EMAIL, value=" Ana@Example.COM"), reason="x"
    )
    assert forget_request(by_identifier).lookup == CustomerLookup(identity_key="email:ana@example.com")
    assert forget_request(pb.ForgetCustomerRequest(customer_id="cus_0123456789abcdef", reason="r" * 256))
    for request, field in [
        (pb.ForgetCustomerRequest(reason="x"), "lookup"),
        (pb.ForgetCustomerRequest(customer_id="cus_0123456789abcdef"), "reason"),
        (pb.ForgetCustomerRequest(customer_id="cus_0123456789abcdef", reason="r" * 257), "reason"),
        (pb.ForgetCustomerRequest(customer_id="cus_0123456789abcdef", reason="a\tb"), "reason"),
        (pb.ForgetCustomerRequest(customer_id="CUS_0123456789ABCDEF", reason="x"), "customer_id"),
    ]:
        with pytest.raises(InvalidArgument) as raised:
            forget_request(request)
        assert raised.value.field == field


def receipt(**fields: object) -> ErasureReceipt:
    values: dict[str, object] = {
        "receipt_id": "era_0123456789abcdef",
        "customer_ids": ("cus_a", "cus_b"),
        "erased_at": datetime(2025, 1, 1, 12, tzinfo=UTC),
        "erased_by": "ops-1",
        "reason": "ticket",
        "stores": erasure_stores({"identities": 3}, {}, ["cus_a", "cus_b"]),
        "tombstone_count": 3,
    }
    return ErasureReceipt(**{**values, **fields})  # type: ignore[arg-type]


def test_the_receipt_message_carries_every_store_and_the_time():
    message = receipt_message(receipt(already_erased=True))
    assert message.receipt_id == "era_0123456789abcdef" and list(message.customer_ids) == ["cus_a", "cus_b"]
    assert message.erased_at.ToDatetime(tzinfo=UTC) == datetime(2025, 1, 1, 12, tzinfo=UTC)
    assert [s.store for s in message.stores] == ["graph", "router-queue", "timeline-cache", "kafka"]
    assert dict(message.stores[0].removed) == {"identities": 3} and message.already_erased


class FakeEraser:
    def __init__(self, result: ErasureReceipt | None) -> None:
        self.result = result
        self.calls: list[tuple[CustomerLookup, str, str]] = []

    def forget(self, lookup: CustomerLookup, reason: str, erased_by: str, timeout: float) -> ErasureReceipt | None:
        self.calls.append((lookup, reason, erased_by))
        return self.result


class FakeNotices:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.erased_ids: list[str] = []

    def erased(self, customer_ids: Sequence[str], timeout: float) -> None:
        if self.fail:
            raise KafkaTimeoutError("no broker")
        self.erased_ids.extend(customer_ids)

    def history_removed(self, customer_ids: Sequence[str], timeout: float) -> None:
        raise AssertionError("not an erasure notice")

    def close(self) -> None:
        return None


def test_an_erasure_notifies_every_erased_id_and_a_repeat_notifies_again():
    notices = FakeNotices()
    service = ErasureService(FakeEraser(receipt()), notices)
    lookup = CustomerLookup(customer_id="cus_a")
    assert service.forget(lookup, "ticket", "ops-1", 5).receipt_id == "era_0123456789abcdef"
    service.forget(lookup, "ticket", "ops-1", 5)
    assert notices.erased_ids == ["cus_a", "cus_b", "cus_a", "cus_b"]


def test_an_unknown_customer_is_not_found_and_nothing_is_announced():
    notices = FakeNotices()
    with pytest.raises(NotFound):
        ErasureService(FakeEraser(None), notices).forget(CustomerLookup(identity_key="crm:x"), "r", "ops-1", 5)
    assert notices.erased_ids == []


def test_a_notice_that_cannot_be_sent_is_unavailable_and_names_the_receipt_to_retry_for():
    service = ErasureService(FakeEraser(receipt()), FakeNotices(fail=True))
    with pytest.raises(Unavailable) as raised:
        service.forget(CustomerLookup(customer_id="cus_a"), "ticket", "ops-1", 5)
    assert "era_0123456789abcdef" in str(raised.value) and "retry" in str(raised.value)
