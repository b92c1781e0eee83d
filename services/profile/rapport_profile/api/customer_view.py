"""The 360° customer view's rules, free of I/O: what a request asks for, and what the answer says.

The graph reader hands over plain rows (the `*Row` shapes below, datetimes already native);
everything here turns requests into lookups and rows into `rapport.v1.profile_pb2` messages.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NotRequired, TypedDict

from google.protobuf.timestamp_pb2 import Timestamp

from rapport.effort import DEFAULT_WINDOW, MAX_TOUCHPOINTS, Touchpoint, customer_effort, effort_message, facts_from_json
from rapport.errors import InvalidArgument
from rapport.identity import InvalidIdentifier, NormalisedIdentifier, Strength, kind_from_name, normalise
from rapport.v1 import events_pb2, profile_pb2

NANOS = 1_000_000_000
CUSTOMER_ID = re.compile(r"^cus_[0-9a-f]{16}$")
# Case statuses (as the graph stores them) that count as open.
OPEN_CASE_STATUSES = ("open", "pending")

DEFAULT_AGENTS, MAX_AGENTS = 5, 50
DEFAULT_TOPICS, MAX_TOPICS = 5, 50
DEFAULT_MERGES, MAX_MERGES = 20, 100
# Sentiment compares the latest RECENT scored interactions with up to EARLIER before them.
SENTIMENT_RECENT = 5
SENTIMENT_EARLIER = 20
# Averages further apart than this are a trend; closer is steady.
SENTIMENT_THRESHOLD = 0.15

Strength_ = profile_pb2.IdentityStrength
Direction = profile_pb2.SentimentDirection


@dataclass(frozen=True)
class CustomerLookup:
    """Exactly one of a customer id or a normalised identity key."""

    customer_id: str | None = None
    identity_key: str | None = None

    def describe(self) -> str:
        if self.customer_id is not None:
            return f"customer {self.customer_id}"
        return f"identity {self.identity_key}"


@dataclass(frozen=True)
class ViewLimits:
    agents: int = DEFAULT_AGENTS
    topics: int = DEFAULT_TOPICS
    merges: int = DEFAULT_MERGES
    sentiments: int = SENTIMENT_RECENT + SENTIMENT_EARLIER
    # The effort window, in nanoseconds since the epoch: [effort_end - effort_window, effort_end].
    effort_end: int = 0
    effort_window: int = DEFAULT_WINDOW
    touchpoints: int = MAX_TOUCHPOINTS


# The rows the graph reader returns. Datetimes are timezone-aware; absent values are None.
class IdentityRow(TypedDict):
    key: str
    kind: str
    value: str
    verified: bool | None
    verification_method: str | None
    first_seen_at: datetime | None


class DeviceRow(TypedDict):
    id: str
    model: str | None
    firmware: str | None


class CaseRow(TypedDict):
    id: str
    status: str | None
    title: str | None
    owner_agent_id: str | None
    proactive: bool | None
    opened_at: datetime | None
    updated_at: datetime | None


class ChannelRow(TypedDict):
    channel: str | None
    count: int
    first_at: datetime | None
    last_at: datetime | None


class AgentRow(TypedDict):
    agent_id: str
    count: int
    resolved: int
    average_csat: float | None
    last_at: datetime | None
    last_channel: str | None
    last_outcome: str | None
    last_outcome_at: datetime | None


class TopicRow(TypedDict):
    topic: str
    count: int
    last_at: datetime | None


class MergeRow(TypedDict):
    id: str
    at: datetime | None
    event_id: str | None
    survivor_id: str
    absorbed_id: str
    linking_keys: list[str] | None
    absorbed_identity_keys: list[str] | None
    absorbed_event_count: int


class TouchpointRow(TypedDict):
    """One interaction of the effort window; `at` as epoch seconds and nanoseconds."""

    at_s: int
    at_n: int
    channel: str | None
    kind: str | None
    direction: str | None
    topic: str | None
    intent: str | None
    outcome: str | None
    answer: str | None
    article_id: str | None
    flow_id: str | None
    step: str | None
    contact_id: str | None
    facts: str | None


class ViewRow(TypedDict):
    id: str
    merged_into: str | None
    attributes: dict[str, Any]
    identities: list[IdentityRow]
    devices: list[DeviceRow]
    open_cases: list[CaseRow]
    channels: list[ChannelRow]
    agents: list[AgentRow]
    topics: list[TopicRow]
    # Sentiment scores of the latest scored interactions, newest first.
    sentiments: list[float]
    merges: list[MergeRow]
    # The interactions of the effort window, newest first.
    touchpoints: NotRequired[list[TouchpointRow]]


# --- requests ---------------------------------------------------------------------------------


def customer_id(value: str, field: str = "customer_id") -> str:
    cid = value.strip()
    if not cid:
        raise InvalidArgument(field, "is required")
    if not CUSTOMER_ID.match(cid):
        raise InvalidArgument(field, f"{value[:80]!r} is not a customer id ('cus_' and 16 hex digits)")
    return cid


def identifier(value: events_pb2.Identifier, field: str = "identifier") -> NormalisedIdentifier:
    """Normalises like the worker does; a bad part is named, e.g. `identifier.value`."""
    if value.kind == events_pb2.IDENTIFIER_KIND_UNSPECIFIED:
        raise InvalidArgument(f"{field}.kind", "is required")
    try:
        return normalise(value)
    except InvalidIdentifier as exc:
        raise InvalidArgument(f"{field}.{exc.field}", exc.reason) from exc


def _limit(value: int, default: int, maximum: int, field: str) -> int:
    if value < 0:
        raise InvalidArgument(field, "must not be negative")
    return min(value or default, maximum)


def get_customer_request(request: profile_pb2.GetCustomerRequest) -> tuple[CustomerLookup, ViewLimits]:
    limits = ViewLimits(
        agents=_limit(request.max_agents, DEFAULT_AGENTS, MAX_AGENTS, "max_agents"),
        topics=_limit(request.max_topics, DEFAULT_TOPICS, MAX_TOPICS, "max_topics"),
        merges=_limit(request.max_merges, DEFAULT_MERGES, MAX_MERGES, "max_merges"),
    )
    which = request.WhichOneof("lookup")
    if which == "customer_id":
        return CustomerLookup(customer_id=customer_id(request.customer_id)), limits
    if which == "identifier":
        return CustomerLookup(identity_key=identifier(request.identifier).key), limits
    raise InvalidArgument("lookup", "set customer_id or identifier")


# --- stored values to contract values ---------------------------------------------------------


def enum_value(enum: Any, short_name: str | None) -> Any:
    """ "voice" -> CHANNEL_VOICE; None or a name this contract does not know -> the zero value."""
    if not short_name:
        return 0
    prefix = enum.Name(0).removesuffix("UNSPECIFIED")
    try:
        return enum.Value(prefix + short_name.upper())
    except ValueError:
        return 0


def timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def _set_time(message: Any, field: str, value: datetime | None) -> None:
    ts = timestamp(value)
    if ts is not None:
        getattr(message, field).CopyFrom(ts)


def strength(kind: str, value: str, verified: bool) -> Any:
    rule = NormalisedIdentifier(kind, value, verified).strength
    return Strength_.IDENTITY_STRENGTH_STRONG if rule is Strength.STRONG else Strength_.IDENTITY_STRENGTH_WEAK


def identifier_message(
    kind: str, value: str, verified: bool = False, method: str | None = None
) -> events_pb2.Identifier:
    """A stored identity as the contract's Identifier; social "platform/handle" is split again."""
    try:
        kind_number = kind_from_name(kind)
    except InvalidIdentifier:
        kind_number = events_pb2.IDENTIFIER_KIND_UNSPECIFIED
    platform = ""
    if kind == "social" and "/" in value:
        platform, _, value = value.partition("/")
    return events_pb2.Identifier(
        kind=kind_number,  # type: ignore[arg-type]
        value=value,
        verified=verified,
        platform=platform,
        verification_method=method or "",
    )


def _identity(row: IdentityRow) -> profile_pb2.CustomerIdentity:
    verified = bool(row["verified"])
    message = profile_pb2.CustomerIdentity(
        identifier=identifier_message(row["kind"], row["value"], verified, row["verification_method"]),
        key=row["key"],
        strength=strength(row["kind"], row["value"], verified),
    )
    _set_time(message, "first_seen_at", row["first_seen_at"])
    return message


def _identity_order(row: IdentityRow) -> tuple[bool, str, str]:
    weak = NormalisedIdentifier(row["kind"], row["value"], bool(row["verified"])).strength is Strength.WEAK
    return weak, row["kind"], row["value"]


def _case(row: CaseRow) -> profile_pb2.CustomerCase:
    message = profile_pb2.CustomerCase(
        case=events_pb2.CaseRef(
            id=row["id"],
            status=enum_value(events_pb2.CaseStatus, row["status"]),
            title=row["title"] or "",
            owner_agent_id=row["owner_agent_id"] or "",
            proactive=bool(row["proactive"]),
        )
    )
    _set_time(message, "opened_at", row["opened_at"])
    _set_time(message, "updated_at", row["updated_at"])
    return message


def _channel(row: ChannelRow) -> profile_pb2.ChannelUsage:
    message = profile_pb2.ChannelUsage(
        channel=enum_value(events_pb2.Channel, row["channel"]), interaction_count=row["count"]
    )
    _set_time(message, "first_at", row["first_at"])
    _set_time(message, "last_at", row["last_at"])
    return message


def _agent(row: AgentRow) -> profile_pb2.AgentHistory:
    message = profile_pb2.AgentHistory(
        agent_id=row["agent_id"],
        interaction_count=row["count"],
        resolved_count=row["resolved"],
        last_channel=enum_value(events_pb2.Channel, row["last_channel"]),
        last_outcome=enum_value(events_pb2.Outcome, row["last_outcome"]),
    )
    if row["average_csat"] is not None:
        message.average_csat = float(row["average_csat"])
    _set_time(message, "last_contact_at", row["last_at"])
    _set_time(message, "last_outcome_at", row["last_outcome_at"])
    return message


def _topic(row: TopicRow) -> profile_pb2.TopicCount:
    message = profile_pb2.TopicCount(topic=row["topic"], interaction_count=row["count"])
    _set_time(message, "last_at", row["last_at"])
    return message


def _merge(row: MergeRow) -> profile_pb2.MergeRecord:
    message = profile_pb2.MergeRecord(
        merge_id=row["id"],
        event_id=row["event_id"] or "",
        survivor_customer_id=row["survivor_id"],
        absorbed_customer_id=row["absorbed_id"],
        linking_identity_keys=row["linking_keys"] or [],
        absorbed_identity_keys=row["absorbed_identity_keys"] or [],
        absorbed_interaction_count=row["absorbed_event_count"],
    )
    _set_time(message, "merged_at", row["at"])
    return message


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def sentiment_trend(
    newest_first: Sequence[float], recent: int = SENTIMENT_RECENT, earlier: int = SENTIMENT_EARLIER
) -> profile_pb2.CustomerSentiment:
    """The latest `recent` scores against up to `earlier` scores before them."""
    latest = list(newest_first[:recent])
    before = list(newest_first[recent : recent + earlier])
    trend = profile_pb2.CustomerSentiment(recent_count=len(latest), earlier_count=len(before))
    if latest:
        trend.recent_average = round(_mean(latest), 4)
    if before:
        trend.earlier_average = round(_mean(before), 4)
    if not latest or not before:
        trend.direction = Direction.SENTIMENT_DIRECTION_INSUFFICIENT_DATA
        return trend
    change = _mean(latest) - _mean(before)
    if change > SENTIMENT_THRESHOLD:
        trend.direction = Direction.SENTIMENT_DIRECTION_IMPROVING
    elif change < -SENTIMENT_THRESHOLD:
        trend.direction = Direction.SENTIMENT_DIRECTION_DECLINING
    else:
        trend.direction = Direction.SENTIMENT_DIRECTION_STEADY
    return trend


def _earliest(values: Iterable[datetime | None]) -> datetime | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _latest(values: Iterable[datetime | None]) -> datetime | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def touchpoint(row: TouchpointRow) -> Touchpoint:
    """A stored interaction as the effort formula reads it (the timeline converts the same way)."""
    try:
        facts = facts_from_json(json.loads(row["facts"])) if row["facts"] else ()
    except ValueError:
        facts = ()
    return Touchpoint(
        at=int(row["at_s"]) * NANOS + int(row["at_n"] or 0),
        channel=row["channel"],
        kind=row["kind"],
        direction=row["direction"],
        topic=row["topic"],
        intent=row["intent"],
        outcome=row["outcome"],
        answer=row["answer"],
        article_id=row["article_id"],
        flow_id=row["flow_id"],
        step=row["step"],
        contact_id=row["contact_id"],
        facts=facts,
    )


def customer_view(row: ViewRow, limits: ViewLimits | None = None) -> profile_pb2.CustomerView:
    """The view; with `limits` its effort too, over `limits`' window and the row's touchpoints."""
    attributes = row["attributes"]
    view = profile_pb2.CustomerView(
        customer_id=row["id"],
        attributes=profile_pb2.CustomerAttributes(
            language=attributes.get("language") or "",
            tier=attributes.get("tier") or "",
            segment=attributes.get("segment") or "",
            display_name=attributes.get("display_name") or "",
        ),
        identities=[_identity(i) for i in sorted(row["identities"], key=_identity_order)],
        devices=[
            events_pb2.Device(id=d["id"], model=d["model"] or "", firmware=d["firmware"] or "") for d in row["devices"]
        ],
        open_cases=[_case(c) for c in row["open_cases"]],
        channels=[_channel(c) for c in row["channels"]],
        interaction_count=sum(c["count"] for c in row["channels"]),
        recent_agents=[_agent(a) for a in row["agents"]],
        top_topics=[_topic(t) for t in row["topics"]],
        sentiment=sentiment_trend(row["sentiments"]),
        merges=[_merge(m) for m in row["merges"]],
    )
    _set_time(view, "first_contact_at", _earliest(c["first_at"] for c in row["channels"]))
    _set_time(view, "last_contact_at", _latest(c["last_at"] for c in row["channels"]))
    _set_time(view, "created_at", attributes.get("created_at"))
    if limits is not None:
        touchpoints = [touchpoint(t) for t in row.get("touchpoints", [])]
        view.effort.CopyFrom(effort_message(customer_effort(touchpoints, limits.effort_end, limits.effort_window)))
    return view


def resolve_identity_response(customer: str, identity: IdentityRow) -> profile_pb2.ResolveIdentityResponse:
    verified = bool(identity["verified"])
    return profile_pb2.ResolveIdentityResponse(
        customer_id=customer,
        identity_key=identity["key"],
        strength=strength(identity["kind"], identity["value"], verified),
        verified=verified,
        verification_method=identity["verification_method"] or "",
    )
