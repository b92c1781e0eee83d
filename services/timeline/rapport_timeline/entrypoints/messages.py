"""Protobuf <-> domain: decoding requests (naming the bad field) and encoding responses."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from functools import cache
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from rapport.effort import effort_message
from rapport.errors import InvalidArgument
from rapport.identity import InvalidIdentifier, normalise
from rapport.v1 import events_pb2, timeline_pb2
from rapport_timeline.domain import handoff as h
from rapport_timeline.domain.model import NANOS, CustomerKey, CustomerUpdate, Interaction
from rapport_timeline.domain.paging import InteractionFilter, Order
from rapport_timeline.service import WatchItem

MAX_CUSTOMER_ID_LENGTH = 128


# --- enums: the graph stores short lower-case names ("chat" for CHANNEL_CHAT) --------------


def _prefix(enum: Any) -> str:
    return enum.Name(0).removesuffix("UNSPECIFIED")


@cache
def _to_number(enum: Any, name: str) -> int:
    try:
        return int(enum.Value(_prefix(enum) + name.upper()))
    except ValueError:
        return 0  # a value this contract version does not know yet


@cache
def _to_name(enum: Any, number: int) -> str | None:
    if number == 0:
        return None
    try:
        return str(enum.Name(number)).removeprefix(_prefix(enum)).lower()
    except ValueError:
        return None


def enum_number(enum: Any, name: str | None) -> Any:
    """The proto enum value (typed Any: each generated enum has its own ValueType)."""
    return 0 if not name else _to_number(enum, name)


def _enum_names(enum: Any, numbers: Iterable[int], field: str) -> frozenset[str]:
    names = set()
    for i, number in enumerate(numbers):
        name = _to_name(enum, int(number))
        if name is None:
            raise InvalidArgument(f"{field}[{i}]", f"{number} is not a valid value")
        names.add(name)
    return frozenset(names)


# --- requests ------------------------------------------------------------------------------


def _ns(ts: Timestamp) -> int:
    return ts.seconds * NANOS + ts.nanos


def customer_key(ref: timeline_pb2.CustomerRef, field: str = "customer") -> CustomerKey:
    which = ref.WhichOneof("ref")
    if which == "customer_id":
        value = ref.customer_id.strip()
        if not value:
            raise InvalidArgument(f"{field}.customer_id", "is empty")
        if len(value) > MAX_CUSTOMER_ID_LENGTH:
            raise InvalidArgument(f"{field}.customer_id", f"longer than {MAX_CUSTOMER_ID_LENGTH} characters")
        return CustomerKey("id", value)
    if which == "identifier":
        try:
            return CustomerKey("identity", normalise(ref.identifier).key)
        except InvalidIdentifier as exc:
            raise InvalidArgument(f"{field}.identifier.{exc.field}", exc.reason) from None
    raise InvalidArgument(field, "is required: set customer_id or identifier")


def order(value: int) -> Order:
    if value in (timeline_pb2.TIMELINE_ORDER_UNSPECIFIED, timeline_pb2.TIMELINE_ORDER_NEWEST_FIRST):
        return Order.NEWEST_FIRST
    if value == timeline_pb2.TIMELINE_ORDER_OLDEST_FIRST:
        return Order.OLDEST_FIRST
    raise InvalidArgument("order", f"{value} is not a valid value")


def interaction_filter(f: timeline_pb2.InteractionFilter) -> InteractionFilter:
    for i, topic in enumerate(f.topics):
        if not topic.strip():
            raise InvalidArgument(f"filter.topics[{i}]", "is empty")
    return InteractionFilter(
        channels=_enum_names(events_pb2.Channel, f.channels, "filter.channels"),
        kinds=_enum_names(events_pb2.InteractionKind, f.kinds, "filter.kinds"),
        topics=frozenset(t.strip() for t in f.topics),
        agent_id=f.agent_id.strip() or None,
        case_id=f.case_id.strip() or None,
        since=_ns(f.since) if f.HasField("since") else None,
        until=_ns(f.until) if f.HasField("until") else None,
    )


# --- responses -----------------------------------------------------------------------------


def timestamp(ns: int) -> Timestamp:
    seconds, nanos = divmod(ns, NANOS)
    return Timestamp(seconds=seconds, nanos=nanos)


def interaction(i: Interaction) -> timeline_pb2.Interaction:
    msg = timeline_pb2.Interaction(
        event_id=i.event_id,
        customer_id=i.customer_id,
        at=timestamp(i.at),
        channel=enum_number(events_pb2.Channel, i.channel),
        kind=enum_number(events_pb2.InteractionKind, i.kind),
        direction=enum_number(events_pb2.Direction, i.direction),
        outcome=enum_number(events_pb2.Outcome, i.outcome),
        answer=enum_number(events_pb2.ArticleAnswer, i.answer),
        severity=enum_number(events_pb2.AlertSeverity, i.severity),
        topic=i.topic or "",
        intent=i.intent or "",
        summary=i.summary or "",
        agent_id=i.agent_id or "",
        contact_id=i.contact_id or "",
        case_id=i.case_id or "",
        device_id=i.device_id or "",
        article_id=i.article_id or "",
        article_title=i.article_title or "",
        flow_id=i.flow_id or "",
        step=i.step or "",
        exit_reason=i.exit_reason or "",
        fault_code=i.fault_code or "",
        handle_seconds=i.handle_seconds or 0,
        source=i.source or "",
        facts=[
            events_pb2.Fact(key=f.key, value=h.mask(f.value) if f.sensitive else f.value, sensitive=f.sensitive)
            for f in i.facts
        ],
        attributes=i.attributes,
        readings=i.readings,
        identity_keys=i.identity_keys,
    )
    if i.sentiment is not None:
        msg.sentiment = i.sentiment
    if i.csat is not None:
        msg.csat = i.csat
    if i.intent_confidence is not None:
        msg.intent_confidence = i.intent_confidence
    if i.ingested_at is not None:
        msg.ingested_at.CopyFrom(timestamp(i.ingested_at))
    return msg


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field in protobuf wire format."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


_LIST_FIELDS = timeline_pb2.ListInteractionsResponse.DESCRIPTOR.fields_by_name
_INTERACTIONS_FIELD = _LIST_FIELDS["interactions"].number

# Interactions never change once stored, so their encoding is kept, framed as a field of a
# ListInteractionsResponse: a page of 50 is then joined from bytes instead of building 50
# messages field by field (the bulk of a request's CPU).
MAX_ENCODED = 100_000
_encoded: dict[tuple[str, str], bytes] = {}
_encoded_lock = threading.Lock()


def _framed_interaction(i: Interaction) -> bytes:
    key = (i.event_id, i.customer_id)  # the customer changes only by a merge
    raw = _encoded.get(key)
    if raw is None:
        raw = _field(_INTERACTIONS_FIELD, interaction(i).SerializeToString())
        with _encoded_lock:
            _encoded[key] = raw
            while len(_encoded) > MAX_ENCODED:
                del _encoded[next(iter(_encoded))]
    return raw


def encoded_interaction(i: Interaction) -> bytes:
    """The serialized Interaction message."""
    framed = _framed_interaction(i)
    start = 0
    for _ in range(2):  # past the tag and the length varints
        while framed[start] & 0x80:
            start += 1
        start += 1
    return framed[start:]


def list_response(customer_id: str, items: Iterable[Interaction], token: str) -> timeline_pb2.ListInteractionsResponse:
    raw = _field(_LIST_FIELDS["customer_id"].number, customer_id.encode())
    raw += b"".join([_framed_interaction(i) for i in items])
    if token:
        raw += _field(_LIST_FIELDS["next_page_token"].number, token.encode())
    return timeline_pb2.ListInteractionsResponse.FromString(raw)


def watch_response(item: WatchItem) -> timeline_pb2.WatchTimelineResponse:
    msg = timeline_pb2.WatchTimelineResponse(customer_id=item.customer_id, cursor=item.cursor)
    if item.interaction is not None:
        msg.interaction.CopyFrom(interaction(item.interaction))
    elif item.merge is not None:
        msg.merged.CopyFrom(merged(item.merge))
    return msg


def merged(update: CustomerUpdate) -> timeline_pb2.CustomerMerged:
    msg = timeline_pb2.CustomerMerged(survivor_id=update.customer_id, absorbed_ids=update.merged_customer_ids)
    if update.committed_at is not None:
        msg.committed_at.CopyFrom(timestamp(update.committed_at))
    return msg


def _ts_or_none(ns: int | None) -> Timestamp | None:
    return None if ns is None else timestamp(ns)


_VERIFICATION = {
    "none": timeline_pb2.VERIFICATION_LEVEL_NONE,
    "weak": timeline_pb2.VERIFICATION_LEVEL_WEAK,
    "verified": timeline_pb2.VERIFICATION_LEVEL_VERIFIED,
}
_TREND = {
    "unknown": timeline_pb2.SENTIMENT_TREND_UNKNOWN,
    "improving": timeline_pb2.SENTIMENT_TREND_IMPROVING,
    "stable": timeline_pb2.SENTIMENT_TREND_STABLE,
    "worsening": timeline_pb2.SENTIMENT_TREND_WORSENING,
}
_IDENTITY_KINDS = {
    "email": events_pb2.IDENTIFIER_KIND_EMAIL,
    "phone": events_pb2.IDENTIFIER_KIND_PHONE,
    "crm": events_pb2.IDENTIFIER_KIND_CRM_ID,
    "device": events_pb2.IDENTIFIER_KIND_DEVICE_ID,
    "social": events_pb2.IDENTIFIER_KIND_SOCIAL_HANDLE,
    "cookie": events_pb2.IDENTIFIER_KIND_COOKIE,
    "account": events_pb2.IDENTIFIER_KIND_ACCOUNT_NUMBER,
}


def handoff(ctx: h.HandoffContext) -> timeline_pb2.GetHandoffContextResponse:
    c = ctx.snapshot.customer
    v = ctx.verification
    ss = ctx.self_service
    exit_msg = None
    if ss.exit is not None:
        exit_msg = timeline_pb2.SelfServiceExit(
            channel=enum_number(events_pb2.Channel, ss.exit.channel),
            flow_id=ss.exit.flow_id or "",
            step=ss.exit.step or "",
            exit_reason=ss.exit.exit_reason or "",
            at=timestamp(ss.exit.at),
        )
    mood = ctx.sentiment
    sentiment = timeline_pb2.SentimentSummary(
        trend=_TREND[mood.trend],
        points=[
            timeline_pb2.SentimentPoint(
                at=timestamp(p.at),
                sentiment=p.sentiment or 0.0,
                channel=enum_number(events_pb2.Channel, p.channel),
            )
            for p in mood.points
        ],
    )
    if mood.latest is not None:
        sentiment.latest = mood.latest
    if mood.average is not None:
        sentiment.average = mood.average
    return timeline_pb2.GetHandoffContextResponse(
        customer=timeline_pb2.CustomerSummary(
            customer_id=c.id,
            display_name=c.display_name or "",
            language=c.language or "",
            tier=c.tier or "",
            segment=c.segment or "",
            first_contact_at=_ts_or_none(c.first_contact_at),
            last_contact_at=_ts_or_none(c.last_contact_at),
        ),
        verification=timeline_pb2.Verification(
            level=_VERIFICATION[v.level],
            description=v.description,
            identities=[
                timeline_pb2.KnownIdentity(
                    key=i.key,
                    kind=_IDENTITY_KINDS.get(i.kind, events_pb2.IDENTIFIER_KIND_UNSPECIFIED),
                    value=i.value,
                    verified=i.verified,
                    verification_method=i.verification_method or "",
                    first_seen_at=_ts_or_none(i.first_seen_at),
                )
                for i in v.identities
            ],
        ),
        facts=[
            timeline_pb2.LedgerFact(
                key=f.key,
                value=f.value,
                sensitive=f.sensitive,
                source_channel=enum_number(events_pb2.Channel, f.source_channel),
                first_given_at=timestamp(f.first_given_at),
                last_given_at=timestamp(f.last_given_at),
                times_given=f.times_given,
                source_event_id=f.source_event_id,
            )
            for f in ctx.facts
        ],
        self_service=timeline_pb2.SelfServiceSummary(
            articles=[
                timeline_pb2.ArticleAttempt(
                    article_id=a.article_id,
                    title=a.title or "",
                    answer=enum_number(events_pb2.ArticleAnswer, a.answer),
                    channel=enum_number(events_pb2.Channel, a.channel),
                    at=timestamp(a.at),
                )
                for a in ss.articles
            ],
            bot_intents=[
                timeline_pb2.BotIntent(intent=b.intent, flow_id=b.flow_id or "", step=b.step or "", at=timestamp(b.at))
                for b in ss.bot_intents
            ],
            last_bot_intent=ss.last_bot_intent or "",
            exit=exit_msg,
            path=[
                timeline_pb2.SelfServiceStep(
                    kind=enum_number(events_pb2.InteractionKind, p.kind),
                    channel=enum_number(events_pb2.Channel, p.channel),
                    at=timestamp(p.at),
                    article_id=p.article_id or "",
                    article_title=p.article_title or "",
                    answer=enum_number(events_pb2.ArticleAnswer, p.answer),
                    intent=p.intent or "",
                    flow_id=p.flow_id or "",
                    step=p.step or "",
                    exit_reason=p.exit_reason or "",
                    event_id=p.event_id,
                )
                for p in ss.path
            ],
        ),
        open_cases=[
            timeline_pb2.OpenCase(
                case_id=k.id,
                status=enum_number(events_pb2.CaseStatus, k.status),
                title=k.title or "",
                owner_agent_id=k.owner_agent_id or "",
                proactive=k.proactive,
                opened_at=_ts_or_none(k.opened_at),
                updated_at=_ts_or_none(k.updated_at),
                device_id=k.device_id or "",
                fault_code=k.fault_code or "",
                severity=enum_number(events_pb2.AlertSeverity, k.severity),
                alerts=k.alerts,
                last_alert_at=_ts_or_none(k.last_alert_at),
            )
            for k in ctx.open_cases
        ],
        devices=[
            timeline_pb2.DeviceStatus(
                device_id=d.device.id,
                model=d.device.model or "",
                firmware=d.device.firmware or "",
                last_fault_code=d.last_fault_code or "",
                last_severity=enum_number(events_pb2.AlertSeverity, d.last_severity),
                last_alert_at=_ts_or_none(d.last_alert_at),
                recent_alerts=d.recent_alerts,
            )
            for d in ctx.devices
        ],
        recent_agents=[
            timeline_pb2.RecentAgent(
                agent_id=a.agent_id,
                last_at=timestamp(a.last_at),
                last_outcome=enum_number(events_pb2.Outcome, a.last_outcome),
                last_channel=enum_number(events_pb2.Channel, a.last_channel),
                contacts=a.contacts,
                resolved=a.resolved,
                average_csat=a.average_csat,
            )
            for a in ctx.recent_agents
        ],
        sentiment=sentiment,
        effort=effort_message(ctx.effort),
        probable_reason=ctx.probable_reason,
        recent_interactions=[timeline_pb2.Interaction.FromString(encoded_interaction(i)) for i in ctx.recent],
        journey_started_at=_ts_or_none(ctx.journey_started_at),
    )
