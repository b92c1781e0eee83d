"""Decoding and validation of InteractionEvents: the rules every producer and the worker share."""

from __future__ import annotations

from functools import cache

from google.protobuf.message import DecodeError

from rapport.identity import InvalidIdentifier, NormalisedIdentifier, normalise
from rapport.v1 import events_pb2

MAX_EVENT_BYTES = 256 * 1024
MAX_EVENT_ID_LENGTH = 128
MAX_SUMMARY_BYTES = 4096
MAX_IDENTIFIERS = 32
MAX_FACTS = 64
MAX_ATTRIBUTES = 64
MAX_TEXT_LENGTH = 256
# 9999-12-31T23:59:59Z, the last second a protobuf Timestamp (and a Python datetime) can hold.
MAX_TIMESTAMP_SECONDS = 253_402_300_799


class InvalidEvent(ValueError):
    """An event that must not enter the graph; `field` and `reason` go to the dead-letter headers."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@cache
def _enum_names(enum: object) -> dict[int, str]:
    # The ingest worker checks several enums on every event; the descriptor's own mapping is
    # rebuilt on each access.
    return {v.number: v.name for v in enum.DESCRIPTOR.values}  # type: ignore[attr-defined]


def _enum_name(enum: object, value: int, field: str) -> str:
    name = _enum_names(enum).get(value)
    if name is None:
        raise InvalidEvent(field, f"unknown value {value}")
    if value == 0:
        raise InvalidEvent(field, "is required")
    return name


def decode(payload: bytes) -> events_pb2.InteractionEvent:
    if len(payload) > MAX_EVENT_BYTES:
        raise InvalidEvent("payload", f"{len(payload)} bytes is over the {MAX_EVENT_BYTES}-byte limit")
    event = events_pb2.InteractionEvent()
    try:
        event.ParseFromString(payload)
    except DecodeError as exc:
        raise InvalidEvent("payload", f"not an InteractionEvent: {exc}") from exc
    return event


def validate(event: events_pb2.InteractionEvent) -> list[NormalisedIdentifier]:
    """Raises InvalidEvent naming the first bad field; returns the normalised identifiers."""
    event_id = event.event_id
    if not event_id.strip():
        raise InvalidEvent("event_id", "is required")
    if len(event_id) > MAX_EVENT_ID_LENGTH:
        raise InvalidEvent("event_id", f"longer than {MAX_EVENT_ID_LENGTH} characters")
    occurred_at = event.occurred_at
    if not event.HasField("occurred_at") or occurred_at.seconds <= 0:
        raise InvalidEvent("occurred_at", "is required")
    if occurred_at.seconds > MAX_TIMESTAMP_SECONDS or not 0 <= occurred_at.nanos < 1_000_000_000:
        raise InvalidEvent("occurred_at", "is not a valid time (after year 9999, or nanos out of range)")
    _enum_name(events_pb2.Channel, event.channel, "channel")
    _enum_name(events_pb2.InteractionKind, event.kind, "kind")
    if event.direction:
        _enum_name(events_pb2.Direction, event.direction, "direction")
    if event.outcome:
        _enum_name(events_pb2.Outcome, event.outcome, "outcome")
    if event.HasField("case") and event.case.status:
        _enum_name(events_pb2.CaseStatus, event.case.status, "case.status")
    if event.HasField("alert") and event.alert.severity:
        _enum_name(events_pb2.AlertSeverity, event.alert.severity, "alert.severity")
    if event.HasField("self_service") and event.self_service.answer:
        _enum_name(events_pb2.ArticleAnswer, event.self_service.answer, "self_service.answer")
    if not event.identifiers:
        raise InvalidEvent("identifiers", "at least one identifier is required")
    if len(event.identifiers) > MAX_IDENTIFIERS:
        raise InvalidEvent("identifiers", f"more than {MAX_IDENTIFIERS}")
    normalised = []
    for i, ident in enumerate(event.identifiers):
        try:
            normalised.append(normalise(ident))
        except InvalidIdentifier as exc:
            raise InvalidEvent(f"identifiers[{i}].{exc.field}", exc.reason) from exc
    if event.HasField("sentiment") and not -1.0 <= event.sentiment <= 1.0:
        raise InvalidEvent("sentiment", "must be between -1 and 1")
    if event.HasField("csat") and not 1 <= event.csat <= 5:
        raise InvalidEvent("csat", "must be between 1 and 5")
    if event.handle_seconds < 0:
        raise InvalidEvent("handle_seconds", "must not be negative")
    # A character is at most 4 bytes in UTF-8: only a long summary needs encoding to be measured.
    if len(event.summary) * 4 > MAX_SUMMARY_BYTES and len(event.summary.encode()) > MAX_SUMMARY_BYTES:
        raise InvalidEvent("summary", f"longer than {MAX_SUMMARY_BYTES} bytes")
    if len(event.facts) > MAX_FACTS:
        raise InvalidEvent("facts", f"more than {MAX_FACTS}")
    for i, fact in enumerate(event.facts):
        if not fact.key.strip():
            raise InvalidEvent(f"facts[{i}].key", "is required")
    if len(event.attributes) > MAX_ATTRIBUTES:
        raise InvalidEvent("attributes", f"more than {MAX_ATTRIBUTES}")
    for name in ("agent_id", "topic", "intent", "contact_id", "source"):
        if len(getattr(event, name)) > MAX_TEXT_LENGTH:
            raise InvalidEvent(name, f"longer than {MAX_TEXT_LENGTH} characters")
    if event.HasField("device") and event.device.id and len(event.device.id) > MAX_TEXT_LENGTH:
        raise InvalidEvent("device.id", f"longer than {MAX_TEXT_LENGTH} characters")
    if event.HasField("case") and len(event.case.id) > MAX_TEXT_LENGTH:
        raise InvalidEvent("case.id", f"longer than {MAX_TEXT_LENGTH} characters")
    return normalised
