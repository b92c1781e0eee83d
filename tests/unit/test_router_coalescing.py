"""Concurrent calls of one statement share a run: batching, errors and deadlines."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from rapport_router.adapters.coalescing import Coalescer
from rapport_router.deadline import DeadlineExceeded, deadline_scope


class Statement:
    """Doubles its inputs; the first run holds until `release` is set."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.first_running = threading.Event()
        self.release = threading.Event()

    def __call__(self, args: Sequence[int]) -> list[int | BaseException]:
        self.batches.append(list(args))
        if len(self.batches) == 1:
            self.first_running.set()
            assert self.release.wait(5)
        return [ValueError(f"odd {a}") if a < 0 else a * 2 for a in args]


def start(fn: Callable[..., Any], *args: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn(*args)
        except BaseException as exc:
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    return t, out


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    until = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < until, "condition not met"
        time.sleep(0.001)


def test_a_lone_call_runs_at_once_and_alone():
    statement = Statement()
    statement.release.set()
    run = Coalescer(statement, "double")
    assert run(21) == 42
    assert statement.batches == [[21]] and (run.runs, run.calls) == (1, 1)


def test_calls_arriving_while_one_runs_share_the_next_run_and_each_gets_its_own_answer():
    statement = Statement()
    run = Coalescer(statement, "double")
    first, first_out = start(run, 1)
    assert statement.first_running.wait(5)
    others = [start(run, n) for n in (2, 3, -4)]
    wait_for(lambda: len(run._waiting) == 3)
    statement.release.set()
    for t, _ in [(first, first_out), *others]:
        t.join(5)
    assert statement.batches == [[1], [2, 3, -4]]
    assert first_out["value"] == 2
    assert [out.get("value") for _, out in others] == [4, 6, None]
    # An answer that is an exception is raised to its own caller only.
    assert isinstance(others[2][1]["error"], ValueError)
    assert (run.runs, run.calls) == (2, 4)


def test_a_failing_run_fails_every_call_it_carried():
    def broken(args: Sequence[int]) -> list[int | BaseException]:
        raise ConnectionError("graph unreachable")

    run = Coalescer(broken, "double")
    with pytest.raises(ConnectionError):
        run(1)
    assert (run.runs, run.calls) == (1, 1)


def test_a_call_not_taken_before_its_deadline_gives_up_and_never_runs():
    statement = Statement()
    run = Coalescer(statement, "double")
    first, first_out = start(run, 1)
    assert statement.first_running.wait(5)

    def impatient() -> int:
        with deadline_scope(0.05):
            return run(7)

    t, out = start(impatient)
    t.join(5)
    assert isinstance(out["error"], DeadlineExceeded)
    statement.release.set()
    first.join(5)
    assert first_out["value"] == 2
    assert statement.batches == [[1]]


def test_many_callers_each_get_their_own_answer_in_runs_of_at_most_the_limit():
    sizes: list[int] = []

    def double(args: Sequence[int]) -> list[int | BaseException]:
        sizes.append(len(args))
        time.sleep(0.001)
        return [a * 2 for a in args]

    run = Coalescer(double, "double", limit=4)
    wrong: list[tuple[int, int]] = []

    def caller(k: int) -> None:
        for n in range(50):
            arg = k * 1000 + n
            if (answer := run(arg)) != arg * 2:
                wrong.append((arg, answer))

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert not wrong
    assert run.calls == 600 and sum(sizes) == 600 and max(sizes) <= 4
    # They did share: fewer runs than calls.
    assert run.runs < 600
