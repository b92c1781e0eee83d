"""The agents as arrays, so filtering and scoring hundreds of them per contact costs microseconds.

A roster is a snapshot: it may be a moment stale. Nothing is decided on it alone; the atomic
reservation in the graph re-checks status and capacity, and its answer patches the roster.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from rapport_router.domain.model import AgentRecord, AgentStatus, primary_language
from rapport_router.domain.relaxation import Requirements

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int32]
FloatArray = npt.NDArray[np.float64]

_versions = itertools.count(1)
# Separates alternative skills in one requirement: an agent with any of them qualifies.
ANY_OF = "|"


class Roster:
    """Agent profiles (static between UpsertAgents) and live state (patched in place)."""

    def __init__(self, records: Iterable[AgentRecord]) -> None:
        self.records: dict[str, AgentRecord] = {r.id: r for r in sorted(records, key=lambda r: r.id)}
        # Changes whenever the set of agents or any profile changes: caches keyed on it stay valid.
        self.version = next(_versions)
        self.ids: list[str] = list(self.records)
        self.index: dict[str, int] = {agent_id: i for i, agent_id in enumerate(self.ids)}
        n = len(self.ids)
        self.size = n
        self._lock = threading.Lock()
        self.available: BoolArray = np.zeros(n, dtype=np.bool_)
        self.idle_since: FloatArray = np.full(n, np.nan)
        channels = sorted({ch for r in self.records.values() for ch in r.capacity})
        self.capacity: dict[str, IntArray] = {ch: np.zeros(n, dtype=np.int32) for ch in channels}
        self.active: dict[str, IntArray] = {ch: np.zeros(n, dtype=np.int32) for ch in channels}
        self.total_active: IntArray = np.zeros(n, dtype=np.int32)
        skill_names = sorted({s for r in self.records.values() for s in r.skills})
        self.skills: dict[str, IntArray] = {s: np.zeros(n, dtype=np.int32) for s in skill_names}
        teams: dict[str, BoolArray] = {}
        languages: dict[str, BoolArray] = {}
        for i, r in enumerate(self.records.values()):
            for ch, cap in r.capacity.items():
                self.capacity[ch][i] = cap
            for s, level in r.skills.items():
                self.skills[s][i] = level
            for t in r.teams:
                teams.setdefault(t, np.zeros(n, dtype=np.bool_))[i] = True
            for lang in r.languages:
                languages.setdefault(primary_language(lang), np.zeros(n, dtype=np.bool_))[i] = True
            self._set_live(i, r)
        self.teams = teams
        self.languages = languages
        self.mean_skill: FloatArray = (
            np.mean(np.stack(list(self.skills.values())), axis=0).astype(np.float64) if self.skills else np.zeros(n)
        )
        self.max_skill: FloatArray = (
            np.max(np.stack(list(self.skills.values())), axis=0).astype(np.float64) if self.skills else np.zeros(n)
        )
        self._zeros_int: IntArray = np.zeros(n, dtype=np.int32)
        self._false: BoolArray = np.zeros(n, dtype=np.bool_)

    def _set_live(self, i: int, r: AgentRecord) -> None:
        self.available[i] = r.status is AgentStatus.AVAILABLE
        self.idle_since[i] = np.nan if r.idle_since is None else r.idle_since
        total = 0
        for ch, arr in self.active.items():
            arr[i] = r.active.get(ch, 0)
            total += int(arr[i])
        self.total_active[i] = total

    def apply(self, record: AgentRecord) -> bool:
        """Patches live state from a fresher record; False when the profile changed (rebuild)."""
        i = self.index.get(record.id)
        if i is None:
            return False
        known = self.records[record.id]
        if known.profile != record.profile:
            return False
        if known.updated_at is not None and record.updated_at is not None and record.updated_at < known.updated_at:
            return True  # older than what we hold
        with self._lock:
            self.records[record.id] = record
            self._set_live(i, record)
        return True

    def capacity_on(self, channel: str) -> IntArray:
        return self.capacity.get(channel, self._zeros_int)

    def active_on(self, channel: str) -> IntArray:
        return self.active.get(channel, self._zeros_int)

    def skill(self, name: str) -> IntArray:
        """Levels per agent; a name listing alternatives ("device:hb-5|fault:e42") is the best of them."""
        found = self.skills.get(name)
        if found is not None:
            return found
        if ANY_OF in name:
            levels = [self.skills[s] for s in name.split(ANY_OF) if s in self.skills]
            if levels:
                best: IntArray = np.max(np.stack(levels), axis=0).astype(np.int32)
                return best
        return self._zeros_int

    def team(self, name: str) -> BoolArray:
        return self.teams.get(name, self._false)

    def speaks(self, language: str) -> BoolArray:
        return self.languages.get(primary_language(language), self._false)

    def free_slots(self, channel: str) -> IntArray:
        free = self.capacity_on(channel) - self.active_on(channel)
        return np.where(self.available, np.maximum(free, 0), 0).astype(np.int32)


def qualified(roster: Roster, req: Requirements) -> tuple[BoolArray, str]:
    """Agents meeting the contact's requirements whatever their live state; and, if none, why."""
    mask = roster.capacity_on(req.channel) > 0
    if not mask.any():
        return mask, f"no agent works the {req.channel} channel"
    if req.team is not None:
        mask = mask & roster.team(req.team)
        if not mask.any():
            return mask, f"no agent of team {req.team} works the {req.channel} channel"
    if req.language is not None:
        mask = mask & roster.speaks(req.language)
        if not mask.any():
            return mask, f"no agent speaks {req.language}"
    for need in req.skills:
        mask = mask & (roster.skill(need.name) >= need.min_level)
        if not mask.any():
            return mask, f"no agent has {need.name} at level {need.min_level} or above"
    if req.only_agent is not None:
        only = np.zeros(roster.size, dtype=np.bool_)
        i = roster.index.get(req.only_agent)
        if i is not None:
            only[i] = True
        mask = mask & only
        if not mask.any():
            return mask, f"waiting for the preferred agent {req.only_agent}"
    if req.excluded:
        for agent_id in req.excluded:
            i = roster.index.get(agent_id)
            if i is not None and mask[i]:
                mask = mask.copy()
                mask[i] = False
        if not mask.any():
            return mask, "every qualified agent has declined it"
    return mask, ""


def eligible(roster: Roster, req: Requirements) -> tuple[BoolArray, str]:
    """Qualified agents who are available with spare capacity on the channel now; and, if none, why."""
    mask, reason = qualified(roster, req)
    if not mask.any():
        return mask, reason
    mask = mask & roster.available
    if not mask.any():
        return mask, "no qualified agent is available"
    mask = mask & (roster.active_on(req.channel) < roster.capacity_on(req.channel))
    if not mask.any():
        return mask, "every qualified agent is at capacity"
    return mask, ""
