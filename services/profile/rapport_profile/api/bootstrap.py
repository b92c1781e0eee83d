"""The one place that builds the ProfileService: driver, reader, servicer, gRPC server."""

from __future__ import annotations

import grpc
import neo4j

from rapport.graph.driver import open_driver
from rapport.serving import RunningServer, start_server
from rapport.v1 import journeys_pb2, journeys_pb2_grpc, profile_pb2, profile_pb2_grpc
from rapport_profile.adapters.erasure import Eraser, GraphEraser
from rapport_profile.adapters.merge_review import GraphMergeReview, MergeReview
from rapport_profile.adapters.notices import CustomerNotices, KafkaCustomerNotices
from rapport_profile.adapters.retention import GraphRetention
from rapport_profile.api.config import ProfileApiSettings
from rapport_profile.api.graph_reader import GraphProfileReader, ProfileReader
from rapport_profile.api.journey_reader import GraphJourneyReader, JourneyReader
from rapport_profile.api.journeys import JourneyServicer
from rapport_profile.api.servicer import ProfileServicer
from rapport_profile.domain.erasure import Tombstones
from rapport_profile.erasure import ErasureService
from rapport_profile.merge_review import MergeReviewService, ReviewNotices
from rapport_profile.retention import RetentionSchedule, RetentionService

SERVICE_NAME = profile_pb2.DESCRIPTOR.services_by_name["ProfileService"].full_name
JOURNEY_SERVICE_NAME = journeys_pb2.DESCRIPTOR.services_by_name["JourneyService"].full_name


def start_profile_api(
    settings: ProfileApiSettings,
    *,
    driver: neo4j.Driver | None = None,
    reader: ProfileReader | None = None,
    eraser: Eraser | None = None,
    notices: CustomerNotices | None = None,
    journeys: JourneyReader | None = None,
    review: MergeReview | None = None,
    review_notices: ReviewNotices | None = None,
) -> RunningServer:
    """Starts serving; the driver is opened here (and closed on stop) unless one is passed in.

    Tests pass a `reader` fake for unit tests, or the shared `driver` for integration tests.
    Nothing connects yet: the driver connects on the first call, Kafka on the first notice.
    With RAPPORT_RETENTION_DAYS set, the retention purge runs on a background thread.
    """
    owned: neo4j.Driver | None = None
    if reader is None:
        if driver is None:
            driver = owned = open_driver(settings.neo4j)
        reader = GraphProfileReader(driver, settings.neo4j.database)
    if eraser is None:
        if driver is None:
            driver = owned = open_driver(settings.neo4j)
        eraser = GraphEraser(driver, settings.neo4j.database, tombstones=Tombstones(settings.erasure.salt))
    if review is None:
        if driver is None:
            driver = owned = open_driver(settings.neo4j)
        review = GraphMergeReview(driver, settings.neo4j.database)
    notices = notices or KafkaCustomerNotices(settings.kafka)
    erasure = ErasureService(eraser, notices)
    if review_notices is None:
        # On the same producer, unless `notices` is a test's stand-in.
        review_notices = notices if isinstance(notices, KafkaCustomerNotices) else KafkaCustomerNotices(settings.kafka)
    servicer = ProfileServicer(
        reader,
        settings.neo4j.timeout,
        effort_window=settings.effort_window,
        erasure=erasure,
        erasure_timeout=settings.erasure.timeout,
        review=MergeReviewService(review, review_notices),
    )
    if journeys is None:
        if driver is None:
            driver = owned = open_driver(settings.neo4j)
        journeys = GraphJourneyReader(driver, settings.neo4j.database)
    journey_servicer = JourneyServicer(journeys, settings.journey_timeout)

    def register(server: grpc.Server) -> None:
        profile_pb2_grpc.add_ProfileServiceServicer_to_server(servicer, server)
        journeys_pb2_grpc.add_JourneyServiceServicer_to_server(journey_servicer, server)

    try:
        running = start_server(settings.grpc, register, [SERVICE_NAME, JOURNEY_SERVICE_NAME])
    except BaseException:
        if owned is not None:
            owned.close()
        raise
    if owned is not None:
        running.on_stop.append(owned.close)
    running.on_stop.append(notices.close)
    if isinstance(review_notices, KafkaCustomerNotices) and review_notices is not notices:
        running.on_stop.append(review_notices.close)
    if settings.retention.days and driver is not None:
        retention = RetentionService(
            GraphRetention(driver, settings.neo4j.database), notices, batch_size=settings.retention.batch_size
        )
        schedule = RetentionSchedule(retention, settings.retention.days, settings.retention.interval)
        schedule.start()
        running.on_stop.append(schedule.stop)
    return running
