"""The one place that builds the router: driver, adapters, use cases, background loops, servicer.

Nothing connects here: the Neo4j driver and the Kafka producer connect on first use, so a
router starts (and reports UNAVAILABLE) while its dependencies are still coming up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import neo4j

from rapport.graph.driver import open_driver
from rapport.publisher import InteractionPublisher
from rapport.v1 import router_pb2, router_pb2_grpc
from rapport_router.adapters.events import EventSink, Outbox
from rapport_router.adapters.graph import GRAPH_ERRORS, RouterGraph
from rapport_router.config import RouterConfig
from rapport_router.dispatcher import Dispatcher
from rapport_router.domain.performance import PerformanceHolder
from rapport_router.entrypoints.servicer import RouterServicer
from rapport_router.offers import OfferBroker
from rapport_router.routing import RosterCache, Router

log = logging.getLogger(__name__)

SERVICE_NAME = router_pb2.DESCRIPTOR.services_by_name["RouterService"].full_name


@dataclass
class RouterApp:
    config: RouterConfig
    driver: neo4j.Driver
    graph: RouterGraph
    router: Router
    dispatcher: Dispatcher
    broker: OfferBroker
    outbox: Outbox
    servicer: RouterServicer
    owns_driver: bool = True
    _started: bool = field(default=False, repr=False)

    def register(self, server: grpc.Server) -> None:
        router_pb2_grpc.add_RouterServiceServicer_to_server(self.servicer, server)

    def start(self, *, background: bool = True) -> None:
        """Starts the outbox, the offer-stream poller and (unless told not to) the dispatcher loop."""
        self.outbox.start()
        self.broker.start()
        self.router.roster.start()
        if background:
            try:
                self.dispatcher.refresh_stats()
            except GRAPH_ERRORS as exc:
                log.warning("no agent statistics yet", extra={"error": f"{type(exc).__name__}: {exc}"})
            self.dispatcher.start(refresh_stats_now=False)
        self._started = True

    def close(self) -> None:
        """Stops the loops (offer streams end), flushes pending events, closes the driver."""
        self.broker.stop()
        self.dispatcher.stop()
        self.router.roster.stop()
        self.outbox.stop()
        self.graph.close()
        if self.owns_driver:
            self.driver.close()


def build(
    config: RouterConfig,
    *,
    driver: neo4j.Driver | None = None,
    sink_factory: Callable[[], EventSink] | None = None,
    clock: Callable[[], float] = time.time,
) -> RouterApp:
    owns_driver = driver is None
    driver = driver if driver is not None else open_driver(config.neo4j)
    graph = RouterGraph(driver, config.neo4j.database, ageing_seconds=config.ageing_seconds)
    performance = PerformanceHolder()
    roster = RosterCache(graph, config.roster_max_age, clock)
    broker = OfferBroker(graph, poll=config.stream_poll, graph_timeout=config.request_timeout)

    def kafka() -> EventSink:
        # Ending events are small: compressing them (in pure Python) costs more than it saves.
        # Nobody waits for them (the graph's outbox mark keeps them safe), so they wait to share
        # a request: the producer's per-request work is most of its cost. Its metrics go unread.
        return InteractionPublisher(
            config.kafka, client_id="rapport-router", compression_type=None, linger_ms=50, metrics_enabled=False
        )

    outbox = Outbox(
        graph,
        sink_factory or kafka,
        retry=config.outbox_retry,
        graph_timeout=config.request_timeout,
        clock=clock,
    )
    router = Router(graph, roster, performance=performance, config=config, broker=broker, outbox=outbox, clock=clock)
    dispatcher = Dispatcher(router, graph, performance, config, clock=clock)
    servicer = RouterServicer(router, broker, config.request_timeout)
    return RouterApp(config, driver, graph, router, dispatcher, broker, outbox, servicer, owns_driver)
