"""The worker's decoder and validator and the identity rules under generated hostile input:
they either accept or raise their own error naming the field, never anything else."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rapport.events import MAX_EVENT_BYTES, InvalidEvent, decode, validate
from rapport.identity import (
    InvalidIdentifier,
    NormalisedIdentifier,
    normalise,
    normalise_value,
    parse_identifier,
    partition_key,
)
from rapport.v1 import events_pb2

from .strategies import NASTY, hostile_bytes, length_delimited, messages, plausible_events, text_values

pytestmark = pytest.mark.unit

FAST = settings(
    max_examples=600,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
EVENT = events_pb2.InteractionEvent.DESCRIPTOR
KNOWN = ("ana@example.com", "+447700900123", "07700 900123", "C-1", "x", "instagram", "ANA@Example.COM ")


def decode_and_validate(payload: bytes) -> list[NormalisedIdentifier] | None:
    """What the worker does with a record; None when it goes to the dead-letter topic."""
    try:
        return validate(decode(payload))
    except InvalidEvent as exc:
        assert exc.field and exc.reason, exc
        return None


@FAST
@given(st.one_of(hostile_bytes(EVENT, KNOWN), plausible_events(KNOWN).map(lambda e: e.SerializeToString())))
def test_any_payload_is_either_an_event_or_an_invalid_event(payload: bytes):
    identifiers = decode_and_validate(payload)
    if identifiers is not None:
        assert 1 <= len(identifiers) <= 32
        assert all(i.key == f"{i.kind}:{i.value}" for i in identifiers)


@FAST
@given(st.one_of(messages(EVENT, KNOWN), plausible_events(KNOWN)))
def test_a_well_formed_event_survives_the_round_trip_and_validates_or_names_the_field(event):
    payload = event.SerializeToString()
    if len(payload) > MAX_EVENT_BYTES:
        with pytest.raises(InvalidEvent, match="payload"):
            decode(payload)
        return
    assert decode(payload) == event
    try:
        validate(event)
    except InvalidEvent as exc:
        assert exc.field.split("[")[0].split(".")[0] in {f.name for f in EVENT.fields}, exc.field
        return
    assert partition_key(list(event.identifiers))  # a valid event always has a Kafka key


def test_an_oversized_payload_is_refused_before_parsing():
    with pytest.raises(InvalidEvent, match="over the"):
        decode(length_delimited(24, b"s" * (MAX_EVENT_BYTES + 1)))


def test_deep_nesting_is_an_invalid_event_not_a_crash():
    for number in (18, 999):  # InteractionEvent.device, and a field the contract does not know
        payload = b""
        for _ in range(5000):
            payload = length_delimited(number, payload)
        assert decode_and_validate(payload) is None


IDENTIFIERS = messages(events_pb2.Identifier.DESCRIPTOR, KNOWN)
KIND_NAMES = ["email", "phone", "crm", "device", "social", "cookie", "account"]
IDEMPOTENT = ["email", "phone", "crm", "device", "cookie", "account"]


@FAST
@given(IDENTIFIERS)
def test_an_identifier_normalises_or_names_what_is_wrong(identifier):
    try:
        normalised = normalise(identifier)
    except InvalidIdentifier as exc:
        assert exc.field in {"kind", "value", "platform"}, exc.field
        return
    assert normalised.value and normalised.value == normalised.value.strip()
    assert normalised.kind in KIND_NAMES


@FAST
@given(st.sampled_from(IDEMPOTENT), text_values(KNOWN))
def test_normalising_twice_changes_nothing(kind: str, value: str):
    try:
        once = normalise_value(kind, value)
    except InvalidIdentifier:
        return
    assert normalise_value(kind, once) == once


@FAST
@given(st.one_of(text_values(KNOWN), st.text(alphabet=st.sampled_from(NASTY + ":/email"), max_size=40)))
def test_typed_identifiers_parse_or_name_what_is_wrong(text: str):
    try:
        parsed = parse_identifier(text)
    except InvalidIdentifier as exc:
        assert exc.field in {"identifier", "kind", "value", "platform"}
        return
    assert parse_identifier(parsed.key) == parsed  # a key reads back as itself
