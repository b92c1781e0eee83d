"""Router rules for proactive outreach and escalations: any-of skills, intent records, handovers."""

from __future__ import annotations

import numpy as np
import pytest

from rapport.v1 import events_pb2
from rapport_router.domain.contact import ContactRecord
from rapport_router.domain.handover import attaching_case, handover
from rapport_router.domain.model import (
    AgentRecord,
    AgentStatus,
    ContactSpec,
    ContactState,
    CustomerContext,
    IdentityRef,
    OpenCase,
    RaisedContact,
    SkillNeed,
)
from rapport_router.domain.outcomes import ending_event
from rapport_router.domain.performance import OutcomeTally, Performance, Sample
from rapport_router.domain.relaxation import RelaxationPolicy
from rapport_router.domain.roster import Roster, eligible
from rapport_router.domain.scoring import EvidenceKind, Match, ScoringParams, Weights

pytestmark = pytest.mark.unit

NOW = 1_760_000_000.0
DAY = 86400.0


def agent(agent_id: str, skills: dict[str, int]) -> AgentRecord:
    return AgentRecord(
        id=agent_id,
        status=AgentStatus.AVAILABLE,
        languages=("en",),
        skills=skills,
        capacity={"voice": 1, "chat": 1},
        idle_since=NOW - 60,
        updated_at=NOW - 60,
    )


def test_a_requirement_listing_alternatives_accepts_an_agent_with_any_of_them():
    roster = Roster(
        [
            agent("hub-expert", {"device:hb-5": 2}),
            agent("fault-expert", {"fault:e42": 4}),
            agent("generalist", {"billing": 5}),
        ]
    )
    need = "device:hb-5|fault:e42"
    assert dict(zip(roster.ids, roster.skill(need).tolist(), strict=True)) == {
        "fault-expert": 4,
        "generalist": 0,
        "hub-expert": 2,
    }
    spec = ContactSpec(
        "po_1",
        "voice",
        NOW,
        language="en",
        required_skills=(SkillNeed(need, 1),),
        relaxation="60=any_skill",
    )
    policy = RelaxationPolicy.parse(spec.relaxation)
    mask, _ = eligible(roster, policy.requirements(spec, 0))
    assert [roster.ids[i] for i in np.flatnonzero(mask)] == ["fault-expert", "hub-expert"]
    mask, _ = eligible(roster, policy.requirements(spec, 61))
    assert mask.all(), "after the relaxation step any agent may reach out"
    # The skill factor scores the best of the alternatives.
    m = Match(
        spec,
        CustomerContext("cus_1"),
        roster,
        performance=Performance(),
        weights=Weights(),
        params=ScoringParams(),
        now=NOW,
    )
    ranked, _ = m.rank(np.arange(roster.size))
    assert roster.ids[int(ranked[0])] == "fault-expert"


def test_the_agent_who_resolved_the_intent_before_leads_on_similar_customers_with_evidence():
    roster = Roster([agent("resolver", {"password": 3}), agent("other", {"password": 3})])
    record = {"resolver": OutcomeTally(2, 2, 10, 2, (Sample("ev-1", "cus_9", NOW - DAY, "resolved", 5),))}
    spec = ContactSpec("esc_1", "chat", NOW, topic="password", intent="reset_password", language="en")

    def match(intent_record: dict[str, OutcomeTally] | None) -> Match:
        return Match(
            spec,
            CustomerContext("cus_1"),
            roster,
            performance=Performance(),
            weights=Weights(),
            params=ScoringParams(),
            now=NOW,
            intent_record=intent_record,
        )

    m = match(record)
    values = dict(zip(roster.ids, m.similar_all.tolist(), strict=True))
    assert values["resolver"] > 0.1 and values["other"] == 0
    ranked, _ = m.rank(np.arange(roster.size))
    assert roster.ids[int(ranked[0])] == "resolver"
    x = m.explain(roster.index["resolver"], [int(i) for i in ranked], [0.5, 0.4])
    found = next(e for e in x.evidence if e.kind is EvidenceKind.SIMILAR_CUSTOMERS_RECORD)
    assert (found.intent, found.contacts, found.resolved) == ("reset_password", 2, 2)
    assert any(e.kind is EvidenceKind.SIMILAR_CUSTOMER and e.event_id == "ev-1" for e in x.evidence)
    assert "intent reset_password: resolved 2/2" in next(f.detail for f in x.factors if f.name == "similar_customers")
    # Without the record the two are equal: the longest idle wins the tie.
    ranked, _ = match(None).rank(np.arange(roster.size))
    assert match(None).similar_all.tolist() == [0.0, 0.0]


def raised(contact_id: str, created: float, **kw: object) -> RaisedContact:
    return RaisedContact(contact_id, "self_service_escalation", "waiting", created_at=created, **kw)  # type: ignore[arg-type]


def test_a_customer_contact_takes_over_what_rapport_queued_and_inherits_it():
    customer = CustomerContext(
        "cus_1",
        raised=(
            raised("esc_new", NOW - 10, intent="reset_password", attributes={"escalation.tried": "article kb-9"}),
            raised("po_old", NOW - 100, case_id="pc_1", topic="outage", attributes={"proactive.fault_code": "E42"}),
        ),
    )
    taken = handover(customer, topic=None, intent=None, case_id=None, attributes={"ivr.menu": "2"}, now=NOW)
    assert [r.id for r in taken.superseded] == ["po_old", "esc_new"]
    assert (taken.topic, taken.intent, taken.case_id) == ("outage", "reset_password", "pc_1")
    assert taken.attributes == {
        "proactive.fault_code": "E42",
        "escalation.tried": "article kb-9",
        "ivr.menu": "2",
    }
    # What the caller says wins.
    own = handover(customer, topic="billing", intent="refund", case_id="k9", attributes={}, now=NOW)
    assert (own.topic, own.intent, own.case_id) == ("billing", "refund", "k9")


def test_a_contact_without_a_case_joins_the_proactive_case_still_attaching():
    cases = (
        OpenCase("k-plain", "open", "a1"),
        OpenCase("pc_expired", "open", None, proactive=True, attach_until=NOW - 1),
        OpenCase("pc_live", "open", None, proactive=True, attach_until=NOW + 3 * DAY),
    )
    customer = CustomerContext("cus_1", open_cases=cases)
    case = attaching_case(customer, NOW)
    assert case is not None and case.id == "pc_live"
    assert handover(customer, topic=None, intent=None, case_id=None, attributes={}, now=NOW).case_id == "pc_live"
    assert attaching_case(CustomerContext("cus_1", open_cases=cases[:2]), NOW) is None


def test_the_completion_of_an_outreach_says_who_took_up_the_case():
    spec = ContactSpec("po_1", "voice", NOW - 600, customer_id="cus_1", case_id="pc_1")
    record = ContactRecord(
        spec,
        ContactState.COMPLETED,
        identity=IdentityRef("device", "hub-1"),
        agent_id="a1",
        ended_at=NOW,
        outcome="resolved",
        origin="proactive_outreach",
        owns_case=True,
    )
    event = ending_event(record)
    assert event is not None
    assert (event.case.id, event.case.owner_agent_id) == ("pc_1", "a1")
    assert event.attributes["router.origin"] == "proactive_outreach"
    assert event.identifiers[0].kind == events_pb2.IDENTIFIER_KIND_DEVICE_ID
