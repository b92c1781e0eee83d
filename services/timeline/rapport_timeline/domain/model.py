"""What the timeline reads from the customer graph, as plain values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

NANOS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Fact:
    key: str
    value: str
    sensitive: bool = False


@dataclass(frozen=True, slots=True)
class Interaction:
    """One stored `(:Interaction)`; enum-valued fields hold the graph's short names ("chat")."""

    event_id: str
    customer_id: str
    at: int
    channel: str | None = None
    kind: str | None = None
    direction: str | None = None
    topic: str | None = None
    intent: str | None = None
    intent_confidence: float | None = None
    sentiment: float | None = None
    outcome: str | None = None
    csat: int | None = None
    summary: str | None = None
    agent_id: str | None = None
    contact_id: str | None = None
    case_id: str | None = None
    device_id: str | None = None
    article_id: str | None = None
    article_title: str | None = None
    answer: str | None = None
    flow_id: str | None = None
    step: str | None = None
    exit_reason: str | None = None
    fault_code: str | None = None
    severity: str | None = None
    readings: dict[str, float] = field(default_factory=dict)
    handle_seconds: int | None = None
    source: str | None = None
    facts: tuple[Fact, ...] = ()
    attributes: dict[str, str] = field(default_factory=dict)
    identity_keys: tuple[str, ...] = ()
    ingested_at: int | None = None


@dataclass(frozen=True, slots=True)
class CustomerKey:
    """How a request names a customer: by Rapport id or by an identity key ("email:ana@x.org")."""

    by: Literal["id", "identity"]
    value: str

    def __str__(self) -> str:
        return self.value if self.by == "id" else f"identity {self.value}"


@dataclass(frozen=True, slots=True)
class Resolved:
    """A live customer a request resolved to, and how many interactions the graph held then."""

    customer_id: str
    interactions: int


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    display_name: str | None = None
    language: str | None = None
    tier: str | None = None
    segment: str | None = None
    first_contact_at: int | None = None
    last_contact_at: int | None = None


@dataclass(frozen=True, slots=True)
class Identity:
    key: str
    kind: str
    value: str
    verified: bool = False
    verification_method: str | None = None
    first_seen_at: int | None = None


@dataclass(frozen=True, slots=True)
class Case:
    id: str
    status: str | None = None
    title: str | None = None
    owner_agent_id: str | None = None
    proactive: bool = False
    opened_at: int | None = None
    updated_at: int | None = None
    # A proactive case's device and fault, highest severity, alert count and last alert time.
    device_id: str | None = None
    fault_code: str | None = None
    severity: str | None = None
    alerts: int = 0
    last_alert_at: int | None = None

    @property
    def is_open(self) -> bool:
        return self.status not in ("resolved", "closed")


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    model: str | None = None
    firmware: str | None = None


@dataclass(frozen=True, slots=True)
class AgentAffinity:
    """The `SERVED_BY` aggregate between the customer and one agent."""

    agent_id: str
    contacts: int = 0
    resolved: int = 0
    csat_sum: float = 0.0
    csat_count: int = 0
    last_at: int | None = None


@dataclass(frozen=True, slots=True)
class CustomerSnapshot:
    """Everything GetHandoffContext reads, from one read transaction."""

    customer: Customer
    identities: tuple[Identity, ...]
    recent: tuple[Interaction, ...]  # newest first
    cases: tuple[Case, ...]
    devices: tuple[Device, ...]
    agents: tuple[AgentAffinity, ...]


@dataclass(frozen=True, slots=True)
class CustomerUpdate:
    """One `CustomerUpdated` record from the customer-updates topic."""

    customer_id: str
    event_ids: tuple[str, ...] = ()
    merged_customer_ids: tuple[str, ...] = ()
    committed_at: int | None = None
    # The customer was erased, or lost interactions (retention, unmerge): cached history is stale.
    erased: bool = False
    history_removed: bool = False

    @property
    def customers(self) -> tuple[str, ...]:
        """Every customer whose watchers this update concerns."""
        return (self.customer_id, *self.merged_customer_ids)
