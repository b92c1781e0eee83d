"""Protobuf in and out: request validation (errors name the field) and response encoding."""

from __future__ import annotations

import base64
import binascii
import contextlib
import math
from collections.abc import Sequence

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from rapport.errors import InvalidArgument
from rapport.identity import InvalidIdentifier, normalise
from rapport.v1 import events_pb2, router_pb2
from rapport_router.domain.contact import ContactRecord, OfferInfo
from rapport_router.domain.model import (
    CHANNELS,
    ID_PATTERN,
    LANGUAGE_PATTERN,
    MAX_PRIORITY,
    MAX_SKILL_LEVEL,
    MIN_SKILL_LEVEL,
    NAME_PATTERN,
    AgentRecord,
    AgentStatus,
    AssignmentMode,
    ContactState,
    SkillNeed,
)
from rapport_router.domain.outcomes import MAX_NOTES_BYTES, channel_name, channel_value, outcome_name, outcome_value
from rapport_router.domain.scoring import Evidence, Explanation, Factor
from rapport_router.routing import Completion, ContactView, QueueInfo, RouteRequest, policy_of

MAX_CAPACITY = 50
MAX_TEXT = 256
MAX_ATTRIBUTES = 32
MAX_PAGE = 1000
DEFAULT_PAGE = 100
MAX_PREFERRED_WAIT = 3600.0
TEAM_MAX = 64

_STATUS_IN = {
    router_pb2.AGENT_STATUS_AVAILABLE: AgentStatus.AVAILABLE,
    router_pb2.AGENT_STATUS_AWAY: AgentStatus.AWAY,
    router_pb2.AGENT_STATUS_OFFLINE: AgentStatus.OFFLINE,
}
_STATUS_OUT = {v: k for k, v in _STATUS_IN.items()}
_STATE_OUT = {
    ContactState.WAITING: router_pb2.CONTACT_STATE_WAITING,
    ContactState.OFFERED: router_pb2.CONTACT_STATE_OFFERED,
    ContactState.ASSIGNED: router_pb2.CONTACT_STATE_ASSIGNED,
    ContactState.COMPLETED: router_pb2.CONTACT_STATE_COMPLETED,
    ContactState.CANCELLED: router_pb2.CONTACT_STATE_CANCELLED,
}
_MODE_OUT = {
    AssignmentMode.DIRECT: router_pb2.ASSIGNMENT_MODE_DIRECT,
    AssignmentMode.BATCH: router_pb2.ASSIGNMENT_MODE_BATCH,
}
_EVIDENCE_OUT = {
    "past_interaction": router_pb2.EVIDENCE_KIND_PAST_INTERACTION,
    "affinity": router_pb2.EVIDENCE_KIND_AFFINITY,
    "similar_customer": router_pb2.EVIDENCE_KIND_SIMILAR_CUSTOMER,
    "similar_customers_record": router_pb2.EVIDENCE_KIND_SIMILAR_CUSTOMERS_RECORD,
    "open_case": router_pb2.EVIDENCE_KIND_OPEN_CASE,
    "last_resolver": router_pb2.EVIDENCE_KIND_LAST_RESOLVER,
    "customer_effort": router_pb2.EVIDENCE_KIND_CUSTOMER_EFFORT,
}


# ---------------------------------------------------------------- validation


def identifier_of(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if not ID_PATTERN.match(value) or "~" in value:
        raise InvalidArgument(field, "must be 1-64 letters, digits, '_', '-', '.' or ':'")
    return value


def optional_id(value: str, field: str) -> str | None:
    return identifier_of(value, field) if value else None


def name_of(value: str, field: str) -> str:
    name = value.strip().lower()
    if not NAME_PATTERN.match(name):
        raise InvalidArgument(field, "must be 1-64 lower-case letters, digits, '_', '-', '.', ':' or '/'")
    return name


def optional_name(value: str, field: str) -> str | None:
    return name_of(value, field) if value.strip() else None


def team_of(value: str, field: str) -> str | None:
    team = value.strip()
    if not team:
        return None
    if len(team) > TEAM_MAX or not all(ch.isalnum() or ch in "_-.:/ " for ch in team):
        raise InvalidArgument(field, f"must be at most {TEAM_MAX} letters, digits, spaces or '_-.:/'")
    return team


def language_of(value: str, field: str) -> str | None:
    tag = value.strip().lower().replace("_", "-")
    if not tag:
        return None
    if not LANGUAGE_PATTERN.match(tag):
        raise InvalidArgument(field, f"{value!r} is not a BCP 47 language tag such as 'fr' or 'en-gb'")
    return tag


def channel_of(value: int, field: str, *, required: bool = True) -> str | None:
    if value == events_pb2.CHANNEL_UNSPECIFIED:
        if required:
            raise InvalidArgument(field, "is required")
        return None
    if value not in events_pb2.Channel.values():
        raise InvalidArgument(field, f"unknown channel {value}")
    name = channel_name(value)
    if name not in CHANNELS:
        raise InvalidArgument(field, f"unknown channel {value}")
    return name


def status_of(value: int, field: str, *, required: bool) -> AgentStatus | None:
    if value == router_pb2.AGENT_STATUS_UNSPECIFIED:
        if required:
            raise InvalidArgument(field, "is required")
        return None
    status = _STATUS_IN.get(value)  # type: ignore[call-overload]
    if status is None:
        raise InvalidArgument(field, f"unknown status {value}")
    return status


def _text(value: str, field: str, limit: int = MAX_TEXT) -> str | None:
    value = value.strip()
    if len(value) > limit:
        raise InvalidArgument(field, f"longer than {limit} characters")
    return value or None


def _level(value: int, field: str) -> int:
    if not MIN_SKILL_LEVEL <= value <= MAX_SKILL_LEVEL:
        raise InvalidArgument(field, f"must be {MIN_SKILL_LEVEL} to {MAX_SKILL_LEVEL}, got {value}")
    return value


def agent_in(msg: router_pb2.Agent, field: str = "agent") -> AgentRecord:
    agent_id = identifier_of(msg.id, f"{field}.id")
    skills: dict[str, int] = {}
    for i, s in enumerate(msg.skills):
        name = name_of(s.name, f"{field}.skills[{i}].name")
        if name in skills:
            raise InvalidArgument(f"{field}.skills[{i}].name", f"{name!r} is listed twice")
        skills[name] = _level(s.level, f"{field}.skills[{i}].level")
    languages = []
    for i, lang in enumerate(msg.languages):
        tag = language_of(lang, f"{field}.languages[{i}]")
        if tag is None:
            raise InvalidArgument(f"{field}.languages[{i}]", "is empty")
        if tag not in languages:
            languages.append(tag)
    teams = []
    for i, t in enumerate(msg.teams):
        team = team_of(t, f"{field}.teams[{i}]")
        if team is None:
            raise InvalidArgument(f"{field}.teams[{i}]", "is empty")
        if team not in teams:
            teams.append(team)
    capacity: dict[str, int] = {}
    for i, c in enumerate(msg.capacity):
        ch = channel_of(c.channel, f"{field}.capacity[{i}].channel")
        assert ch is not None
        if ch in capacity:
            raise InvalidArgument(f"{field}.capacity[{i}].channel", f"{ch} is listed twice")
        if not 0 <= c.capacity <= MAX_CAPACITY:
            raise InvalidArgument(f"{field}.capacity[{i}].capacity", f"must be 0 to {MAX_CAPACITY}, got {c.capacity}")
        capacity[ch] = c.capacity
    return AgentRecord(
        id=agent_id,
        status=AgentStatus.OFFLINE,
        display_name=_text(msg.display_name, f"{field}.display_name") or "",
        languages=tuple(languages),
        teams=tuple(teams),
        skills=skills,
        capacity=capacity,
    )


def route_in(req: router_pb2.RouteContactRequest) -> RouteRequest:
    contact_id = optional_id(req.contact_id, "contact_id")
    which = req.WhichOneof("customer")
    customer_id = None
    identifier = None
    if which == "customer_id":
        customer_id = identifier_of(req.customer_id, "customer_id")
    elif which == "identifier":
        try:
            identifier = normalise(req.identifier)
        except InvalidIdentifier as exc:
            raise InvalidArgument(f"identifier.{exc.field}", exc.reason) from exc
    else:
        raise InvalidArgument("customer", "customer_id or identifier is required")
    channel = channel_of(req.channel, "channel")
    assert channel is not None
    skills = []
    seen = set()
    for i, s in enumerate(req.required_skills):
        name = name_of(s.name, f"required_skills[{i}].name")
        if name in seen:
            raise InvalidArgument(f"required_skills[{i}].name", f"{name!r} is listed twice")
        seen.add(name)
        skills.append(SkillNeed(name, _level(s.min_level, f"required_skills[{i}].min_level")))
    if not 0 <= req.priority <= MAX_PRIORITY:
        raise InvalidArgument("priority", f"must be 0 to {MAX_PRIORITY}, got {req.priority}")
    wait = 0.0
    if req.HasField("preferred_agent_wait"):
        wait = req.preferred_agent_wait.ToTimedelta().total_seconds()
        if not 0 <= wait <= MAX_PREFERRED_WAIT:
            raise InvalidArgument("preferred_agent_wait", f"must be 0 to {MAX_PREFERRED_WAIT:.0f} seconds")
    sentiment = None
    if req.HasField("sentiment"):
        sentiment = float(req.sentiment)
        if not math.isfinite(sentiment) or not -1.0 <= sentiment <= 1.0:
            raise InvalidArgument("sentiment", "must be between -1 and 1")
    if len(req.attributes) > MAX_ATTRIBUTES:
        raise InvalidArgument("attributes", f"more than {MAX_ATTRIBUTES}")
    for key, value in req.attributes.items():
        if not key.strip() or len(key) > MAX_TEXT or len(value) > MAX_TEXT:
            raise InvalidArgument(
                f"attributes[{key[:64]!r}]", f"keys must be non-empty; keys and values at most {MAX_TEXT}"
            )
    return RouteRequest(
        contact_id=contact_id,
        customer_id=customer_id,
        identifier=identifier,
        channel=channel,
        topic=optional_name(req.topic, "topic"),
        intent=_text(req.intent, "intent"),
        language=language_of(req.language, "language"),
        required_skills=tuple(skills),
        priority=req.priority,
        preferred_agent_id=optional_id(req.preferred_agent_id, "preferred_agent_id"),
        preferred_wait=wait,
        team=team_of(req.team, "team"),
        sentiment=sentiment,
        case_id=_text(req.case_id, "case_id"),
        attributes=tuple(sorted(req.attributes.items())),
    )


def completion_in(req: router_pb2.CompleteContactRequest) -> Completion:
    if req.outcome and req.outcome not in events_pb2.Outcome.values():
        raise InvalidArgument("outcome", f"unknown outcome {req.outcome}")
    if req.outcome == events_pb2.OUTCOME_UNSPECIFIED:
        outcome = events_pb2.OUTCOME_RESOLVED if req.resolved else events_pb2.OUTCOME_UNRESOLVED
    else:
        outcome = req.outcome
        if req.resolved and outcome != events_pb2.OUTCOME_RESOLVED:
            raise InvalidArgument("resolved", "is true but outcome is not OUTCOME_RESOLVED")
    csat = None
    if req.HasField("csat"):
        if not 1 <= req.csat <= 5:
            raise InvalidArgument("csat", f"must be 1 to 5, got {req.csat}")
        csat = req.csat
    if len(req.notes.encode()) > MAX_NOTES_BYTES:
        raise InvalidArgument("notes", f"longer than {MAX_NOTES_BYTES} bytes")
    if req.handle_seconds < 0:
        raise InvalidArgument("handle_seconds", "must not be negative")
    sentiment = None
    if req.HasField("sentiment"):
        sentiment = float(req.sentiment)
        if not math.isfinite(sentiment) or not -1.0 <= sentiment <= 1.0:
            raise InvalidArgument("sentiment", "must be between -1 and 1")
    name = outcome_name(outcome)
    assert name is not None
    return Completion(
        outcome=name,
        csat=csat,
        notes=req.notes.strip() or None,
        handle_seconds=req.handle_seconds or None,
        sentiment=sentiment,
    )


def page_size(value: int, field: str) -> int:
    if value < 0 or value > MAX_PAGE:
        raise InvalidArgument(field, f"must be 0 to {MAX_PAGE}")
    return value or DEFAULT_PAGE


def page_token_in(token: str) -> str:
    if not token:
        return ""
    try:
        after = base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidArgument("page_token", "is not a token from a previous response") from None
    if not after.startswith("a:"):
        raise InvalidArgument("page_token", "is not a token from a previous response")
    return after[2:]


def page_token_out(last_id: str) -> str:
    return base64.urlsafe_b64encode(f"a:{last_id}".encode()).decode()


# ---------------------------------------------------------------- encoding


def timestamp(at: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(at * 1e9))
    return ts


def duration(seconds: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(int(max(0.0, seconds) * 1e9))
    return d


def agent_out(a: AgentRecord) -> router_pb2.Agent:
    msg = router_pb2.Agent(
        id=a.id,
        display_name=a.display_name,
        skills=[router_pb2.AgentSkill(name=n, level=lvl) for n, lvl in sorted(a.skills.items())],
        languages=list(a.languages),
        teams=list(a.teams),
        capacity=[
            router_pb2.ChannelCapacity(channel=channel_value(ch), capacity=cap, active=a.active.get(ch, 0))  # type: ignore[arg-type]
            for ch, cap in sorted(a.capacity.items(), key=lambda kv: CHANNELS.index(kv[0]))
        ],
        status=_STATUS_OUT[a.status],
    )
    if a.idle_since is not None:
        msg.idle_since.CopyFrom(timestamp(a.idle_since))
    if a.updated_at is not None:
        msg.updated_at.CopyFrom(timestamp(a.updated_at))
    return msg


def _factor(f: Factor) -> router_pb2.ScoreFactor:
    return router_pb2.ScoreFactor(
        name=f.name, value=f.value, weight=f.weight, contribution=f.contribution, detail=f.detail
    )


_ORIGIN_OUT = {
    "proactive_outreach": router_pb2.CONTACT_ORIGIN_PROACTIVE_OUTREACH,
    "self_service_escalation": router_pb2.CONTACT_ORIGIN_SELF_SERVICE_ESCALATION,
}


def _evidence(e: Evidence) -> router_pb2.Evidence:
    msg = router_pb2.Evidence(
        kind=_EVIDENCE_OUT.get(e.kind.value, router_pb2.EVIDENCE_KIND_UNSPECIFIED),
        factor=e.factor,
        description=e.description,
        event_id=e.event_id or "",
        case_id=e.case_id or "",
        customer_id=e.customer_id or "",
        topic=e.topic or "",
        intent=e.intent or "",
        contacts=e.contacts,
        resolved=e.resolved,
        effort_score=e.effort_score,
    )
    if e.at is not None:
        msg.at.CopyFrom(timestamp(e.at))
    if e.outcome:
        with contextlib.suppress(ValueError):  # an outcome name this contract does not know
            msg.outcome = outcome_value(e.outcome)  # type: ignore[assignment]
    if e.csat is not None:
        msg.csat = int(e.csat)
    return msg


def explanation_out(x: Explanation) -> router_pb2.Explanation:
    return router_pb2.Explanation(
        score=x.score,
        factors=[_factor(f) for f in x.factors],
        evidence=[_evidence(e) for e in x.evidence],
        eligible_agents=x.eligible_agents,
        runner_ups=[
            router_pb2.RunnerUp(agent_id=r.agent_id, score=r.score, factors=[_factor(f) for f in r.factors])
            for r in x.runner_ups
        ],
        summary=x.summary,
    )


def offer_out(o: OfferInfo, relaxation: str, *, explained: bool = True) -> router_pb2.Offer:
    msg = router_pb2.Offer(
        offer_id=o.offer_id,
        agent_id=o.agent_id,
        score=o.score,
        mode=_MODE_OUT[o.mode],
        attempt=o.attempt,
        relaxation=router_pb2.Relaxation(step=o.relaxation_step, description=relaxation),
    )
    msg.offered_at.CopyFrom(timestamp(o.offered_at))
    msg.expires_at.CopyFrom(timestamp(o.expires_at))
    explanation = o.explained() if explained else None
    if explanation is not None:
        msg.explanation.CopyFrom(explanation_out(explanation))
    return msg


def queue_out(q: QueueInfo) -> router_pb2.QueuePosition:
    msg = router_pb2.QueuePosition(
        position=q.position,
        waiting=q.waiting,
        effective_priority=round(q.effective_priority, 4),
        reason=q.reason,
        relaxation=router_pb2.Relaxation(step=q.relaxation_step, description=q.relaxation),
    )
    if q.estimated_wait is not None:
        msg.estimated_wait.CopyFrom(duration(q.estimated_wait))
    if q.next_step_at is not None:
        msg.relaxation.next_step_at.CopyFrom(timestamp(q.next_step_at))
    return msg


def contact_out(view: ContactView, *, explained: bool = True) -> router_pb2.Contact:
    """`explained=False` leaves the offer's explanation out (answers to accept, complete, cancel)."""
    r: ContactRecord = view.record
    s = r.spec
    msg = router_pb2.Contact(
        id=s.id,
        state=_STATE_OUT[r.state],
        customer_id=s.customer_id or "",
        channel=channel_value(s.channel),  # type: ignore[arg-type]
        topic=s.topic or "",
        intent=s.intent or "",
        language=s.language or "",
        required_skills=[router_pb2.SkillRequirement(name=k.name, min_level=k.min_level) for k in s.required_skills],
        priority=s.priority,
        team=s.team or "",
        preferred_agent_id=s.preferred_agent_id or "",
        agent_id=r.agent_id or "" if r.state is not ContactState.WAITING else "",
        declined_by=sorted(s.declined_by),
        case_id=s.case_id or "",
        origin=_ORIGIN_OUT.get(r.origin or "", router_pb2.CONTACT_ORIGIN_ROUTED),
        attributes=dict(r.attributes),
    )
    msg.created_at.CopyFrom(timestamp(s.created_at))
    end = r.ended_at if r.ended_at is not None else view.now
    msg.age.CopyFrom(duration(end - s.created_at))
    if r.offer is not None and r.state in (ContactState.OFFERED, ContactState.ASSIGNED, ContactState.COMPLETED):
        msg.offer.CopyFrom(offer_out(r.offer, view.relaxation_text or _relaxation_text(r), explained=explained))
    if view.queue is not None:
        msg.queue.CopyFrom(queue_out(view.queue))
    if r.outcome:
        msg.outcome = outcome_value(r.outcome)  # type: ignore[assignment]
    if r.csat is not None:
        msg.csat = int(r.csat)
    if r.accepted_at is not None:
        msg.accepted_at.CopyFrom(timestamp(r.accepted_at))
    if r.ended_at is not None:
        msg.ended_at.CopyFrom(timestamp(r.ended_at))
    return msg


def _relaxation_text(r: ContactRecord) -> str:
    if r.offer is None:
        return ""
    return policy_of(r.spec.relaxation).describe(r.offer.relaxation_step)


def contacts_out(views: Sequence[ContactView]) -> list[router_pb2.Contact]:
    return [contact_out(v) for v in views]
