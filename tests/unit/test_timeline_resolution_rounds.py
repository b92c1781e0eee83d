"""Resolution rounds: concurrent resolves share queries, never join one already sent, and each
caller gets its own key's outcome within its own deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence

import pytest

from rapport.errors import FailedPrecondition, NotFound, RapportError, Unavailable
from rapport_timeline.adapters.resolution import Outcome, ResolutionRounds
from rapport_timeline.domain.model import CustomerKey, Resolved

pytestmark = pytest.mark.unit

WAIT = 5.0


def key(name: str) -> CustomerKey:
    return CustomerKey("id", name)


class Graph:
    """A resolve_many that records each round's keys; a round can be held until released, or
    made to fail."""

    def __init__(self) -> None:
        self.rounds: list[list[str]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.started = threading.Event()
        self.fail: dict[int, Exception] = {}  # round number (from 0) -> what it raises
        self.missing: set[str] = set()

    def resolve_many(self, keys: Sequence[CustomerKey], timeout: float | None) -> Mapping[CustomerKey, Outcome]:
        number = len(self.rounds)
        self.rounds.append([k.value for k in keys])
        self.started.set()
        assert self.hold.wait(WAIT)
        if number in self.fail:
            raise self.fail[number]
        return {
            k: NotFound(f"customer: no customer with id {k.value}") if k.value in self.missing else resolved(k)
            for k in keys
        }


def resolved(k: CustomerKey) -> Resolved:
    return Resolved(f"live-{k.value}", len(k.value))


class Caller(threading.Thread):
    def __init__(self, rounds: ResolutionRounds, name: str, timeout: float | None = WAIT) -> None:
        super().__init__(daemon=True)
        self.rounds, self.key, self.timeout = rounds, key(name), timeout
        self.result: Resolved | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.rounds.resolve(self.key, self.timeout)
        except BaseException as exc:  # kept for the test to assert on
            self.error = exc


def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


def queued(rounds: ResolutionRounds, n: int) -> Callable[[], bool]:
    return lambda: len(rounds._queue) == n


def start_held_round(graph: Graph, rounds: ResolutionRounds, name: str) -> Caller:
    """A first caller whose round is out and held, so later callers queue behind it."""
    graph.hold.clear()
    first = Caller(rounds, name)
    first.start()
    assert graph.started.wait(WAIT)
    return first


def test_a_lone_resolve_sends_its_own_round_at_once():
    graph = Graph()
    rounds = ResolutionRounds(graph.resolve_many)
    assert rounds.resolve(key("a"), 1.0) == resolved(key("a"))
    assert rounds.resolve(key("b"), None) == resolved(key("b"))
    assert graph.rounds == [["a"], ["b"]]


def test_resolves_arriving_while_a_round_is_out_share_the_next_round_and_never_join_the_sent_one():
    graph = Graph()
    rounds = ResolutionRounds(graph.resolve_many)
    first = start_held_round(graph, rounds, "a")
    later = [Caller(rounds, name) for name in ("b", "c", "b", "a")]
    for caller in later:
        caller.start()
    until(queued(rounds, 4))
    graph.hold.set()
    for caller in [first, *later]:
        caller.join(WAIT)
        assert caller.error is None and caller.result == resolved(caller.key)
    # "a" arrived again while the first round was out: it is asked again, not served from it.
    assert graph.rounds == [["a"], ["b", "c", "a"]]
    assert rounds.rounds == 2


def test_a_round_carries_at_most_max_keys_and_the_rest_follow():
    graph = Graph()
    rounds = ResolutionRounds(graph.resolve_many, max_keys=2)
    first = start_held_round(graph, rounds, "a")
    later = [Caller(rounds, name) for name in ("b", "c", "d")]
    for caller in later:
        caller.start()
        until(queued(rounds, later.index(caller) + 1))  # in this order
    graph.hold.set()
    for caller in [first, *later]:
        caller.join(WAIT)
        assert caller.result == resolved(caller.key)
    assert graph.rounds == [["a"], ["b", "c"], ["d"]]


def test_each_caller_gets_its_own_keys_outcome_as_its_own_exception():
    graph = Graph()
    graph.missing = {"gone"}
    rounds = ResolutionRounds(graph.resolve_many)
    first = start_held_round(graph, rounds, "a")
    later = [Caller(rounds, name) for name in ("gone", "gone", "b")]
    for caller in later:
        caller.start()
    until(queued(rounds, 3))
    graph.hold.set()
    for caller in [first, *later]:
        caller.join(WAIT)
    gone = [c.error for c in later[:2]]
    assert all(isinstance(e, NotFound) and str(e) == "customer: no customer with id gone" for e in gone)
    assert gone[0] is not gone[1]
    assert later[2].result == resolved(key("b")) and first.result == resolved(key("a"))


def test_a_caller_waits_no_longer_than_its_deadline_and_leaves_the_queue():
    graph = Graph()
    rounds = ResolutionRounds(graph.resolve_many)
    first = start_held_round(graph, rounds, "a")
    hasty = Caller(rounds, "b", timeout=0.05)
    hasty.start()
    hasty.join(WAIT)
    assert isinstance(hasty.error, Unavailable)
    assert len(rounds._queue) == 0
    graph.hold.set()
    first.join(WAIT)
    assert first.result == resolved(key("a"))
    assert rounds.resolve(key("c"), 1.0) == resolved(key("c"))
    assert graph.rounds == [["a"], ["c"]]


def second_round_of_two(graph: Graph, rounds: ResolutionRounds) -> tuple[Caller, Caller]:
    """Callers "b" (the sender) and "c" queue behind a held round for "a"; all three are done."""
    first = start_held_round(graph, rounds, "a")
    sender, other = Caller(rounds, "b"), Caller(rounds, "c")
    sender.start()
    until(queued(rounds, 1))
    other.start()
    until(queued(rounds, 2))
    graph.hold.set()
    for caller in (first, sender, other):
        caller.join(WAIT)
    return sender, other


def test_when_a_round_runs_out_of_time_its_sender_fails_and_callers_with_time_left_go_on():
    graph = Graph()
    graph.fail = {1: Unavailable("customer graph did not answer within the call's deadline")}
    rounds = ResolutionRounds(graph.resolve_many)
    sender, patient = second_round_of_two(graph, rounds)
    assert isinstance(sender.error, Unavailable)
    assert patient.error is None and patient.result == resolved(key("c"))
    assert graph.rounds == [["a"], ["b", "c"], ["c"]]


def test_a_bug_in_a_round_is_raised_by_its_sender_and_internal_for_the_others():
    graph = Graph()
    graph.fail = {1: KeyError("boom")}
    rounds = ResolutionRounds(graph.resolve_many)
    sender, other = second_round_of_two(graph, rounds)
    assert isinstance(sender.error, KeyError)
    assert type(other.error) is RapportError and "KeyError" in str(other.error)
    # The rounds go on after a failure.
    assert rounds.resolve(key("d"), 1.0) == resolved(key("d"))


def test_many_threads_each_get_their_own_answer():
    graph = Graph()
    rounds = ResolutionRounds(graph.resolve_many)
    callers = [Caller(rounds, f"k{n % 7}") for n in range(40)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(WAIT)
        assert caller.error is None and caller.result == resolved(caller.key)
    assert sum(len(r) for r in graph.rounds) >= 7
    assert not rounds._queue and not rounds._out


def test_failed_precondition_outcomes_keep_their_type():
    rounds = ResolutionRounds(lambda keys, timeout: {k: FailedPrecondition("customer: ambiguous") for k in keys})
    with pytest.raises(FailedPrecondition, match="ambiguous"):
        rounds.resolve(key("a"), 1.0)
