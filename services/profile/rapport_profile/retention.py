"""The retention use case: purge interactions older than the configured age, in bounded batches.

Where it runs: in the ProfileService process, on a background thread (RetentionSchedule), when
RAPPORT_RETENTION_DAYS is set; and on demand with `rapport retention purge`. Several replicas may
run it at once: each batch locks the graph's RetentionRun node first, so they take turns and the
later ones find less (or nothing) to do. After each batch commits, the customers it touched get
a `history_removed` notice so timeline replicas drop cached pages of them.

Events older than the cutoff that arrive (or are replayed) later are stored again and purged by
the next run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from rapport import metrics
from rapport_profile.adapters.notices import CustomerNotices
from rapport_profile.adapters.retention import RetentionGraph
from rapport_profile.domain.retention import PurgeReport, cutoff

log = logging.getLogger(__name__)

NOTICE_TIMEOUT = 10.0


class RetentionService:
    def __init__(
        self,
        graph: RetentionGraph,
        notices: CustomerNotices,
        *,
        batch_size: int = 500,
        transaction_timeout: float = 60.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        self._graph = graph
        self._notices = notices
        self._batch_size = batch_size
        self._timeout = transaction_timeout
        self._clock = clock

    def purge(
        self, older_than_days: float, *, dry_run: bool = False, stop: threading.Event | None = None
    ) -> PurgeReport:
        """Purges until nothing older than the cutoff is left (or `stop` is set between batches)."""
        now = self._clock()
        report = PurgeReport(cutoff(now, older_than_days), dry_run=dry_run)
        if dry_run:
            report.interactions, report.customers = self._graph.count_older(report.cutoff, self._timeout)
            return report
        while stop is None or not stop.is_set():
            batch = self._graph.purge_batch(report.cutoff, self._batch_size, self._clock(), self._timeout)
            if not batch.interactions:
                break
            report.add(batch.interactions, batch.customer_ids, batch.affinity_updated, batch.affinity_removed)
            metrics.interactions_purged().add(batch.interactions)
            self._notices.history_removed(batch.customer_ids, NOTICE_TIMEOUT)
            if batch.interactions < self._batch_size:
                break
        log.info("retention purge done", extra=dict(report.as_dict()))
        return report


class RetentionSchedule:
    """Runs the purge every `interval` seconds on a daemon thread; a failed run is logged and
    tried again at the next interval."""

    def __init__(self, service: RetentionService, days: float, interval: float) -> None:
        self._service = service
        self._days = days
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retention-purge", daemon=True)
        self.runs = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._service.purge(self._days, stop=self._stop)
            except Exception:
                log.exception("retention purge failed; trying again at the next interval")
            self.runs += 1
            self._stop.wait(self._interval)
