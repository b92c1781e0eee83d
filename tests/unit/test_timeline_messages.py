"""ListInteractions responses joined from kept interaction encodings are the messages built field
by field, whatever the size of an interaction."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from rapport.v1 import timeline_pb2 as tl
from rapport_timeline.domain.model import NANOS, Fact, Interaction
from rapport_timeline.entrypoints import messages

pytestmark = pytest.mark.unit


def interaction(n: int, summary_chars: int, customer_id: str = "cus_1") -> Interaction:
    # Encodings are kept per event id (stored interactions never change): each test its own ids.
    return Interaction(
        event_id=f"e{n}-{summary_chars}-{uuid.uuid4().hex}",
        customer_id=customer_id,
        at=n * NANOS + n,
        channel="chat",
        kind="message",
        topic="billing",
        sentiment=-0.25,
        summary="s" * summary_chars,
        facts=(Fact("card", "4111111111111111", sensitive=True), Fact("order_number", f"A-{n}")),
        attributes={"queue": "q1"},
        readings={"snr": 1.5},
        identity_keys=("email:a@example.com",),
        ingested_at=n * NANOS + 5,
    )


# Messages under 128 bytes, under 16 KiB and over it: one-, two- and three-byte lengths.
SIZES = [0, 200, 20_000]


@pytest.mark.parametrize("summary_chars", SIZES)
def test_the_kept_encoding_is_the_interaction_message(summary_chars: int):
    item = interaction(1, summary_chars)
    raw = messages.encoded_interaction(item)
    assert raw == messages.interaction(item).SerializeToString()
    assert messages.encoded_interaction(item) == raw  # and again, from what was kept


def test_a_page_joined_from_kept_encodings_equals_the_page_built_field_by_field():
    items = [interaction(n, size) for n, size in enumerate(SIZES * 2)]
    joined = messages.list_response("cus_1", items, "next-token")
    built = tl.ListInteractionsResponse(
        customer_id="cus_1",
        interactions=[messages.interaction(i) for i in items],
        next_page_token="next-token",
    )
    assert joined == built
    assert joined.interactions[0].facts[0].value != "4111111111111111"  # masked on the way out
    assert messages.list_response("cus_1", [], "") == tl.ListInteractionsResponse(customer_id="cus_1")


def test_an_interaction_that_moved_to_a_survivor_is_encoded_again():
    before = interaction(7, 10, customer_id="cus_absorbed")
    after = dataclasses.replace(before, customer_id="cus_survivor")
    assert messages.list_response("cus_absorbed", [before], "").interactions[0].customer_id == "cus_absorbed"
    assert messages.list_response("cus_survivor", [after], "").interactions[0].customer_id == "cus_survivor"
