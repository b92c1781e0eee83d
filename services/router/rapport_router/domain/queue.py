"""The waiting queue's rules: order by priority with ageing, and the wait estimate.

Effective priority = priority + age / ageing_seconds: every `ageing_seconds` of waiting is
worth one priority level, so a contact that has waited long enough outranks any newcomer and
nobody starves. Ties go to the contact that arrived first.
"""

from __future__ import annotations

import math


def effective_priority(priority: int, age: float, ageing_seconds: float) -> float:
    return priority + max(0.0, age) / ageing_seconds


def queue_rank(priority: int, created_at: float, ageing_seconds: float) -> float:
    """A key that orders the queue (larger first) the same at any instant: no `now` needed."""
    return priority * ageing_seconds - created_at


def estimated_wait(position: int, capacity: int, handle_seconds: float) -> float:
    """Seconds until a contact at `position` (1-based) is likely served.

    Each of the `capacity` slots serving such contacts frees up once per `handle_seconds` on
    average, i.e. half a handle time from now for a busy slot; the contact goes when the
    slots have freed `position` times.
    """
    if position <= 0:
        return 0.0
    slots = max(1, capacity)
    rounds = math.ceil(position / slots)
    return (rounds - 0.5) * handle_seconds
