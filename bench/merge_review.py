"""Merge review benchmark, against the local Neo4j.

    .venv/bin/python bench/merge_review.py            # customers of 100..5,000 interactions
    .venv/bin/python bench/merge_review.py --quick    # up to 1,000

Measures:
1. UnmergeCustomer's graph transaction (GraphMergeReview.unmerge) for merged customers of
   growing histories: the survivor had N interactions, the absorbed one N/2, and N/5 arrived
   after the merge (half carrying only the absorbed customer's identifier, half the survivor's);
2. ApproveMergeCandidate's transaction for candidate pairs of N interactions each;
3. what keeping reviewed pairs apart costs the profile worker when a batch brings no two
   customers together (the common case): the pure check per batch of 1,000 events.

Everything it writes carries its own id prefix and is deleted at the end. Prints a table and
writes bench/results/merge_review.json.
"""

from __future__ import annotations

import argparse
import json
import platform
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
from rapport_profile.adapters.graph import GraphWriter, seed_graph
from rapport_profile.adapters.merge_review import GraphMergeReview
from rapport_profile.domain.interactions import interaction_record
from rapport_profile.domain.resolution import KnownCustomer
from rapport_profile.synthetic import BASE_TIME, customer_stream, identifier, interaction

RESULTS = Path(__file__).resolve().parent / "results" / "merge_review.json"
SECOND = timedelta(seconds=1)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def history(
    prefix: str, name: str, count: int, *keys: str | ev.Identifier, start: int = 0
) -> list[ev.InteractionEvent]:
    return [
        interaction(f"{prefix}-{name}-{n}", *keys, at=BASE_TIME + (start + n) * SECOND, agent_id=f"{prefix}-A{n % 7}",
                    outcome=ev.OUTCOME_RESOLVED if n % 3 == 0 else ev.OUTCOME_UNSPECIFIED)
        for n in range(count)
    ]  # fmt: skip


def owner(driver: neo4j.Driver, key: str) -> str:
    records, _, _ = driver.execute_query(
        "MATCH (:Identity {key: $k})-[:IDENTIFIES]->(c:Customer) RETURN c.id AS id", k=key
    )
    return str(records[0]["id"])


def unmerging(driver: neo4j.Driver, review: GraphMergeReview, prefix: str, sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        tag = f"{prefix}-u{size}"
        survivor, absorbed = f"email:s.{tag}@example.com", f"crm:{tag}-X"
        seed_graph(driver, history(tag, "s", size, survivor))
        seed_graph(driver, history(tag, "x", size // 2, absorbed, start=size))
        x = owner(driver, absorbed)
        seed_graph(driver, [interaction(f"{tag}-link", survivor, absorbed, at=BASE_TIME + 2 * size * SECOND)])
        later = size // 10
        seed_graph(
            driver,
            history(tag, "lx", later, absorbed, start=3 * size) + history(tag, "ls", later, survivor, start=4 * size),
        )
        records, _, _ = driver.execute_query("MATCH (m:Merge {absorbed_id: $x}) RETURN m.id AS id", x=x)
        began = time.perf_counter()
        done = review.unmerge(records[0]["id"], "bench", f"bench {prefix}", timeout=120)
        elapsed = time.perf_counter() - began
        assert done.restored_interactions == size // 2 + later, done
        rows.append(
            {
                "survivor_interactions": size,
                "absorbed_interactions": size // 2,
                "later_interactions": 2 * later,
                "unmerge_ms": round(elapsed * 1000, 1),
            }
        )
        log(f"unmerge, survivor of {size}: {rows[-1]['unmerge_ms']} ms")
    return rows


def approving(driver: neo4j.Driver, review: GraphMergeReview, prefix: str, sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        tag = f"{prefix}-a{size}"
        cookie = identifier(f"cookie:{tag}", verified=False)
        seed_graph(driver, history(tag, "p", size, f"crm:{tag}-P", cookie))
        seed_graph(driver, history(tag, "q", size, f"crm:{tag}-Q", cookie, start=size))
        p, q = owner(driver, f"crm:{tag}-P"), owner(driver, f"crm:{tag}-Q")
        began = time.perf_counter()
        review.approve(p, q, "bench", f"bench {prefix}", timeout=120)
        rows.append({"interactions_each": size, "approve_ms": round((time.perf_counter() - began) * 1000, 1)})
        log(f"approve, two customers of {size}: {rows[-1]['approve_ms']} ms")
    return rows


def kept_apart_check(driver: neo4j.Driver, prefix: str, batches: int) -> dict[str, Any]:
    writer = GraphWriter(driver)
    events = list(customer_stream(200, 1000, prefix=f"{prefix}-w"))
    records = [interaction_record(e, validate(e)) for e in events]
    # Every identifier belongs to its event's customer (named by its CRM id), as in steady state.
    known = {k: KnownCustomer(r.identity_keys[0], BASE_TIME) for r in records for k in r.identity_keys}
    began = time.perf_counter()
    for _ in range(batches):
        # No two customers meet in these batches: the check never reaches the graph.
        assert writer._kept_apart(None, records, known) == []  # type: ignore[arg-type]
    per_batch = (time.perf_counter() - began) / batches
    return {"events_per_batch": len(records), "check_ms_per_batch": round(per_batch * 1000, 3)}


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
        OPTIONAL MATCH (g:Merge) WHERE g.absorbed_id = c.id OR g.survivor_id = c.id
        OPTIONAL MATCH (o:Customer {merged_into: c.id})
        DETACH DELETE k, c, g, o
        """,
        p=prefix,
    )
    driver.execute_query("MATCH (d:MergeDecision) WHERE d.reason = $r DETACH DELETE d", r=f"bench {prefix}")
    driver.execute_query("MATCH (a:Agent) WHERE a.id STARTS WITH $p DETACH DELETE a", p=prefix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    settings = Neo4jSettings.from_env()
    driver = open_driver(settings)
    apply_migrations(driver, settings.database)
    review = GraphMergeReview(driver, settings.database)
    prefix = "bm" + uuid.uuid4().hex[:8]
    sizes = [100, 1000] if args.quick else [100, 1000, 5000]
    try:
        log("unmerging customers of growing histories")
        unmerge = unmerging(driver, review, prefix, sizes)
        log("approving candidate pairs")
        approve = approving(driver, review, prefix, sizes)
        log("the worker's kept-apart check")
        check = kept_apart_check(driver, prefix, 20)
    finally:
        clean(driver, settings.database, prefix)
        driver.close()
    print()
    for row in unmerge:
        print(f"UnmergeCustomer transaction, survivor {row['survivor_interactions']:>5} + absorbed "
              f"{row['absorbed_interactions']:>5} + later {row['later_interactions']:>4}: "
              f"{row['unmerge_ms']:>8.1f} ms")  # fmt: skip
    for row in approve:
        print(f"ApproveMergeCandidate transaction, {row['interactions_each']:>5} interactions each: "
              f"{row['approve_ms']:>8.1f} ms")  # fmt: skip
    print(f"worker kept-apart check, {check['events_per_batch']}-event batch meeting no two customers: "
          f"{check['check_ms_per_batch']} ms")  # fmt: skip
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": {"platform": platform.platform(), "python": platform.python_version()},
                "quick": args.quick,
                "unmerge": unmerge,
                "approve": approve,
                "kept_apart_check": check,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
