"""The long fuzz run: ≥100,000 generated hostile inputs through the worker's decoder and
validator, the identity rules, and every ProfileService and TimelineService method (through
a real in-process gRPC server with token checks on, against the real Neo4j graph), and with
--router every RouterService method.

    make up                                   # Kafka and Neo4j on 127.0.0.1
    .venv/bin/python bench/fuzz.py            # 100,000 inputs, seed 0
    .venv/bin/python bench/fuzz.py --inputs 1000000 --seed 7
    # RouterService too; it writes generated agents and contacts, so give it a scratch graph:
    RAPPORT_STATE_DIR=/tmp/fuzz-stack RAPPORT_NEO4J_BOLT_PORT=17687 RAPPORT_KAFKA_PORT=19092 \
      RAPPORT_KAFKA_CONTROLLER_PORT=19093 .venv/bin/python -m rapport.devstack up
    RAPPORT_NEO4J_URI=bolt://127.0.0.1:17687 .venv/bin/python bench/fuzz.py --router
    RAPPORT_STATE_DIR=/tmp/fuzz-stack .venv/bin/python -m rapport.devstack clean

Prints, per target, the inputs run, their rate and the statuses or outcomes seen, then every
finding (a crash, a hang, an unexplained status) with the input that caused it; exits 1 when
there is one. The same strategies run briefly in `make test` (tests/fuzz/).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rapport.events import InvalidEvent, decode, validate
from rapport.graph.driver import open_driver
from rapport.graph.schema import apply_migrations
from rapport.identity import InvalidIdentifier, normalise, parse_identifier
from rapport.settings import Neo4jSettings
from rapport.v1 import events_pb2
from tests.fuzz.stack import FuzzStack, start_fuzz_stack
from tests.fuzz.strategies import NASTY, hostile_bytes, messages, plausible_events, text_values

KNOWN = ("ana@example.com", "+447700900123", "07700 900123", "C-1", "x", "instagram", "ANA@Example.COM ")
# Shares of the total, by target; the gRPC share is split evenly between the methods.
SHARES = {
    "events.decode+validate (bytes)": 0.22,
    "events.validate (messages)": 0.08,
    "identity.normalise": 0.06,
    "identity.parse_identifier": 0.03,
    "grpc methods": 0.58,
    "grpc authorization header": 0.03,
}


@dataclass
class Report:
    name: str
    inputs: int = 0
    seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    findings: list[str] = field(default_factory=list)


def run(
    name: str, strategy: st.SearchStrategy[Any], examples: int, seed_value: int, check: Callable[[Any], str]
) -> Report:
    """Feeds `examples` inputs to `check`, which returns the outcome's name; anything it raises
    is a finding (recorded with the input, and the run goes on)."""
    report = Report(name)

    @seed(seed_value)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def body(value: Any) -> None:
        report.inputs += 1
        try:
            report.outcomes[check(value)] += 1
        except Exception as exc:
            report.outcomes["FINDING"] += 1
            report.findings.append(f"{type(exc).__name__}: {exc} <- {value!r:.300}")

    start = time.perf_counter()
    body()
    report.seconds = time.perf_counter() - start
    return report


def check_event_bytes(payload: bytes) -> str:
    try:
        validate(decode(payload))
    except InvalidEvent as exc:
        return f"InvalidEvent({exc.field.split('[')[0].split('.')[0]})"
    return "valid"


def check_event_message(event: events_pb2.InteractionEvent) -> str:
    payload = event.SerializeToString()
    try:
        if decode(payload) != event:
            raise AssertionError("decode(serialize(event)) != event")
        validate(event)
    except InvalidEvent:
        return "InvalidEvent"
    return "valid"


def check_identifier(identifier: events_pb2.Identifier) -> str:
    try:
        normalised = normalise(identifier)
    except InvalidIdentifier as exc:
        return f"InvalidIdentifier({exc.field})"
    if parse_identifier(normalised.key).key != normalised.key:
        raise AssertionError(f"{normalised.key!r} does not read back as itself")
    return "valid"


def check_typed(text: str) -> str:
    try:
        parsed = parse_identifier(text)
    except InvalidIdentifier as exc:
        return f"InvalidIdentifier({exc.field})"
    if parse_identifier(parsed.key) != parsed:
        raise AssertionError(f"{parsed.key!r} does not read back as itself")
    return "valid"


def grpc_reports(stack: FuzzStack, per_method: int, headers: int, seed_value: int) -> Iterator[Report]:
    """One report per method, each as soon as it is done, then the authorization header's."""
    for target in stack.targets:

        def check(payload: bytes, target: Any = target) -> str:
            outcome = stack.call(target, payload)
            if not outcome.explained:
                raise AssertionError(f"{outcome.code.name}: {outcome.details}")
            return outcome.code.name

        yield run(f"grpc {target.name}", hostile_bytes(target.request, stack.known), per_method, seed_value, check)
    get_customer = next(t for t in stack.targets if t.name == "GetCustomer")
    printable = st.characters(min_codepoint=0x20, max_codepoint=0x7E)

    def check_header(header: str) -> str:
        outcome = stack.call(get_customer, b"", (("authorization", header),))
        if outcome.code.name != "UNAUTHENTICATED":
            raise AssertionError(f"{outcome.code.name}: {outcome.details}")
        return outcome.code.name

    header_strategy = st.one_of(
        st.text(printable, max_size=120), st.text(printable, max_size=60).map("Bearer ".__add__)
    )
    yield run("grpc authorization header", header_strategy, headers, seed_value, check_header)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=100_000, help="total generated inputs (default 100,000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--router",
        action="store_true",
        help="fuzz RouterService too; it writes generated agents and contacts to the graph: use a scratch stack "
        "(make clean afterwards)",
    )
    args = parser.parse_args()
    n = args.inputs

    def share(key: str) -> int:
        return max(1, math.ceil(n * SHARES[key]))

    # Refused calls and undecodable requests are logged at WARNING / INFO: expected here.
    logging.basicConfig(level=logging.ERROR)
    started = time.perf_counter()
    reports = [
        run(
            "events.decode+validate (bytes)",
            st.one_of(
                hostile_bytes(events_pb2.InteractionEvent.DESCRIPTOR, KNOWN),
                plausible_events(KNOWN).map(lambda e: e.SerializeToString()),
            ),
            share("events.decode+validate (bytes)"),
            args.seed,
            check_event_bytes,
        ),
        run(
            "events.validate (messages)",
            st.one_of(messages(events_pb2.InteractionEvent.DESCRIPTOR, KNOWN), plausible_events(KNOWN)),
            share("events.validate (messages)"),
            args.seed,
            check_event_message,
        ),
        run(
            "identity.normalise",
            messages(events_pb2.Identifier.DESCRIPTOR, KNOWN),
            share("identity.normalise"),
            args.seed,
            check_identifier,
        ),
        run(
            "identity.parse_identifier",
            st.one_of(text_values(KNOWN), st.text(alphabet=st.sampled_from(NASTY + ":/email"), max_size=40)),
            share("identity.parse_identifier"),
            args.seed,
            check_typed,
        ),
    ]
    for report in reports:
        print_report(report)
    neo4j_settings = Neo4jSettings.from_env()
    driver = open_driver(neo4j_settings)
    apply_migrations(driver, neo4j_settings.database)
    stack = start_fuzz_stack(neo4j_settings, driver, router=args.router)
    per_method = max(1, math.ceil(share("grpc methods") / len(stack.targets)))  # the total stays >= --inputs
    try:
        for report in grpc_reports(stack, per_method, share("grpc authorization header"), args.seed):
            print_report(report)
            reports.append(report)
    finally:
        stack.close()
        driver.close()
    total = sum(r.inputs for r in reports)
    findings = [f for r in reports for f in r.findings]
    elapsed = time.perf_counter() - started
    print(
        f"\ntotal: {total:,} inputs in {elapsed:,.0f} s ({total / elapsed:,.0f}/s), seed {args.seed}, "
        f"{os.cpu_count()} CPUs; findings: {len(findings)}"
    )
    for finding in findings[:50]:
        print("  FINDING", finding)
    return 1 if findings else 0


def print_report(report: Report) -> None:
    rate = report.inputs / report.seconds if report.seconds else 0.0
    top = ", ".join(f"{name} {count:,}" for name, count in report.outcomes.most_common(6))
    print(f"{report.name:34} {report.inputs:>8,} inputs {report.seconds:>7.1f} s {rate:>7,.0f}/s  {top}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
