"""How well each agent does with similar customers: outcomes aggregated through the graph.

"Similar" means sharing the contact's topic, the customer's segment, or the model of a device
the customer owns. The graph adapter counts, per agent and per such value, the interactions the
agent handled and how they ended; this module turns the counts into a lift over the baseline
(all agents on the same topic, segment or device model), shrunk towards the baseline when the
counts are small so one lucky contact is no evidence.

The same lift is taken over the agents' outcomes with the contact's intent, read fresh from the
graph for each contact ("fresh" records, never cached): the agents who resolved a failed
self-service intent before lead its escalation.

The issue's records (topic, intent) come first: they measure the agent on the problem at hand.
The customer-trait records (segment, device model) fill in while the agent's issue record is
thin, with a share k / (k + issue contacts): an agent with no record on the topic is judged by
customers like this one; after 40 contacts on it the traits keep about a tenth. (In the routing
quality bench's world outcomes depend on the topic, not on segment or device; pooling the trait
records by their contact counts gave the topic record a quarter of the say, and this scoring fed
the bench's records offline closed 0.57 of the gap that way, 0.62 this way, over 15-20 seeds.)
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from rapport_router.domain.roster import FloatArray, Roster

DIMENSIONS = ("topic", "segment", "device_model")
# Dimensions about the contact's issue; the others describe the customer.
ISSUE_DIMENSIONS = frozenset({"topic", "intent"})
# Contacts of issue record at which the customer-trait records keep half the say.
TRAIT_FILL = 5.0
# Pseudo-contacts of prior: how many contacts of evidence it takes to move halfway from the baseline.
PRIOR_STRENGTH = 5.0
# Resolution matters more than satisfaction; both are in the success score.
RESOLUTION_SHARE = 0.7
# A lift of 0.4 (e.g. 90% vs 50% success) saturates the factor.
LIFT_SCALE = 2.5
_NEUTRAL_CSAT = 3.5


@dataclass(frozen=True)
class Sample:
    """One interaction behind an aggregate, shown as evidence."""

    event_id: str
    customer_id: str | None
    at: float | None
    outcome: str | None
    csat: int | None


@dataclass(frozen=True)
class OutcomeTally:
    contacts: int = 0
    resolved: int = 0
    csat_sum: float = 0.0
    csat_count: int = 0
    samples: tuple[Sample, ...] = ()

    def __add__(self, other: OutcomeTally) -> OutcomeTally:
        return OutcomeTally(
            self.contacts + other.contacts,
            self.resolved + other.resolved,
            self.csat_sum + other.csat_sum,
            self.csat_count + other.csat_count,
        )

    def success(self, prior: OutcomeTally | None = None) -> float:
        """Blend of resolution rate and CSAT in [0, 1], shrunk towards `prior`'s rates."""
        p_res, p_csat = (0.5, _NEUTRAL_CSAT) if prior is None else prior.rates()
        k = PRIOR_STRENGTH
        res = (self.resolved + k * p_res) / (self.contacts + k)
        csat = (self.csat_sum + k * p_csat) / (self.csat_count + k)
        return RESOLUTION_SHARE * res + (1 - RESOLUTION_SHARE) * (csat - 1) / 4

    def rates(self) -> tuple[float, float]:
        res = (self.resolved + 1) / (self.contacts + 2)
        csat = (self.csat_sum + _NEUTRAL_CSAT) / (self.csat_count + 1)
        return res, csat


Key = tuple[str, str]  # (dimension, value), e.g. ("topic", "billing")
# Agents' tallies on one key read for one contact, e.g. on the contact's intent.
Fresh = Mapping[str, OutcomeTally]


@dataclass(frozen=True)
class SimilarRecord:
    """One agent's record on one dimension value, for the explanation."""

    key: Key
    tally: OutcomeTally
    baseline: OutcomeTally
    lift: float


class Performance:
    """Agents' outcome tallies per topic, segment and device model, plus overall and handle times."""

    def __init__(
        self,
        tallies: Mapping[Key, Mapping[str, OutcomeTally]] | None = None,
        overall: Mapping[str, OutcomeTally] | None = None,
        handle_seconds: Mapping[str, float] | None = None,
        computed_at: float = 0.0,
    ) -> None:
        self.tallies = dict(tallies or {})
        self.overall = dict(overall or {})
        self.handle_seconds = dict(handle_seconds or {})
        self.computed_at = computed_at
        self.baselines: dict[Key, OutcomeTally] = {}
        for key, per_agent in self.tallies.items():
            total = OutcomeTally()
            for t in per_agent.values():
                total = total + t
            self.baselines[key] = total
        everyone = OutcomeTally()
        for t in self.overall.values():
            everyone = everyone + t
        self.everyone = everyone
        self._cache: dict[tuple[int, Key], tuple[FloatArray, FloatArray]] = {}
        self._strength: tuple[int, FloatArray] | None = None
        self._lock = threading.Lock()

    def keys_for(self, topic: str | None, segment: str | None, device_models: Sequence[str]) -> list[Key]:
        keys: list[Key] = []
        if topic:
            keys.append(("topic", topic))
        if segment:
            keys.append(("segment", segment))
        keys += [("device_model", m) for m in sorted(set(device_models)) if m]
        return [k for k in keys if k in self.tallies]

    def _lift(
        self, roster: Roster, per_agent: Mapping[str, OutcomeTally], baseline: OutcomeTally
    ) -> tuple[FloatArray, FloatArray]:
        lift = np.zeros(roster.size)
        count = np.zeros(roster.size)
        base = baseline.success(self.everyone)
        for agent_id, tally in per_agent.items():
            i = roster.index.get(agent_id)
            if i is not None and tally.contacts > 0:
                lift[i] = tally.success(baseline) - base
                count[i] = tally.contacts
        return lift, count

    def _vectors(self, roster: Roster, key: Key) -> tuple[FloatArray, FloatArray]:
        """(lift, contacts) per roster agent for one dimension value; cached per roster version."""
        cache_key = (roster.version, key)
        cached = self._cache.get(cache_key)
        if cached is not None:
            return cached
        lift, count = self._lift(roster, self.tallies[key], self.baselines[key])
        with self._lock:
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[cache_key] = (lift, count)
        return lift, count

    def similar(self, roster: Roster, keys: Sequence[Key], fresh: Mapping[Key, Fresh] | None = None) -> FloatArray:
        """Per agent, in [-1, 1]: the contact-weighted lift over the baseline across `keys` and
        the `fresh` records."""
        if not keys and not fresh:
            return np.zeros(roster.size)
        vectors = [(key, *self._vectors(roster, key)) for key in keys]
        # A fresh record is measured against every agent's outcomes, not the record's own total:
        # when one agent holds the whole record that total is the agent itself, and the lift is
        # noise around zero (or below it where Rapport's overall outcomes are good).
        vectors += [(key, *self._lift(roster, per_agent, self.everyone)) for key, per_agent in (fresh or {}).items()]
        issue, issue_n = _pooled([(lift, n) for key, lift, n in vectors if key[0] in ISSUE_DIMENSIONS], roster.size)
        traits, traits_n = _pooled(
            [(lift, n) for key, lift, n in vectors if key[0] not in ISSUE_DIMENSIONS], roster.size
        )
        share = np.where(traits_n > 0, TRAIT_FILL / (TRAIT_FILL + issue_n), 0.0)
        return np.clip(((1 - share) * issue + share * traits) * LIFT_SCALE, -1.0, 1.0)

    def records(
        self, agent_id: str, keys: Sequence[Key], fresh: Mapping[Key, Fresh] | None = None
    ) -> list[SimilarRecord]:
        out = []
        sources = [(key, self.tallies.get(key, {}), self.baselines.get(key)) for key in keys]
        sources += [(key, per_agent, self.everyone) for key, per_agent in (fresh or {}).items()]
        for key, per_agent, baseline in sources:
            tally = per_agent.get(agent_id)
            if tally is None or tally.contacts == 0 or baseline is None:
                continue
            out.append(SimilarRecord(key, tally, baseline, tally.success(baseline) - baseline.success(self.everyone)))
        return out

    def strength(self, roster: Roster) -> FloatArray:
        """Each agent's overall success in [0, 1], shrunk towards everyone's; cached per roster version."""
        cached = self._strength
        if cached is not None and cached[0] == roster.version:
            return cached[1]
        base = self.everyone.success()
        value = np.full(roster.size, base)
        for agent_id, tally in self.overall.items():
            i = roster.index.get(agent_id)
            if i is not None:
                value[i] = tally.success(self.everyone)
        self._strength = (roster.version, value)
        return value

    def handle_time(self, channel: str, default: float) -> float:
        return self.handle_seconds.get(channel, default)


def _pooled(vectors: Sequence[tuple[FloatArray, FloatArray]], size: int) -> tuple[FloatArray, FloatArray]:
    """The contact-weighted mean lift per agent over `vectors` (0 without contacts), and the contacts."""
    num = np.zeros(size)
    den = np.zeros(size)
    for lift, count in vectors:
        num += lift * count
        den += count
    with np.errstate(invalid="ignore", divide="ignore"):
        mean: FloatArray = np.where(den > 0, num / np.maximum(den, 1e-9), 0.0)
    return mean, den


@dataclass
class PerformanceHolder:
    """The current statistics, swapped whole when the background refresh completes."""

    current: Performance = field(default_factory=Performance)
