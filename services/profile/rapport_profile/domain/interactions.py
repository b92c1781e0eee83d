"""How one validated InteractionEvent becomes the properties the graph stores.

Enum values become short lower-case names ("voice", "article_feedback"); empty strings become
absent properties; sensitive facts are masked here, before anything leaves the process.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache
from typing import Any

from google.protobuf.descriptor import EnumDescriptor

from rapport.identity import NormalisedIdentifier
from rapport.journeys import digest
from rapport.v1 import events_pb2

MASK = "****"
# Card-number-like values keep their last four characters, as on a receipt; shorter secrets keep nothing.
_MIN_LENGTH_SHOWING_TAIL = 12


# Seven calls per ingested event; a pure function of a few hundred (enum, value) pairs.
@cache
def short_name(enum: EnumDescriptor, value: int) -> str | None:
    """`CHANNEL_VOICE` -> "voice"; the unspecified value -> None."""
    if value == 0:
        return None
    prefix = enum.values_by_number[0].name.removesuffix("UNSPECIFIED")
    return str(enum.values_by_number[value].name).removeprefix(prefix).lower()


def mask(value: str) -> str:
    compact = "".join(value.split())
    if len(compact) >= _MIN_LENGTH_SHOWING_TAIL:
        return MASK + compact[-4:]
    return MASK


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def event_time(event: events_pb2.InteractionEvent) -> datetime:
    """What `occurred_at.ToDatetime(tzinfo=UTC)` gives for a validated event (its range is
    checked there), without its checks and time-zone conversion, once per event."""
    at = event.occurred_at
    return _EPOCH + timedelta(seconds=at.seconds, microseconds=at.nanos // 1000)


def _text(value: str) -> str | None:
    return value if value else None


@dataclass(frozen=True)
class IdentitySighting:
    """One identifier as an event carried it."""

    identifier: NormalisedIdentifier
    verification_method: str | None
    # The identifier's key, read many times per event while a batch is written.
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", self.identifier.key)


# A customer's identifiers recur on its events: one shared, immutable sighting each.
_sighting = lru_cache(maxsize=65536)(IdentitySighting)


@dataclass(frozen=True)
class CaseUpdate:
    id: str
    status: str | None
    title: str | None
    owner_agent_id: str | None
    proactive: bool | None


@dataclass(frozen=True)
class DeviceSighting:
    id: str
    model: str | None
    firmware: str | None


@dataclass(frozen=True)
class InteractionRecord:
    """Everything the graph needs from one event, in plain values."""

    event_id: str
    at: datetime
    identities: tuple[IdentitySighting, ...]
    properties: dict[str, Any]
    agent_id: str | None
    topic: str | None
    resolved: bool
    csat: int | None
    case: CaseUpdate | None
    device: DeviceSighting | None
    traits: dict[str, str] = field(default_factory=dict)

    @property
    def identity_keys(self) -> list[str]:
        return [s.key for s in self.identities]


_TEXT_FIELDS = ("topic", "intent", "summary", "agent_id", "contact_id", "source")
_SELF_SERVICE_TEXTS = ("article_id", "article_title", "flow_id", "step", "exit_reason")
_TRAITS = ("language", "tier", "segment", "display_name")


def _put_texts(properties: dict[str, Any], message: Any, names: Sequence[str]) -> None:
    """The message's non-empty text fields, as properties of the same names."""
    for name in names:
        value = getattr(message, name)
        if value:
            properties[name] = value


def interaction_record(
    event: events_pb2.InteractionEvent, identifiers: list[NormalisedIdentifier]
) -> InteractionRecord:
    """`identifiers` are the normalised identifiers `rapport.events.validate` returned, in event order."""
    at = event_time(event)
    sightings: dict[str, IdentitySighting] = {}
    for raw, norm in zip(event.identifiers, identifiers, strict=True):
        seen = sightings.get(norm.key)
        # The same identifier twice in one event: keep the verified sighting.
        if seen is None or (norm.verified and not seen.identifier.verified):
            sightings[norm.key] = _sighting(norm, raw.verification_method or None)
    # Only what the event carries becomes a property (no None values), built in one pass: this
    # runs for every ingested event.
    properties: dict[str, Any] = {"event_id": event.event_id, "at": at}
    _put_texts(properties, event, _TEXT_FIELDS)
    if event.channel:
        properties["channel"] = short_name(events_pb2.Channel.DESCRIPTOR, event.channel)
    if event.kind:
        properties["kind"] = short_name(events_pb2.InteractionKind.DESCRIPTOR, event.kind)
    if event.direction:
        properties["direction"] = short_name(events_pb2.Direction.DESCRIPTOR, event.direction)
    if event.outcome:
        properties["outcome"] = short_name(events_pb2.Outcome.DESCRIPTOR, event.outcome)
    has_sentiment = event.HasField("sentiment")
    if has_sentiment:
        properties["sentiment"] = float(event.sentiment)
    csat = int(event.csat) if event.HasField("csat") else None
    if csat is not None:
        properties["csat"] = csat
    case_ref = event.case if event.HasField("case") and event.case.id else None
    if case_ref is not None:
        properties["case_id"] = case_ref.id
    device_ref = event.device if event.HasField("device") and event.device.id else None
    if device_ref is not None:
        properties["device_id"] = device_ref.id
    if event.HasField("self_service"):
        ss = event.self_service
        _put_texts(properties, ss, _SELF_SERVICE_TEXTS)
        if ss.answer:
            properties["answer"] = short_name(events_pb2.ArticleAnswer.DESCRIPTOR, ss.answer)
        if ss.intent_confidence:
            properties["intent_confidence"] = float(ss.intent_confidence)
    if event.HasField("alert"):
        alert = event.alert
        if alert.fault_code:
            properties["fault_code"] = alert.fault_code
        if alert.severity:
            properties["severity"] = short_name(events_pb2.AlertSeverity.DESCRIPTOR, alert.severity)
        if alert.readings:
            properties["readings"] = json.dumps(dict(sorted(alert.readings.items())))
    if event.handle_seconds:
        properties["handle_seconds"] = int(event.handle_seconds)
    facts = [(f.key, mask(f.value) if f.sensitive else f.value, f.sensitive) for f in event.facts]
    if facts:
        properties["facts"] = json.dumps([{"key": k, "value": v, "sensitive": s} for k, v, s in facts])
    if event.attributes:
        properties["attributes"] = json.dumps(dict(sorted(event.attributes.items())))
    properties["identity_keys"] = list(sightings)
    # The lean form journey analytics read (rapport.journeys.digest).
    properties["digest"] = digest.encode(properties, [(k, v) for k, v, _ in facts])
    case = (
        CaseUpdate(
            id=case_ref.id,
            status=short_name(events_pb2.CaseStatus.DESCRIPTOR, case_ref.status),
            title=_text(case_ref.title),
            owner_agent_id=_text(case_ref.owner_agent_id),
            # proto3 bools cannot say "unknown"; only an explicit True is news.
            proactive=True if case_ref.proactive else None,
        )
        if case_ref is not None
        else None
    )
    device = (
        DeviceSighting(device_ref.id, _text(device_ref.model), _text(device_ref.firmware))
        if device_ref is not None
        else None
    )
    traits = {}
    if event.HasField("traits"):
        for name in _TRAITS:
            value = getattr(event.traits, name)
            if value:
                traits[name] = value
    return InteractionRecord(
        event_id=event.event_id,
        at=at,
        identities=tuple(sightings.values()),
        properties=properties,
        agent_id=properties.get("agent_id"),
        topic=properties.get("topic"),
        resolved=event.outcome == events_pb2.OUTCOME_RESOLVED,
        csat=csat,
        case=case,
        device=device,
        traits=traits,
    )
