"""The soft score: how well an agent fits a contact, factor by factor, with the evidence.

Every factor is a value in [-1, 1] (0: no evidence either way) with a configurable weight; the
score is the weighted sum divided by the sum of the weights in play, so a perfect fit is 1.

- skill: the agent's level on the contact's topic and required skills, over 5.
- affinity: this customer's past outcomes with the agent (SERVED_BY), better or worse than a
  coin toss, grown by the number of contacts and decayed by the age of the last one.
- similar_customers: the agent's outcomes with customers sharing the topic, intent, segment
  or device model, as a lift over all agents (see `performance`); the intent's record is read
  fresh for each contact, so the agents who resolved a failed self-service intent before lead
  its escalation.
- continuity: the owner of the customer's open case (1), or the agent who last resolved the
  customer's issue (0.8 on the same topic, 0.4 otherwise), decayed by age.
- idle_time: fairness; free capacity on the channel and time since the agent was last busy.
- priority: the customer's pressure (high tier, negative sentiment, the contact's priority)
  times the agent's strength, so pressing contacts go to the strongest agents. A contact routed
  without a priority takes it from the customer's effort (rapport.effort): score / 10.
- preferred_agent: 1 for the agent the caller prefers (only when one is named).

Default weights: one skill level is worth 0.3 x 0.2 = 0.06. A single past contact that went
clearly well or badly with an agent (affinity about ±0.35 x 0.5), or the agent having resolved
the customer's issue recently (continuity about 0.7 x 0.2), outweighs one skill level, so a
customer goes back to the agent who knows their issue and away from one who failed them; none
of them outweighs a jump from novice to expert. Idle time breaks ties without overriding fit.
The routing-quality bench (issue 7) chose affinity 0.5 (was 0.25) and similar_customers 0.3
(was 0.15): with a day of history in the graph, a customer's own outcomes with an agent and the
agent's record on the topic are the signals declared skill levels miss (the bench's hidden
rapport and true skill); nearby weights score within the bench's noise.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from rapport.effort import NANOS, Effort, customer_effort
from rapport_router.domain.model import MAX_PRIORITY, MAX_SKILL_LEVEL, ContactSpec, CustomerContext, ServedBy
from rapport_router.domain.performance import Fresh, Performance
from rapport_router.domain.roster import FloatArray, IntArray, Roster

FACTORS = ("skill", "affinity", "similar_customers", "continuity", "idle_time", "priority", "preferred_agent")
DAY = 86400.0
# Bounded evidence, so an offer stays small enough to show.
MAX_PAST_INTERACTIONS = 3
MAX_SAMPLES_PER_KEY = 2
MAX_RUNNER_UPS = 3


@dataclass(frozen=True)
class Weights:
    skill: float = 0.30
    affinity: float = 0.50
    similar_customers: float = 0.30
    continuity: float = 0.20
    idle_time: float = 0.05
    priority: float = 0.10
    preferred_agent: float = 0.30

    def checked(self) -> Weights:
        for f in fields(self):
            value = getattr(self, f.name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"weight {f.name} must be a finite number >= 0, got {value}")
        if sum(getattr(self, f.name) for f in fields(self) if f.name != "preferred_agent") <= 0:
            raise ValueError("at least one routing weight besides preferred_agent must be above 0")
        return self

    def vector(self) -> FloatArray:
        return np.array([getattr(self, name) for name in FACTORS], dtype=np.float64)


@dataclass(frozen=True)
class ScoringParams:
    affinity_half_life_days: float = 30.0
    # Half-life of continuity, and the window in which a last resolver counts (three half-lives).
    continuity_days: float = 30.0
    # Seconds of idleness that count fully for fairness.
    idle_saturation: float = 600.0
    # Days of history that count as the customer's current effort.
    effort_days: float = 7.0
    high_tiers: tuple[str, ...] = ("platinum", "gold", "vip")
    # Days of outcomes counted in the similar-customer statistics.
    stats_lookback_days: float = 180.0


class EvidenceKind(enum.StrEnum):
    PAST_INTERACTION = "past_interaction"
    AFFINITY = "affinity"
    SIMILAR_CUSTOMER = "similar_customer"
    SIMILAR_CUSTOMERS_RECORD = "similar_customers_record"
    OPEN_CASE = "open_case"
    LAST_RESOLVER = "last_resolver"
    CUSTOMER_EFFORT = "customer_effort"


@dataclass(frozen=True)
class Factor:
    name: str
    value: float
    weight: float
    contribution: float
    detail: str


@dataclass(frozen=True)
class Evidence:
    kind: EvidenceKind
    factor: str
    description: str
    event_id: str | None = None
    case_id: str | None = None
    customer_id: str | None = None
    at: float | None = None
    topic: str | None = None
    outcome: str | None = None
    csat: int | None = None
    intent: str | None = None
    contacts: int = 0
    resolved: int = 0
    effort_score: int = 0


@dataclass(frozen=True)
class RunnerUp:
    agent_id: str
    score: float
    factors: tuple[Factor, ...]


@dataclass(frozen=True)
class Explanation:
    agent_id: str
    score: float
    factors: tuple[Factor, ...]
    evidence: tuple[Evidence, ...] = ()
    eligible_agents: int = 0
    runner_ups: tuple[RunnerUp, ...] = ()
    summary: str = ""

    def to_json(self) -> str:
        """Compact JSON for storage: empty evidence fields and runner-ups' details are left out."""

        def factor(f: Factor, *, detailed: bool = True) -> dict[str, Any]:
            out = {"name": f.name, "value": f.value, "weight": f.weight, "contribution": f.contribution}
            if detailed:
                out["detail"] = f.detail
            return out

        return json.dumps(
            {
                "agent_id": self.agent_id,
                "score": self.score,
                "factors": [factor(f) for f in self.factors],
                "evidence": [
                    {k: v for k in _EVIDENCE_FIELDS if (v := getattr(e, k)) not in (None, 0)} for e in self.evidence
                ],
                "eligible_agents": self.eligible_agents,
                "runner_ups": [
                    {
                        "agent_id": r.agent_id,
                        "score": r.score,
                        "factors": [factor(f, detailed=False) for f in r.factors],
                    }
                    for r in self.runner_ups
                ],
                "summary": self.summary,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Explanation:
        raw: dict[str, Any] = json.loads(text)
        return cls(
            agent_id=raw["agent_id"],
            score=raw["score"],
            factors=tuple(Factor(**{"detail": "", **f}) for f in raw["factors"]),
            evidence=tuple(Evidence(**{**e, "kind": EvidenceKind(e["kind"])}) for e in raw["evidence"]),
            eligible_agents=raw["eligible_agents"],
            runner_ups=tuple(
                RunnerUp(r["agent_id"], r["score"], tuple(Factor(**{"detail": "", **f}) for f in r["factors"]))
                for r in raw["runner_ups"]
            ),
            summary=raw["summary"],
        )


_EVIDENCE_FIELDS = tuple(f.name for f in fields(Evidence))


def decay(age_seconds: float, half_life_days: float) -> float:
    """1 now, 0.5 after one half-life, ... ; future times count as now."""
    return float(0.5 ** (max(0.0, age_seconds) / (half_life_days * DAY)))


def _days(seconds: float) -> str:
    days = max(0.0, seconds) / DAY
    if days < 1:
        hours = days * 24
        return "under an hour ago" if hours < 1 else f"{hours:.0f} h ago"
    return f"{days:.0f} days ago" if days >= 1.5 else "1 day ago"


def affinity_value(served: ServedBy, now: float, half_life_days: float) -> float:
    """In [-1, 1]: how much better than a coin toss this customer fared with the agent."""
    if served.contacts <= 0:
        return 0.0
    resolution = (served.resolved + 0.5) / (served.contacts + 1)
    quality = resolution
    if served.csat_count > 0:
        satisfaction = (served.csat_sum / served.csat_count - 1) / 4
        quality = 0.6 * resolution + 0.4 * satisfaction
    # One contact is half the evidence; three are nearly all of it.
    confidence = 1 - math.exp(-served.contacts / 1.5)
    freshness = decay(now - served.last_at, half_life_days) if served.last_at is not None else 0.5
    return max(-1.0, min(1.0, (quality - 0.5) * 2 * confidence * freshness))


@dataclass(frozen=True)
class Pressure:
    """How much this contact needs a strong agent, in [0, 1], and why."""

    value: float
    reasons: tuple[str, ...] = ()


def customer_pressure(contact: ContactSpec, customer: CustomerContext, params: ScoringParams, now: float) -> Pressure:
    reasons = []
    value = 0.0
    if customer.tier and customer.tier.lower() in params.high_tiers:
        value += 0.35
        reasons.append(f"{customer.tier} tier")
    since = now - params.effort_days * DAY
    recent = [i for i in customer.recent if i.at >= since]
    sentiment = contact.sentiment
    if sentiment is None:
        sentiment = next((i.sentiment for i in recent if i.sentiment is not None), None)
    if sentiment is not None and sentiment < 0:
        value += 0.35 * min(1.0, -sentiment)
        reasons.append(f"sentiment {sentiment:+.1f}")
    if contact.priority > 0:
        value += 0.35 * contact.priority / MAX_PRIORITY
        source = f" from customer effort {contact.effort}/100" if contact.effort is not None else ""
        reasons.append(f"priority {contact.priority}{source}")
    return Pressure(min(1.0, value), tuple(reasons))


def customer_effort_now(customer: CustomerContext, params: ScoringParams, now: float) -> Effort | None:
    """The customer's effort over the effort window ending now; None for a customer the graph
    does not know."""
    if customer.customer_id is None:
        return None
    return customer_effort(customer.touchpoints, int(now * NANOS), int(params.effort_days * DAY * NANOS))


def effort_priority(effort: Effort | None) -> int:
    """The priority a contact routed without one takes from the customer's effort: score / 10."""
    return 0 if effort is None else min(MAX_PRIORITY, effort.score // 10)


@dataclass(frozen=True)
class ContinuityLink:
    agent_id: str
    value: float
    detail: str
    evidence: Evidence


def continuity_links(
    contact: ContactSpec, customer: CustomerContext, params: ScoringParams, now: float
) -> dict[str, ContinuityLink]:
    """The agents who own the customer's open case or last resolved their issue."""
    links: dict[str, ContinuityLink] = {}
    for case in customer.open_cases:
        if not case.owner_agent_id:
            continue
        about_this = contact.case_id is not None and case.id == contact.case_id
        if contact.case_id is not None and not about_this:
            continue
        title = f" ({case.title})" if case.title else ""
        links.setdefault(
            case.owner_agent_id,
            ContinuityLink(
                case.owner_agent_id,
                1.0,
                f"owns the customer's open case {case.id}{title}",
                Evidence(
                    EvidenceKind.OPEN_CASE,
                    "continuity",
                    f"{case.owner_agent_id} owns open case {case.id}{title}",
                    case_id=case.id,
                    customer_id=customer.customer_id,
                ),
            ),
        )
    window = 3 * params.continuity_days * DAY
    same_topic_done = any_topic_done = False
    for past in customer.resolved_by_agents:  # newest first
        if past.agent_id is None or now - past.at > window:
            continue
        same = bool(contact.topic) and past.topic == contact.topic
        if same and not same_topic_done:
            same_topic_done = True
            base, what = 0.8, f"resolved this customer's {past.topic} issue"
        elif not any_topic_done and not same:
            any_topic_done = True
            base, what = 0.4, f"last resolved an issue of this customer ({past.topic or 'no topic'})"
        else:
            continue
        value = base * decay(now - past.at, params.continuity_days)
        if past.agent_id in links and links[past.agent_id].value >= value:
            continue
        detail = f"{what} {_days(now - past.at)}"
        links[past.agent_id] = ContinuityLink(
            past.agent_id,
            value,
            detail,
            Evidence(
                EvidenceKind.LAST_RESOLVER,
                "continuity",
                f"{past.agent_id} {detail}",
                event_id=past.event_id,
                customer_id=customer.customer_id,
                at=past.at,
                topic=past.topic,
                outcome=past.outcome,
                csat=past.csat,
            ),
        )
        if same_topic_done and any_topic_done:
            break
    return links


class Match:
    """Scores one contact against any subset of the roster's agents (vectorised)."""

    def __init__(
        self,
        contact: ContactSpec,
        customer: CustomerContext,
        roster: Roster,
        *,
        performance: Performance,
        weights: Weights,
        params: ScoringParams,
        now: float,
        intent_record: Fresh | None = None,
    ) -> None:
        self.contact = contact
        self.customer = customer
        self.roster = roster
        self.performance = performance
        self.params = params
        self.now = now
        w = weights.vector()
        if not contact.preferred_agent_id:
            w[FACTORS.index("preferred_agent")] = 0.0
        self.weights = w
        self.weight_sum = float(w.sum()) or 1.0
        n = roster.size
        self.pressure = customer_pressure(contact, customer, params, now)
        # Skill: topic skill and required skills (as asked, before any relaxation), over 5.
        self.skill_names = list(
            dict.fromkeys([*([contact.topic] if contact.topic else []), *(s.name for s in contact.required_skills)])
        )
        if self.skill_names:
            self.skill_all = np.mean([roster.skill(s) for s in self.skill_names], axis=0) / MAX_SKILL_LEVEL
        else:
            self.skill_all = np.zeros(n)
        self.affinity_all = np.zeros(n)
        for agent_id, served in customer.served_by.items():
            i = roster.index.get(agent_id)
            if i is not None:
                self.affinity_all[i] = affinity_value(served, now, params.affinity_half_life_days)
        self.keys = performance.keys_for(contact.topic, customer.segment, customer.device_models)
        # The agents' record with the contact's intent, read for this contact (see performance).
        self.fresh = {("intent", contact.intent): intent_record} if contact.intent and intent_record else {}
        self.similar_all = performance.similar(roster, self.keys, self.fresh)
        self.continuity = continuity_links(contact, customer, params, now)
        self.continuity_all = np.zeros(n)
        for agent_id, link in self.continuity.items():
            i = roster.index.get(agent_id)
            if i is not None:
                self.continuity_all[i] = link.value
        topic_skill = roster.skill(contact.topic) if contact.topic and contact.topic in roster.skills else None
        proficiency = (topic_skill if topic_skill is not None else roster.max_skill) / MAX_SKILL_LEVEL
        self.strength_all = 0.5 * proficiency + 0.5 * performance.strength(roster)
        self.preferred_index = roster.index.get(contact.preferred_agent_id) if contact.preferred_agent_id else None

    def factors(self, idx: np.ndarray) -> FloatArray:
        """Factor values, shape (len(FACTORS), len(idx))."""
        roster = self.roster
        cap = roster.capacity_on(self.contact.channel)[idx].astype(np.float64)
        act = roster.active_on(self.contact.channel)[idx].astype(np.float64)
        free = np.where(cap > 0, np.clip((cap - act) / np.maximum(cap, 1), 0, 1), 0.0)
        since = roster.idle_since[idx]
        idle_seconds = np.where(np.isnan(since), 0.0, self.now - np.nan_to_num(since, nan=self.now))
        idle = 0.5 * free + 0.5 * np.clip(idle_seconds / self.params.idle_saturation, 0, 1)
        preferred = np.zeros(len(idx))
        if self.preferred_index is not None:
            preferred = (idx == self.preferred_index).astype(np.float64)
        return np.vstack(
            [
                self.skill_all[idx],
                self.affinity_all[idx],
                self.similar_all[idx],
                self.continuity_all[idx],
                idle,
                self.pressure.value * self.strength_all[idx],
                preferred,
            ]
        )

    def scores(self, idx: np.ndarray) -> FloatArray:
        result: FloatArray = self.weights @ self.factors(idx) / self.weight_sum
        return result

    def rank(self, idx: np.ndarray) -> tuple[np.ndarray, FloatArray]:
        """`idx` sorted best first (ties: the agent idle longest, then by id), with scores."""
        if len(idx) == 0:
            return idx, np.zeros(0)
        scores = self.scores(idx)
        since = np.nan_to_num(self.roster.idle_since[idx], nan=np.inf)
        order = np.lexsort((idx, since, -np.round(scores, 9)))
        return idx[order], scores[order]

    def _factor_list(self, i: int, values: FloatArray) -> tuple[Factor, ...]:
        """Agent `i`'s factors, from its column of `factors`."""
        out = []
        for k, name in enumerate(FACTORS):
            w = float(self.weights[k])
            if name == "preferred_agent" and not self.contact.preferred_agent_id:
                continue
            v = float(values[k])
            out.append(Factor(name, round(v, 4), w, round(w * v / self.weight_sum, 4), self._detail(name, i, v)))
        return tuple(out)

    def _detail(self, name: str, i: int, value: float) -> str:
        agent_id = self.roster.ids[i]
        if name == "skill":
            if not self.skill_names:
                return "no topic or skill asked for"
            levels = ", ".join(f"{s} {int(self.roster.skill(s)[i])}" for s in self.skill_names)
            return f"levels {levels} of {MAX_SKILL_LEVEL}"
        if name == "affinity":
            served = self.customer.served_by.get(agent_id)
            if served is None or served.contacts == 0:
                return "no past contacts with this customer"
            csat = f", CSAT {served.csat_sum / served.csat_count:.1f}" if served.csat_count else ""
            last = f", last {_days(self.now - served.last_at)}" if served.last_at is not None else ""
            return f"resolved {served.resolved} of {served.contacts} past contacts{csat}{last}"
        if name == "similar_customers":
            records = self.performance.records(agent_id, self.keys, self.fresh)
            if not records:
                return "no outcomes with similar customers yet"
            return "; ".join(
                f"{r.key[0].replace('_', ' ')} {r.key[1]}: resolved {r.tally.resolved}/{r.tally.contacts} "
                f"(all agents {r.baseline.resolved}/{r.baseline.contacts})"
                for r in records
            )
        if name == "continuity":
            link = self.continuity.get(agent_id)
            return link.detail if link else "no open case or recent resolution with this customer"
        if name == "idle_time":
            since = self.roster.idle_since[i]
            cap = int(self.roster.capacity_on(self.contact.channel)[i])
            act = int(self.roster.active_on(self.contact.channel)[i])
            idle = "busy" if math.isnan(since) else f"idle {max(0.0, self.now - since):.0f} s"
            return f"{idle}, {act} of {cap} {self.contact.channel} slots in use"
        if name == "priority":
            if self.pressure.value == 0:
                return "no pressure on this contact"
            return (
                f"pressure {self.pressure.value:.2f} ({', '.join(self.pressure.reasons)}) "
                f"x agent strength {self.strength_all[i]:.2f}"
            )
        if name == "preferred_agent":
            return (
                "the caller's preferred agent"
                if value > 0
                else f"not the preferred agent {self.contact.preferred_agent_id}"
            )
        return ""

    def _evidence(self, i: int) -> list[Evidence]:
        agent_id = self.roster.ids[i]
        out: list[Evidence] = []
        if self.contact.effort is not None:
            why = "; ".join(self.contact.effort_reasons) or "nothing unusual"
            out.append(
                Evidence(
                    EvidenceKind.CUSTOMER_EFFORT,
                    "priority",
                    f"no priority given: customer effort {self.contact.effort}/100 over {self.params.effort_days:g} "
                    f"days ({why}) set priority {self.contact.priority}",
                    customer_id=self.customer.customer_id,
                    effort_score=self.contact.effort,
                )
            )
        link = self.continuity.get(agent_id)
        if link is not None:
            out.append(link.evidence)
        served = self.customer.served_by.get(agent_id)
        if served is not None and served.contacts > 0:
            out.append(
                Evidence(
                    EvidenceKind.AFFINITY,
                    "affinity",
                    f"{served.contacts} past contacts of this customer with {agent_id}, {served.resolved} resolved",
                    customer_id=self.customer.customer_id,
                    at=served.last_at,
                    contacts=served.contacts,
                    resolved=served.resolved,
                )
            )
            for past in [p for p in self.customer.handled if p.agent_id == agent_id][:MAX_PAST_INTERACTIONS]:
                out.append(
                    Evidence(
                        EvidenceKind.PAST_INTERACTION,
                        "affinity",
                        f"{past.kind or 'interaction'} on {past.topic or 'no topic'}: {past.outcome or 'no outcome'}",
                        event_id=past.event_id,
                        customer_id=self.customer.customer_id,
                        at=past.at,
                        topic=past.topic,
                        outcome=past.outcome,
                        csat=past.csat,
                    )
                )
        for r in self.performance.records(agent_id, self.keys, self.fresh):
            dim, value = r.key
            out.append(
                Evidence(
                    EvidenceKind.SIMILAR_CUSTOMERS_RECORD,
                    "similar_customers",
                    f"{agent_id} resolved {r.tally.resolved} of {r.tally.contacts} contacts of customers with "
                    f"{dim.replace('_', ' ')} {value}",
                    topic=value if dim == "topic" else None,
                    intent=value if dim == "intent" else None,
                    contacts=r.tally.contacts,
                    resolved=r.tally.resolved,
                )
            )
            for sample in r.tally.samples[:MAX_SAMPLES_PER_KEY]:
                out.append(
                    Evidence(
                        EvidenceKind.SIMILAR_CUSTOMER,
                        "similar_customers",
                        f"{dim.replace('_', ' ')} {value}: {sample.outcome or 'no outcome'}",
                        event_id=sample.event_id,
                        customer_id=sample.customer_id,
                        at=sample.at,
                        topic=value if dim == "topic" else None,
                        intent=value if dim == "intent" else None,
                        outcome=sample.outcome,
                        csat=sample.csat,
                    )
                )
        return out

    def explain(
        self, i: int, ranked: Sequence[int] | IntArray, ranked_scores: Sequence[float] | FloatArray
    ) -> Explanation:
        """Why agent `i` (roster index), given the eligible agents ranked best first."""
        others: list[tuple[int, float]] = []
        for j, s in zip(ranked, ranked_scores, strict=True):
            if len(others) == MAX_RUNNER_UPS:
                break
            if j != i:
                others.append((int(j), float(s)))
        # The factors of the agent and its runner-ups, computed together.
        values = self.factors(np.array([i, *(j for j, _ in others)], dtype=np.int64))
        factors = self._factor_list(i, values[:, 0])
        score = round(float(self.weights @ values[:, 0] / self.weight_sum), 4)
        top = sorted((f for f in factors if f.contribution > 0), key=lambda f: -f.contribution)[:2]
        agent_id = self.roster.ids[i]
        summary = f"{agent_id} (score {score:.2f})"
        if top:
            summary += ": " + "; ".join(f"{f.name.replace('_', ' ')}: {f.detail}" for f in top)
        runner_ups = [
            RunnerUp(self.roster.ids[j], round(s, 4), self._factor_list(j, values[:, k + 1]))
            for k, (j, s) in enumerate(others)
        ]
        return Explanation(
            agent_id=agent_id,
            score=score,
            factors=factors,
            evidence=tuple(self._evidence(i)),
            eligible_agents=len(ranked),
            runner_ups=tuple(runner_ups),
            summary=summary,
        )
