"""The router's pure rules: relaxation, eligibility, scoring and its explanation, queue order."""

from __future__ import annotations

import numpy as np
import pytest

from rapport.effort import NANOS, Touchpoint
from rapport_router.domain.model import (
    AgentRecord,
    AgentStatus,
    ContactSpec,
    CustomerContext,
    OpenCase,
    PastInteraction,
    ServedBy,
    SkillNeed,
)
from rapport_router.domain.performance import OutcomeTally, Performance, Sample
from rapport_router.domain.queue import effective_priority, estimated_wait, queue_rank
from rapport_router.domain.relaxation import InvalidPolicy, RelaxationPolicy
from rapport_router.domain.roster import Roster, eligible, qualified
from rapport_router.domain.scoring import (
    DAY,
    EvidenceKind,
    Explanation,
    Match,
    ScoringParams,
    Weights,
    affinity_value,
    customer_effort_now,
    customer_pressure,
    decay,
    effort_priority,
)

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0


def agent(agent_id: str, **kw) -> AgentRecord:
    defaults = dict(
        status=AgentStatus.AVAILABLE,
        languages=("en",),
        teams=("t",),
        skills={"billing": 3},
        capacity={"chat": 1},
        active={},
        idle_since=NOW - 60,
        updated_at=NOW - 60,
    )
    defaults.update(kw)
    return AgentRecord(id=agent_id, **defaults)  # type: ignore[arg-type]


def contact(**kw) -> ContactSpec:
    defaults = dict(id="con_1", channel="chat", created_at=NOW, topic="billing", team="t", language="en")
    defaults.update(kw)
    return ContactSpec(**defaults)  # type: ignore[arg-type]


def match(spec: ContactSpec, roster: Roster, customer: CustomerContext | None = None, **kw) -> Match:
    return Match(
        spec,
        customer or CustomerContext(customer_id="cus_1"),
        roster,
        performance=kw.get("performance", Performance()),
        weights=kw.get("weights", Weights()),
        params=kw.get("params", ScoringParams()),
        now=kw.get("now", NOW),
    )


# ---------------------------------------------------------------- relaxation


def test_policy_steps_are_cumulative_and_round_trip_through_text():
    policy = RelaxationPolicy.parse("90=any_language; 30=skill_levels-1 ;180=any_skill,skill_levels-2")
    assert [s.after for s in policy.steps] == [30, 90, 180]
    assert policy.steps[1].lower_skill_levels == 1 and policy.steps[1].any_language
    assert policy.steps[2].lower_skill_levels == 2 and policy.steps[2].any_skill and policy.steps[2].any_language
    assert RelaxationPolicy.parse(policy.text) == policy


@pytest.mark.parametrize("text", ["30", "x=any_language", "30=teleport", "-5=any_skill", "30="])
def test_bad_policies_are_refused(text):
    with pytest.raises(InvalidPolicy):
        RelaxationPolicy.parse(text)


def test_requirements_relax_with_age():
    policy = RelaxationPolicy.parse("10=skill_levels-1;20=any_language;30=any_skill;40=any_team")
    spec = contact(required_skills=(SkillNeed("billing", 4), SkillNeed("refunds", 1)), language="fr")
    r0 = policy.requirements(spec, 5)
    assert (r0.step, r0.language, r0.team) == (0, "fr", "t")
    assert [s.min_level for s in r0.skills] == [4, 1]
    r1 = policy.requirements(spec, 10)
    assert r1.step == 1 and [s.min_level for s in r1.skills] == [3, 1]  # never below 1
    assert policy.requirements(spec, 25).language is None
    assert policy.requirements(spec, 35).skills == ()
    assert policy.requirements(spec, 45).team is None
    assert policy.next_step_after(12) == 20 and policy.next_step_after(45) is None
    assert policy.describe(2) == "skill levels -1, any language"


def test_preferred_agent_is_the_only_one_until_its_wait_ends():
    spec = contact(preferred_agent_id="a2", preferred_wait=15)
    policy = RelaxationPolicy.parse("")
    assert policy.requirements(spec, 5).only_agent == "a2"
    assert policy.requirements(spec, 16).only_agent is None


# ---------------------------------------------------------------- eligibility


def test_hard_filters_say_why_nobody_fits():
    roster = Roster(
        [
            agent("en", languages=("en",)),
            agent("fr", languages=("fr-FR",), status=AgentStatus.AWAY),
            agent("fr2", languages=("fr",), skills={"billing": 2}, active={"chat": 1}),
        ]
    )
    policy = RelaxationPolicy.parse("")
    mask, reason = eligible(roster, policy.requirements(contact(language="fr-CA"), 0))
    assert not mask.any() and reason == "every qualified agent is at capacity"
    mask, _ = qualified(roster, policy.requirements(contact(language="fr-CA"), 0))
    assert [roster.ids[i] for i in np.flatnonzero(mask)] == ["fr", "fr2"]  # primary subtag match
    spec = contact(language="fr", required_skills=(SkillNeed("billing", 3),))
    mask, reason = eligible(roster, policy.requirements(spec, 0))
    assert reason == "no qualified agent is available"
    _, reason = eligible(roster, policy.requirements(contact(language="de"), 0))
    assert reason == "no agent speaks de"
    _, reason = eligible(roster, policy.requirements(contact(team="other"), 0))
    assert reason.startswith("no agent of team other")
    _, reason = eligible(roster, policy.requirements(contact(channel="voice"), 0))
    assert reason == "no agent works the voice channel"
    _, reason = eligible(roster, policy.requirements(contact(declined_by=frozenset({"en"})), 0))
    assert reason == "every qualified agent has declined it"


def test_roster_patches_live_state_but_rebuilds_on_profile_change():
    roster = Roster([agent("a")])
    assert roster.apply(agent("a", active={"chat": 1}, updated_at=NOW))
    assert roster.active_on("chat")[0] == 1 and roster.free_slots("chat")[0] == 0
    assert not roster.apply(agent("a", skills={"billing": 5}, updated_at=NOW + 1))
    assert not roster.apply(agent("new"))


# ---------------------------------------------------------------- scoring


def test_decay_halves_every_half_life():
    assert decay(0, 30) == 1.0
    assert decay(30 * DAY, 30) == pytest.approx(0.5)
    assert decay(-5, 30) == 1.0


def test_affinity_rewards_good_history_and_penalises_bad():
    good = ServedBy("a", contacts=3, resolved=3, csat_sum=15, csat_count=3, last_at=NOW - DAY)
    bad = ServedBy("a", contacts=3, resolved=0, csat_sum=3, csat_count=3, last_at=NOW - DAY)
    old = ServedBy("a", contacts=3, resolved=3, csat_sum=15, csat_count=3, last_at=NOW - 120 * DAY)
    assert affinity_value(good, NOW, 30) > 0.4
    assert affinity_value(bad, NOW, 30) < -0.4
    assert 0 < affinity_value(old, NOW, 30) < affinity_value(good, NOW, 30) / 8
    assert affinity_value(ServedBy("a", 0, 0, 0, 0, None), NOW, 30) == 0


def test_pressure_counts_tier_sentiment_and_priority():
    calm = customer_pressure(contact(), CustomerContext("cus_1"), ScoringParams(), NOW)
    assert calm.value == 0 and calm.reasons == ()
    upset = customer_pressure(
        contact(priority=10, sentiment=-0.9), CustomerContext("cus_1", tier="Gold"), ScoringParams(), NOW
    )
    assert upset.value == 1.0
    assert any("gold" in r.lower() for r in upset.reasons) and any("sentiment" in r for r in upset.reasons)


def test_without_a_priority_the_customer_effort_sets_it_and_is_the_evidence():
    hour = 3600 * NANOS
    now_ns = int(NOW * NANOS)
    touchpoints = (
        Touchpoint(now_ns - 30 * hour, "web", "article_feedback", "inbound", answer="no"),
        Touchpoint(now_ns - 29 * hour, "bot", "bot_exit", "inbound"),
        Touchpoint(now_ns - 28 * hour, "chat", "message", "inbound", topic="billing", facts=("order=a-1",)),
        Touchpoint(now_ns - 2 * hour, "voice", "call", "inbound", topic="billing", facts=("order=a-1",)),
        # Older than the 7-day window: no effort.
        Touchpoint(now_ns - 200 * hour, "voice", "call", "inbound", topic="billing"),
    )
    customer = CustomerContext("cus_1", touchpoints=touchpoints)
    effort = customer_effort_now(customer, ScoringParams(), NOW)
    assert effort is not None
    # failed self-service 2 x 10, switches web -> bot -> chat -> voice 3 x 8, one repeat contact 12, one fact again 8
    assert effort.score == 64
    assert effort_priority(effort) == 6
    assert customer_effort_now(CustomerContext.unknown(), ScoringParams(), NOW) is None
    assert effort_priority(None) == 0

    spec = contact(priority=6, effort=64, effort_reasons=effort.reasons)
    pressure = customer_pressure(spec, customer, ScoringParams(), NOW)
    assert pressure.value == pytest.approx(0.35 * 0.6)
    assert pressure.reasons == ("priority 6 from customer effort 64/100",)
    roster = Roster([agent("a")])
    explanation = match(spec, roster, customer).explain(0, [0], [0.5])
    (evidence,) = [e for e in explanation.evidence if e.kind is EvidenceKind.CUSTOMER_EFFORT]
    assert (evidence.factor, evidence.effort_score, evidence.customer_id) == ("priority", 64, "cus_1")
    assert "switched channel 3 times" in evidence.description and "set priority 6" in evidence.description
    assert Explanation.from_json(explanation.to_json()).evidence == explanation.evidence
    # A priority the caller gave is not the customer's effort: no such evidence.
    plain = match(contact(priority=6), roster, customer).explain(0, [0], [0.5])
    assert all(e.kind is not EvidenceKind.CUSTOMER_EFFORT for e in plain.evidence)


def test_continuity_goes_to_the_open_case_owner_then_the_last_resolver():
    roster = Roster([agent("a"), agent("b"), agent("c")])
    customer = CustomerContext(
        "cus_1",
        open_cases=(OpenCase("case-1", "open", "c", "broken router"),),
        resolved_by_agents=(
            PastInteraction("e1", NOW - 7 * DAY, agent_id="a", topic="billing", outcome="resolved"),
            PastInteraction("e2", NOW - 9 * DAY, agent_id="b", topic="delivery", outcome="resolved"),
        ),
    )
    m = match(contact(), roster, customer)
    values = dict(zip(roster.ids, m.continuity_all, strict=True))
    assert values["c"] == 1.0
    assert values["a"] == pytest.approx(0.8 * decay(7 * DAY, 30))
    assert values["b"] == pytest.approx(0.4 * decay(9 * DAY, 30))
    explanation = m.explain(roster.index["a"], [0, 1, 2], [0.5, 0.4, 0.3])
    kinds = {e.kind for e in explanation.evidence}
    assert EvidenceKind.LAST_RESOLVER in kinds
    assert any(e.event_id == "e1" for e in explanation.evidence)


def test_rank_prefers_skill_then_breaks_ties_by_idle_time():
    roster = Roster(
        [
            agent("novice", skills={"billing": 1}, idle_since=NOW - 3000),
            agent("expert", skills={"billing": 5}, idle_since=NOW - 10),
            agent("expert2", skills={"billing": 5}, idle_since=NOW - 20),
        ]
    )
    m = match(contact(), roster, weights=Weights(idle_time=0.0))
    ranked, scores = m.rank(np.arange(3))
    assert [roster.ids[i] for i in ranked] == ["expert2", "expert", "novice"]
    assert scores[0] == scores[1] > scores[2]


def test_affinity_can_outweigh_one_skill_level():
    roster = Roster([agent("a", skills={"billing": 3}), agent("b", skills={"billing": 4})])
    customer = CustomerContext(
        "cus_1", served_by={"a": ServedBy("a", contacts=4, resolved=4, csat_sum=20, csat_count=4, last_at=NOW - DAY)}
    )
    ranked, _ = match(contact(), roster, customer).rank(np.arange(2))
    assert roster.ids[ranked[0]] == "a"
    ranked, _ = match(contact(), roster).rank(np.arange(2))
    assert roster.ids[ranked[0]] == "b"


def test_similar_customer_success_is_a_lift_over_all_agents():
    roster = Roster([agent("good"), agent("poor"), agent("new")])
    samples = (Sample("ev-9", "cus_9", NOW - DAY, "resolved", 5),)
    perf = Performance(
        {
            ("topic", "billing"): {
                "good": OutcomeTally(40, 36, 160, 40, samples),
                "poor": OutcomeTally(40, 12, 80, 40),
            },
            ("device_model", "X1"): {"good": OutcomeTally(10, 9, 0, 0)},
        }
    )
    customer = CustomerContext("cus_1", device_models=("X1",))
    m = match(contact(), roster, customer, performance=perf)
    values = dict(zip(roster.ids, m.similar_all, strict=True))
    assert values["good"] > 0.3 > values["new"] == 0 > values["poor"]
    x = m.explain(roster.index["good"], [0, 2, 1], [0.6, 0.4, 0.2])
    assert any(e.kind is EvidenceKind.SIMILAR_CUSTOMER and e.event_id == "ev-9" for e in x.evidence)
    records = [e for e in x.evidence if e.kind is EvidenceKind.SIMILAR_CUSTOMERS_RECORD]
    assert {(e.contacts, e.resolved) for e in records} == {(40, 36), (10, 9)}


def test_the_issue_record_outweighs_the_customer_trait_records_which_fill_in_where_it_is_thin():
    roster = Roster([agent("fixer"), agent("charmer"), agent("newcomer")])
    perf = Performance(
        {
            # Fixer resolves this topic, charmer does not; both have 20 contacts on it.
            ("topic", "billing"): {"fixer": OutcomeTally(20, 18, 90, 20), "charmer": OutcomeTally(20, 6, 60, 20)},
            # With customers of this segment (on other topics) it is the other way round, and the
            # newcomer has only this record.
            ("segment", "smb"): {
                "fixer": OutcomeTally(20, 2, 40, 20),
                "charmer": OutcomeTally(20, 20, 100, 20),
                "newcomer": OutcomeTally(20, 20, 100, 20),
            },
        }
    )
    m = match(contact(), roster, CustomerContext("cus_1", segment="smb"), performance=perf)
    values = dict(zip(roster.ids, m.similar_all, strict=True))
    # Pooled by contact counts, the segment would cancel the topic; the issue's record leads.
    assert values["fixer"] > 0 > values["charmer"]
    # Without any record on the topic, customers like this one are all there is to go on.
    assert values["newcomer"] > values["fixer"]


def test_priority_sends_pressing_contacts_to_the_strongest_agents():
    roster = Roster([agent("weak", skills={"billing": 2}), agent("strong", skills={"billing": 5})])
    weights = Weights(skill=0.0, affinity=0.0, similar_customers=0.0, continuity=0.0, idle_time=0.01, priority=1.0)
    pressing, scores = match(contact(priority=10), roster, weights=weights).rank(np.arange(2))
    assert roster.ids[pressing[0]] == "strong" and scores[0] > scores[1]
    m = match(contact(priority=10), roster, weights=weights)
    assert m.explain(1, [1, 0], [0.5, 0.2]).factors[5].value > 0


def test_explanation_lists_every_factor_and_survives_json():
    roster = Roster([agent("a"), agent("b"), agent("c"), agent("d"), agent("e")])
    m = match(contact(preferred_agent_id="a"), roster)
    ranked, scores = m.rank(np.arange(5))
    x = m.explain(int(ranked[0]), list(ranked), list(scores))
    assert x.agent_id == "a"
    assert [f.name for f in x.factors] == [
        "skill",
        "affinity",
        "similar_customers",
        "continuity",
        "idle_time",
        "priority",
        "preferred_agent",
    ]
    assert sum(f.contribution for f in x.factors) == pytest.approx(x.score, abs=1e-3)
    assert len(x.runner_ups) == 3 and all(r.agent_id != "a" for r in x.runner_ups)
    stored = Explanation.from_json(x.to_json())
    assert (stored.agent_id, stored.score, stored.factors, stored.evidence) == (
        x.agent_id,
        x.score,
        x.factors,
        x.evidence,
    )
    assert [(r.agent_id, [f.value for f in r.factors]) for r in stored.runner_ups] == [
        (r.agent_id, [f.value for f in r.factors]) for r in x.runner_ups
    ]


def test_weights_are_checked():
    with pytest.raises(ValueError, match="weight skill"):
        Weights(skill=-1).checked()
    with pytest.raises(ValueError):
        Weights(0, 0, 0, 0, 0, 0, 1).checked()


# ---------------------------------------------------------------- queue


def test_ageing_lets_a_long_wait_outrank_a_higher_priority_newcomer():
    old_low = queue_rank(0, created_at=NOW - 600, ageing_seconds=60)
    new_high = queue_rank(5, created_at=NOW, ageing_seconds=60)
    assert old_low > new_high
    assert effective_priority(0, 600, 60) == 10
    assert queue_rank(3, NOW - 10, 60) > queue_rank(3, NOW, 60)  # first come first served within a level


def test_wait_estimate_grows_with_position_and_shrinks_with_capacity():
    assert estimated_wait(1, capacity=2, handle_seconds=300) == 150
    assert estimated_wait(3, capacity=2, handle_seconds=300) == 450
    assert estimated_wait(3, capacity=10, handle_seconds=300) == 150
    assert estimated_wait(0, capacity=1, handle_seconds=300) == 0
