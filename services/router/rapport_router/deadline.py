"""The deadline of the work in progress, so every outgoing call stops in time.

The gRPC servicer opens a scope per call from the caller's deadline (or the configured default);
the background loop opens one per round. Adapters read `remaining()` to bound their calls.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("rapport_router_deadline", default=None)
# Used when nothing set a deadline (scripts, tests calling adapters directly).
FALLBACK_SECONDS = 10.0


class DeadlineExceeded(TimeoutError):
    """The work ran out of time; maps to UNAVAILABLE like any graph timeout."""


@contextmanager
def deadline_scope(seconds: float) -> Iterator[float]:
    """Work inside must finish within `seconds` (or an enclosing, earlier deadline)."""
    end = time.monotonic() + max(0.0, seconds)
    outer = _deadline.get()
    if outer is not None:
        end = min(end, outer)
    token = _deadline.set(end)
    try:
        yield end
    finally:
        _deadline.reset(token)


@contextmanager
def until(end: float) -> Iterator[float]:
    """Work inside must finish by `end` (monotonic clock), whatever the enclosing deadline:
    for work done on behalf of several calls, each with its own."""
    token = _deadline.set(end)
    try:
        yield end
    finally:
        _deadline.reset(token)


def remaining() -> float:
    end = _deadline.get()
    if end is None:
        return FALLBACK_SECONDS
    return end - time.monotonic()


def check(what: str) -> float:
    """Seconds left; raises DeadlineExceeded when none are."""
    left = remaining()
    if left <= 0:
        raise DeadlineExceeded(f"deadline exceeded before {what}")
    return left
