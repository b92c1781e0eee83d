"""`python -m rapport_profile`: serve the ProfileService (gRPC, with health and reflection).

Settings: RAPPORT_PROFILE_HOST / _PORT (50051) / _GRACE / _WORKERS, RAPPORT_NEO4J_*,
RAPPORT_LOG_LEVEL and the standard OTEL_* variables. SIGTERM drains in-flight calls.
"""

from __future__ import annotations

import logging
import threading

from rapport.logs import configure_logging
from rapport.serving import stop_on_signals
from rapport.telemetry import configure_telemetry
from rapport_profile.api.bootstrap import start_profile_api
from rapport_profile.api.config import ProfileApiSettings

log = logging.getLogger("rapport_profile")


def main() -> None:
    configure_logging("profile-api")
    telemetry = configure_telemetry("rapport-profile-api")
    settings = ProfileApiSettings.from_env()
    running = start_profile_api(settings)
    # Stop steps run last-added first: close the driver, flush telemetry, then let main return.
    stopped = threading.Event()
    running.on_stop[:0] = [stopped.set, telemetry.shutdown]
    stop_on_signals(running, settings.grpc.grace)
    running.wait()
    stopped.wait(settings.grpc.grace + 5)
    log.info("profile api stopped")


if __name__ == "__main__":
    main()
