"""Batch assignment: optimal over the score matrix, priority and ageing first, never infeasible."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rapport_router.domain.assignment import BatchRow, assign_batch

pytestmark = pytest.mark.unit


def row(scores, eligible=None, channel="chat", priority=0.0) -> BatchRow:
    scores = np.array(scores, dtype=float)
    mask = np.ones(len(scores), dtype=bool) if eligible is None else np.array(eligible, dtype=bool)
    return BatchRow(channel, priority, np.where(mask, scores, -np.inf), mask)


def test_optimal_beats_greedy_in_queue_order():
    # Greedy gives the first contact its best agent (A), leaving the second a poor fit.
    rows = [row([0.9, 0.8]), row([0.85, 0.1])]
    pairs = assign_batch(rows, {"chat": np.array([1, 1])})
    assert {(p.row, p.agent) for p in pairs} == {(0, 1), (1, 0)}
    assert sum(p.score for p in pairs) == pytest.approx(1.65)


def test_the_longest_waiting_contact_gets_the_only_slot():
    rows = [row([0.2], priority=0.1), row([0.9], priority=3.0), row([0.95], priority=0.0)]
    pairs = assign_batch(rows, {"chat": np.array([1])})
    assert [(p.row, p.agent) for p in pairs] == [(1, 0)]


def test_ineligible_pairs_and_other_channels_are_never_chosen():
    rows = [
        row([0.9, 0.9], eligible=[False, True]),
        row([0.9, 0.9], eligible=[True, False], channel="voice"),
        row([0.5, 0.5], eligible=[False, False]),
    ]
    pairs = assign_batch(rows, {"chat": np.array([1, 1]), "voice": np.array([0, 1])})
    assert [(p.row, p.agent) for p in pairs] == [(0, 1)]


def test_an_agent_with_several_free_slots_takes_several_contacts():
    rows = [row([0.9, 0.1]), row([0.8, 0.2]), row([0.7, 0.3])]
    pairs = assign_batch(rows, {"chat": np.array([2, 1])})
    assert sorted((p.row, p.agent) for p in pairs) == [(0, 0), (1, 0), (2, 1)]


def test_nothing_to_do():
    assert assign_batch([], {"chat": np.array([1])}) == []
    assert assign_batch([row([0.5])], {"chat": np.array([0])}) == []


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 4).flatmap(
        lambda n_agents: st.tuples(
            st.just(n_agents),
            st.lists(
                st.tuples(
                    st.lists(st.floats(-1, 1), min_size=n_agents, max_size=n_agents),
                    st.lists(st.booleans(), min_size=n_agents, max_size=n_agents),
                ),
                min_size=1,
                max_size=4,
            ),
            st.lists(st.integers(0, 2), min_size=n_agents, max_size=n_agents),
        )
    )
)
def test_matches_brute_force_and_respects_capacity(case):
    n_agents, raw_rows, free = case
    rows = [row(scores, eligible) for scores, eligible in raw_rows]
    pairs = assign_batch(rows, {"chat": np.array(free)})
    used = np.zeros(n_agents, dtype=int)
    for p in pairs:
        assert rows[p.row].eligible[p.agent]
        used[p.agent] += 1
    assert (used <= np.array(free)).all()
    assert len({p.row for p in pairs}) == len(pairs)
    # Brute force: the best total over all feasible matchings (maximising pairs first, as the
    # assignment of equal-priority rows is score-maximal among maximum matchings of slots).
    slots = [a for a in range(n_agents) for _ in range(free[a])]
    best_count, best_total = 0, 0.0
    for k in range(len(rows), 0, -1):
        for chosen in itertools.combinations(range(len(rows)), k):
            for perm in itertools.permutations(range(len(slots)), k):
                if all(rows[r].eligible[slots[s]] for r, s in zip(chosen, perm, strict=True)):
                    total = sum(rows[r].scores[slots[s]] for r, s in zip(chosen, perm, strict=True))
                    if (k, total) > (best_count, best_total):
                        best_count, best_total = k, total
        if best_count:
            break
    assert len(pairs) == best_count
    if best_count:
        assert sum(p.score for p in pairs) == pytest.approx(best_total, abs=1e-6)
