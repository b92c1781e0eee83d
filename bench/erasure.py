"""Erasure and retention benchmark, against the local Neo4j.

    .venv/bin/python bench/erasure.py            # 24 batches of 1,000 events, customers of 10..3,000
    .venv/bin/python bench/erasure.py --quick    # fewer batches and smaller customers

Measures:
1. what the tombstone screening costs the profile worker: GraphWriter batches of 1,000 events
   written with the screening and without it, interleaved, ms per event each; and the parts of
   the screening alone (the one ERASED lookup, the hashing) per batch;
2. ForgetCustomer's graph transaction (GraphEraser.forget) for customers of growing histories;
3. the retention purge: interactions per second in batches of 500, aggregates corrected.

Everything it writes carries its own id prefix (retention data is dated 1970, the purge cutoff
1971) and is deleted at the end. Prints a table and writes bench/results/erasure.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import neo4j

from rapport.events import validate
from rapport.graph.driver import open_driver
from rapport.graph.schema import apply_migrations
from rapport.settings import Neo4jSettings
from rapport.v1 import events_pb2 as ev
from rapport_profile.adapters.erasure import GraphEraser
from rapport_profile.adapters.graph import ERASED, GraphWriter
from rapport_profile.adapters.retention import GraphRetention
from rapport_profile.api.customer_view import CustomerLookup
from rapport_profile.domain.erasure import Tombstones
from rapport_profile.domain.interactions import InteractionRecord
from rapport_profile.domain.resolution import KnownCustomer
from rapport_profile.synthetic import customer_stream, interaction

RESULTS = Path(__file__).resolve().parent / "results" / "erasure.json"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Unscreened(GraphWriter):
    """The writer as it was before erasure: no tombstone lookup."""

    def _without_erased(
        self, tx: neo4j.ManagedTransaction, records: list[InteractionRecord], known: dict[str, KnownCustomer | None]
    ) -> tuple[list[InteractionRecord], dict[str, KnownCustomer | None], list[str], int]:
        return records, known, [], 0


def screening(driver: neo4j.Driver, prefix: str, batches: int) -> dict[str, Any]:
    events = [(e, validate(e)) for e in customer_stream(batches * 100, batches * 1000, prefix=prefix, agents=50)]
    chunks = [events[i : i + 1000] for i in range(0, len(events), 1000)]
    writers = {"screened": GraphWriter(driver), "unscreened": Unscreened(driver)}
    times: dict[str, list[float]] = {name: [] for name in writers}
    for n, chunk in enumerate(chunks):
        name = "screened" if n % 2 == 0 else "unscreened"
        began = time.perf_counter()
        writers[name].write_batch(chunk)
        if n >= 2:  # the first two warm up
            times[name].append((time.perf_counter() - began) * 1000 / len(chunk))
    tombstones = Tombstones()
    sample = chunks[0]
    began = time.perf_counter()
    hashes = [tombstones.event(e.event_id) for e, _ in sample]
    hashes += [tombstones.identity(i.key) for _, ids in sample for i in ids]
    hashing_ms = (time.perf_counter() - began) * 1000
    lookups = []
    for _ in range(20):
        began = time.perf_counter()
        driver.execute_query(ERASED, hashes=hashes)
        lookups.append((time.perf_counter() - began) * 1000)
    return {
        "ms_per_event_screened": round(statistics.median(times["screened"]), 4),
        "ms_per_event_unscreened": round(statistics.median(times["unscreened"]), 4),
        "erased_lookup_ms_per_batch": round(statistics.median(lookups), 2),
        "hashes_per_batch": len(hashes),
        "hashing_ms_per_batch": round(hashing_ms, 2),
    }


def forgetting(driver: neo4j.Driver, prefix: str, sizes: list[int]) -> list[dict[str, Any]]:
    writer, eraser = GraphWriter(driver), GraphEraser(driver)
    base = datetime(2020, 1, 1, tzinfo=UTC)
    rows = []
    for size in sizes:
        crm = f"crm:{prefix}-F{size}"
        events = [
            interaction(f"{prefix}-f{size}-{n}", crm, at=base + timedelta(minutes=n), agent_id=f"{prefix}-A{n % 7}",
                        outcome=ev.OUTCOME_RESOLVED, facts=[ev.Fact(key="plan", value="fibre")])
            for n in range(size)
        ]  # fmt: skip
        for start in range(0, size, 1000):
            writer.write_batch([(e, validate(e)) for e in events[start : start + 1000]])
        began = time.perf_counter()
        receipt = eraser.forget(CustomerLookup(identity_key=crm), "benchmark", "bench", 120.0)
        elapsed = (time.perf_counter() - began) * 1000
        assert receipt is not None
        rows.append({"interactions": size, "forget_ms": round(elapsed, 1)})
        log(f"forgot a customer of {size} interactions in {elapsed:.0f} ms")
    return rows


def purging(driver: neo4j.Driver, prefix: str, count: int) -> dict[str, Any]:
    writer = GraphWriter(driver)
    old = datetime(1970, 1, 2, tzinfo=UTC)
    events = [
        interaction(f"{prefix}-r{n}", f"crm:{prefix}-R{n % 200}", at=old + timedelta(minutes=n),
                    agent_id=f"{prefix}-A{n % 7}", outcome=ev.OUTCOME_RESOLVED, csat=1 + n % 5)
        for n in range(count)
    ]  # fmt: skip
    for start in range(0, count, 1000):
        writer.write_batch([(e, validate(e)) for e in events[start : start + 1000]])
    retention = GraphRetention(driver)
    cutoff = datetime(1971, 1, 1, tzinfo=UTC)
    purged, began = 0, time.perf_counter()
    while batch := retention.purge_batch(cutoff, 500, datetime.now(UTC), 120.0).interactions:
        purged += batch
    elapsed = time.perf_counter() - began
    return {"purged": purged, "seconds": round(elapsed, 2), "interactions_per_second": round(purged / elapsed)}


def clean(driver: neo4j.Driver, database: str, prefix: str) -> None:
    with driver.session(database=database) as session:
        session.run(
            "MATCH (i:Interaction) WHERE i.event_id STARTS WITH $p CALL (i) { DETACH DELETE i } IN TRANSACTIONS",
            p=prefix,
        ).consume()
    driver.execute_query(
        """
        MATCH (k:Identity) WHERE k.value CONTAINS $p
        OPTIONAL MATCH (k)-[:IDENTIFIES]->(c:Customer)
        DETACH DELETE k, c
        """,
        p=prefix,
    )
    driver.execute_query("MATCH (a:Agent) WHERE a.id STARTS WITH $p DETACH DELETE a", p=prefix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    settings = Neo4jSettings.from_env()
    driver = open_driver(settings)
    apply_migrations(driver, settings.database)
    prefix = "be" + uuid.uuid4().hex[:8]
    try:
        log("screening: batches of 1,000 events with and without the tombstone lookup")
        screen = screening(driver, prefix, 8 if args.quick else 24)
        log("forgetting customers")
        forget = forgetting(driver, prefix, [10, 100, 1000] if args.quick else [10, 100, 1000, 3000])
        log("purging")
        purge = purging(driver, prefix, 2000 if args.quick else 10_000)
    finally:
        clean(driver, settings.database, prefix)
        driver.close()
    overhead = screen["ms_per_event_screened"] - screen["ms_per_event_unscreened"]
    print()
    print(f"worker, ms/event    screened {screen['ms_per_event_screened']:.3f}   "
          f"unscreened {screen['ms_per_event_unscreened']:.3f}   difference {overhead:+.3f}")  # fmt: skip
    print(f"screening per 1,000-event batch: ERASED lookup {screen['erased_lookup_ms_per_batch']} ms for "
          f"{screen['hashes_per_batch']} hashes, hashing {screen['hashing_ms_per_batch']} ms")  # fmt: skip
    for row in forget:
        print(f"ForgetCustomer transaction, {row['interactions']:>5} interactions: {row['forget_ms']:>8.1f} ms")
    print(f"retention purge: {purge['purged']} interactions in {purge['seconds']} s "
          f"({purge['interactions_per_second']}/s, batches of 500)")  # fmt: skip
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": {"platform": platform.platform(), "python": platform.python_version()},
                "quick": args.quick,
                "screening": screen,
                "forget": forget,
                "purge": purge,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
