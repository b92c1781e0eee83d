# ruff: noqa: E501, S110
"""`python -m rapport.demo [--minutes N] [--speed X] [--keep-running] [--scenario-only]`.

Assumes Kafka and Neo4j are up and provisioned (`make up`). Starts the profile worker and the
profile, timeline and router servers as children (logs in .rapport/demo/), registers a team of
agents, replays a compressed day of journeys with a live dashboard, prints a summary and stops
every child. Ctrl-C or SIGTERM at any moment stops everything cleanly. Ports, topics and the
consumer group come from the usual RAPPORT_* variables, so a test can isolate a run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import grpc

from rapport.demo.dashboard import Dashboard, Sample
from rapport.demo.kafka_info import KafkaInfo
from rapport.demo.processes import LOG_DIR, Ports, Services, worker_health
from rapport.demo.scenario import Plan, Scenario
from rapport.settings import KafkaSettings
from rapport.topics import ensure_topics
from rapport.v1 import router_pb2_grpc, timeline_pb2_grpc


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rapport.demo", description=__doc__.split("\n\n")[1])
    p.add_argument("--minutes", type=float, default=2.0, help="length of the simulated day in minutes (default 2)")
    p.add_argument("--speed", type=float, default=1.0, help="background arrivals multiplier (default 1)")
    p.add_argument("--keep-running", action="store_true", help="leave the services up after the day, until Ctrl-C")
    p.add_argument("--scenario-only", action="store_true", help="scripted journeys and light traffic only, ~30 s (CI)")
    p.add_argument("--prefix", default="", help="id prefix for this run (default: demo-<random>)")
    p.add_argument("--report", type=Path, help="write what happened as JSON to this file")
    p.add_argument("--plain", action="store_true", help="plain progress lines even on a terminal")
    return p


class Stopping(Exception):
    pass


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise Stopping(signal.Signals(signum).name)


def _summary(report: dict[str, Any], ports: Ports, timings: dict[str, Any]) -> str:
    merged = report.get("merged", {})
    esc = report.get("escalation", {})
    lines = [
        "",
        "Rapport demo summary",
        f"  services healthy in {timings.get('services_healthy_s', '-')} s; day replayed in {timings.get('day_s', '-')} s",
        f"  events published {len(report['published'])}, router completion events {len(report['router_events'])}, "
        f"dead-lettered on purpose {len(report['dead_letter_expected'])}",
        f"  contacts routed {report['routes']}, completed {report['completed']}, resolved {report['resolved']}, "
        f"median match score {report['median_score'] if report['median_score'] is None else round(report['median_score'], 2)}",
        f"  journeys: {', '.join(report['journeys_done'])}",
    ]
    if report["errors"]:
        lines.append(f"  {len(report['errors'])} problem(s); first: {report['errors'][0]}")
    if esc:
        fixer = " (the agent who fixed Wi-Fi dropouts before)" if esc.get("agent_id") == esc.get("fixer") else ""
        lines.append(
            f"  escalation went to {esc.get('agent_id') or '-'}{fixer}; handoff showed {len(esc.get('articles', []))} article(s)"
        )
    env = f"RAPPORT_PROFILE_ADDR=127.0.0.1:{ports.profile} RAPPORT_TIMELINE_ADDR=127.0.0.1:{ports.timeline} RAPPORT_ROUTER_ADDR=127.0.0.1:{ports.router}"
    lines += ["", "Try next (with the services up: --keep-running):"]
    if merged:
        lines += [
            f"  rapport customer email:{merged['email']}",
            f"  rapport timeline phone:{merged['phone']}",
        ]
    if esc:
        lines.append(f"  rapport handoff {esc['who']}")
    lines += [
        f"  rapport agents list --team {report['team']}",
        "  rapport dlq            rapport status",
        f"  grpcurl -plaintext 127.0.0.1:{ports.router} list",
        f'  grpcurl -plaintext -d \'{{"team": "{report["team"]}"}}\' 127.0.0.1:{ports.router} rapport.v1.RouterService/GetQueue',
    ]
    if merged:
        lines.append(
            f'  grpcurl -plaintext -d \'{{"customer": {{"identifier": {{"kind": "IDENTIFIER_KIND_EMAIL", '
            f'"value": "{merged["email"]}"}}}}}}\' 127.0.0.1:{ports.timeline} rapport.v1.TimelineService/ListInteractions'
        )
    lines.append(f"  (non-default ports: {env})")
    return "\n".join(lines)


def _sample(scenario: Scenario, info: KafkaInfo, ports: Ports, group: str, last: dict[str, float]) -> Sample:
    now = time.monotonic()
    dt = max(0.001, now - last.get("at", now - 1))
    status, health = worker_health(ports.worker)
    done = (
        float(health.get("stored", 0) + health.get("duplicates", 0) + health.get("dead_lettered", 0))
        if status
        else last.get("done", 0.0)
    )
    stats = scenario.stats
    s = Sample(
        events_per_s=max(0.0, (done - last.get("done", done)) / dt),
        stored=int(health.get("stored", 0)) if status else 0,
        routes_per_s=max(0.0, (stats.routes - last.get("routes", stats.routes)) / dt),
        median_score=stats.median_score(),
        resolution_rate=(stats.resolved / stats.completed) if stats.completed else None,
        agents=len(scenario.agents),
        progress=scenario.progress(),
        journeys=f"{len(stats.journeys_done)}/7",
    )
    last.update(at=now, done=done, routes=float(stats.routes))
    try:
        s.lag = info.lag(group, scenario.kafka.interactions_topic)
        if s.lag is None and status:
            # No committed offsets visible yet: what the worker reports it has processed.
            ends = info.end_offsets(scenario.kafka.interactions_topic)
            done_at = {int(p): int(o) + 1 for p, o in health.get("processed_offsets", {}).items()}
            s.lag = sum(max(0, end - done_at.get(p, 0)) for p, end in ends.items())
        s.dlq = info.record_count(scenario.kafka.dead_letter_topic)
    except Exception:  # noqa: BLE001 - a missed sample only blanks a figure
        pass
    try:
        s.queue = scenario.queue_depth()
        s.agents_busy, over = scenario.agent_loads()
        for o in over:
            stats.add("overloads", o)
    except grpc.RpcError:
        pass
    return s


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    prefix = args.prefix or f"demo-{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings.from_env()
    group = os.environ.get("RAPPORT_PROFILE_GROUP", "rapport-profile")
    ports = Ports.from_env()
    log_dir = Path(os.environ.get("RAPPORT_DEMO_LOG_DIR", str(LOG_DIR)))
    services = Services(ports, log_dir)
    if args.scenario_only:
        plan = Plan(duration=30.0, background_rate=1.0 * args.speed, scenario_only=True)
    else:
        plan = Plan(duration=max(0.25, args.minutes) * 60, background_rate=4.0 * args.speed)
    stop = threading.Event()
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    timings: dict[str, Any] = {}
    scenario: Scenario | None = None
    code = 0
    completed = False
    began = time.monotonic()
    try:
        ensure_topics(kafka)
        print(f"Starting the profile worker, profile, timeline and router (logs in {log_dir}/) ...", flush=True)
        started = services.start(os.environ)
        timings["services_healthy_s"] = round(time.monotonic() - began, 1)
        timings["per_service_s"] = started
        print(f"All services healthy in {timings['services_healthy_s']} s: {started}", flush=True)
        router = router_pb2_grpc.RouterServiceStub(grpc.insecure_channel(f"127.0.0.1:{ports.router}"))
        timeline = timeline_pb2_grpc.TimelineServiceStub(grpc.insecure_channel(f"127.0.0.1:{ports.timeline}"))
        scenario = Scenario(prefix=prefix, plan=plan, kafka=kafka, router=router, timeline=timeline, stop=stop)
        print(
            f"Run {prefix}: {len(scenario.agents)} agents in team {scenario.team}; replaying a day in {plan.duration:.0f} s",
            flush=True,
        )
        scenario.start()
        last: dict[str, float] = {}
        with KafkaInfo(kafka) as info, Dashboard(live=False if args.plain else None) as dash:
            while not scenario.finished():
                dash.update(_sample(scenario, info, ports, group, last))
                time.sleep(1.0)
            scenario.finish()
            # Let the worker catch up, so the summary and the report describe a settled graph.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                sample = _sample(scenario, info, ports, group, last)
                dash.update(sample)
                if sample.lag == 0:
                    break
                time.sleep(1.0)
        timings["day_s"] = round(time.monotonic() - scenario.started, 1)
        print(_summary(scenario.report(), ports, timings), flush=True)
        completed = True
        if args.report is not None:
            # Written now too, so a caller can explore the running services with it (--keep-running).
            args.report.write_text(json.dumps({**scenario.report(), "timings": timings, "child_pids": services.pids()}))
        if args.keep_running:
            print("\nServices stay up; Ctrl-C stops them.", flush=True)
            while True:
                time.sleep(3600)
    except Stopping as exc:
        print(f"\n{exc}: stopping ...", flush=True)
        code = 0 if completed else 130
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(
            f"demo failed: {exc}\nIs the stack up? Run `make up` (or `python -m rapport.devstack status`).", flush=True
        )
        code = 1
    finally:
        stop.set()
        # A second Ctrl-C while stopping must not leave children behind.
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)
        if scenario is not None:
            with contextlib.suppress(Exception):
                scenario.sign_off_team()
        codes = services.stop()
        print(f"Stopped: {', '.join(f'{n} ({c})' for n, c in codes.items())}", flush=True)
        if args.report is not None:
            report = scenario.report() if scenario is not None else {}
            report.update(timings=timings, child_pids=services.pids(), exit_codes=codes)
            args.report.write_text(json.dumps(report, indent=2))
        for s, handler in previous.items():
            signal.signal(s, handler)
    return code
