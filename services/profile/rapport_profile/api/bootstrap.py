"""The one place that builds the ProfileService: driver, reader, servicer, gRPC server."""

from __future__ import annotations

import neo4j

from rapport.graph.driver import open_driver
from rapport.serving import RunningServer, start_server
from rapport.v1 import profile_pb2, profile_pb2_grpc
from rapport_profile.api.config import ProfileApiSettings
from rapport_profile.api.graph_reader import GraphProfileReader, ProfileReader
from rapport_profile.api.servicer import ProfileServicer

SERVICE_NAME = profile_pb2.DESCRIPTOR.services_by_name["ProfileService"].full_name


def start_profile_api(
    settings: ProfileApiSettings,
    *,
    driver: neo4j.Driver | None = None,
    reader: ProfileReader | None = None,
) -> RunningServer:
    """Starts serving; the driver is opened here (and closed on stop) unless one is passed in.

    Tests pass a `reader` fake for unit tests, or the shared `driver` for integration tests.
    Nothing connects yet: the driver connects on the first call.
    """
    owned: neo4j.Driver | None = None
    if reader is None:
        if driver is None:
            driver = owned = open_driver(settings.neo4j)
        reader = GraphProfileReader(driver, settings.neo4j.database)
    servicer = ProfileServicer(reader, settings.neo4j.timeout, effort_window=settings.effort_window)
    try:
        running = start_server(
            settings.grpc,
            lambda server: profile_pb2_grpc.add_ProfileServiceServicer_to_server(servicer, server),
            [SERVICE_NAME],
        )
    except BaseException:
        if owned is not None:
            owned.close()
        raise
    if owned is not None:
        running.on_stop.append(owned.close)
    return running
