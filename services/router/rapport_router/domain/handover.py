"""A customer who reaches out while Rapport has a contact of its own queued for them.

The profile worker queues contacts for a customer by itself (`origin` set): a proactive
outreach after a device alert, or an escalation after self-service failed. When the customer
routes a contact themselves (they call, or the chat widget hands over) before an agent took
Rapport's, theirs takes over: Rapport's contact ends as "superseded" and the new one inherits
its case, topic, intent and attributes (what the request gives wins). One conversation, one
agent, and the agent still sees the alert or what self-service tried.

A contact that names no case, inherits none, and comes while one of the customer's proactive
cases is still attaching contacts (`attach_until`, set by the profile worker from the last
alert) is about that case: the case's owner then scores on continuity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rapport_router.domain.model import CustomerContext, OpenCase, RaisedContact


@dataclass(frozen=True)
class Handover:
    topic: str | None
    intent: str | None
    case_id: str | None
    attributes: dict[str, str] = field(default_factory=dict)
    superseded: tuple[RaisedContact, ...] = ()


def attaching_case(customer: CustomerContext, now: float) -> OpenCase | None:
    """The customer's proactive case still attaching contacts, the one that attaches longest."""
    open_now = [c for c in customer.open_cases if c.proactive and c.attach_until is not None and c.attach_until >= now]
    return max(open_now, key=lambda c: (c.attach_until or 0.0, c.id)) if open_now else None


def handover(
    customer: CustomerContext,
    *,
    topic: str | None,
    intent: str | None,
    case_id: str | None,
    attributes: dict[str, str],
    now: float,
) -> Handover:
    raised = tuple(sorted(customer.raised, key=lambda r: (r.created_at, r.id)))
    inherited: dict[str, str] = {}
    for r in raised:  # oldest first, so the latest wins
        inherited.update(r.attributes)
    newest_first = raised[::-1]
    case_id = case_id or next((r.case_id for r in newest_first if r.case_id), None)
    if case_id is None:
        case = attaching_case(customer, now)
        case_id = case.id if case is not None else None
    return Handover(
        topic=topic or next((r.topic for r in newest_first if r.topic), None),
        intent=intent or next((r.intent for r in newest_first if r.intent), None),
        case_id=case_id,
        attributes={**inherited, **attributes},
        superseded=raised,
    )
