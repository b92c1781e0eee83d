"""Neo4j CPU per GraphWriter statement: where the database's share of ingest goes.

    .venv/bin/python bench/graph_statements.py                  # 40 batches of 500, 3,000 customers
    .venv/bin/python bench/graph_statements.py --batches 80 --batch-size 1000

Writes synthetic batches (rapport_profile.synthetic, as bench/ingest.py) straight through a
GraphWriter, one at a time, and charges each statement with the CPU the Neo4j JVM used while it
ran: the sum over all its threads of /proc/<pid>/task/*/schedstat (nanoseconds, so a statement of
a millisecond is measured, where the process's CPU ticks of 10 ms are not). What no statement was
running for is "commit and the rest": the commit (records, index updates, transaction log) and
whatever the JVM did in the background meanwhile (GC, JIT). Needs the local Neo4j (its process is
found by the Bolt port); RAPPORT_NEO4J_* point it elsewhere. The first quarter of the batches warms
up and is not counted. Figures move by ~10% with the machine's load; compare runs made together.
"""

from __future__ import annotations

import argparse
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlparse

import neo4j
from rich.console import Console
from rich.table import Table

from rapport.devstack.proc import listener_pid
from rapport.events import validate
from rapport.graph.driver import open_driver
from rapport.settings import Neo4jSettings
from rapport_profile.adapters import graph, proactive
from rapport_profile.adapters.graph import BatchResult, GraphWriter
from rapport_profile.domain.interactions import InteractionRecord
from rapport_profile.synthetic import customer_stream

STATEMENTS = {
    text: name
    for module in (graph, proactive)
    for name, text in vars(module).items()
    if name.isupper() and isinstance(text, str) and ("MATCH" in text or "MERGE" in text)
}


class ServerCPU:
    """CPU nanoseconds the process has used, over all its threads."""

    def __init__(self, pid: int) -> None:
        self.tasks = Path(f"/proc/{pid}/task")

    def ns(self) -> int:
        total = 0
        for task in self.tasks.iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError):
                continue  # a thread that ended between the listing and the read
        return total


class Fetched:
    """A statement's records, read to the end (so its CPU is all spent), with a Result's readers."""

    def __init__(self, result: neo4j.Result) -> None:
        self.records = list(result)
        self.summary = result.consume()

    def __iter__(self) -> Iterator[neo4j.Record]:
        return iter(self.records)

    def single(self, strict: bool = False) -> neo4j.Record | None:
        if strict and len(self.records) != 1:
            raise ValueError(f"expected one record, got {len(self.records)}")
        return self.records[0] if self.records else None

    def consume(self) -> neo4j.ResultSummary:
        return self.summary


class MeteredTransaction:
    """Runs statements in a transaction, charging each with the server CPU used while it ran."""

    def __init__(self, tx: neo4j.ManagedTransaction, cpu: ServerCPU, ns: Counter[str], calls: Counter[str]) -> None:
        self.tx, self.cpu, self.ns_by_statement, self.calls = tx, cpu, ns, calls

    def run(self, query: str, parameters: dict[str, Any] | None = None, **kwargs: Any) -> Fetched:
        name = STATEMENTS.get(query, query.strip().splitlines()[0][:40])
        before = self.cpu.ns()
        fetched = Fetched(self.tx.run(query, parameters, **kwargs))
        self.ns_by_statement[name] += self.cpu.ns() - before
        self.calls[name] += 1
        return fetched


class MeteredWriter(GraphWriter):
    def __init__(self, driver: neo4j.Driver, database: str, cpu: ServerCPU) -> None:
        super().__init__(driver, database)
        self.cpu = cpu
        self.ns_by_statement: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()

    def _write(self, tx: neo4j.ManagedTransaction, all_records: list[InteractionRecord]) -> BatchResult:
        metered = MeteredTransaction(tx, self.cpu, self.ns_by_statement, self.calls)
        return super()._write(cast(neo4j.ManagedTransaction, metered), all_records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--customers", type=int, default=3000)
    args = parser.parse_args()
    settings = Neo4jSettings.from_env(os.environ)
    pid = listener_pid(urlparse(settings.uri).port or 7687)
    if pid is None:
        raise SystemExit(f"no local process listens on {settings.uri}: this measures a Neo4j on this machine")
    cpu = ServerCPU(pid)
    events = customer_stream(args.customers, args.batches * args.batch_size, prefix=f"gs{uuid.uuid4().hex[:8]}")
    validated = [(event, validate(event)) for event in events]
    batches = [validated[n : n + args.batch_size] for n in range(0, len(validated), args.batch_size)]
    warmup = len(batches) // 4
    with open_driver(settings) as driver:
        writer = MeteredWriter(driver, settings.database, cpu)
        for batch in batches[:warmup]:
            writer.write_batch(batch)
        writer.ns_by_statement.clear()
        writer.calls.clear()
        started = cpu.ns()
        for batch in batches[warmup:]:
            writer.write_batch(batch)
        total = cpu.ns() - started
    counted = (len(batches) - warmup) * args.batch_size
    table = Table(title=f"Neo4j CPU per event by statement ({counted:,} events, batches of {args.batch_size})")
    for column in ("statement", "us/event", "share", "calls/batch", "ms/call"):
        table.add_column(column, justify="left" if column == "statement" else "right")
    unclaimed = total - sum(writer.ns_by_statement.values())
    rows = [*writer.ns_by_statement.most_common(), ("commit and the rest", unclaimed)]
    for name, ns in rows:
        calls = writer.calls.get(name, 0)
        table.add_row(
            name,
            f"{ns / counted / 1000:.1f}",
            f"{100 * ns / total:.0f}%",
            f"{calls / (len(batches) - warmup):.2f}" if calls else "",
            f"{ns / calls / 1e6:.1f}" if calls else "",
        )
    table.add_row("total", f"{total / counted / 1000:.1f}", "100%", "", "")
    Console().print(table)
    print(f"load average (1 min): {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
