"""Synthetic InteractionEvents: a concise builder for tests and seeding, and a reproducible
cross-channel stream of many customers for benchmarks and demos."""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from rapport.v1 import events_pb2 as ev

_KINDS = {
    "email": ev.IDENTIFIER_KIND_EMAIL,
    "phone": ev.IDENTIFIER_KIND_PHONE,
    "crm": ev.IDENTIFIER_KIND_CRM_ID,
    "device": ev.IDENTIFIER_KIND_DEVICE_ID,
    "social": ev.IDENTIFIER_KIND_SOCIAL_HANDLE,
    "cookie": ev.IDENTIFIER_KIND_COOKIE,
    "account": ev.IDENTIFIER_KIND_ACCOUNT_NUMBER,
}
BASE_TIME = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


def identifier(text: str, verified: bool = True, method: str = "") -> ev.Identifier:
    """`email:ana@example.com`, `phone:+447700900123`, `social:x/ana`, `crm:C-1` ..."""
    kind, _, value = text.partition(":")
    platform = ""
    if kind == "social":
        platform, _, value = value.partition("/")
    return ev.Identifier(
        kind=_KINDS[kind], value=value, verified=verified, platform=platform, verification_method=method
    )


def interaction(
    event_id: str | None = None,
    *identifiers: str | ev.Identifier,
    at: datetime | None = None,
    channel: int = ev.CHANNEL_CHAT,
    kind: int = ev.INTERACTION_KIND_MESSAGE,
    **fields: object,
) -> ev.InteractionEvent:
    """One event; identifiers as `kind:value` strings (verified) or ready-made Identifiers."""
    event = ev.InteractionEvent(
        event_id=event_id or uuid.uuid4().hex,
        channel=channel,  # type: ignore[arg-type]
        kind=kind,  # type: ignore[arg-type]
        identifiers=[i if isinstance(i, ev.Identifier) else identifier(i) for i in identifiers],
        **fields,  # type: ignore[arg-type]
    )
    event.occurred_at.FromDatetime(at or BASE_TIME)
    return event


_CHANNELS = [
    (ev.CHANNEL_VOICE, ev.INTERACTION_KIND_CALL),
    (ev.CHANNEL_EMAIL, ev.INTERACTION_KIND_MESSAGE),
    (ev.CHANNEL_CHAT, ev.INTERACTION_KIND_MESSAGE),
    (ev.CHANNEL_SMS, ev.INTERACTION_KIND_MESSAGE),
    (ev.CHANNEL_WEB, ev.INTERACTION_KIND_ARTICLE_VIEW),
    (ev.CHANNEL_BOT, ev.INTERACTION_KIND_BOT_TURN),
    (ev.CHANNEL_APP, ev.INTERACTION_KIND_PAGE_VIEW),
    (ev.CHANNEL_DEVICE, ev.INTERACTION_KIND_DEVICE_ALERT),
]
_TOPICS = ["billing", "router-setup", "outage", "upgrade", "cancellation", "delivery", "password", "roaming"]
_OUTCOMES = [ev.OUTCOME_RESOLVED, ev.OUTCOME_RESOLVED, ev.OUTCOME_UNRESOLVED, ev.OUTCOME_ESCALATED]


def customer_stream(
    customers: int, events: int, *, prefix: str, agents: int = 200, seed: int = 7
) -> Iterator[ev.InteractionEvent]:
    """`events` events spread over `customers` customers and every channel, in a stable order.

    Customer n is known by a verified CRM id on every event, plus a channel-appropriate
    identifier (email, phone, device), so the stream exercises attach but never merges.
    Event ids are `<prefix>-<n>`; event time advances a second per event.
    """
    rng = random.Random(seed)
    # Phone numbers cannot carry the prefix; a per-prefix block keeps runs from sharing them.
    phone_base = int(hashlib.sha256(prefix.encode()).hexdigest(), 16) % 900_000_000
    for n in range(events):
        c = rng.randrange(customers)
        channel, kind = _CHANNELS[rng.randrange(len(_CHANNELS))]
        ids = [identifier(f"crm:{prefix}-C{c}")]
        if channel in (ev.CHANNEL_EMAIL, ev.CHANNEL_CHAT):
            ids.append(identifier(f"email:c{c}.{prefix}@example.com"))
        elif channel in (ev.CHANNEL_VOICE, ev.CHANNEL_SMS):
            ids.append(identifier(f"phone:+447{100_000_000 + (phone_base + c) % 800_000_000}", verified=False))
        elif channel == ev.CHANNEL_DEVICE:
            ids.append(identifier(f"device:{prefix}-D{c}", verified=False))
        fields: dict[str, object] = {"topic": _TOPICS[rng.randrange(len(_TOPICS))], "source": "synthetic"}
        if kind in (ev.INTERACTION_KIND_CALL, ev.INTERACTION_KIND_MESSAGE):
            fields["agent_id"] = f"{prefix}-A{rng.randrange(agents)}"
            fields["outcome"] = _OUTCOMES[rng.randrange(len(_OUTCOMES))]
            fields["csat"] = rng.randint(1, 5)
            fields["sentiment"] = round(rng.uniform(-1, 1), 2)
        if channel == ev.CHANNEL_DEVICE:
            fields["device"] = ev.Device(id=f"{prefix}-D{c}", model="HB-5")
            fields["alert"] = ev.DeviceAlert(fault_code="E42", severity=ev.ALERT_SEVERITY_WARNING)
        yield interaction(
            f"{prefix}-{n}",
            *ids,
            at=BASE_TIME + timedelta(seconds=n),
            channel=channel,
            kind=kind,
            summary=f"synthetic interaction {n}",
            **fields,
        )
