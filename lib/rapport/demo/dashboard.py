"""The live view: rich.live on a terminal, one plain line every few seconds otherwise (CI)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


@dataclass
class Sample:
    events_per_s: float = 0.0
    lag: int | None = None
    dlq: int = 0
    routes_per_s: float = 0.0
    queue: int = 0
    median_score: float | None = None
    resolution_rate: float | None = None
    agents_busy: int = 0
    agents: int = 0
    stored: int = 0
    progress: float = 0.0
    journeys: str = ""


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


class Dashboard:
    def __init__(self, live: bool | None = None) -> None:
        self.live_mode = sys.stdout.isatty() if live is None else live
        self._live: Live | None = None
        self._last_line = 0.0
        self.progress = Progress(
            TextColumn("simulated day"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn()
        )
        self.task = self.progress.add_task("day", total=100)

    def __enter__(self) -> Dashboard:
        if self.live_mode:
            self._live = Live(self._render(Sample()), refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def _render(self, s: Sample) -> Group:
        table = Table(title="Rapport live", show_header=False, expand=False)
        table.add_column("metric")
        table.add_column("value", justify="right")
        table.add_row("events/s ingested", f"{s.events_per_s:.1f}")
        table.add_row("events stored", str(s.stored))
        table.add_row("consumer lag", "-" if s.lag is None else str(s.lag))
        table.add_row("dead letters", str(s.dlq))
        table.add_row("routes/s", f"{s.routes_per_s:.2f}")
        table.add_row("queue depth", str(s.queue))
        table.add_row("median match score", _fmt(s.median_score, "{:.2f}"))
        table.add_row(
            "resolution rate", _fmt(None if s.resolution_rate is None else s.resolution_rate * 100, "{:.0f}%")
        )
        table.add_row("agents busy", f"{s.agents_busy}/{s.agents}")
        table.add_row("journeys done", s.journeys or "-")
        self.progress.update(self.task, completed=s.progress * 100)
        return Group(table, self.progress)

    def update(self, s: Sample) -> None:
        if self._live is not None:
            self._live.update(self._render(s))
            return
        now = time.monotonic()
        if now - self._last_line >= 5:
            self._last_line = now
            print(
                f"[{s.progress * 100:3.0f}%] events/s {s.events_per_s:.1f} stored {s.stored} "
                f"lag {'-' if s.lag is None else s.lag} dlq {s.dlq} routes/s {s.routes_per_s:.2f} "
                f"queue {s.queue} median-score {_fmt(s.median_score, '{:.2f}')} "
                f"resolved {_fmt(None if s.resolution_rate is None else s.resolution_rate * 100, '{:.0f}%')} "
                f"busy {s.agents_busy}/{s.agents}",
                flush=True,
            )
