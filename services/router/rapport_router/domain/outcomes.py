"""What the router tells the graph when a contact ends: an InteractionEvent per ending.

The event id is derived from the contact id, so publishing it twice (a retry, a second
replica draining the outbox) stores it once. Only the completion names the agent: the profile
worker counts every interaction that names an agent into SERVED_BY, once.
"""

from __future__ import annotations

from rapport.identity import kind_from_name
from rapport.v1 import events_pb2
from rapport_router.domain.contact import ContactRecord
from rapport_router.domain.model import ContactState

SOURCE = "rapport-router"
MAX_NOTES_BYTES = 4096


def completion_event_id(contact_id: str) -> str:
    return f"{contact_id}.completed"


def abandonment_event_id(contact_id: str) -> str:
    return f"{contact_id}.abandoned"


# Enum values by lower-case name, looked up once (the wrapper's lookups cost more than the rest).
_OUTCOMES = {n.removeprefix("OUTCOME_").lower(): v for n, v in events_pb2.Outcome.items()}
_CHANNELS = {n.removeprefix("CHANNEL_").lower(): v for n, v in events_pb2.Channel.items()}


def outcome_value(name: str | None) -> int:
    if not name:
        return events_pb2.OUTCOME_UNSPECIFIED
    value = _OUTCOMES.get(name.lower())
    if value is None:
        raise ValueError(f"unknown outcome {name!r}")
    return value


def outcome_name(value: int) -> str | None:
    if value == events_pb2.OUTCOME_UNSPECIFIED:
        return None
    return events_pb2.Outcome.Name(value).removeprefix("OUTCOME_").lower()  # type: ignore[arg-type]


def channel_value(name: str) -> int:
    value = _CHANNELS.get(name.lower())
    if value is None:
        raise ValueError(f"unknown channel {name!r}")
    return value


def channel_name(value: int) -> str:
    return events_pb2.Channel.Name(value).removeprefix("CHANNEL_").lower()  # type: ignore[arg-type]


def ending_event(contact: ContactRecord) -> events_pb2.InteractionEvent | None:
    """The event for a completed or cancelled contact; None when there is no identifier to key it by."""
    if contact.identity is None or contact.state not in (ContactState.COMPLETED, ContactState.CANCELLED):
        return None
    spec = contact.spec
    completed = contact.state is ContactState.COMPLETED
    event = events_pb2.InteractionEvent(
        event_id=contact.event_id
        or (completion_event_id(contact.id) if completed else abandonment_event_id(contact.id)),
        channel=channel_value(spec.channel),  # type: ignore[arg-type]
        kind=events_pb2.INTERACTION_KIND_CONTACT_COMPLETED
        if completed
        else events_pb2.INTERACTION_KIND_CONTACT_ABANDONED,
        direction=events_pb2.DIRECTION_INBOUND,
        topic=spec.topic or "",
        intent=spec.intent or "",
        contact_id=spec.id,
        source=SOURCE,
    )
    # Whole microseconds, as a datetime would carry them (Timestamp.FromDatetime is pure Python).
    seconds, micros = divmod(round((contact.ended_at or spec.created_at) * 1_000_000), 1_000_000)
    event.occurred_at.seconds = seconds
    event.occurred_at.nanos = micros * 1000
    event.identifiers.append(
        events_pb2.Identifier(
            kind=kind_from_name(contact.identity.kind),  # type: ignore[arg-type]
            value=contact.identity.value,
            verified=contact.identity.verified,
            platform=contact.identity.value.split("/", 1)[0] if contact.identity.kind == "social" else "",
        )
    )
    if contact.identity.kind == "social":
        event.identifiers[0].value = contact.identity.value.split("/", 1)[-1]
    if completed:
        event.agent_id = contact.agent_id or ""
        event.outcome = outcome_value(contact.outcome)  # type: ignore[assignment]
        if contact.csat is not None:
            event.csat = contact.csat
        if contact.end_sentiment is not None:
            event.sentiment = contact.end_sentiment
        if contact.handle_seconds:
            event.handle_seconds = int(contact.handle_seconds)
        notes = (contact.notes or "").encode()[:MAX_NOTES_BYTES].decode(errors="ignore")
        event.summary = notes
    else:
        event.outcome = events_pb2.OUTCOME_ABANDONED
        event.summary = contact.end_reason or ""
    if spec.case_id:
        event.case.id = spec.case_id
        if contact.owns_case and contact.agent_id:
            # The agent took up the proactive case when accepting: the event log says so too.
            event.case.owner_agent_id = contact.agent_id
    attributes = dict(contact.attributes)
    if spec.customer_id:
        attributes["router.customer_id"] = spec.customer_id
    if contact.origin:
        attributes["router.origin"] = contact.origin
    if contact.offer is not None and completed:
        attributes["router.score"] = f"{contact.offer.score:.4f}"
        attributes["router.offer_attempt"] = str(contact.offer.attempt)
        attributes["router.relaxation_step"] = str(contact.offer.relaxation_step)
    if contact.accepted_at is not None:
        attributes["router.wait_seconds"] = f"{max(0.0, contact.accepted_at - spec.created_at):.1f}"
    event.attributes.update(attributes)
    return event
