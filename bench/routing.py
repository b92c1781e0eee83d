"""Routing benchmark: RouteContact against a graph with real history, capacity cycling.

    .venv/bin/python bench/routing.py            # 500 agents, 50,000 customers with history
    .venv/bin/python bench/routing.py --quick    # 100 agents, 5,000 customers, shorter runs

Needs the local Kafka and Neo4j (`make up`). Seeds the graph once through the profile worker's
own GraphWriter (reused by later runs): customers with traits (language, tier, segment, device),
three past interactions each, handled by the bench agents with outcomes that depend on the
agent's skill on the topic, so affinity, continuity and similar-customer statistics are real.
Starts `python -m rapport_router` as a child process (publishing completions to a bench topic),
then, at 10 and 50 concurrent clients (threads spread over client processes, one channel per
process), each client loops: RouteContact (a random customer by CRM id, a topic, the customer's
language) -> AcceptOffer -> CompleteContact, so capacity cycles. Reports RouteContact p50/p95/
p99 and routes/s (plus the whole cycle), prints a table and writes bench/results/routing.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import re
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import grpc
import psutil

from rapport.devstack.proc import listener_pid
from rapport.devstack.settings import Settings as StackSettings
from rapport.graph.driver import open_driver
from rapport.graph.schema import apply_migrations
from rapport.settings import KafkaSettings, Neo4jSettings
from rapport.topics import ensure_topics
from rapport.v1 import events_pb2 as ev
from rapport.v1 import router_pb2 as rt
from rapport.v1 import router_pb2_grpc
from rapport_profile.adapters.graph import seed_graph
from rapport_profile.synthetic import identifier, interaction
from rapport_router.process import RouterProcess, router_env

RESULTS = Path(__file__).resolve().parent / "results" / "routing.json"
TOPICS = ["billing", "router-setup", "outage", "upgrade", "cancellation", "delivery", "password", "roaming"]
SEGMENTS = ["consumer", "smb", "enterprise", "student"]
TIERS = ["standard", "standard", "standard", "gold", "platinum"]
MODELS = ["HB-5", "HB-6", "MX-1", "MX-2", "Q9"]
CONCURRENCY = (10, 50)
TEAM = "bench-routing"
HISTORY_PER_CUSTOMER = 3


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass(frozen=True)
class Scale:
    agents: int
    customers: int
    seconds: float
    warmup: float

    @property
    def prefix(self) -> str:
        return f"rbench{self.agents}x{self.customers}"


# --- the data --------------------------------------------------------------------------------


def agent_profile(n: int, prefix: str) -> rt.Agent:
    rng = random.Random(n)
    skills = {t: rng.randint(1, 5) for t in rng.sample(TOPICS, 5)}
    languages = ["en", "fr"] if n % 10 < 3 else ["en"]
    return rt.Agent(
        id=f"{prefix}-A{n}",
        display_name=f"Agent {n}",
        skills=[rt.AgentSkill(name=k, level=v) for k, v in sorted(skills.items())],
        languages=languages,
        teams=[TEAM],
        capacity=[
            rt.ChannelCapacity(channel=ev.CHANNEL_CHAT, capacity=1),
            rt.ChannelCapacity(channel=ev.CHANNEL_VOICE, capacity=1),
        ],
        status=rt.AGENT_STATUS_AVAILABLE,
    )


def customer_language(c: int) -> str:
    return "fr" if c % 5 == 0 else "en"


def history(scale: Scale) -> list[ev.InteractionEvent]:
    """Three interactions per customer over the last 90 days, handled by the bench agents."""
    rng = random.Random(11)
    now = datetime.now(UTC)
    levels = [{s.name: s.level for s in agent_profile(n, scale.prefix).skills} for n in range(scale.agents)]
    events = []
    for c in range(scale.customers):
        crm = f"crm:{scale.prefix}-C{c}"
        for k in range(HISTORY_PER_CUSTOMER):
            topic = TOPICS[(c + k * 3) % len(TOPICS)]
            a = rng.randrange(scale.agents)
            p_resolved = 0.25 + 0.13 * levels[a].get(topic, 1)
            resolved = rng.random() < p_resolved
            fields: dict[str, Any] = {
                "agent_id": f"{scale.prefix}-A{a}",
                "topic": topic,
                "outcome": ev.OUTCOME_RESOLVED if resolved else ev.OUTCOME_UNRESOLVED,
                "csat": rng.randint(4, 5) if resolved else rng.randint(1, 3),
                "sentiment": round(rng.uniform(-1, 1), 2),
                "handle_seconds": rng.randint(120, 900),
                "source": "bench",
            }
            if k == 0:
                fields["traits"] = ev.CustomerTraits(
                    language=customer_language(c), tier=TIERS[c % len(TIERS)], segment=SEGMENTS[c % len(SEGMENTS)]
                )
                fields["device"] = ev.Device(id=f"{scale.prefix}-D{c}", model=MODELS[c % len(MODELS)])
            events.append(
                interaction(
                    f"{scale.prefix}-{c}-{k}",
                    identifier(crm),
                    at=now - timedelta(days=rng.uniform(1, 90)),
                    channel=ev.CHANNEL_CHAT,
                    kind=ev.INTERACTION_KIND_MESSAGE,
                    **fields,
                )
            )
    return events


def seed(driver: Any, scale: Scale) -> dict[str, int]:
    last = f"{scale.prefix}-{scale.customers - 1}-{HISTORY_PER_CUSTOMER - 1}"
    records, _, _ = driver.execute_query("MATCH (i:Interaction {event_id: $id}) RETURN count(i) AS n", id=last)
    if records[0]["n"]:
        log("graph already seeded by an earlier run")
    else:
        events = history(scale)
        log(f"seeding {scale.customers:,} customers with {len(events):,} interactions (once)...")
        started = time.monotonic()
        chunk = 5000
        for i in range(0, len(events), chunk):
            seed_graph(driver, events[i : i + chunk], batch_size=1000)
            log(f"  {min(i + chunk, len(events)):,} / {len(events):,}")
        log(f"seeded in {time.monotonic() - started:.0f} s")
    counts, _, _ = driver.execute_query(
        """
        MATCH (k:Identity) WHERE k.key STARTS WITH $crm
        WITH count(k) AS customers
        MATCH (i:Interaction) WHERE i.event_id STARTS WITH $prefix
        RETURN customers, count(i) AS interactions
        """,
        crm=f"crm:{scale.prefix}-C",
        prefix=f"{scale.prefix}-",
    )
    return {"customers": int(counts[0]["customers"]), "interactions": int(counts[0]["interactions"])}


def register_agents(address: str, scale: Scale) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = router_pb2_grpc.RouterServiceStub(channel)
        for n in range(scale.agents):
            stub.UpsertAgent(rt.UpsertAgentRequest(agent=agent_profile(n, scale.prefix)), timeout=10)


def clear_contacts(driver: Any) -> int:
    total = 0
    while True:
        records, _, _ = driver.execute_query(
            "MATCH (c:Contact {team: $team}) WITH c LIMIT 5000 DETACH DELETE c RETURN count(*) AS n", team=TEAM
        )
        n = int(records[0]["n"])
        total += n
        if n == 0:
            return total


def reset_agents(driver: Any, prefix: str) -> None:
    """Bench agents start each level free (a killed earlier run may have left load behind)."""
    driver.execute_query(
        """
        MATCH (a:Agent) WHERE a.id STARTS WITH $p
        SET a.active_chat = 0, a.active_voice = 0, a.status = 'available', a.rev = timestamp()
        """,
        p=f"{prefix}-A",
    )


# --- the load --------------------------------------------------------------------------------


def client_process(
    address: str, threads: int, customers: int, prefix: str, seconds: float, warmup: float, seed_value: int, out: Any
) -> None:
    """`threads` clients in this process, one channel; returns latencies measured after warm-up."""
    channel = grpc.insecure_channel(address)
    stub = router_pb2_grpc.RouterServiceStub(channel)
    start = time.monotonic()
    cpu_started = time.process_time()
    measure_from = start + warmup
    stop_at = measure_from + seconds
    results: list[dict[str, Any]] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        rng = random.Random(seed_value * 1000 + k)
        route_ms: list[float] = []
        cycle_ms: list[float] = []
        queued = errors = 0
        n = 0
        while True:
            now = time.monotonic()
            if now >= stop_at:
                break
            c = rng.randrange(customers)
            n += 1
            request = rt.RouteContactRequest(
                identifier=identifier(f"crm:{prefix}-C{c}"),
                channel=ev.CHANNEL_CHAT,
                topic=TOPICS[rng.randrange(len(TOPICS))],
                language=customer_language(c),
                team=TEAM,
                priority=rng.choice((0, 0, 0, 2, 5)),
            )
            t0 = time.perf_counter()
            try:
                contact = stub.RouteContact(request, timeout=10).contact
                t1 = time.perf_counter()
                if contact.state == rt.CONTACT_STATE_OFFERED:
                    stub.AcceptOffer(
                        rt.AcceptOfferRequest(offer_id=contact.offer.offer_id, agent_id=contact.offer.agent_id),
                        timeout=10,
                    )
                    stub.CompleteContact(
                        rt.CompleteContactRequest(
                            contact_id=contact.id, resolved=rng.random() < 0.7, csat=rng.randint(1, 5)
                        ),
                        timeout=10,
                    )
                else:
                    queued += 1
                    stub.CancelContact(rt.CancelContactRequest(contact_id=contact.id, reason="bench"), timeout=10)
                t2 = time.perf_counter()
            except grpc.RpcError:
                errors += 1
                continue
            if now >= measure_from:
                route_ms.append((t1 - t0) * 1000)
                cycle_ms.append((t2 - t0) * 1000)
        with lock:
            results.append(
                {"route_ms": route_ms, "cycle_ms": cycle_ms, "queued": queued, "errors": errors, "all_routes": n}
            )

    workers = [threading.Thread(target=client, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    channel.close()
    # The clients share the machine with the servers: their CPU is part of every figure.
    results.append(
        {
            "route_ms": [],
            "cycle_ms": [],
            "queued": 0,
            "errors": 0,
            "all_routes": 0,
            "client_cpu": time.process_time() - cpu_started,
        }
    )
    out.put(results)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these processes (0 for one that is gone)."""
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


_PAUSE = re.compile(r"stop-the-world pause: \{pauseTime=(\d+)")


class Neo4jPauses:
    """Stop-the-world pauses the local Neo4j logs (JVM GC, or the process starved of CPU):
    every call in flight waits them out, so they are the usual cause of a long tail."""

    def __init__(self) -> None:
        self.path = StackSettings.from_env().neo4j_state / "logs" / "debug.log"
        self.offset = self._size()

    def _size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def since_last(self) -> list[int] | None:
        """Pauses (ms) logged since the last call; None when the log is not on this machine."""
        if not self.path.exists():
            return None
        size = self._size()
        start = self.offset if size >= self.offset else 0  # the log rotated
        with self.path.open("rb") as f:
            f.seek(start)
            text = f.read(max(0, size - start)).decode("utf-8", "replace")
        self.offset = size
        return [int(m.group(1)) for m in _PAUSE.finditer(text)]


def run_level(
    addresses: list[str], concurrency: int, scale: Scale, router_pids: list[int], neo4j_pid: int | None
) -> dict[str, Any]:
    processes = min(concurrency, max(2, (os.cpu_count() or 2)))
    per = [concurrency // processes + (1 if i < concurrency % processes else 0) for i in range(processes)]
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=client_process,
            args=(
                addresses[i % len(addresses)],
                threads,
                scale.customers,
                scale.prefix,
                scale.seconds,
                scale.warmup,
                i,
                out,
            ),
        )
        for i, threads in enumerate(per)
    ]
    # CPU per route over the whole level, warm-up included: on a shared machine it stays
    # meaningful where latency does not.
    load = os.getloadavg()[0]
    pauses = Neo4jPauses()
    router_cpu = cpu_seconds(router_pids)
    graph_cpu = cpu_seconds([neo4j_pid]) if neo4j_pid else 0.0
    for p in procs:
        p.start()
    collected: list[dict[str, Any]] = []
    for _ in procs:
        collected += out.get(timeout=scale.seconds + scale.warmup + 120)
    router_cpu = cpu_seconds(router_pids) - router_cpu
    graph_cpu = (cpu_seconds([neo4j_pid]) - graph_cpu) if neo4j_pid else 0.0
    paused = pauses.since_last()
    for p in procs:
        p.join(30)
    route = sorted(x for r in collected for x in r["route_ms"])
    cycle = sorted(x for r in collected for x in r["cycle_ms"])
    routes_in_window = max(1, sum(r["all_routes"] for r in collected))
    client_cpu = sum(r.get("client_cpu", 0.0) for r in collected)
    return {
        "concurrency": concurrency,
        "client_processes": processes,
        "seconds": scale.seconds,
        "routes": len(route),
        "routes_per_second": round(len(route) / scale.seconds, 1),
        "route_ms": percentiles(route),
        "cycle_ms": percentiles(cycle),
        "queued": sum(r["queued"] for r in collected),
        "errors": sum(r["errors"] for r in collected),
        # One route's whole cycle (route, accept, complete, background work), warm-up included.
        "router_cpu_ms_per_route": round(router_cpu * 1000 / routes_in_window, 2),
        # Neo4j is shared: this includes whatever else ran against it meanwhile.
        "neo4j_cpu_ms_per_route": round(graph_cpu * 1000 / routes_in_window, 2) if neo4j_pid else None,
        "client_cpu_ms_per_route": round(client_cpu * 1000 / routes_in_window, 2),
        "load_average_1m": round(load, 2),
        # Neo4j's stop-the-world pauses (ms) during the level, warm-up included (None: not local).
        "neo4j_pauses_ms": paused,
    }


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "mean": 0.0}

    def q(p: float) -> float:
        return round(values[min(len(values) - 1, int(p * len(values)))], 2)

    return {"p50": q(0.50), "p95": q(0.95), "p99": q(0.99), "mean": round(statistics.fmean(values), 2)}


def print_table(levels: list[dict[str, Any]]) -> None:
    head = f"{'clients':>7} {'routes':>8} {'routes/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
    head += f" {'cycle p50':>10} {'cycle p99':>10} {'queued':>7} {'errors':>7} {'router CPU':>10} {'neo4j CPU':>10}"
    head += f" {'client CPU':>10} {'load':>5} {'neo4j pauses':>14}"
    print(head)
    print("-" * len(head))
    for lv in levels:
        r, c = lv["route_ms"], lv["cycle_ms"]
        print(
            f"{lv['concurrency']:>7} {lv['routes']:>8,} {lv['routes_per_second']:>9.1f} {r['p50']:>8.2f} "
            f"{r['p95']:>8.2f} {r['p99']:>8.2f} {c['p50']:>10.2f} {c['p99']:>10.2f} {lv['queued']:>7} "
            f"{lv['errors']:>7} {lv['router_cpu_ms_per_route']:>7.2f} ms {_ms(lv['neo4j_cpu_ms_per_route']):>10}"
            f" {lv['client_cpu_ms_per_route']:>7.2f} ms {lv['load_average_1m']:>5.2f}"
            f" {_pauses(lv['neo4j_pauses_ms']):>14}"
        )
    print("(CPU: milliseconds per route cycle, warm-up included; load: 1-minute load average before the level;")
    print(" neo4j pauses: stop-the-world pauses Neo4j logged during the level, how many and the longest)")


def _pauses(pauses: list[int] | None) -> str:
    if pauses is None:
        return "-"
    return f"{len(pauses)}, max {max(pauses)} ms" if pauses else "0"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 agents, 5,000 customers, 5 s per level")
    parser.add_argument("--seconds", type=float, help="measured seconds per concurrency level")
    parser.add_argument("--routers", type=int, default=1, help="router processes (replicas) sharing the load")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    scale = Scale(100, 5_000, 5.0, 1.0) if args.quick else Scale(500, 50_000, 20.0, 3.0)
    if args.seconds:
        scale = Scale(scale.agents, scale.customers, args.seconds, scale.warmup)

    neo4j_settings = Neo4jSettings.from_env()
    kafka = KafkaSettings.from_env()
    bench_kafka = KafkaSettings(
        bootstrap_servers=kafka.bootstrap_servers,
        interactions_topic="bench.routing.interactions",
        dead_letter_topic="bench.routing.dlq",
        customer_updates_topic="bench.routing.customer-updates",
        interactions_partitions=3,
        request_timeout=kafka.request_timeout,
    )
    ensure_topics(bench_kafka)
    driver = open_driver(neo4j_settings)
    apply_migrations(driver, neo4j_settings.database)
    data = seed(driver, scale)
    cleared = clear_contacts(driver)
    if cleared:
        log(f"removed {cleared:,} contacts left by an earlier run")

    log_dir = Path(tempfile.mkdtemp(prefix="rapport-bench-routing-"))
    graph_pid = listener_pid(urlparse(neo4j_settings.uri).port or 7687)
    levels = []
    routers = []
    try:
        for i in range(args.routers):
            env = router_env(
                neo4j_settings,
                bench_kafka,
                extra={"RAPPORT_LOG_LEVEL": "WARNING", "RAPPORT_ROUTER_WORKERS": "32"},
            )
            routers.append(RouterProcess(env, log_dir / f"router{i}.log").start())
        addresses = [r.address for r in routers]
        log(f"{len(routers)} router process(es) on {', '.join(addresses)}; registering {scale.agents} agents")
        register_agents(addresses[0], scale)
        for concurrency in CONCURRENCY:
            reset_agents(driver, scale.prefix)
            time.sleep(1.0)
            log(f"{concurrency} concurrent clients for {scale.seconds:.0f} s (+{scale.warmup:.0f} s warm-up)")
            pids = [r.popen.pid for r in routers if r.popen is not None]
            levels.append(run_level(addresses, concurrency, scale, pids, graph_pid))
            clear_contacts(driver)
    finally:
        for r in routers:
            r.stop()
    driver.close()

    result = {
        "benchmark": "routing",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "bench/routing.py"
        + (" --quick" if args.quick else "")
        + (f" --routers {args.routers}" if args.routers != 1 else ""),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "data": {"agents": scale.agents, **data},
        "router_processes": args.routers,
        "cycle": "RouteContact -> AcceptOffer -> CompleteContact (completion published to Kafka)",
        "levels": levels,
        "targets": {"p99_ms_at_10": 25, "routes_per_second": 300},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(
        f"RouteContact, {scale.agents} agents, {data['customers']:,} customers, {data['interactions']:,} interactions,"
        f" {args.routers} router process(es)"
    )
    print_table(levels)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
