"""How one validated InteractionEvent becomes the properties the graph stores.

Enum values become short lower-case names ("voice", "article_feedback"); empty strings become
absent properties; sensitive facts are masked here, before anything leaves the process.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
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


def event_time(event: events_pb2.InteractionEvent) -> datetime:
    return event.occurred_at.ToDatetime(tzinfo=UTC)


def _text(value: str) -> str | None:
    return value if value else None


@dataclass(frozen=True)
class IdentitySighting:
    """One identifier as an event carried it."""

    identifier: NormalisedIdentifier
    verification_method: str | None

    @property
    def key(self) -> str:
        return self.identifier.key


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
            sightings[norm.key] = IdentitySighting(norm, _text(raw.verification_method))
    has_self_service = event.HasField("self_service")
    has_alert = event.HasField("alert")
    has_device = event.HasField("device") and bool(event.device.id)
    has_case = event.HasField("case") and bool(event.case.id)
    ss = event.self_service
    properties: dict[str, Any] = {
        "event_id": event.event_id,
        "at": at,
        "channel": short_name(events_pb2.Channel.DESCRIPTOR, event.channel),
        "kind": short_name(events_pb2.InteractionKind.DESCRIPTOR, event.kind),
        "direction": short_name(events_pb2.Direction.DESCRIPTOR, event.direction),
        "topic": _text(event.topic),
        "intent": _text(event.intent),
        "sentiment": float(event.sentiment) if event.HasField("sentiment") else None,
        "outcome": short_name(events_pb2.Outcome.DESCRIPTOR, event.outcome),
        "csat": int(event.csat) if event.HasField("csat") else None,
        "summary": _text(event.summary),
        "agent_id": _text(event.agent_id),
        "contact_id": _text(event.contact_id),
        "case_id": event.case.id if has_case else None,
        "device_id": event.device.id if has_device else None,
        "article_id": _text(ss.article_id) if has_self_service else None,
        "article_title": _text(ss.article_title) if has_self_service else None,
        "answer": short_name(events_pb2.ArticleAnswer.DESCRIPTOR, ss.answer) if has_self_service else None,
        "flow_id": _text(ss.flow_id) if has_self_service else None,
        "step": _text(ss.step) if has_self_service else None,
        "exit_reason": _text(ss.exit_reason) if has_self_service else None,
        "intent_confidence": float(ss.intent_confidence) if has_self_service and ss.intent_confidence else None,
        "fault_code": _text(event.alert.fault_code) if has_alert else None,
        "severity": short_name(events_pb2.AlertSeverity.DESCRIPTOR, event.alert.severity) if has_alert else None,
        "readings": json.dumps(dict(sorted(event.alert.readings.items())))
        if has_alert and event.alert.readings
        else None,
        "handle_seconds": int(event.handle_seconds) if event.handle_seconds else None,
        "source": _text(event.source),
        "facts": json.dumps(
            [
                {"key": f.key, "value": mask(f.value) if f.sensitive else f.value, "sensitive": f.sensitive}
                for f in event.facts
            ]
        )
        if event.facts
        else None,
        "attributes": json.dumps(dict(sorted(event.attributes.items()))) if event.attributes else None,
        "identity_keys": list(sightings),
    }
    # The lean form journey analytics read (rapport.journeys.digest).
    properties["digest"] = digest.encode(
        properties, [(f.key, mask(f.value) if f.sensitive else f.value) for f in event.facts]
    )
    case = (
        CaseUpdate(
            id=event.case.id,
            status=short_name(events_pb2.CaseStatus.DESCRIPTOR, event.case.status),
            title=_text(event.case.title),
            owner_agent_id=_text(event.case.owner_agent_id),
            # proto3 bools cannot say "unknown"; only an explicit True is news.
            proactive=True if event.case.proactive else None,
        )
        if has_case
        else None
    )
    device = (
        DeviceSighting(event.device.id, _text(event.device.model), _text(event.device.firmware)) if has_device else None
    )
    traits = {}
    if event.HasField("traits"):
        for name in ("language", "tier", "segment", "display_name"):
            value = getattr(event.traits, name)
            if value:
                traits[name] = value
    return InteractionRecord(
        event_id=event.event_id,
        at=at,
        identities=tuple(sightings.values()),
        properties={k: v for k, v in properties.items() if v is not None},
        agent_id=_text(event.agent_id),
        topic=_text(event.topic),
        resolved=event.outcome == events_pb2.OUTCOME_RESOLVED,
        csat=int(event.csat) if event.HasField("csat") else None,
        case=case,
        device=device,
        traits=traits,
    )
