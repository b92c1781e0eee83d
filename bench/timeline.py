"""Timeline benchmark: history pages and handoff context under load, and live Watch delivery.

    .venv/bin/python bench/timeline.py            # 10,000-interaction customer among 50,000 others
    .venv/bin/python bench/timeline.py --quick    # 1,000 among 5,000, shorter runs

Needs the local Kafka and Neo4j (`make up`). Seeds the graph once (reused by later runs), starts
`python -m rapport_timeline` and the profile ingest worker as child processes, then measures:
- ListInteractions, page of 50: the first page and a deep page (position 5,000, or 500 with
  --quick), and GetHandoffContext, each at 1, 10 and 50 concurrent clients (client processes,
  one channel each): p50/p95/p99 latency, requests/s, and the timeline server's CPU time per
  request (steady on a shared machine, where latencies are not; the load average is noted too);
- WatchTimeline: produce (InteractionPublisher -> rapport interactions topic) -> ingest worker ->
  graph commit -> CustomerUpdated -> timeline -> delivery on the stream: p50/p95.
Prints a table and writes bench/results/timeline.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rapport.graph.driver import open_driver
from rapport.graph.schema import apply_migrations
from rapport.publisher import InteractionPublisher
from rapport.settings import KafkaSettings, Neo4jSettings
from rapport.topics import ensure_topics
from rapport.v1 import events_pb2 as ev
from rapport.v1 import timeline_pb2 as tl
from rapport.v1 import timeline_pb2_grpc
from rapport_profile.adapters.graph import seed_graph
from rapport_profile.synthetic import identifier, interaction
from rapport_profile.worker_process import WorkerProcess, free_port, worker_env

RESULTS = Path(__file__).resolve().parent / "results" / "timeline.json"
BASE = datetime(2024, 1, 1, tzinfo=UTC)
CONCURRENCY = (1, 10, 50)
# Seconds for the client processes to start (and import grpc) before the clock starts.
SPAWN_LEAD = 5.0
CHANNELS = [
    (ev.CHANNEL_VOICE, ev.INTERACTION_KIND_CALL),
    (ev.CHANNEL_EMAIL, ev.INTERACTION_KIND_MESSAGE),
    (ev.CHANNEL_CHAT, ev.INTERACTION_KIND_MESSAGE),
    (ev.CHANNEL_WEB, ev.INTERACTION_KIND_ARTICLE_VIEW),
    (ev.CHANNEL_BOT, ev.INTERACTION_KIND_BOT_TURN),
]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- the data --------------------------------------------------------------------------------


def count(driver: Any, query: str, **params: Any) -> int:
    records, _, _ = driver.execute_query(query, params)
    return int(records[0][0])


def seed(driver: Any, prefix: str, big: int, others: int) -> str:
    """The big customer's identity key; seeds only what earlier runs did not."""
    big_key = f"crm:{prefix}-BIG"
    have = count(
        driver,
        "OPTIONAL MATCH (:Identity {key: $k})-[:IDENTIFIES]->(c:Customer) RETURN COUNT { (c)-[:HAD]->() }",
        k=big_key,
    )
    if have < big:
        log(f"seeding {big - have} interactions for {big_key}")
        events = []
        for n in range(have, big):
            channel, kind = CHANNELS[n % len(CHANNELS)]
            events.append(
                interaction(
                    f"{prefix}-big-{n}",
                    identifier(big_key, method="otp"),
                    at=BASE + timedelta(minutes=n),
                    channel=channel,
                    kind=kind,
                    topic=("billing", "delivery", "router-setup")[n % 3],
                    agent_id=f"{prefix}-A{n % 40}" if kind in (ev.INTERACTION_KIND_CALL,) else "",
                    outcome=ev.OUTCOME_RESOLVED if kind == ev.INTERACTION_KIND_CALL else ev.OUTCOME_UNSPECIFIED,
                    sentiment=((n % 21) - 10) / 10,
                    summary=f"benchmark interaction {n} " + "x" * 60,
                    facts=[ev.Fact(key="order_number", value=f"A-{n % 50}")] if n % 7 == 0 else [],
                )
            )
        seed_graph(driver, events, batch_size=500)
    existing = count(driver, "MATCH (i:Identity) WHERE i.key STARTS WITH $p RETURN count(i)", p=f"crm:{prefix}-C")
    if existing < others:
        log(f"seeding {others - existing} other customers (one interaction each)")
        batch: list[ev.InteractionEvent] = []
        for c in range(others):
            channel, kind = CHANNELS[c % len(CHANNELS)]
            batch.append(
                interaction(
                    f"{prefix}-o-{c}",
                    f"crm:{prefix}-C{c}",
                    at=BASE + timedelta(seconds=c),
                    channel=channel,
                    kind=kind,
                    topic="billing",
                )
            )
            if len(batch) == 2000:
                seed_graph(driver, batch, batch_size=1000)
                batch = []
        if batch:
            seed_graph(driver, batch, batch_size=1000)
    return big_key


# --- the load ----------------------------------------------------------------------------------


def client_process(
    address: str, request_bytes: bytes, method: str, threads: int, start_at: float, stop_at: float, out: Any
) -> None:
    """Runs in a child process: `threads` closed-loop clients, each on its own channel."""
    request_type: dict[str, Any] = {
        "ListInteractions": tl.ListInteractionsRequest,
        "GetHandoffContext": tl.GetHandoffContextRequest,
    }
    request = request_type[method].FromString(request_bytes)
    results: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def run() -> None:
        channel = grpc.insecure_channel(address)
        stub = timeline_pb2_grpc.TimelineServiceStub(channel)
        call = getattr(stub, method)
        call(request, timeout=10)  # connect before the clock starts
        mine = []
        while time.time() < start_at:
            time.sleep(0.005)
        while time.time() < stop_at:
            t0 = time.perf_counter()
            try:
                call(request, timeout=5)
                mine.append(time.perf_counter() - t0)
            except grpc.RpcError:
                with lock:
                    errors[0] += 1
        with lock:
            results.extend(mine)
        channel.close()

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.put((results, errors[0]))


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class CpuWindow:
    """A process's CPU seconds (user + system) between two moments, sampled from a thread: the
    server's CPU per request holds steady on a shared machine, where latencies do not."""

    def __init__(self, process: psutil.Process | None, start_at: float, stop_at: float) -> None:
        self.seconds: float | None = None
        self._thread = threading.Thread(target=self._sample, args=(process, start_at, stop_at), daemon=True)
        if process is not None:
            self._thread.start()

    def _sample(self, process: psutil.Process, start_at: float, stop_at: float) -> None:
        time.sleep(max(0.0, start_at - time.time()))
        before = process.cpu_times()
        time.sleep(max(0.0, stop_at - time.time()))
        after = process.cpu_times()
        self.seconds = (after.user - before.user) + (after.system - before.system)

    def result(self) -> float | None:
        if self._thread.is_alive():
            self._thread.join()
        return self.seconds


def load(
    address: str, method: str, request: Any, clients: int, seconds: float, server: psutil.Process | None = None
) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    processes = min(clients, 4)
    start_at = time.time() + SPAWN_LEAD
    stop_at = start_at + seconds
    # Half a second off each end: the clients' first and last calls are not all in step.
    cpu = CpuWindow(server, start_at + 0.5, stop_at - 0.5)
    load_average = os.getloadavg()[0]
    procs = []
    for p in range(processes):
        threads = clients // processes + (1 if p < clients % processes else 0)
        proc = ctx.Process(
            target=client_process,
            args=(address, request.SerializeToString(), method, threads, start_at, stop_at, out),
        )
        proc.start()
        procs.append(proc)
    latencies: list[float] = []
    errors = 0
    for _ in procs:
        got, failed = out.get(timeout=seconds + 120)
        latencies.extend(got)
        errors += failed
    for proc in procs:
        proc.join(30)
    server_cpu = cpu.result()
    in_window = len(latencies) * (seconds - 1.0) / seconds
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": errors,
        "rps": round(len(latencies) / seconds, 1),
        "p50_ms": round(percentile(latencies, 50) * 1e3, 2),
        "p95_ms": round(percentile(latencies, 95) * 1e3, 2),
        "p99_ms": round(percentile(latencies, 99) * 1e3, 2),
        "server_cpu_ms": round(server_cpu * 1e3 / in_window, 3) if server_cpu is not None and in_window else None,
        "load_average": round(load_average, 2),
    }


# --- the servers -------------------------------------------------------------------------------


def start_timeline(kafka: KafkaSettings, neo4j: Neo4jSettings, log_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "RAPPORT_TIMELINE_PORT": str(port),
            "RAPPORT_LOG_LEVEL": "WARNING",
            "RAPPORT_KAFKA_BOOTSTRAP": kafka.bootstrap_servers,
            "RAPPORT_CUSTOMER_UPDATES_TOPIC": kafka.customer_updates_topic,
            "RAPPORT_NEO4J_URI": neo4j.uri,
            "RAPPORT_NEO4J_USER": neo4j.user,
            "RAPPORT_NEO4J_PASSWORD": neo4j.password,
        }
    )
    output = (log_dir / "timeline.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "rapport_timeline"], env=env, stdout=output, stderr=output)
    address = f"127.0.0.1:{port}"
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(address))
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            status = health.Check(health_pb2.HealthCheckRequest(service="rapport.v1.TimelineService"), timeout=1)
            if status.status == health_pb2.HealthCheckResponse.SERVING:
                return proc, address
        except grpc.RpcError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("timeline server did not become healthy; see " + str(log_dir / "timeline.log"))


def watch_latency(address: str, kafka: KafkaSettings, samples: int, prefix: str) -> dict[str, Any]:
    """Produce one event at a time and time its arrival on a WatchTimeline stream."""
    key = f"crm:{prefix}-W{uuid.uuid4().hex[:8]}"
    stub = timeline_pb2_grpc.TimelineServiceStub(grpc.insecure_channel(address))
    with InteractionPublisher(kafka, linger_ms=0) as publisher:
        publisher.publish_sync(interaction(f"{prefix}-w-{uuid.uuid4().hex}", key, at=datetime.now(UTC)))
        ref = tl.CustomerRef(identifier=identifier(key))
        for _ in range(300):  # until the worker has created the customer
            try:
                stub.ListInteractions(tl.ListInteractionsRequest(customer=ref, page_size=1), timeout=5)
                break
            except grpc.RpcError:
                time.sleep(0.1)
        arrivals: queue.Queue[tuple[str, float]] = queue.Queue()
        call = stub.WatchTimeline(tl.WatchTimelineRequest(customer=ref))

        def pump() -> None:
            try:
                for item in call:
                    if item.HasField("interaction"):
                        arrivals.put((item.interaction.event_id, time.perf_counter()))
            except grpc.RpcError:
                pass  # cancelled at the end

        threading.Thread(target=pump, daemon=True).start()
        time.sleep(1.0)
        latencies = []
        for n in range(samples):
            event_id = f"{prefix}-w{n}-{uuid.uuid4().hex[:8]}"
            sent = time.perf_counter()
            publisher.publish(interaction(event_id, key, at=datetime.now(UTC)))
            publisher.flush()
            got, arrived = arrivals.get(timeout=30)
            assert got == event_id, (got, event_id)
            latencies.append(arrived - sent)
            time.sleep(0.1)
        call.cancel()
    return {
        "samples": len(latencies),
        "p50_ms": round(percentile(latencies, 50) * 1e3, 1),
        "p95_ms": round(percentile(latencies, 95) * 1e3, 1),
        "max_ms": round(max(latencies) * 1e3, 1),
        "mean_ms": round(statistics.mean(latencies) * 1e3, 1),
    }


# --- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small data, short runs (a smoke test)")
    parser.add_argument("--seconds", type=float, help="seconds per load step (default 8, quick 2)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    big, others, deep = (1_000, 5_000, 500) if args.quick else (10_000, 50_000, 5_000)
    seconds = args.seconds or (2.0 if args.quick else 8.0)
    samples = 20 if args.quick else 100
    prefix = "bench-tlq" if args.quick else "bench-tl"

    neo4j_settings = Neo4jSettings.from_env()
    base_kafka = KafkaSettings.from_env()
    run = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(
        bootstrap_servers=base_kafka.bootstrap_servers,
        interactions_topic=f"bench.{run}.interactions",
        dead_letter_topic=f"bench.{run}.dlq",
        customer_updates_topic=f"bench.{run}.customer-updates",
        interactions_partitions=3,
    )
    ensure_topics(kafka)
    driver = open_driver(neo4j_settings)
    apply_migrations(driver, neo4j_settings.database)
    t0 = time.time()
    big_key = seed(driver, prefix, big, others)
    total_customers = count(driver, "MATCH (c:Customer) RETURN count(c)")
    log(f"graph ready in {time.time() - t0:.0f}s: {total_customers} customers in the graph")
    driver.close()

    log_dir = Path(tempfile.mkdtemp(prefix="bench-timeline-"))
    server, address = start_timeline(kafka, neo4j_settings, log_dir)
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "bench/timeline.py" + (" --quick" if args.quick else ""),
        "machine": {"cpus": psutil.cpu_count(), "python": platform.python_version()},
        "data": {"big_customer_interactions": big, "other_customers": others, "graph_customers": total_customers},
        "seconds_per_step": seconds,
        "unary": {},
    }
    try:
        stub = timeline_pb2_grpc.TimelineServiceStub(grpc.insecure_channel(address))
        ref = tl.CustomerRef(identifier=identifier(big_key))
        started = time.perf_counter()
        first = stub.ListInteractions(tl.ListInteractionsRequest(customer=ref, page_size=50), timeout=60)
        results["cold_first_page_ms"] = round((time.perf_counter() - started) * 1e3, 1)
        by_id = tl.CustomerRef(customer_id=first.customer_id)
        token = ""
        for _ in range(deep // 50):
            token = stub.ListInteractions(
                tl.ListInteractionsRequest(customer=by_id, page_size=50, page_token=token), timeout=10
            ).next_page_token
        scenarios = [
            ("first page", "ListInteractions", tl.ListInteractionsRequest(customer=by_id, page_size=50)),
            (
                f"deep page (@{deep})",
                "ListInteractions",
                tl.ListInteractionsRequest(customer=by_id, page_size=50, page_token=token),
            ),
            ("handoff context", "GetHandoffContext", tl.GetHandoffContextRequest(customer=by_id)),
        ]
        server_process = psutil.Process(server.pid)
        for name, method, request in scenarios:
            results["unary"][name] = []
            for clients in CONCURRENCY:
                row = load(address, method, request, clients, seconds, server_process)
                results["unary"][name].append(row)
                log(
                    f"{name:<18} {clients:>2} clients: p50 {row['p50_ms']} ms p99 {row['p99_ms']} ms "
                    f"{row['rps']} req/s, server CPU {row['server_cpu_ms']} ms/request, load {row['load_average']}"
                )

        env = worker_env(kafka, neo4j_settings, group=f"bench-{run}", port=free_port(), batch_size=200, linger=0.01)
        with WorkerProcess(env, log_dir / "worker.log").start():
            results["watch"] = watch_latency(address, kafka, samples, prefix)
        log(f"watch delivery: p50 {results['watch']['p50_ms']} ms p95 {results['watch']['p95_ms']} ms")
    finally:
        server.terminate()
        server.wait(30)

    print()
    print(
        f"Timeline benchmark ({results['command']}): customer with {big} interactions, "
        f"{total_customers} customers in the graph, {seconds:.0f}s per step, {psutil.cpu_count()} CPUs"
    )
    print(f"cold first page (index build): {results['cold_first_page_ms']} ms")
    print(
        f"{'scenario':<20}{'clients':>8}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'req/s':>10}{'errors':>8}"
        f"{'srv CPU ms/req':>16}{'load avg':>10}"
    )
    for name, rows in results["unary"].items():
        for row in rows:
            print(
                f"{name:<20}{row['clients']:>8}{row['p50_ms']:>10}{row['p95_ms']:>10}{row['p99_ms']:>10}"
                f"{row['rps']:>10}{row['errors']:>8}{row['server_cpu_ms']!s:>16}{row['load_average']:>10}"
            )
    w = results["watch"]
    print(
        f"watch produce->delivery over {w['samples']} events: p50 {w['p50_ms']} ms, p95 {w['p95_ms']} ms, "
        f"max {w['max_ms']} ms"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
