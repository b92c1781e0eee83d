"""Journey report benchmark: the report over 500,000 interactions, on the real graph.

    .venv/bin/python bench/journeys.py                      # 500,000 interactions, 5 timed runs
    .venv/bin/python bench/journeys.py --interactions 50000 --runs 3
    .venv/bin/python bench/journeys.py --keep               # leave the data for another run

Needs the local Neo4j (`make up`). Seeds a week of interactions (March 2011, a range nobody
else writes) for customers whose ids start with a per-run prefix, with bulk UNWIND writes of
the real graph model: (:Customer)-[:HAD]->(:Interaction) with the properties and the digest the
profile worker stores. Then times what GetJourneyReport does (read the range, run the report
rules, build the answer) and prints each phase's p50, and the whole report's p50 and max.
Deletes its own customers and interactions at the end unless --keep. Writes
bench/results/journeys.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import neo4j

from rapport.graph.driver import open_driver
from rapport.graph.schema import apply_migrations
from rapport.journeys import digest
from rapport.journeys.report import ReportQuery
from rapport.journeys.scan import scan_report
from rapport.settings import Neo4jSettings
from rapport.v1 import journeys_pb2
from rapport_profile.api.journey_reader import GraphJourneyReader
from rapport_profile.api.journeys import report_message

RESULTS = Path(__file__).resolve().parent / "results" / "journeys.json"
WEEK_START = datetime(2011, 3, 7, tzinfo=UTC)
WRITE_BATCH = 10_000
TOPICS = ["billing", "delivery", "router-setup", "outage", "upgrade", "cancellation", "password", "roaming"]
INTENTS = ["track_order", "refund", "reset_password", "change_plan", "report_fault", "cancel", "pay_bill"]
ARTICLES = [f"kb-{n}" for n in range(40)]
FLOWS = ["orders", "refunds", "passwords", "faults"]
FACT_KEYS = ["order_number", "account_number", "postcode", "device_serial"]

_WRITE = """
UNWIND $customers AS cid
MERGE (c:Customer {id: cid})
ON CREATE SET c.created_at = datetime($start)
WITH count(*) AS made
UNWIND $rows AS row
MATCH (c:Customer {id: row.customer})
CREATE (c)-[:HAD]->(i:Interaction {at: datetime({epochMillis: row.at}), ingested_at: datetime()})
SET i += row.props
"""


def journey(rng: random.Random, prefix: str, n: int, start_ms: int) -> list[dict[str, Any]]:
    """One customer's week: self-service first, then some contacts, as a contact centre sees it."""
    rows: list[dict[str, Any]] = []
    at = start_ms + rng.randrange(0, 6 * 86_400_000)
    topic = rng.choice(TOPICS)
    intent = rng.choice(INTENTS)
    fact = (rng.choice(FACT_KEYS), f"{rng.randrange(10**6):06d}")
    end_ms = start_ms + 7 * 86_400_000 - 1
    while len(rows) < n and at <= end_ms:
        step = rng.random()
        props: dict[str, Any] = {"direction": "inbound", "topic": topic}
        if step < 0.25:
            article = rng.choice(ARTICLES)
            props |= {
                "channel": "web",
                "kind": "article_view",
                "article_id": article,
                "article_title": f"How to {article}",
            }
        elif step < 0.35:
            props |= {"channel": "web", "kind": "article_feedback", "article_id": rng.choice(ARTICLES),
                      "answer": rng.choice(["yes", "no", "no"])}  # fmt: skip
        elif step < 0.55:
            props |= {"channel": "bot", "kind": "bot_turn", "intent": intent, "flow_id": rng.choice(FLOWS)}
        elif step < 0.62:
            props |= {"channel": "bot", "kind": "bot_exit", "flow_id": rng.choice(FLOWS),
                      "step": rng.choice(["start", "identify", "details"]), "exit_reason": "gave_up"}  # fmt: skip
        else:
            channel, kind = rng.choice([("chat", "message"), ("voice", "call"), ("email", "message")])
            props |= {"channel": channel, "kind": kind, "intent": intent,
                      "outcome": rng.choice(["resolved", "resolved", "unresolved", "escalated"])}  # fmt: skip
            if rng.random() < 0.5:
                props["contact_id"] = f"con_{rng.getrandbits(64):016x}"
        facts = [fact] if rng.random() < 0.2 else []
        if facts:
            props["facts"] = json.dumps([{"key": k, "value": v, "sensitive": False} for k, v in facts])
        props["event_id"] = f"{prefix}-{uuid.uuid4().hex[:20]}"
        props["digest"] = digest.encode(props, facts)
        rows.append({"at": at, "props": props})
        at += rng.randrange(60_000, 20 * 3_600_000)
    return rows


def seed(driver: neo4j.Driver, prefix: str, interactions: int, seed_value: int) -> float:
    rng = random.Random(seed_value)
    start_ms = int(WEEK_START.timestamp() * 1000)
    started = time.perf_counter()
    written = customer_no = 0
    pending: list[dict[str, Any]] = []
    customers: list[str] = []
    while written < interactions:
        cid = f"cus_{prefix}{customer_no:08x}"
        customer_no += 1
        rows = journey(rng, prefix, min(rng.choice([1, 2, 3, 4, 5, 6, 8]), interactions - written), start_ms)
        if not rows:
            continue
        for row in rows:
            row["customer"] = cid
        pending += rows
        customers.append(cid)
        written += len(rows)
        if len(pending) >= WRITE_BATCH or written >= interactions:
            with driver.session() as session:
                session.run(_WRITE, customers=customers, rows=pending, start=WEEK_START.isoformat()).consume()
            pending, customers = [], []
            print(f"  seeded {written:,} interactions", end="\r", flush=True)
    print()
    return time.perf_counter() - started


def delete(driver: neo4j.Driver, prefix: str) -> None:
    with driver.session() as session:
        session.run(
            "MATCH (c:Customer) WHERE c.id STARTS WITH $p "
            "CALL (c) { OPTIONAL MATCH (c)-[:HAD]->(i:Interaction) DETACH DELETE i, c } IN TRANSACTIONS OF 500 ROWS",
            p=f"cus_{prefix}",
        ).consume()


def timed_report(reader: GraphJourneyReader, query: ReportQuery) -> tuple[dict[str, float], journeys_pb2.JourneyReport]:
    """Wall seconds of each phase, and this process's CPU seconds for the read (decoding the
    answer) and the rules: on a machine others share, CPU time shows what the work itself costs."""
    t0, c0 = time.perf_counter(), time.process_time()
    scan = reader.scan(query, timeout=120)
    t1, c1 = time.perf_counter(), time.process_time()
    report = scan_report(scan, query)
    t2, c2 = time.perf_counter(), time.process_time()
    message = report_message(report)
    t3 = time.perf_counter()
    return {
        "read": t1 - t0,
        "rules": t2 - t1,
        "answer": t3 - t2,
        "total": t3 - t0,
        "read_cpu": c1 - c0,
        "rules_cpu": c2 - c1,
    }, message


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interactions", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the seeded data (prints its prefix)")
    parser.add_argument("--prefix", help="time data an earlier --keep run left (skips seeding)")
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args()

    settings = Neo4jSettings.from_env(os.environ)
    driver = open_driver(settings)
    apply_migrations(driver, settings.database)
    prefix = args.prefix or f"be0c{uuid.uuid4().hex[:4]}"
    try:
        seed_seconds = 0.0
        if not args.prefix:
            print(f"seeding {args.interactions:,} interactions (customer prefix cus_{prefix}) ...")
            seed_seconds = seed(driver, prefix, args.interactions, args.seed)
            print(f"seeded in {seed_seconds:.1f} s")
        reader = GraphJourneyReader(driver, settings.database)
        query = ReportQuery(int(WEEK_START.timestamp() * 1e9), int((WEEK_START + timedelta(days=7)).timestamp() * 1e9))
        runs: list[dict[str, float]] = []
        message = journeys_pb2.JourneyReport()
        for n in range(args.runs):
            timing, message = timed_report(reader, query)
            runs.append(timing)
            print(f"run {n + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in timing.items()), flush=True)
        p50 = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        totals = message.totals
        print(
            f"\njourney report over {totals.interactions:,} interactions, {totals.customers:,} customers, "
            f"{totals.journeys:,} journeys: p50 {p50['total']:.2f} s (read {p50['read']:.2f} s, rules "
            f"{p50['rules']:.2f} s, answer {p50['answer']:.3f} s), max {max(r['total'] for r in runs):.2f} s "
            f"over {len(runs)} runs, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; this process's CPU: "
            f"read {p50['read_cpu']:.2f} s, rules {p50['rules_cpu']:.2f} s"
        )
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(
            json.dumps(
                {
                    "interactions": totals.interactions,
                    "customers": totals.customers,
                    "journeys": totals.journeys,
                    "runs": runs,
                    "p50_seconds": p50,
                    "seed_seconds": seed_seconds,
                    "cpus": os.cpu_count(),
                    "load_average": os.getloadavg()[0],
                    "python": platform.python_version(),
                    "at": datetime.now(UTC).isoformat(),
                },
                indent=2,
            )
            + "\n"
        )
    finally:
        if args.keep:
            print(f"kept: --prefix {prefix}")
        else:
            delete(driver, prefix)
        driver.close()


if __name__ == "__main__":
    main()
