"""`python -m rapport_timeline`: serve TimelineService with health, reflection and graceful SIGTERM."""

from __future__ import annotations

import gc
import logging

from rapport.logs import configure_logging
from rapport.serving import start_server, stop_on_signals
from rapport.telemetry import configure_telemetry
from rapport_timeline.bootstrap import SERVICE_NAME, build
from rapport_timeline.config import TimelineSettings

log = logging.getLogger("rapport_timeline")

# Younger collections between two full ones (CPython's default is 10). A full collection walks
# every interaction the hot-timeline cache holds: about 10 ms per 10,000, a pause for every call.
FULL_COLLECTION_EVERY = 100


def settle_collector() -> None:
    """What start-up made lives as long as the process: frozen, no collection walks it again;
    and full collections come ten times less often. The youngest generation keeps its default
    threshold: requests leave a steady trickle of cyclic garbage, and collecting it in bigger
    batches costs as much CPU in longer pauses."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)


def main() -> None:
    configure_logging("timeline")
    telemetry = configure_telemetry("rapport-timeline")
    settings = TimelineSettings.from_env()
    app = build(settings)
    running = start_server(settings.grpc, app.register, [SERVICE_NAME])
    running.on_stop.append(telemetry.shutdown)
    running.on_stop.append(app.close)  # on_stop runs in reverse: app first, telemetry last
    stop_on_signals(running, settings.grpc.grace, end_streams=[app.timeline.hub.close])
    settle_collector()
    log.info("timeline ready", extra={"port": running.port, "max_watchers": settings.max_watchers})
    running.wait()


if __name__ == "__main__":
    main()
