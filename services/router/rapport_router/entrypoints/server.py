"""`python -m rapport_router`: serve RouterService with health, reflection and graceful SIGTERM."""

from __future__ import annotations

import gc
import logging

from rapport.logs import configure_logging
from rapport.serving import start_server, stop_on_signals
from rapport.telemetry import configure_telemetry
from rapport_router.bootstrap import SERVICE_NAME, build
from rapport_router.config import RouterConfig

log = logging.getLogger("rapport_router")


def main() -> None:
    configure_logging("router")
    telemetry = configure_telemetry("rapport-router")
    config = RouterConfig.from_env()
    app = build(config)
    app.start()
    # What start-up built (modules, contracts, the agents' statistics) lives as long as the
    # process: frozen out of the collector's sight, full collections stay short.
    gc.collect()
    gc.freeze()
    running = start_server(config.grpc, app.register, [SERVICE_NAME])
    running.on_stop.append(telemetry.shutdown)
    running.on_stop.append(app.close)  # on_stop runs in reverse: app first, telemetry last
    stop_on_signals(running, config.grpc.grace, end_streams=[app.broker.stop])
    log.info(
        "router ready",
        extra={
            "port": running.port,
            "relaxation": config.relaxation.text,
            "offer_timeout": config.offer_timeout,
            "weights": vars(config.weights),
        },
    )
    running.wait()


if __name__ == "__main__":
    main()
