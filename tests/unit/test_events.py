import pytest

from rapport.events import MAX_EVENT_BYTES, InvalidEvent, decode, validate
from rapport.v1 import events_pb2 as ev

pytestmark = pytest.mark.unit


def good_event() -> ev.InteractionEvent:
    e = ev.InteractionEvent(
        event_id="evt-1",
        channel=ev.CHANNEL_CHAT,
        kind=ev.INTERACTION_KIND_MESSAGE,
        identifiers=[ev.Identifier(kind=ev.IDENTIFIER_KIND_EMAIL, value="Ana@Example.com")],
    )
    e.occurred_at.FromSeconds(1_700_000_000)
    return e


def test_a_good_event_validates_and_returns_normalised_identifiers():
    assert [n.key for n in validate(good_event())] == ["email:ana@example.com"]


def test_round_trip_through_bytes():
    e = good_event()
    assert decode(e.SerializeToString()) == e


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda e: setattr(e, "event_id", ""), "event_id"),
        (lambda e: setattr(e, "event_id", "x" * 129), "event_id"),
        (lambda e: e.ClearField("occurred_at"), "occurred_at"),
        # Past what a datetime holds: the worker's conversion used to raise out of the batch.
        (lambda e: setattr(e.occurred_at, "seconds", 10**12), "occurred_at"),
        (lambda e: setattr(e.occurred_at, "nanos", -1), "occurred_at"),
        (lambda e: setattr(e, "channel", 0), "channel"),
        (lambda e: setattr(e, "channel", 77), "channel"),
        (lambda e: setattr(e, "kind", 99), "kind"),
        (lambda e: e.ClearField("identifiers"), "identifiers"),
        (lambda e: setattr(e, "csat", 9), "csat"),
        (lambda e: setattr(e, "sentiment", 2.5), "sentiment"),
        (lambda e: setattr(e, "summary", "é" * 3000), "summary"),
        (lambda e: e.identifiers.add(kind=ev.IDENTIFIER_KIND_PHONE, value="nope"), "identifiers[1].value"),
        (lambda e: e.facts.add(key="", value="x"), "facts[0].key"),
        (lambda e: setattr(e.self_service, "answer", 5), "self_service.answer"),
    ],
)
def test_invalid_events_name_the_field(mutate, field: str):
    e = good_event()
    mutate(e)
    with pytest.raises(InvalidEvent) as err:
        validate(e)
    assert err.value.field == field


def test_unknown_enum_survives_decoding_and_fails_validation():
    e = good_event()
    e.kind = 42  # type: ignore[assignment]  # a producer on a newer contract
    decoded = decode(e.SerializeToString())
    with pytest.raises(InvalidEvent, match="unknown value 42"):
        validate(decoded)


def test_garbage_and_oversized_payloads_are_refused_before_parsing():
    with pytest.raises(InvalidEvent) as err:
        decode(b"\xff\xff\xff garbage")
    assert err.value.field == "payload"
    with pytest.raises(InvalidEvent, match="limit"):
        decode(b"\x00" * (MAX_EVENT_BYTES + 1))
