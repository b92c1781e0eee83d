"""The one place that builds the timeline service's drivers, feed and servicer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from rapport.graph.driver import open_driver
from rapport.v1 import timeline_pb2, timeline_pb2_grpc
from rapport_timeline.adapters.cache import CachingTimelineGraph
from rapport_timeline.adapters.graph import Neo4jTimelineGraph
from rapport_timeline.adapters.updates import CustomerUpdatesTail, WatchHub
from rapport_timeline.config import TimelineSettings
from rapport_timeline.entrypoints.servicer import TimelineServicer
from rapport_timeline.service import Timeline, TimelineGraph

SERVICE_NAME = timeline_pb2.DESCRIPTOR.services_by_name["TimelineService"].full_name


@dataclass
class TimelineApp:
    timeline: Timeline
    servicer: TimelineServicer
    # Run in this order on shutdown.
    closers: list[Callable[[], None]] = field(default_factory=list)

    def register(self, server: grpc.Server) -> None:
        timeline_pb2_grpc.add_TimelineServiceServicer_to_server(self.servicer, server)

    def close(self) -> None:
        for close in self.closers:
            close()


def build(
    settings: TimelineSettings,
    *,
    graph: TimelineGraph | None = None,
    hub: WatchHub | None = None,
    tail: bool = True,
) -> TimelineApp:
    """Real Neo4j and Kafka unless a test passes its own `graph` / `hub` (then `tail=False`)."""
    closers: list[Callable[[], None]] = []
    hub = hub or WatchHub(settings.max_watchers)
    closers.append(hub.close)
    if tail:
        feed = CustomerUpdatesTail(settings.kafka, hub)
        feed.start()
        closers.append(feed.stop)
    if graph is None:
        driver = open_driver(settings.neo4j)
        neo4j_graph = Neo4jTimelineGraph(driver, settings.neo4j.database, settings.neo4j.timeout)
        cached = settings.cache_interactions > 0
        graph = CachingTimelineGraph(neo4j_graph, settings.cache_interactions) if cached else neo4j_graph
        closers.append(driver.close)
    if isinstance(graph, CachingTimelineGraph):
        hub.on_update(graph.notice)
    timeline = Timeline(graph, hub, live_wait=settings.live_wait, effort_window=settings.effort_window)
    return TimelineApp(timeline, TimelineServicer(timeline), closers)
