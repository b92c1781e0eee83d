"""A contact as stored: its spec, where it is in its life, its offer, and how it ended."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from rapport_router.domain.model import AssignmentMode, ContactSpec, ContactState, IdentityRef
from rapport_router.domain.scoring import Explanation

OFFER_SEPARATOR = "~"


def offer_id(contact_id: str, attempt: int) -> str:
    """Offer ids name their contact, so a stale offer is told apart from an unknown one."""
    return f"{contact_id}{OFFER_SEPARATOR}{attempt}"


def contact_of_offer(offer: str) -> str | None:
    contact_id, sep, attempt = offer.rpartition(OFFER_SEPARATOR)
    return contact_id if sep and contact_id and attempt.isdigit() else None


@dataclass(frozen=True)
class OfferInfo:
    offer_id: str
    agent_id: str
    score: float
    offered_at: float
    expires_at: float
    mode: AssignmentMode
    relaxation_step: int
    attempt: int
    explanation: Explanation | None = None
    # As stored (JSON), parsed only when someone shows it.
    explanation_json: str | None = None

    def explained(self) -> Explanation | None:
        if self.explanation is None and self.explanation_json:
            return Explanation.from_json(self.explanation_json)
        return self.explanation


@dataclass(frozen=True)
class ContactRecord:
    spec: ContactSpec
    state: ContactState
    identity: IdentityRef | None = None
    offer: OfferInfo | None = None
    # Current holder: the offered agent (offered) or the handling agent (assigned, completed).
    agent_id: str | None = None
    accepted_at: float | None = None
    ended_at: float | None = None
    outcome: str | None = None
    csat: int | None = None
    notes: str | None = None
    handle_seconds: int | None = None
    end_sentiment: float | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    event_id: str | None = None
    # Why the last offer ended without acceptance: expired, rejected, agent_unavailable, cancelled.
    last_offer_end: str | None = None
    end_reason: str | None = None
    # Offers made so far (the next one is attempt `attempts + 1`).
    attempts: int = 0
    # Set on contacts Rapport queued itself: "proactive_outreach", "self_service_escalation".
    origin: str | None = None
    # The accepting agent became the owner of the contact's (proactive) case.
    owns_case: bool = False

    @property
    def id(self) -> str:
        return self.spec.id
