"""`python -m rapport_timeline`: serve TimelineService with health, reflection and graceful SIGTERM."""

from __future__ import annotations

import logging

from rapport.logs import configure_logging
from rapport.serving import start_server, stop_on_signals
from rapport.telemetry import configure_telemetry
from rapport_timeline.bootstrap import SERVICE_NAME, build
from rapport_timeline.config import TimelineSettings

log = logging.getLogger("rapport_timeline")


def main() -> None:
    configure_logging("timeline")
    telemetry = configure_telemetry("rapport-timeline")
    settings = TimelineSettings.from_env()
    app = build(settings)
    running = start_server(settings.grpc, app.register, [SERVICE_NAME])
    running.on_stop.append(telemetry.shutdown)
    running.on_stop.append(app.close)  # on_stop runs in reverse: app first, telemetry last
    stop_on_signals(running, settings.grpc.grace, end_streams=[app.timeline.hub.close])
    log.info("timeline ready", extra={"port": running.port, "max_watchers": settings.max_watchers})
    running.wait()


if __name__ == "__main__":
    main()
