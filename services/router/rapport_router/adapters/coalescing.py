"""Concurrent calls of one graph statement, run together in one transaction.

Neo4j spends most of a small write on the transaction around it: about 0.9 ms of its CPU for
a write creating one contact, 0.3 ms a contact when three share the transaction (measured on
the 2-core development machine), and the driver has a fixed cost per statement as well. So
calls of a statement that arrive while it is running wait, then run together: the first of
them runs all that are waiting (flat combining). A call that finds the statement idle runs at
once, alone; the busier the router, the more each transaction carries.

A caller whose deadline passes before its call was taken gives up; once taken, it waits for
the outcome (the transaction runs until the latest deadline of the calls it carries), so an
answer never hides a change that was made.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from rapport_router import deadline

T = TypeVar("T")
R = TypeVar("R")

# Calls carried by one transaction at most.
DEFAULT_LIMIT = 32


@dataclass(eq=False)
class _Call(Generic[T, R]):
    arg: T
    until: float
    # Set when the call is answered, or when it is its turn to run the waiting calls.
    woken: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    done: bool = False
    result: R | None = None
    error: BaseException | None = None


class Coalescer(Generic[T, R]):
    """`run(args)` answers each argument in order: its result, or the exception it raised."""

    def __init__(
        self, run: Callable[[Sequence[T]], Sequence[R | BaseException]], what: str, *, limit: int = DEFAULT_LIMIT
    ) -> None:
        self._run = run
        self._what = what
        self._limit = limit
        self._lock = threading.Lock()
        self._waiting: list[_Call[T, R]] = []
        self._running = False
        # Transactions run and calls they carried, for the benchmarks' and tests' eyes.
        self.runs = 0
        self.calls = 0

    def __call__(self, arg: T) -> R:
        call: _Call[T, R] = _Call(arg, time.monotonic() + deadline.remaining())
        with self._lock:
            self._waiting.append(call)
            if not self._running:
                self._running = True
                call.lead = True
        if not call.lead:
            self._wait(call)
        if not call.done:
            self._lead(call)
        if call.error is not None:
            raise call.error
        return call.result  # type: ignore[return-value]

    def _wait(self, call: _Call[T, R]) -> None:
        """Until the call is answered or it is its turn to lead; gives up if not taken in time."""
        left = call.until - time.monotonic()
        if left > 0 and call.woken.wait(left):
            return
        with self._lock:
            if not call.woken.is_set() and call in self._waiting:
                self._waiting.remove(call)
                raise deadline.DeadlineExceeded(f"deadline exceeded waiting to {self._what}")
        # Taken by a run already (or woken meanwhile): its outcome comes, deadline or not.
        call.woken.wait()

    def _lead(self, call: _Call[T, R]) -> None:
        """Runs the waiting calls, in order, until this one is answered; then hands over."""
        try:
            while not call.done:
                with self._lock:
                    batch = self._waiting[: self._limit]
                    del self._waiting[: self._limit]
                self._execute(batch)
        finally:
            with self._lock:
                if self._waiting:
                    successor = self._waiting[0]
                    successor.lead = True
                    successor.woken.set()
                else:
                    self._running = False

    def _execute(self, batch: list[_Call[T, R]]) -> None:
        outcomes: Sequence[R | BaseException] = ()
        try:
            with deadline.until(max(c.until for c in batch)):
                outcomes = self._run([c.arg for c in batch])
        except Exception as exc:  # noqa: BLE001 - raised again by every caller the statement carried
            outcomes = [exc] * len(batch)
        finally:
            # Every call carried gets an answer, or its caller would wait forever.
            if len(outcomes) != len(batch):
                outcomes = [RuntimeError(f"{self._what}: no answer for this call")] * len(batch)
            with self._lock:
                self.runs += 1
                self.calls += len(batch)
                for call, outcome in zip(batch, outcomes, strict=True):
                    if isinstance(outcome, BaseException):
                        call.error = outcome
                    else:
                        call.result = outcome
                    call.done = True
                    call.woken.set()
