"""Pages read straight from Neo4j (hot-timeline cache off, as for every short history): the
keyset query returns the page as one record, in order, with nothing lost or repeated while
interactions arrive between pages."""

from __future__ import annotations

from collections.abc import Iterator

import neo4j
import pytest
from test_timeline_support import Harness, at, by_identifier, interaction, serve  # type: ignore[import-not-found]

from rapport.settings import KafkaSettings, Neo4jSettings
from rapport.v1 import events_pb2 as ev
from rapport.v1 import timeline_pb2 as tl
from rapport_timeline.adapters.graph import Neo4jTimelineGraph

pytestmark = pytest.mark.integration

T = 10.0


@pytest.fixture(name="uncached")
def uncached_timeline(
    neo4j_settings: Neo4jSettings, isolated_topics: KafkaSettings, graph: neo4j.Driver
) -> Iterator[Harness]:
    harness = serve(neo4j_settings, isolated_topics, graph, cache_interactions=0)
    yield harness
    harness.close()
    harness.server.stop(1.0)


def page_ids(h: Harness, request: tl.ListInteractionsRequest, between_pages=None) -> list[str]:
    seen: list[str] = []
    while True:
        response = h.stub.ListInteractions(request, timeout=T)
        assert len(response.interactions) <= (request.page_size or 50)
        seen.extend(i.event_id for i in response.interactions)
        if between_pages is not None:
            between_pages()
        if not response.next_page_token:
            return seen
        request.page_token = response.next_page_token


def test_oldest_first_from_the_graph_sees_every_interaction_once_while_more_arrive(uncached: Harness, uid: str):
    email = f"email:graph.{uid}@example.com"
    uncached.seed(interaction(f"{uid}-{n:04d}", email, at=at(n)) for n in range(600))
    batches = iter(range(8))

    def one_more_batch() -> None:
        batch = next(batches, None)
        if batch is not None:
            uncached.seed(
                interaction(f"{uid}-{600 + batch * 25 + n:04d}", email, at=at(600 + batch * 25 + n)) for n in range(25)
            )

    request = tl.ListInteractionsRequest(
        customer=by_identifier(email), page_size=70, order=tl.TIMELINE_ORDER_OLDEST_FIRST
    )
    assert page_ids(uncached, request, one_more_batch) == [f"{uid}-{n:04d}" for n in range(800)]
    assert isinstance(uncached.app.timeline.graph, Neo4jTimelineGraph)  # no cache in the way


def test_newest_first_from_the_graph_breaks_equal_times_by_event_id_and_filters(uncached: Harness, uid: str):
    phone = f"phone:+4477007{int(uid[:5], 16) % 100000:05d}"
    # Three interactions share each minute: the event id breaks the tie. Every "c" is a call.
    uncached.seed(
        interaction(f"{uid}-{m:03d}-{k}", phone, at=at(m), channel=ev.CHANNEL_VOICE if k == "c" else ev.CHANNEL_CHAT)
        for m in range(40)
        for k in "abc"
    )
    expected = [f"{uid}-{m:03d}-{k}" for m in range(40) for k in "abc"]
    newest = page_ids(uncached, tl.ListInteractionsRequest(customer=by_identifier(phone), page_size=7))
    assert newest == expected[::-1]
    voice = page_ids(
        uncached,
        tl.ListInteractionsRequest(
            customer=by_identifier(phone),
            page_size=4,
            filter=tl.InteractionFilter(channels=[ev.CHANNEL_VOICE]),
        ),
    )
    assert voice == [e for e in expected[::-1] if e.endswith("-c")]
