"""Ingest benchmark: Kafka -> profile worker -> Neo4j, end to end, on this machine.

    .venv/bin/python bench/ingest.py            # 200,000 events for 20,000 customers
    .venv/bin/python bench/ingest.py --quick    # 20,000 events for 2,000 customers, shorter runs

Needs the local Kafka and Neo4j (`make up`; RAPPORT_KAFKA_BOOTSTRAP / RAPPORT_NEO4J_* point it
elsewhere). Every run uses fresh topics, a fresh consumer group and its own id prefix, so it
never touches other data. Runs `python -m rapport_profile.worker` as child processes in one
consumer group, as a deployment scales out: two for the throughput runs (--workers; one per core
here), one for freshness (--fresh-workers: 1,000 events/s needs less than a core, and a second
process only halves the batches, which costs more CPU per event and, on a busy machine, latency).
It measures, in one run:

1. sustained rate: the events are serialised up front, then produced as fast as the producer
   goes while the batched worker ingests; rate = events / (first produced -> last visible in
   the graph), "visible" meaning a count query on Interaction sees it;
2. the same with RAPPORT_PROFILE_BATCH_SIZE=1 as the baseline (fewer events), and the ratio;
3. freshness at a fixed 1,000 events/s: produced (send call) -> committed, where committed is
   the `committed_at` of the CustomerUpdated record the worker publishes right after the graph
   transaction commits; p50/p95/p99;
4. the worker's peak resident memory (sampled every 100 ms) over the sustained run;
5. CPU, which holds on a shared machine where wall-clock rates do not: the worker's CPU per
   event, this producer's (it shares the cores), and Neo4j's and Kafka's CPU seconds per 10,000
   events (their processes are found by their listening ports, so only when they run on this
   machine), with the load average.

A warm-up (unmeasured rounds of --warmup-events, until Neo4j's CPU per event is steady, at most
--warmup-rounds) comes first, so a freshly started Neo4j is measured warm, as a serving one is: its
JIT needs a few hundred thousand events (see `warm_up`).
Prints a table and writes bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import neo4j
import psutil
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from rich.console import Console
from rich.table import Table

from rapport.devstack.proc import listener_pid
from rapport.events import validate
from rapport.graph.driver import open_driver
from rapport.graph.schema import apply_migrations
from rapport.identity import partition_key
from rapport.publisher import RememberedPartitions
from rapport.settings import KafkaSettings, Neo4jSettings
from rapport.topics import ensure_topics
from rapport.v1 import events_pb2 as ev
from rapport_profile.synthetic import customer_stream
from rapport_profile.worker_process import WorkerProcess, free_port, worker_env

RESULTS = Path(__file__).resolve().parent / "results" / "ingest.json"
console = Console()


def log(message: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {message}", highlight=False)


def fresh_topics(base: KafkaSettings, run: str, name: str) -> KafkaSettings:
    settings = KafkaSettings(
        bootstrap_servers=base.bootstrap_servers,
        interactions_topic=f"bench.{run}.{name}.interactions",
        dead_letter_topic=f"bench.{run}.{name}.dlq",
        customer_updates_topic=f"bench.{run}.{name}.customer-updates",
        interactions_partitions=base.interactions_partitions,
        request_timeout=base.request_timeout,
    )
    ensure_topics(settings)
    return settings


def serialise(events: Iterable[ev.InteractionEvent]) -> list[tuple[str, bytes, bytes]]:
    out = []
    for event in events:
        validate(event)
        out.append((event.event_id, partition_key(list(event.identifiers)), event.SerializeToString()))
    return out


def keep_out_of_collections() -> None:
    """The payloads live as long as the run: Python's collector walked them again and again while the
    producer ran (~5 us of this process's CPU per event produced)."""
    gc.freeze()


def producer(settings: KafkaSettings) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        linger_ms=5,
        batch_size=256 * 1024,
        max_in_flight_requests_per_connection=5,
        partitioner=RememberedPartitions(),
        **settings.kafka_python_kwargs(),
    )


def stored(driver: neo4j.Driver, prefix: str) -> int:
    records, _, _ = driver.execute_query(
        "MATCH (i:Interaction) WHERE i.event_id STARTS WITH $p RETURN count(i) AS n", p=prefix
    )
    return int(records[0]["n"])


def stored_of(driver: neo4j.Driver, event_ids: list[str]) -> int:
    records, _, _ = driver.execute_query(
        "UNWIND $ids AS id MATCH (i:Interaction {event_id: id}) RETURN count(i) AS n", ids=event_ids
    )
    return int(records[0]["n"])


def wait_visible(
    driver: neo4j.Driver, prefix: str, last_ids: list[str], total: int, workers: list[WorkerProcess], timeout: float
) -> float:
    """Polls the graph until `total` events with `prefix` are there; returns when it saw them.

    Counting every event four times a second cost Neo4j a share of the CPU it was being measured
    on, so until the last events produced (`last_ids`) are visible only they are looked up.
    """
    deadline = time.monotonic() + timeout
    last_log = time.monotonic()
    while time.monotonic() < deadline:
        tail = stored_of(driver, last_ids)
        if tail >= len(last_ids):
            n = stored(driver, prefix)
            if n >= total:
                return time.monotonic()
        if time.monotonic() - last_log > 10:
            log(f"  {stored(driver, prefix):,} / {total:,} visible")
            last_log = time.monotonic()
        for worker in workers:
            if not worker.running:
                raise RuntimeError(f"worker died:\n{worker.log_tail()}")
        time.sleep(0.25)
    raise TimeoutError(f"only {stored(driver, prefix):,} of {total:,} visible after {timeout} s")


class ServerCPU:
    """CPU seconds used by the local Neo4j and Kafka, found by their listening ports."""

    def __init__(self, graph: Neo4jSettings, kafka: KafkaSettings) -> None:
        kafka_port = int(kafka.bootstrap_servers.split(",")[0].rsplit(":", 1)[1])
        self.pids = {
            "neo4j": listener_pid(urlparse(graph.uri).port or 7687),
            "kafka": listener_pid(kafka_port),
        }

    def sample(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for name, pid in self.pids.items():
            try:
                times = psutil.Process(pid).cpu_times() if pid else None
            except psutil.Error:
                times = None
            out[name] = times.user + times.system if times else None
        return out


def wait_for_group(topics: KafkaSettings, group: str, members: int, timeout: float = 90.0) -> None:
    """Waits until the group has settled with `members` consumers, so no rebalance falls in a run."""
    admin = KafkaAdminClient(bootstrap_servers=topics.bootstrap_servers, **topics.kafka_python_kwargs())
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                found = admin.describe_groups([group]).get(group) or {}
            except KafkaError as exc:
                # A fresh broker has no coordinator until its offsets topic exists.
                if not exc.retriable:
                    raise
                found = {}
            if found.get("group_state") == "Stable" and len(found.get("members") or []) == members:
                return
            time.sleep(0.5)
        raise TimeoutError(f"consumer group {group} has not settled with {members} members after {timeout} s")
    finally:
        admin.close()


@contextmanager
def worker_processes(
    count: int, topics: KafkaSettings, graph: Neo4jSettings, *, group: str, batch_size: int, linger: float, log: Path
) -> Iterator[list[WorkerProcess]]:
    """`count` workers in one consumer group, as a deployment scales out: Kafka splits the partitions."""
    with ExitStack() as stack:
        workers = []
        for n in range(count):
            env = worker_env(topics, graph, group=group, port=free_port(), batch_size=batch_size, linger=linger)
            workers.append(stack.enter_context(WorkerProcess(env, log.with_name(f"{log.stem}-{n}.log"))))
        wait_for_group(topics, group, count)
        yield workers


def per_10k(before: float | None, after: float | None, events: int) -> float | None:
    return None if before is None or after is None else round((after - before) * 10_000 / events, 2)


def warm_up(
    base: KafkaSettings,
    graph: Neo4jSettings,
    driver: neo4j.Driver,
    *,
    run: str,
    events: int,
    rounds: int,
    batch_size: int,
    linger: float,
    logs: Path,
    servers: ServerCPU,
) -> dict[str, Any]:
    """Unmeasured rounds until Neo4j's CPU per event stops falling, so the runs measure it warm.

    A freshly started Neo4j compiles its hot paths for the first few hundred thousand events, at
    up to twice the CPU per event of a server that has been running (measured 2026-11-23: 2.3 s
    per 10k events in a run after one 50,000-event round, 1.8 s in the next run); a deployment
    serves warm. Steady: within 10% of the round before. Without Neo4j's process on this machine
    its CPU cannot be read, and one round is run.
    """
    cpu: list[float] = []
    for n in range(rounds):
        r = run_sustained(
            base, graph, driver, run=run, name=f"warmup{n}", customers=max(1, events // 10), events=events,
            batch_size=batch_size, linger=linger, logs=logs, servers=servers, workers=1,
        )  # fmt: skip
        now = r["neo4j_cpu_s_per_10k_events"]
        if now is None:
            break
        cpu.append(now)
        if len(cpu) > 1 and now >= 0.9 * cpu[-2]:
            break
    return {"events_per_round": events, "rounds": n + 1, "neo4j_cpu_s_per_10k_events": cpu}


def run_sustained(
    base: KafkaSettings,
    graph: Neo4jSettings,
    driver: neo4j.Driver,
    *,
    run: str,
    name: str,
    customers: int,
    events: int,
    batch_size: int,
    linger: float,
    logs: Path,
    servers: ServerCPU,
    workers: int,
) -> dict[str, Any]:
    topics = fresh_topics(base, run, name)
    prefix = f"{run}{name}"
    payloads = serialise(customer_stream(customers, events, prefix=prefix))
    keep_out_of_collections()
    group = f"bench-{run}-{name}"
    with worker_processes(
        workers, topics, graph, group=group, batch_size=batch_size, linger=linger, log=logs / f"worker-{name}.log"
    ) as processes:
        time.sleep(1)  # the group is settled; let the fetchers start, so start-up is not measured
        log(f"{name}: producing {events:,} events for {customers:,} customers (batch size {batch_size})")
        kafka = producer(topics)
        load_before = os.getloadavg()
        worker_cpu_before = sum(w.cpu_seconds for w in processes)
        servers_before = servers.sample()
        started = time.monotonic()
        # This process's CPU while it produces: the producer shares the cores with what it measures.
        producer_cpu_before = time.process_time()
        for _, key, value in payloads:
            kafka.send(topics.interactions_topic, key=key, value=value)
        kafka.flush()
        producer_cpu = time.process_time() - producer_cpu_before
        produced = time.monotonic()
        kafka.close()
        last_ids = [event_id for event_id, _, _ in payloads[-200:]]
        visible = wait_visible(driver, f"{prefix}-", last_ids, events, processes, timeout=max(600.0, events / 20))
        servers_after = servers.sample()
        load_after = os.getloadavg()
        dead_lettered = sum(w.health()[1].get("dead_lettered") or 0 for w in processes)
        peak = max(w.peak_rss for w in processes)
        time.sleep(0.2)  # one more sample of the workers' CPU
        cpu = sum(w.cpu_seconds for w in processes) - worker_cpu_before
    elapsed = visible - started
    return {
        "events": events,
        "customers": customers,
        "batch_size": batch_size,
        "linger_s": linger,
        "workers": workers,
        "produce_s": round(produced - started, 3),
        "elapsed_s": round(elapsed, 3),
        "events_per_s": round(events / elapsed, 1),
        "worker_peak_rss_mb": round(peak / 2**20, 1),
        "worker_cpu_s": round(cpu, 1),
        "worker_cpu_ms_per_event": round(cpu * 1000 / events, 3),
        "producer_cpu_ms_per_event": round(producer_cpu * 1000 / events, 3),
        "neo4j_cpu_s_per_10k_events": per_10k(servers_before["neo4j"], servers_after["neo4j"], events),
        "kafka_cpu_s_per_10k_events": per_10k(servers_before["kafka"], servers_after["kafka"], events),
        "load_average_1m": [round(load_before[0], 2), round(load_after[0], 2)],
        "dead_lettered": dead_lettered,
    }


def run_freshness(
    base: KafkaSettings,
    graph: Neo4jSettings,
    *,
    run: str,
    customers: int,
    rate: int,
    seconds: int,
    batch_size: int,
    linger: float,
    logs: Path,
    workers: int,
    servers: ServerCPU,
) -> dict[str, Any]:
    topics = fresh_topics(base, run, "fresh")
    prefix = f"{run}fresh"
    total = rate * seconds
    payloads = serialise(customer_stream(customers, total, prefix=prefix, seed=11))
    keep_out_of_collections()
    sent_at: dict[str, float] = {}
    group = f"bench-{run}-fresh"
    with worker_processes(
        workers, topics, graph, group=group, batch_size=batch_size, linger=linger, log=logs / "worker-fresh.log"
    ) as processes:
        time.sleep(1)
        log(f"freshness: {total:,} events at {rate:,}/s for {seconds} s")
        kafka = producer(topics)
        kafka.config["linger_ms"] = 0
        worker_cpu_before = sum(w.cpu_seconds for w in processes)
        servers_before = servers.sample()
        tick = 0.01
        per_tick = max(1, round(rate * tick))
        start = time.time()
        for i in range(0, total, per_tick):
            due = start + (i / rate)
            pause = due - time.time()
            if pause > 0:
                time.sleep(pause)
            for event_id, key, value in payloads[i : i + per_tick]:
                sent_at[event_id] = time.time()
                kafka.send(topics.interactions_topic, key=key, value=value)
        kafka.flush()
        kafka.close()
        achieved = total / (time.time() - start)
        deadline = time.monotonic() + 120
        committed: dict[str, float] = {}
        consumer = KafkaConsumer(
            bootstrap_servers=topics.bootstrap_servers,
            enable_auto_commit=False,
            consumer_timeout_ms=2000,
            **topics.kafka_python_kwargs(),
        )
        partitions = [
            TopicPartition(topics.customer_updates_topic, p)
            for p in consumer.partitions_for_topic(topics.customer_updates_topic) or []
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        while len(committed) < total and time.monotonic() < deadline:
            for record in consumer:
                update = ev.CustomerUpdated.FromString(record.value)
                at = update.committed_at.ToDatetime(tzinfo=UTC).timestamp()
                for event_id in update.event_ids:
                    committed.setdefault(event_id, at)
        consumer.close()
        servers_after = servers.sample()
        time.sleep(0.2)  # one more sample of the workers' CPU
        cpu = sum(w.cpu_seconds for w in processes) - worker_cpu_before
        for worker in processes:
            if not worker.running:
                raise RuntimeError(worker.log_tail())
    lags = sorted(committed[e] - sent_at[e] for e in sent_at if e in committed)
    if len(lags) < total:
        log(f"[yellow]freshness: only {len(lags):,} of {total:,} events were announced[/yellow]")
    quantiles = statistics.quantiles(lags, n=100, method="inclusive")
    return {
        "target_events_per_s": rate,
        "achieved_events_per_s": round(achieved, 1),
        "events": total,
        "measured": len(lags),
        "batch_size": batch_size,
        "linger_s": linger,
        "workers": workers,
        "p50_s": round(quantiles[49], 4),
        "p95_s": round(quantiles[94], 4),
        "p99_s": round(quantiles[98], 4),
        "max_s": round(lags[-1], 4),
        # Small batches at this rate: the per-batch costs show here.
        "worker_cpu_ms_per_event": round(cpu * 1000 / total, 3),
        "neo4j_cpu_s_per_10k_events": per_10k(servers_before["neo4j"], servers_after["neo4j"], total),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller counts and shorter runs")
    parser.add_argument("--events", type=int, help="events in the sustained run (200,000; quick 20,000)")
    parser.add_argument("--customers", type=int, help="customers (20,000; quick 2,000)")
    parser.add_argument("--baseline-events", type=int, help="events in the batch-of-1 run (4,000; quick 1,000)")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--linger", type=float, default=0.05)
    parser.add_argument(
        "--workers", type=int, default=2, help="worker processes in the throughput runs (2, one per core here)"
    )
    parser.add_argument("--fresh-workers", type=int, default=1, help="worker processes in the freshness run (1)")
    parser.add_argument(
        "--warmup-events", type=int, help="events per unmeasured warm-up round (50,000; quick 2,000; 0: none)"
    )
    parser.add_argument(
        "--warmup-rounds",
        type=int,
        help="at most this many warm-up rounds, until Neo4j's CPU per event is steady (6; quick 1)",
    )
    parser.add_argument("--fresh-rate", type=int, default=1000, help="events/s in the freshness run")
    parser.add_argument("--fresh-seconds", type=int, help="length of the freshness run (60; quick 15)")
    parser.add_argument("--skip", action="append", default=[], choices=["sustained", "baseline", "freshness"])
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    events = args.events or (20_000 if args.quick else 200_000)
    customers = args.customers or (2_000 if args.quick else 20_000)
    baseline_events = args.baseline_events or (1_000 if args.quick else 4_000)
    fresh_seconds = args.fresh_seconds or (15 if args.quick else 60)
    warmup_events = args.warmup_events if args.warmup_events is not None else (2_000 if args.quick else 50_000)
    warmup_rounds = max(1, args.warmup_rounds or (1 if args.quick else 6))

    kafka = KafkaSettings.from_env()
    graph = Neo4jSettings.from_env()
    driver = open_driver(graph)
    apply_migrations(driver, graph.database)
    servers = ServerCPU(graph, kafka)
    run = uuid.uuid4().hex[:6]
    logs = Path(tempfile.mkdtemp(prefix="rapport-bench-ingest-"))
    log(f"run {run}; worker logs in {logs}")
    results: dict[str, Any] = {
        "command": "python bench/ingest.py " + " ".join(sys.argv[1:]),
        "run": run,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
    }
    try:
        if warmup_events:
            results["warmup"] = warm_up(
                kafka, graph, driver, run=run, events=warmup_events, rounds=warmup_rounds,
                batch_size=args.batch_size, linger=args.linger, logs=logs, servers=servers,
            )  # fmt: skip
            log(f"warm-up: {results['warmup']}")
        if "sustained" not in args.skip:
            results["sustained"] = run_sustained(
                kafka, graph, driver, run=run, name="batched", customers=customers, events=events,
                batch_size=args.batch_size, linger=args.linger, logs=logs, servers=servers, workers=args.workers,
            )  # fmt: skip
            log(f"sustained: {results['sustained']}")
        if "baseline" not in args.skip:
            results["baseline"] = run_sustained(
                kafka, graph, driver, run=run, name="single", customers=max(1, baseline_events // 10),
                events=baseline_events, batch_size=1, linger=args.linger, logs=logs, servers=servers,
                workers=args.workers,
            )  # fmt: skip
            log(f"baseline: {results['baseline']}")
        if "sustained" in results and "baseline" in results:
            results["speedup_batched_vs_batch_of_1"] = round(
                results["sustained"]["events_per_s"] / results["baseline"]["events_per_s"], 1
            )
        if "freshness" not in args.skip:
            results["freshness"] = run_freshness(
                kafka, graph, run=run, customers=customers, rate=args.fresh_rate, seconds=fresh_seconds,
                batch_size=args.batch_size, linger=args.linger, logs=logs, workers=args.fresh_workers,
                servers=servers,
            )  # fmt: skip
            log(f"freshness: {results['freshness']}")
    finally:
        driver.close()
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]

    table = Table(title=f"Ingest benchmark ({'quick' if args.quick else 'full'}, run {run})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    if "sustained" in results:
        s = results["sustained"]
        table.add_row(
            f"sustained ingest, batch {s['batch_size']}, {s['workers']} workers ({s['events']:,} events)",
            f"{s['events_per_s']:,.0f} ev/s",
            "≥ 5,000",
        )
        table.add_row("worker peak memory (RSS)", f"{s['worker_peak_rss_mb']:,.0f} MiB", "")
        table.add_row("worker CPU per event", f"{s['worker_cpu_ms_per_event']:.3f} ms", "")
        table.add_row("bench producer CPU per event", f"{s['producer_cpu_ms_per_event']:.3f} ms", "")
        for server in ("neo4j", "kafka"):
            if s[f"{server}_cpu_s_per_10k_events"] is not None:
                table.add_row(f"{server} CPU per 10k events", f"{s[f'{server}_cpu_s_per_10k_events']:.2f} s", "")
        table.add_row("load average (1 min) at start, end", " / ".join(map(str, s["load_average_1m"])), "")
    if "warmup" in results:
        w = results["warmup"]
        steps = " → ".join(f"{c:.2f}" for c in w["neo4j_cpu_s_per_10k_events"]) or "not measured"
        table.add_row(
            f"warm-up before the runs (unmeasured): {w['rounds']} x {w['events_per_round']:,} events",
            f"neo4j s/10k: {steps}",
            "",
        )
    if "baseline" in results:
        b = results["baseline"]
        table.add_row(
            f"baseline, batch 1, {b['workers']} workers ({b['events']:,} events)", f"{b['events_per_s']:,.0f} ev/s", ""
        )
    if "speedup_batched_vs_batch_of_1" in results:
        table.add_row("batched / batch of 1", f"{results['speedup_batched_vs_batch_of_1']}x", "≥ 10x")
    if "freshness" in results:
        f = results["freshness"]
        table.add_row(
            f"freshness p50 at {f['achieved_events_per_s']:,.0f} ev/s, {f['workers']} worker(s)",
            f"{f['p50_s'] * 1000:,.0f} ms",
            "",
        )
        table.add_row("freshness p95", f"{f['p95_s'] * 1000:,.0f} ms", "≤ 1,000 ms")
        table.add_row("freshness p99", f"{f['p99_s'] * 1000:,.0f} ms", "")
    console.print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {args.output}")


if __name__ == "__main__":
    main()
