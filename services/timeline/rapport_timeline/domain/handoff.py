"""The handoff context: what an agent needs in the first second of a contact.

Built from one snapshot of the customer (see `CustomerSnapshot`): the fact ledger, what
self-service and the bot tried in the current journey, open cases, devices, last agents,
sentiment, the customer's effort (the shared formula of rapport.effort, over the effort window
ending now) and a one-line guess at why they are contacting.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from rapport.effort import DEFAULT_WINDOW, Effort, Touchpoint, customer_effort, fact_key
from rapport_timeline.domain.model import (
    NANOS,
    Case,
    CustomerSnapshot,
    Device,
    Identity,
    Interaction,
)

DAY = 24 * 3600 * NANOS
# The journey is what happened after the last resolved contact, at most this far back.
JOURNEY_MAX_AGE = 7 * DAY
DEVICE_ALERT_WINDOW = 30 * DAY
MAX_RECENT_AGENTS = 5
MAX_SENTIMENT_POINTS = 10
MAX_BOT_INTENTS = 20
MAX_RECENT_INTERACTIONS = 20
MAX_PATH_STEPS = 30
_PATH_KINDS = frozenset({"article_view", "article_feedback", "bot_turn", "bot_exit", "page_view"})
TREND_THRESHOLD = 0.15

MASK = "****"
_MIN_LENGTH_SHOWING_TAIL = 12
_SENSITIVE_KEY = re.compile(r"card|pan\b|cvv|cvc|password|passcode|\bpin\b|ssn|national.?id|passport|iban|secret")
_CARD_LIKE = re.compile(r"^[\d\s-]{13,23}$")


# --- masking -------------------------------------------------------------------------------


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def looks_sensitive(key: str, value: str) -> bool:
    """Defence in depth: a card number or secret a producer forgot to flag."""
    if _SENSITIVE_KEY.search(key.lower()):
        return True
    if _CARD_LIKE.match(value):
        digits = re.sub(r"\D", "", value)
        return 13 <= len(digits) <= 19 and _luhn(digits)
    return False


def mask(value: str) -> str:
    """Masked as the profile worker stores it: "****" plus the last four of a long value.

    Already-masked values are returned unchanged, so masking twice is harmless.
    """
    if value.startswith(MASK):
        return value
    compact = "".join(value.split())
    if len(compact) >= _MIN_LENGTH_SHOWING_TAIL:
        return MASK + compact[-4:]
    return MASK


# --- fact ledger ---------------------------------------------------------------------------


@dataclass
class LedgerFact:
    key: str
    value: str
    sensitive: bool
    source_channel: str | None
    source_event_id: str
    first_given_at: int
    last_given_at: int
    times_given: int = 1


def _normal_value(value: str) -> str:
    return " ".join(value.split()).casefold()


def fact_ledger(interactions: Sequence[Interaction]) -> list[LedgerFact]:
    """One entry per (key, value), whatever the case or spacing; most recently given first.

    Sensitive values (flagged by the producer, or recognised here) are always masked.
    """
    ledger: dict[tuple[str, str], LedgerFact] = {}
    for item in sorted(interactions, key=lambda i: (i.at, i.event_id)):
        for fact in item.facts:
            key = fact.key.strip()
            sensitive = fact.sensitive or looks_sensitive(key, fact.value)
            value = mask(fact.value) if sensitive else fact.value.strip()
            ident = (key.casefold(), _normal_value(value))
            entry = ledger.get(ident)
            if entry is None:
                ledger[ident] = LedgerFact(key, value, sensitive, item.channel, item.event_id, item.at, item.at)
            else:
                entry.times_given += 1
                entry.last_given_at = max(entry.last_given_at, item.at)
    return sorted(ledger.values(), key=lambda f: (-f.last_given_at, f.key, f.value))


# --- journey and self-service --------------------------------------------------------------


def _resolves_contact(item: Interaction) -> bool:
    return item.outcome == "resolved" and (item.agent_id is not None or item.kind == "contact_completed")


def journey(recent: Sequence[Interaction]) -> tuple[list[Interaction], int | None]:
    """The interactions after the last resolved contact, at most JOURNEY_MAX_AGE before the
    newest one (newest first), and the time of the journey's first interaction."""
    items: list[Interaction] = []
    if recent:
        oldest_allowed = recent[0].at - JOURNEY_MAX_AGE
        for item in recent:
            if item.at < oldest_allowed or _resolves_contact(item):
                break
            items.append(item)
    return items, (items[-1].at if items else None)


@dataclass
class ArticleAttempt:
    article_id: str
    title: str | None
    answer: str | None
    channel: str | None
    at: int


@dataclass
class BotIntent:
    intent: str
    flow_id: str | None
    step: str | None
    at: int


@dataclass
class SelfServiceExit:
    channel: str | None
    flow_id: str | None
    step: str | None
    exit_reason: str | None
    at: int


@dataclass
class SelfServiceSummary:
    articles: list[ArticleAttempt] = field(default_factory=list)
    bot_intents: list[BotIntent] = field(default_factory=list)
    last_bot_intent: str | None = None
    exit: SelfServiceExit | None = None
    # The customer's way through self-service, oldest first (the latest MAX_PATH_STEPS).
    path: list[Interaction] = field(default_factory=list)

    @property
    def failed_articles(self) -> list[ArticleAttempt]:
        return [a for a in self.articles if a.answer == "no"]


def self_service(journey_items: Sequence[Interaction]) -> SelfServiceSummary:
    """`journey_items` newest first."""
    summary = SelfServiceSummary()
    articles: dict[str, ArticleAttempt] = {}
    for item in journey_items:
        if item.article_id:
            seen = articles.get(item.article_id)
            if seen is None:
                articles[item.article_id] = ArticleAttempt(
                    item.article_id, item.article_title, item.answer, item.channel, item.at
                )
            else:
                seen.title = seen.title or item.article_title
                seen.answer = seen.answer or item.answer
        is_bot = item.channel == "bot" or item.kind in ("bot_turn", "bot_exit")
        if is_bot and item.intent:
            if len(summary.bot_intents) < MAX_BOT_INTENTS:
                summary.bot_intents.append(BotIntent(item.intent, item.flow_id, item.step, item.at))
            if summary.last_bot_intent is None:
                summary.last_bot_intent = item.intent
        if summary.exit is None and (item.kind == "bot_exit" or item.exit_reason):
            summary.exit = SelfServiceExit(item.channel, item.flow_id, item.step, item.exit_reason, item.at)
        if (item.kind in _PATH_KINDS or item.exit_reason) and len(summary.path) < MAX_PATH_STEPS:
            summary.path.append(item)
    summary.articles = sorted(articles.values(), key=lambda a: -a.at)
    summary.path.reverse()
    return summary


# --- devices, agents, sentiment ------------------------------------------------------------


@dataclass
class DeviceStatus:
    device: Device
    last_fault_code: str | None = None
    last_severity: str | None = None
    last_alert_at: int | None = None
    recent_alerts: int = 0


def device_statuses(devices: Sequence[Device], recent: Sequence[Interaction]) -> list[DeviceStatus]:
    statuses = {d.id: DeviceStatus(d) for d in devices}
    if recent:
        since = recent[0].at - DEVICE_ALERT_WINDOW
        for item in recent:
            if item.kind != "device_alert" or not item.device_id or item.at < since:
                continue
            status = statuses.setdefault(item.device_id, DeviceStatus(Device(item.device_id)))
            status.recent_alerts += 1
            if status.last_alert_at is None:
                status.last_fault_code, status.last_severity, status.last_alert_at = (
                    item.fault_code,
                    item.severity,
                    item.at,
                )
    return sorted(statuses.values(), key=lambda s: (-(s.last_alert_at or 0), s.device.id))


@dataclass
class RecentAgent:
    agent_id: str
    last_at: int
    last_outcome: str | None
    last_channel: str | None
    contacts: int = 0
    resolved: int = 0
    average_csat: float = 0.0


def recent_agents(snapshot: CustomerSnapshot) -> list[RecentAgent]:
    agents: dict[str, RecentAgent] = {}
    for item in snapshot.recent:
        if not item.agent_id:
            continue
        agent = agents.get(item.agent_id)
        if agent is None:
            if len(agents) == MAX_RECENT_AGENTS:
                continue
            agents[item.agent_id] = RecentAgent(item.agent_id, item.at, item.outcome, item.channel)
        elif agent.last_outcome is None and item.outcome:
            agent.last_outcome = item.outcome
    for aggregate in snapshot.agents:
        found = agents.get(aggregate.agent_id)
        if found is not None:
            found.contacts = aggregate.contacts
            found.resolved = aggregate.resolved
            found.average_csat = aggregate.csat_sum / aggregate.csat_count if aggregate.csat_count else 0.0
    return sorted(agents.values(), key=lambda a: -a.last_at)


@dataclass
class SentimentSummary:
    trend: str  # "unknown" | "improving" | "stable" | "worsening"
    latest: float | None = None
    average: float | None = None
    points: list[Interaction] = field(default_factory=list)  # oldest first


def sentiment(recent: Sequence[Interaction]) -> SentimentSummary:
    scored = [i for i in recent if i.sentiment is not None][:MAX_SENTIMENT_POINTS]
    scored.reverse()
    if not scored:
        return SentimentSummary("unknown")
    values = [float(i.sentiment) for i in scored if i.sentiment is not None]
    summary = SentimentSummary("unknown", values[-1], sum(values) / len(values), scored)
    if len(values) >= 3:
        half = len(values) // 2
        earlier = sum(values[:half]) / half
        later = sum(values[-half:]) / half
        delta = later - earlier
        if delta > TREND_THRESHOLD:
            summary.trend = "improving"
        elif delta < -TREND_THRESHOLD:
            summary.trend = "worsening"
        else:
            summary.trend = "stable"
    return summary


# --- effort --------------------------------------------------------------------------------


def touchpoint(item: Interaction) -> Touchpoint:
    """The interaction as the shared effort formula (rapport.effort) reads it."""
    return Touchpoint(
        at=item.at,
        channel=item.channel,
        kind=item.kind,
        direction=item.direction,
        topic=item.topic,
        intent=item.intent,
        outcome=item.outcome,
        answer=item.answer,
        article_id=item.article_id,
        flow_id=item.flow_id,
        step=item.step,
        contact_id=item.contact_id,
        facts=tuple(dict.fromkeys(fact_key(f.key, f.value) for f in item.facts if f.key.strip())),
    )


def effort(recent: Sequence[Interaction], now: int, window: int = DEFAULT_WINDOW) -> Effort:
    """The customer's effort over the window ending now: the same score as the 360° view's."""
    return customer_effort((touchpoint(i) for i in recent), now, window)


# --- verification --------------------------------------------------------------------------


@dataclass
class Verification:
    level: str  # "none" | "weak" | "verified"
    identities: list[Identity]
    description: str


def verification(identities: Sequence[Identity]) -> Verification:
    ordered = sorted(identities, key=lambda i: (not i.verified, -(i.first_seen_at or 0), i.key))
    verified = [i for i in ordered if i.verified]
    if verified:
        parts = [
            f"{i.kind} verified by {i.verification_method}" if i.verification_method else f"{i.kind} verified"
            for i in verified
        ]
        return Verification("verified", ordered, "; ".join(dict.fromkeys(parts)))
    if ordered:
        kinds = ", ".join(sorted({i.kind for i in ordered}))
        return Verification("weak", ordered, f"not verified; known by {kinds}")
    return Verification("none", ordered, "no identifiers on record")


# --- the one-line reason -------------------------------------------------------------------


def probable_reason(
    journey_items: Sequence[Interaction],
    service: SelfServiceSummary,
    open_cases: Sequence[Case],
    devices: Sequence[DeviceStatus],
    alert: Case | None = None,
) -> str:
    """`alert`: an open proactive case with a recent alert; the line then leads with it."""
    topics = Counter(i.topic for i in journey_items if i.topic)
    subject: str | None = None
    if topics:
        # Most frequent topic; ties go to the most recent.
        best = max(topics.values())
        subject = next(i.topic for i in journey_items if i.topic and topics[i.topic] == best)
    evidence: list[str] = []
    if service.last_bot_intent:
        evidence.append(f'bot intent "{service.last_bot_intent}"')
        subject = subject or service.last_bot_intent
    failed = service.failed_articles
    if failed:
        evidence.append(f'article "{failed[0].title or failed[0].article_id}" did not help')
    if service.exit is not None:
        evidence.append(
            f"left the bot at {service.exit.step or service.exit.flow_id or 'the start'}"
            + (f" ({service.exit.exit_reason})" if service.exit.exit_reason else "")
        )
    alerting = [
        d
        for d in devices
        if d.last_severity in ("critical", "warning") and (alert is None or d.device.id != alert.device_id)
    ]
    if alerting:
        d = alerting[0]
        fault = d.last_fault_code or "a fault"
        evidence.append(f"{d.device.model or d.device.id} reported {fault} ({d.last_severity})")
        subject = subject or f"their {d.device.model or 'device'}"
    other_cases = [c for c in open_cases if alert is None or c.id != alert.id]
    if other_cases:
        case = other_cases[0]
        evidence.append(f'case {case.id} "{case.title or case.id}" is {case.status or "open"}')
        subject = subject or (case.title or f"case {case.id}")
    if alert is not None:
        model = next((d.device.model for d in devices if d.device.id == alert.device_id and d.device.model), None)
        device = model or alert.device_id or "device"
        owner = f", owned by {alert.owner_agent_id}" if alert.owner_agent_id else ""
        evidence.insert(
            0, f"{device} reported {alert.fault_code} ({alert.severity or 'alert'}), proactive case {alert.id}{owner}"
        )
        subject = f"the {alert.fault_code} fault on their {device}"
    if subject is None:
        if journey_items and journey_items[0].summary:
            return f"Last seen: {journey_items[0].summary}"
        return "No recent activity to go on."
    line = f"Probably about {subject}"
    return line + (": " + "; ".join(evidence[:4]) + "." if evidence else ".")


def leading_alert(open_cases: Sequence[Case], now: int) -> Case | None:
    """The open proactive case whose device alerted most recently, within DEVICE_ALERT_WINDOW."""
    alerting = [
        c
        for c in open_cases
        if c.proactive and c.fault_code and c.last_alert_at is not None and now - c.last_alert_at <= DEVICE_ALERT_WINDOW
    ]
    return max(alerting, key=lambda c: (c.last_alert_at or 0, c.id)) if alerting else None


# --- all together --------------------------------------------------------------------------


@dataclass
class HandoffContext:
    snapshot: CustomerSnapshot
    verification: Verification
    facts: list[LedgerFact]
    self_service: SelfServiceSummary
    open_cases: list[Case]
    devices: list[DeviceStatus]
    recent_agents: list[RecentAgent]
    sentiment: SentimentSummary
    effort: Effort
    probable_reason: str
    journey_started_at: int | None
    recent: list[Interaction]


def handoff_context(snapshot: CustomerSnapshot, now: int, effort_window: int = DEFAULT_WINDOW) -> HandoffContext:
    recent = list(snapshot.recent)
    journey_items, started = journey(recent)
    ledger = fact_ledger(recent)
    service = self_service(journey_items)
    open_cases = sorted(
        (c for c in snapshot.cases if c.is_open),
        key=lambda c: (-(c.updated_at or c.opened_at or 0), c.id),
    )
    devices = device_statuses(snapshot.devices, recent)
    alert = leading_alert(open_cases, now)
    if alert is not None:  # the alert leads: its case comes first
        open_cases.sort(key=lambda c: c.id != alert.id)
    mood = sentiment(recent)
    return HandoffContext(
        snapshot=snapshot,
        verification=verification(snapshot.identities),
        facts=ledger,
        self_service=service,
        open_cases=open_cases,
        devices=devices,
        recent_agents=recent_agents(snapshot),
        sentiment=mood,
        effort=effort(recent, now, effort_window),
        probable_reason=probable_reason(journey_items, service, open_cases, devices, alert),
        journey_started_at=started,
        recent=recent[:MAX_RECENT_INTERACTIONS],
    )
