"""Concurrent customer resolutions share their Neo4j round trips.

Every timeline read first resolves its customer: the survivor of any merge, and the interaction
count the hot-timeline cache is checked against. Alone, that query costs about as much driver
CPU (here) and Cypher CPU (in Neo4j) as the rest of a cached page; for k keys in one query it
costs little more than for one. So resolutions go in rounds, like a group commit: with no round
out, a request sends one at once for its own key (no added wait); a request that finds a round
out waits for the next, which carries every key that arrived meanwhile. A request never joins a
round already sent, so its answer is the graph at some moment after it arrived, as before.

Each caller waits no longer than its own deadline. A round is bounded by its sender's deadline;
when it runs out of time, the callers in it that still have time go on to the next round.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence

from rapport.errors import RapportError, Unavailable
from rapport_timeline.domain.model import CustomerKey, Resolved

# Keys per query; a longer queue is served by the following rounds.
MAX_KEYS = 64
# A caller with less time than this left after a failed round fails with it.
MIN_RETRY_SECONDS = 0.02

Outcome = Resolved | RapportError
ResolveMany = Callable[[Sequence[CustomerKey], float | None], Mapping[CustomerKey, Outcome]]


class _Ticket:
    __slots__ = ("end", "gave_up", "key", "leads", "outcome", "ready")

    def __init__(self, key: CustomerKey, timeout: float | None) -> None:
        self.key = key
        self.end = None if timeout is None else time.monotonic() + timeout
        self.ready = threading.Event()  # set when the outcome is in, or when this caller is to send
        self.outcome: Outcome | BaseException | None = None
        self.leads = False
        self.gave_up = False

    def remaining(self) -> float | None:
        return None if self.end is None else max(0.0, self.end - time.monotonic())


class ResolutionRounds:
    """`resolve(key, timeout)` with the semantics of one `resolve_many([key], timeout)` call."""

    def __init__(self, resolve_many: ResolveMany, max_keys: int = MAX_KEYS) -> None:
        self._resolve_many = resolve_many
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._queue: deque[_Ticket] = deque()
        self._out = False  # a round is being sent or awaited; then the queue waits for the next
        self.rounds = 0  # queries sent, for tests

    def resolve(self, key: CustomerKey, timeout: float | None) -> Resolved:
        ticket = _Ticket(key, timeout)
        with self._lock:
            self._queue.append(ticket)
            if not self._out:
                self._out = ticket.leads = True
        if not ticket.leads:
            self._wait(ticket)
        if ticket.leads:
            self._send_round(ticket)
        outcome = ticket.outcome
        if isinstance(outcome, Resolved):
            return outcome
        if isinstance(outcome, RapportError):
            # A fresh exception per caller (several may hold this outcome); these take one message.
            raise type(outcome)(*outcome.args)
        raise RapportError(f"customer resolution failed: {type(outcome).__name__}")

    def _wait(self, ticket: _Ticket) -> None:
        while not ticket.ready.wait(ticket.remaining()):
            with self._lock:
                if ticket.ready.is_set():
                    return  # answered or handed the round just as time ran out
                ticket.gave_up = True
                if ticket in self._queue:
                    self._queue.remove(ticket)
            raise Unavailable("customer graph did not answer within the call's deadline")

    def _send_round(self, sender: _Ticket) -> None:
        with self._lock:
            batch = [self._queue.popleft() for _ in range(min(self._max_keys, len(self._queue)))]
        keys = list(dict.fromkeys(t.key for t in batch))
        again: list[_Ticket] = []
        try:
            self.rounds += 1
            outcomes = self._resolve_many(keys, sender.remaining())
            for t in batch:
                t.outcome = outcomes[t.key]
        except Unavailable as exc:
            for t in batch:
                left = t.remaining()
                if t is not sender and (left is None or left > MIN_RETRY_SECONDS):
                    again.append(t)
                else:
                    t.outcome = exc
        except Exception as exc:  # a bug: the sender raises it, the others fail as INTERNAL
            for t in batch:
                t.outcome = exc
            raise
        finally:
            with self._lock:
                self._queue.extendleft(t for t in reversed(again) if not t.gave_up)
                for t in batch:
                    if t not in again:
                        t.ready.set()
                if self._queue:
                    following = self._queue[0]
                    following.leads = True
                    following.ready.set()
                else:
                    self._out = False
