"""What the router reasons about, as plain values: agents, customers' history, contacts.

No I/O here: the graph adapter builds these from Neo4j records, tests build them by hand.
Times are seconds since the epoch (floats); channels and states are short lower-case names,
as the graph stores them ("voice", "chat", "waiting").
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from rapport.effort import Touchpoint

CHANNELS = ("voice", "email", "chat", "sms", "social", "web", "app", "in_store", "bot", "device")
MIN_SKILL_LEVEL = 1
MAX_SKILL_LEVEL = 5
MAX_PRIORITY = 10
# Ids chosen by callers (agents, contacts): safe in logs, URLs and graph keys.
ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
NAME_PATTERN = re.compile(r"^[a-z0-9_.:/\-]{1,64}$")
LANGUAGE_PATTERN = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{1,8})*$")


class AgentStatus(enum.StrEnum):
    AVAILABLE = "available"
    AWAY = "away"
    OFFLINE = "offline"


class ContactState(enum.StrEnum):
    WAITING = "waiting"
    OFFERED = "offered"
    ASSIGNED = "assigned"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class AssignmentMode(enum.StrEnum):
    DIRECT = "direct"
    BATCH = "batch"


def primary_language(tag: str) -> str:
    """ "fr-CA" -> "fr": agents and customers match on the primary language subtag."""
    return tag.strip().lower().split("-", 1)[0]


@dataclass(frozen=True)
class AgentRecord:
    """An agent as the graph holds it: profile (set by UpsertAgent) and live state."""

    id: str
    status: AgentStatus
    display_name: str = ""
    languages: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()
    skills: Mapping[str, int] = field(default_factory=dict)
    capacity: Mapping[str, int] = field(default_factory=dict)
    active: Mapping[str, int] = field(default_factory=dict)
    idle_since: float | None = None
    updated_at: float | None = None

    @property
    def profile(self) -> tuple[object, ...]:
        """What changes only through UpsertAgent (not through routing)."""
        return (
            self.languages,
            self.teams,
            tuple(sorted(self.skills.items())),
            tuple(sorted(self.capacity.items())),
        )

    @property
    def total_active(self) -> int:
        return sum(self.active.values())


@dataclass(frozen=True)
class ServedBy:
    """The affinity aggregate `(:Customer)-[:SERVED_BY]->(:Agent)` kept by the profile worker."""

    agent_id: str
    contacts: int
    resolved: int
    csat_sum: float
    csat_count: int
    last_at: float | None


@dataclass(frozen=True)
class PastInteraction:
    event_id: str
    at: float
    agent_id: str | None = None
    topic: str | None = None
    outcome: str | None = None
    csat: int | None = None
    kind: str | None = None
    sentiment: float | None = None
    channel: str | None = None


@dataclass(frozen=True)
class OpenCase:
    id: str
    status: str | None
    owner_agent_id: str | None
    title: str | None = None
    # Opened from a device alert; the customer's contacts join it until `attach_until`.
    proactive: bool = False
    attach_until: float | None = None


@dataclass(frozen=True)
class RaisedContact:
    """A contact Rapport queued for the customer itself (outreach, escalation), not yet taken."""

    id: str
    origin: str
    state: str
    case_id: str | None = None
    topic: str | None = None
    intent: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    offer_id: str | None = None
    agent_id: str | None = None
    created_at: float = 0.0


@dataclass(frozen=True)
class IdentityRef:
    """An identifier of the customer, carried by the events the router publishes."""

    kind: str
    value: str
    verified: bool = False


@dataclass(frozen=True)
class CustomerContext:
    """What the graph says about the customer on the line."""

    customer_id: str | None
    language: str | None = None
    tier: str | None = None
    segment: str | None = None
    device_models: tuple[str, ...] = ()
    served_by: Mapping[str, ServedBy] = field(default_factory=dict)
    open_cases: tuple[OpenCase, ...] = ()
    # Newest first, within the effort window.
    recent: tuple[PastInteraction, ...] = ()
    # The effort window's interactions as the shared effort formula reads them (rapport.effort).
    touchpoints: tuple[Touchpoint, ...] = ()
    # Newest first: interactions with an agent that ended resolved, within the continuity window.
    resolved_by_agents: tuple[PastInteraction, ...] = ()
    # Newest first: this customer's interactions handled by an agent (evidence for affinity).
    handled: tuple[PastInteraction, ...] = ()
    identity: IdentityRef | None = None
    # Waiting or offered contacts Rapport queued for the customer (see domain.handover).
    raised: tuple[RaisedContact, ...] = ()

    @classmethod
    def unknown(cls, identity: IdentityRef | None = None) -> CustomerContext:
        """A customer the graph has never seen: no history, no traits."""
        return cls(customer_id=None, identity=identity)


@dataclass(frozen=True)
class SkillNeed:
    name: str
    min_level: int


@dataclass(frozen=True)
class ContactSpec:
    """A contact as routing sees it (from RouteContact, or read back from the queue)."""

    id: str
    channel: str
    created_at: float
    customer_id: str | None = None
    topic: str | None = None
    intent: str | None = None
    # The language the customer needs (the request's, else the customer's in the graph).
    language: str | None = None
    required_skills: tuple[SkillNeed, ...] = ()
    priority: int = 0
    team: str | None = None
    preferred_agent_id: str | None = None
    # Seconds during which only the preferred agent is eligible.
    preferred_wait: float = 0.0
    sentiment: float | None = None
    case_id: str | None = None
    declined_by: frozenset[str] = frozenset()
    # The relaxation policy the contact was created with, in its text form.
    relaxation: str = ""
    # Set when the caller gave no priority and the customer's effort score (0..100) gave it,
    # with what raised the score.
    effort: int | None = None
    effort_reasons: tuple[str, ...] = ()

    def age(self, now: float) -> float:
        return max(0.0, now - self.created_at)
