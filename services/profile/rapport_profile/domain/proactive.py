"""Proactive device cases and self-service escape hatches: the rules, without I/O.

Device alerts
-------------
A DEVICE_ALERT belongs to the customer owning the device (the event's `device.id`, else its
device identifier). It opens a proactive case for (device, fault code), or updates the case
open for that pair: one case per fault episode however many alerts arrive. The new case's id
derives from the device, the fault and the alert that opened it, so a replayed batch opens
nothing new and a resent alert (a new event id) finds the open case. An alert that names its
own case (a CaseRef from the device platform) uses that case instead.

The case keeps the highest severity reported (never downgraded), the latest readings, the
number of alerts and the last alert's time. Severity decides what happens, once per case:
- below `outreach_severity` (so "info" by default): a notification the customer's app can
  show, stored as an outbound NOTIFICATION interaction of the customer, in the case;
- at or above it ("warning", "critical"): an outreach contact, waiting in the router's queue
  (the queue is the graph, so it is written in the same transaction as the case: exactly once,
  and nothing is lost in a crash). The router offers it to agents skilled in the device model
  or the fault: it requires the skill `device:<model>|fault:<code>` (either one, level 1 or
  more), relaxed to any agent by the `outreach_relaxation` steps.
An info case that later reports a warning still gets its outreach.

Skill names: `device:` or `fault:` and the model or fault code in lower case, each run of
characters other than a-z, 0-9, `_`, `.`, `-` replaced by `-`: model "HB 5" -> `device:hb-5`.

A later contact from the customer (a call, message, bot conversation, form or router contact)
that names no case, made at or after the case opened and within `attach_window` of its last
alert, joins the case (IN_CASE). The case stores that limit as `attach_until`; the router
reads it to give a RouteContact without a case the same case.

Self-service escape hatches
---------------------------
A failed self-service attempt owes the customer an escalation:
- an ARTICLE_FEEDBACK answering "No";
- any event whose exit reason is in `escalating_exits`: the bot gave up or found no match,
  the customer asked for a person, or the flow was abandoned. Abandonment is the explicit
  exit reason "abandoned" (or "timeout"): the bot or web platform owns the session clock, so
  it says when a flow stopped progressing.
One escalation per failed attempt: the contact id derives from the event id. A customer who
already has a live contact (waiting, offered or assigned) is being helped and gets none;
several failures in one batch give one, for the latest. The contact carries the failed
intent (the event's, else the journey's last bot intent), the topic, and what was tried
(articles and answers, bot intents, the exit) as `escalation.*` attributes.

Contacts are only created for events at most `contact_max_age` old by the worker's clock:
replaying old events rebuilds cases and notifications but never calls a customer about last
year's fault.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from rapport.v1 import events_pb2
from rapport_profile.domain.interactions import InteractionRecord, short_name

SEVERITY_RANK = {"info": 1, "warning": 2, "critical": 3}
# What a customer does to reach the brand (not browsing, not the brand's own messages).
CONTACT_KINDS = frozenset(
    {
        "call",
        "message",
        "bot_turn",
        "bot_exit",
        "form_submitted",
        "contact_assigned",
        "contact_completed",
        "contact_abandoned",
    }
)
SELF_SERVICE_KINDS = ("article_view", "article_feedback", "bot_turn", "bot_exit", "page_view")
DEFAULT_EXITS = ("gave_up", "no_match", "asked_for_agent", "abandoned", "timeout", "error")
ORIGIN_OUTREACH = "proactive_outreach"
ORIGIN_ESCALATION = "self_service_escalation"
ARTICLE_NO = "article_no"
# The router's relaxation grammar (rapport_router.domain.relaxation), checked here so a bad
# setting stops the worker at start rather than every router's queue later.
_ACTION = r"(skill_levels-\d|any_language|any_skill|any_team)"
_STEP = rf"\s*\d+(\.\d+)?s?\s*=\s*{_ACTION}(\s*,\s*{_ACTION})*\s*"
_POLICY = re.compile(rf"^({_STEP}(;{_STEP})*;?)?$")
_NOT_IN_SKILL = re.compile(r"[^a-z0-9_.\-]+")
MAX_TRIED_STEPS = 12
CHANNELS = frozenset(
    name for v in events_pb2.Channel.DESCRIPTOR.values if (name := short_name(events_pb2.Channel.DESCRIPTOR, v.number))
)


class InvalidSetting(ValueError):
    pass


@dataclass(frozen=True)
class ProactiveSettings:
    """What the worker does about device alerts and failed self-service (see the module doc)."""

    outreach_severity: str = "warning"
    attach_window: timedelta = timedelta(hours=72)
    contact_max_age: timedelta = timedelta(hours=24)
    outreach_channel: str = "voice"
    outreach_team: str | None = None
    outreach_priority: Mapping[str, int] = field(default_factory=lambda: {"warning": 3, "critical": 6})
    outreach_relaxation: str = "60=any_skill;180=any_language"
    notification_channel: str = "app"
    escalation_channel: str = "chat"
    escalation_team: str | None = None
    escalation_priority: int = 2
    escalation_relaxation: str = "90=any_language"
    escalating_exits: frozenset[str] = frozenset(DEFAULT_EXITS)

    def checked(self) -> ProactiveSettings:
        if self.outreach_severity not in SEVERITY_RANK:
            raise InvalidSetting(
                f"outreach severity must be one of {sorted(SEVERITY_RANK)}, got {self.outreach_severity!r}"
            )
        for name in ("outreach_relaxation", "escalation_relaxation"):
            if not _POLICY.match(getattr(self, name)):
                raise InvalidSetting(f"{name} {getattr(self, name)!r} is not a relaxation policy like '60=any_skill'")
        for severity, priority in self.outreach_priority.items():
            if severity not in SEVERITY_RANK or not 0 <= priority <= 10:
                raise InvalidSetting(f"outreach priority {severity}={priority}: a severity and 0..10")
        for name in ("outreach_channel", "escalation_channel", "notification_channel"):
            if getattr(self, name) not in CHANNELS:
                raise InvalidSetting(f"{name} must be one of {sorted(CHANNELS)}, got {getattr(self, name)!r}")
        if not 0 <= self.escalation_priority <= 10:
            raise InvalidSetting(f"escalation priority must be 0..10, got {self.escalation_priority}")
        return self

    @property
    def outreach_rank(self) -> int:
        return SEVERITY_RANK[self.outreach_severity]


def _digest(*parts: str, size: int = 20) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:size]


def case_id_for(device_id: str, fault_code: str, opening_event_id: str) -> str:
    return f"pc_{_digest(device_id, fault_code, opening_event_id)}"


def outreach_contact_id(case_id: str) -> str:
    return f"po_{_digest(case_id)}"


def notification_event_id(case_id: str) -> str:
    return f"{case_id}.notification"


def escalation_contact_id(event_id: str) -> str:
    return f"esc_{_digest(event_id)}"


def skill_name(prefix: str, value: str) -> str:
    return f"{prefix}:{_NOT_IN_SKILL.sub('-', value.strip().lower()).strip('-') or 'unknown'}"


def outreach_skill(model: str | None, fault_code: str) -> str:
    """Either skill qualifies an agent (the router reads `|` as "any of")."""
    names = ([skill_name("device", model)] if model else []) + [skill_name("fault", fault_code)]
    return "|".join(names)


def rank(severity: str | None) -> int:
    return SEVERITY_RANK.get(severity or "", 0)


def is_fresh(at: datetime, now: datetime, settings: ProactiveSettings) -> bool:
    return now - at <= settings.contact_max_age


# --- device alerts ---------------------------------------------------------------------------


@dataclass
class AlertGroup:
    """The alerts of one batch for one (customer, device, fault), in event-time order."""

    customer_id: str
    device_id: str
    fault_code: str
    model: str | None
    severity: str | None
    first_at: datetime
    last_at: datetime
    opening_event_id: str
    event_ids: list[str] = field(default_factory=list)
    readings: str | None = None
    given_case_id: str | None = None
    topic: str | None = None

    @property
    def new_case_id(self) -> str:
        return self.given_case_id or case_id_for(self.device_id, self.fault_code, self.opening_event_id)

    @property
    def title(self) -> str:
        return f"{self.model or 'Device'} {self.device_id} reported {self.fault_code}"


def alert_device(record: InteractionRecord) -> str | None:
    if record.device is not None:
        return record.device.id
    return next((s.identifier.value for s in record.identities if s.identifier.kind == "device"), None)


def alert_groups(records: Iterable[InteractionRecord], owners: Mapping[str, str]) -> list[AlertGroup]:
    groups: dict[tuple[str, str, str], AlertGroup] = {}
    for rec in sorted(records, key=lambda r: (r.at, r.event_id)):
        if rec.properties.get("kind") != "device_alert":
            continue
        device_id = alert_device(rec)
        if device_id is None:
            continue
        fault = str(rec.properties.get("fault_code") or "unspecified")
        key = (owners[rec.event_id], device_id, fault)
        group = groups.get(key)
        if group is None:
            group = groups[key] = AlertGroup(key[0], device_id, fault, None, None, rec.at, rec.at, rec.event_id)
        group.event_ids.append(rec.event_id)
        group.last_at = rec.at
        if rec.device is not None and rec.device.model:
            group.model = rec.device.model
        severity = rec.properties.get("severity")
        if rank(severity) > rank(group.severity):
            group.severity = severity
        if rec.properties.get("readings"):
            group.readings = rec.properties["readings"]
        if rec.case is not None:
            group.given_case_id = rec.case.id
        group.topic = rec.topic or group.topic
    return [groups[k] for k in sorted(groups)]


@dataclass(frozen=True)
class CaseState:
    """A proactive case after this batch's alerts were applied to it."""

    case_id: str
    customer_id: str
    severity: str | None
    notified: bool
    outreach_contact_id: str | None


def follow_up(
    state: CaseState, group: AlertGroup, now: datetime, settings: ProactiveSettings, *, busy: bool = False
) -> str | None:
    """What the case owes the customer now, each once per case: "outreach", "notify" or None.

    `busy`: the customer has a live contact, so nobody reaches out (their contacts join the case).
    """
    if rank(state.severity) >= settings.outreach_rank:
        if state.outreach_contact_id is None and not busy and is_fresh(group.last_at, now, settings):
            return "outreach"
        return None
    if not state.notified and rank(state.severity) >= 1:
        return "notify"
    return None


def notification(group: AlertGroup, state: CaseState, settings: ProactiveSettings) -> dict[str, Any]:
    """The Interaction properties of the notification a case of low severity sends."""
    device = group.model or "device"
    return {
        "event_id": notification_event_id(state.case_id),
        "channel": settings.notification_channel,
        "kind": "notification",
        "direction": "outbound",
        "topic": group.topic,
        "summary": f"Your {device} reported {group.fault_code}: see the app for what to do.",
        "case_id": state.case_id,
        "device_id": group.device_id,
        "fault_code": group.fault_code,
        "severity": state.severity,
        "source": "rapport-profile",
    }


def contact_props(
    *,
    contact_id: str,
    origin: str,
    customer_id: str,
    channel: str,
    team: str | None,
    topic: str | None,
    intent: str | None,
    skills: Sequence[tuple[str, int]],
    priority: int,
    relaxation: str,
    created_at: datetime,
    case_id: str | None,
    attributes: Mapping[str, str],
) -> dict[str, Any]:
    """A waiting Contact as the router stores one (see rapport.graph.schema); the customer's
    language and identity are filled in from the graph."""
    props: dict[str, Any] = {
        "id": contact_id,
        "origin": origin,
        "customer_id": customer_id,
        "channel": channel,
        "team": team,
        "topic": topic,
        "intent": intent,
        "skill_names": [s for s, _ in skills],
        "skill_levels": [level for _, level in skills],
        "priority": priority,
        "relaxation": relaxation,
        "created_ms": int(created_at.timestamp() * 1000),
        "case_id": case_id,
        "attributes": json.dumps(dict(sorted(attributes.items()))) if attributes else None,
        "offer_attempt": 0,
    }
    return {k: v for k, v in props.items() if v is not None and v != []}


def outreach_contact(group: AlertGroup, state: CaseState, now: datetime, settings: ProactiveSettings) -> dict[str, Any]:
    attributes = {
        "proactive.case_id": state.case_id,
        "proactive.device_id": group.device_id,
        "proactive.fault_code": group.fault_code,
        "proactive.severity": state.severity or "",
        "proactive.alert_event_id": group.event_ids[-1],
    }
    if group.model:
        attributes["proactive.device_model"] = group.model
    if group.readings:
        attributes["proactive.readings"] = group.readings
    return contact_props(
        contact_id=outreach_contact_id(state.case_id),
        origin=ORIGIN_OUTREACH,
        customer_id=state.customer_id,
        channel=settings.outreach_channel,
        team=settings.outreach_team,
        topic=group.topic,
        intent=None,
        skills=[(outreach_skill(group.model, group.fault_code), 1)],
        priority=settings.outreach_priority.get(state.severity or "", 0),
        relaxation=settings.outreach_relaxation,
        created_at=now,
        case_id=state.case_id,
        attributes=attributes,
    )


# --- later contacts --------------------------------------------------------------------------


def may_join_case(record: InteractionRecord) -> bool:
    """A customer contact that names no case: it may join an open proactive case."""
    p = record.properties
    return record.case is None and p.get("kind") in CONTACT_KINDS and p.get("direction") != "outbound"


# --- self-service escape hatches ---------------------------------------------------------------


def escalation_reason(record: InteractionRecord, settings: ProactiveSettings) -> str | None:
    p = record.properties
    if p.get("direction") == "outbound":
        return None
    if p.get("kind") == "article_feedback" and p.get("answer") == "no":
        return ARTICLE_NO
    exit_reason = p.get("exit_reason")
    if exit_reason and str(exit_reason).lower() in settings.escalating_exits:
        return str(exit_reason).lower()
    return None


def escalations(
    records: Iterable[InteractionRecord], owners: Mapping[str, str], now: datetime, settings: ProactiveSettings
) -> list[tuple[InteractionRecord, str]]:
    """The failed attempts owed an escalation: the latest fresh one per customer."""
    latest: dict[str, tuple[InteractionRecord, str]] = {}
    for rec in sorted(records, key=lambda r: (r.at, r.event_id)):
        reason = escalation_reason(rec, settings)
        if reason is not None and is_fresh(rec.at, now, settings):
            latest[owners[rec.event_id]] = (rec, reason)
    return [latest[c] for c in sorted(latest)]


@dataclass(frozen=True)
class SelfServiceStep:
    """One self-service interaction of the journey that led to the escalation."""

    kind: str
    topic: str | None = None
    intent: str | None = None
    article_id: str | None = None
    article_title: str | None = None
    answer: str | None = None
    flow_id: str | None = None
    step: str | None = None
    exit_reason: str | None = None


def tried(path: Sequence[SelfServiceStep]) -> str:
    """What self-service tried, oldest first, in words, e.g.
    'article "Reset your hub" (answered no); bot: reset_hub, check_lights; left at lights (no_match)'."""
    parts: list[str] = []
    articles: dict[str, str | None] = {}
    titles: dict[str, str] = {}
    intents: list[str] = []
    exit_step: SelfServiceStep | None = None
    for s in path[-MAX_TRIED_STEPS:]:
        if s.article_id:
            titles[s.article_id] = s.article_title or titles.get(s.article_id) or s.article_id
            articles[s.article_id] = s.answer or articles.get(s.article_id)
        if s.kind in ("bot_turn", "bot_exit") and s.intent and s.intent not in intents:
            intents.append(s.intent)
        if s.exit_reason:
            exit_step = s
    for article_id, answer in articles.items():
        parts.append(f'article "{titles[article_id]}"' + (f" (answered {answer})" if answer else ""))
    if intents:
        parts.append("bot: " + ", ".join(intents))
    if exit_step is not None:
        where = exit_step.step or exit_step.flow_id or "the start"
        parts.append(f"left at {where} ({exit_step.exit_reason})")
    return "; ".join(parts) or "nothing recorded"


def escalation_contact(
    record: InteractionRecord,
    *,
    reason: str,
    customer_id: str,
    path: Sequence[SelfServiceStep],
    now: datetime,
    settings: ProactiveSettings,
) -> dict[str, Any]:
    """`path` is the customer's recent self-service, oldest first, ending with `record`."""
    p = record.properties
    last_intent = next((s.intent for s in reversed(path) if s.intent and s.kind in ("bot_turn", "bot_exit")), None)
    intent = p.get("intent") or last_intent
    topic = record.topic or next((s.topic for s in reversed(path) if s.topic), None)
    attributes = {"escalation.reason": reason, "escalation.event_id": record.event_id, "escalation.tried": tried(path)}
    article_id = p.get("article_id") or next((s.article_id for s in reversed(path) if s.article_id), None)
    article_title = p.get("article_title") or next(
        (s.article_title for s in reversed(path) if s.article_id == article_id and s.article_title), None
    )
    extra = {
        "escalation.article_id": article_id,
        "escalation.article_title": article_title,
        "escalation.flow_id": p.get("flow_id"),
        "escalation.step": p.get("step"),
        "escalation.exit_reason": p.get("exit_reason"),
    }
    attributes.update({k: str(v) for k, v in extra.items() if v})
    return contact_props(
        contact_id=escalation_contact_id(record.event_id),
        origin=ORIGIN_ESCALATION,
        customer_id=customer_id,
        channel=settings.escalation_channel,
        team=settings.escalation_team,
        topic=topic,
        intent=intent,
        skills=[],
        priority=settings.escalation_priority,
        relaxation=settings.escalation_relaxation,
        created_at=now,
        case_id=None,
        attributes=attributes,
    )
