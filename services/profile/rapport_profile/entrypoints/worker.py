"""`python -m rapport_profile.worker`: the ingest worker (Faust on aiokafka).

Consumes the interactions topic, writes batches to the customer graph, dead-letters what
cannot enter it and announces CustomerUpdated after each commit. Settings: see
rapport_profile.config. SIGTERM: stop fetching, finish and acknowledge the batch in hand,
commit offsets, flush the producer, close the driver, flush telemetry.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

import faust

from rapport.logs import configure_logging
from rapport.telemetry import configure_telemetry
from rapport_profile.bootstrap import IngestWorker, build_ingest_worker
from rapport_profile.config import IngestSettings

log = logging.getLogger("rapport_profile.worker")


class _Worker(faust.Worker):  # type: ignore[misc]
    """Faust's worker, keeping Rapport's JSON logging and closing our resources last."""

    def __init__(self, ingest: IngestWorker, on_shutdown: Any, **kwargs: Any) -> None:
        super().__init__(ingest.app, **kwargs)
        # The console spinner writes terminal escapes to stdout, which carries JSON logs only.
        self.spinner = None
        self._on_shutdown = on_shutdown

    def on_worker_shutdown(self) -> None:
        self._on_shutdown()


# Cyclic garbage is rare here (records are freed by reference counting), but every batch allocates
# tens of thousands of objects, and Python's default thresholds ran a collection every 700 of them,
# each walking the young objects and, often enough, all of them: ~15 us of CPU per event. Startup's
# objects (modules, settings) are frozen out of the walks; collections run every 50,000.
GC_THRESHOLDS = (50_000, 20, 10)


def tune_garbage_collection() -> None:
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def main() -> None:
    tune_garbage_collection()
    configure_logging("profile-worker")
    telemetry = configure_telemetry("rapport-profile-worker")
    settings = IngestSettings.from_env()
    ingest = build_ingest_worker(settings)
    log.info(
        "ingest worker starting",
        extra={
            "topic": settings.kafka.interactions_topic,
            "group": settings.group,
            "batch_size": settings.batch_size,
            "linger": settings.linger,
            "health": f"http://{settings.web_host}:{settings.web_port}/health",
        },
    )

    def shutdown() -> None:
        log.info("ingest worker stopped", extra={"batches": ingest.progress.batches, "stored": ingest.progress.stored})
        ingest.close()
        telemetry.shutdown()

    worker = _Worker(
        ingest,
        shutdown,
        quiet=True,
        redirect_stdouts=False,
        override_logging=False,
        loglevel=logging.getLevelName(logging.getLogger().level).lower(),
    )
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
