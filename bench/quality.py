"""Routing-quality bench: the simulated contact centre against every policy, over several seeds.

    .venv/bin/python bench/quality.py                    # 5 seeds x 3 simulated hours
    .venv/bin/python bench/quality.py --quick            # 2 seeds x 1 simulated hour
    .venv/bin/python bench/quality.py --baselines-only   # no router, no servers needed
    .venv/bin/python bench/quality.py --weights skill=0.4,idle=0.02 --label skill-heavy

Baselines (random, longest idle, skills only, oracle) run in-process; the Rapport policies run
through a real router and ingest worker started as child processes against the local Kafka and
Neo4j (`make up`), on their own topics, with run-prefixed ids. Every policy sees the same
arrivals and the same random draws for each contact. Prints a table, writes
bench/results/quality.json and bench/results/quality.png (resolution against average wait).
"Gap closed" is the share of the longest-idle -> oracle resolution gap a policy closes, per seed;
"(p)" measures it on the hidden model's resolution probability of the pairs made (less noisy);
"2nd half (p)" the same over the second half of the run (after the router has learnt some).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.simulator.model import SimConfig
from bench.simulator.report import aggregate, run_all, run_policy

RESULTS = Path(__file__).resolve().parent / "results"
ORDER = ("random", "longest_idle", "skills_only", "rapport_greedy", "rapport_batch", "oracle")


def parse_weights(text: str) -> dict[str, float]:
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        out[name.strip()] = float(value)
    return out


def print_table(summary: dict[str, Any], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    def fmt(entry: dict[str, float], scale: float = 1.0, digits: int = 1) -> str:
        return f"{entry['mean'] * scale:.{digits}f} ± {entry['ci95'] * scale:.{digits}f}"

    table = Table(title=title)
    for col in (
        "policy",
        "resolution %",
        "CSAT",
        "avg wait s",
        "p90 wait s",
        "abandon %",
        "occupancy sd %",
        "gap closed %",
        "gap closed (p) %",
        "2nd half (p) %",
    ):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for name in [p for p in ORDER if p in summary] + [p for p in summary if p not in ORDER]:
        e = summary[name]
        show = name not in ("longest_idle", "oracle")
        gap = fmt(e["gap_closed"], 100, 0) if "gap_closed" in e and show else ""
        gap_p = fmt(e["gap_closed_expected"], 100, 0) if "gap_closed_expected" in e and show else ""
        late = fmt(e["gap_closed_expected_late"], 100, 0) if "gap_closed_expected_late" in e and show else ""
        table.add_row(
            name,
            fmt(e["resolution"], 100),
            fmt(e["csat"], 1, 2),
            fmt(e["avg_wait"]),
            fmt(e["p90_wait"]),
            fmt(e["abandonment"], 100),
            fmt(e["occupancy_spread"], 100),
            gap,
            gap_p,
            late,
        )
    Console(width=160).print(table)


def plot(summary: dict[str, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for name, e in summary.items():
        x, y = e["avg_wait"], e["resolution"]
        ax.errorbar(x["mean"], y["mean"] * 100, xerr=x["ci95"], yerr=y["ci95"] * 100, fmt="o", capsize=4, label=name)
        ax.annotate(name, (x["mean"], y["mean"] * 100), textcoords="offset points", xytext=(6, 6), fontsize=9)
    ax.set_xlabel("average wait of served contacts (simulated seconds)")
    ax.set_ylabel("resolution rate (% of contacts)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 seeds x 1 simulated hour")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 5, quick 2)")
    parser.add_argument("--hours", type=float, default=None, help="simulated hours per run (default 3, quick 1)")
    parser.add_argument("--baselines-only", action="store_true", help="skip the Rapport policies (no servers)")
    parser.add_argument("--no-batch", action="store_true", help="skip the Rapport batch policy")
    parser.add_argument(
        "--weights", default="", help="router weights, e.g. skill=0.4,idle=0.02 (RAPPORT_ROUTER_WEIGHT_*)"
    )
    parser.add_argument(
        "--prior-hours",
        type=float,
        default=72.0,
        help="simulated hours of earlier contacts (longest idle) in the graph before a Rapport run (0: none)",
    )
    parser.add_argument(
        "--no-profiles", action="store_true", help="do not publish the customers' CRM traits before a Rapport run"
    )
    parser.add_argument("--label", default="", help="suffix of the result files, e.g. for a weight variant")
    args = parser.parse_args(argv)
    seeds = list(range(1, 1 + (args.seeds or (2 if args.quick else 5))))
    base = SimConfig(hours=args.hours or (1.0 if args.quick else 3.0))
    weights = parse_weights(args.weights)
    started = time.perf_counter()

    if args.baselines_only:
        per_seed = run_all(base, seeds)
    else:
        from bench.simulator.rapport import RapportPolicy, rapport_stack

        with rapport_stack(weights=weights) as stack:

            def rapport_runs(config: SimConfig) -> dict[str, dict[str, float]]:
                out = {}
                for batch in (False,) if args.no_batch else (False, True):
                    policy = RapportPolicy(
                        stack,
                        batch=batch,
                        seed=config.seed,
                        prior_hours=args.prior_hours,
                        profiles=not args.no_profiles,
                    )
                    t0 = time.perf_counter()
                    out[policy.name] = run_policy(config, policy)
                    out[policy.name]["route_ms"] = 1000 * policy.call_seconds / max(1, policy.calls)
                    out[policy.name]["batch_offers"] = float(policy.modes.get("ASSIGNMENT_MODE_BATCH", 0))
                    out[policy.name]["prior_contacts"] = float(policy.history_contacts)
                    print(
                        f"seed {config.seed} {policy.name}: {out[policy.name]['contacts']:.0f} contacts "
                        f"in {time.perf_counter() - t0:.0f} s",
                        flush=True,
                    )
                return out

            per_seed = run_all(base, seeds, rapport_runs)

    summary = aggregate(per_seed)
    suffix = f"-{args.label}" if args.label else ""
    title = f"Routing quality, {len(seeds)} seeds x {base.hours:g} simulated h (mean ± 95% CI)"
    print_table(summary, title + (f" [{args.label}]" if args.label else ""))
    RESULTS.mkdir(exist_ok=True)
    report = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "bench/quality.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "host": {"python": platform.python_version(), "machine": platform.machine()},
        "config": {
            **base.__dict__,
            "seeds": seeds,
            "prior_hours": 0.0 if args.baselines_only else args.prior_hours,
            "profiles": not (args.baselines_only or args.no_profiles),
        },
        "router_weights": weights or "defaults",
        "wall_seconds": round(time.perf_counter() - started, 1),
        "summary": summary,
        "per_seed": {str(s): r for s, r in per_seed.items()},
    }
    (RESULTS / f"quality{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(summary, RESULTS / f"quality{suffix}.png", title)
    print(f"wrote {RESULTS / f'quality{suffix}.json'} and quality{suffix}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
