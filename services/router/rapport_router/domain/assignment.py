"""Batch assignment: waiting contacts and freed capacity matched together, optimally.

When capacity frees up, the waiting contacts that can use it are assigned together by solving
the assignment problem over the score matrix (scipy's `linear_sum_assignment`), not first come
first served. Each free slot of an agent on a channel is one column. A contact's value for a
slot is its match score plus its effective priority (in score units: one priority level is
worth a whole score), so the assignment first serves the contacts that waited longest or
matter most, then, among those, maximises the total fit.

Greedy would give the first contact its best agent even when that agent is the only good
fit for the next one; the optimum gives each the best agent the whole queue allows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from rapport_router.domain.roster import BoolArray, FloatArray, IntArray

# Value of a pair that must never be chosen; far below any real score plus priority.
_FORBIDDEN = -1e9
# One priority level, in score units.
PRIORITY_UNIT = 1.0


@dataclass(frozen=True)
class BatchRow:
    """One waiting contact: its channel, effective priority, and scores over the roster."""

    channel: str
    effective_priority: float
    scores: FloatArray
    eligible: BoolArray


@dataclass(frozen=True)
class Pairing:
    row: int
    agent: int
    score: float


def assign_batch(rows: Sequence[BatchRow], free_slots: Mapping[str, IntArray]) -> list[Pairing]:
    """Optimal pairs (row, roster agent), highest-priority rows first."""
    if not rows:
        return []
    columns: list[tuple[str, int]] = []  # (channel, agent) per slot
    for channel in sorted({r.channel for r in rows}):
        free = free_slots.get(channel)
        if free is None:
            continue
        wanting = [r for r in rows if r.channel == channel]
        any_eligible = np.logical_or.reduce([r.eligible for r in wanting])
        for agent in np.flatnonzero((free > 0) & any_eligible):
            # More slots than contacts on the channel would never be used.
            columns += [(channel, int(agent))] * int(min(free[agent], len(wanting)))
    if not columns:
        return []
    value = np.full((len(rows), len(columns)), _FORBIDDEN)
    col_channel = np.array([c for c, _ in columns])
    col_agent = np.array([a for _, a in columns])
    for r, row in enumerate(rows):
        on_channel = col_channel == row.channel
        ok = on_channel & row.eligible[col_agent]
        value[r, ok] = row.scores[col_agent[ok]] + PRIORITY_UNIT * row.effective_priority
    chosen_rows, chosen_cols = linear_sum_assignment(value, maximize=True)
    pairs = [
        Pairing(int(r), int(col_agent[c]), float(rows[r].scores[col_agent[c]]))
        for r, c in zip(chosen_rows, chosen_cols, strict=True)
        if value[r, c] > _FORBIDDEN / 2
    ]
    pairs.sort(key=lambda p: -rows[p.row].effective_priority)
    return pairs
