"""`python -m rapport_timeline`: serve TimelineService with health, reflection and graceful SIGTERM."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from types import FrameType

from rapport.logs import configure_logging
from rapport.serving import start_server, stop_on_signals
from rapport.telemetry import configure_telemetry
from rapport_timeline.bootstrap import SERVICE_NAME, build
from rapport_timeline.config import TimelineSettings

log = logging.getLogger("rapport_timeline")


def _end_watches_first(close: Callable[[], None]) -> None:
    """Chains onto the handlers `stop_on_signals` installed: watch streams end at once with
    UNAVAILABLE (clients resume from their cursor on another replica) instead of holding the
    drain for the whole grace period."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)

        def handle(num: int, frame: FrameType | None, previous: object = previous) -> None:
            close()
            if callable(previous):
                previous(num, frame)

        signal.signal(signum, handle)


def main() -> None:
    configure_logging("timeline")
    telemetry = configure_telemetry("rapport-timeline")
    settings = TimelineSettings.from_env()
    app = build(settings)
    running = start_server(settings.grpc, app.register, [SERVICE_NAME])
    running.on_stop.append(telemetry.shutdown)
    running.on_stop.append(app.close)  # on_stop runs in reverse: app first, telemetry last
    stop_on_signals(running, settings.grpc.grace)
    _end_watches_first(app.timeline.hub.close)
    log.info("timeline ready", extra={"port": running.port, "max_watchers": settings.max_watchers})
    running.wait()


if __name__ == "__main__":
    main()
