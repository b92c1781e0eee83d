"""One customer, one effort score: the 360° view (profile) and the handoff context (timeline)
read the same interactions from the real graph and apply the shared formula over the same window."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import neo4j
import pytest
from test_timeline_support import (  # type: ignore[import-not-found]
    Harness,
    by_identifier,
    timeline_server,  # noqa: F401  (the `timeline` fixture)
)

from rapport.settings import GrpcSettings, Neo4jSettings
from rapport.v1 import events_pb2 as ev
from rapport.v1 import profile_pb2, profile_pb2_grpc
from rapport.v1 import timeline_pb2 as tl
from rapport_profile.adapters.graph import seed_graph
from rapport_profile.api.bootstrap import start_profile_api
from rapport_profile.api.config import ProfileApiSettings
from rapport_profile.synthetic import identifier, interaction

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def profile(graph: neo4j.Driver, neo4j_settings: Neo4jSettings) -> Iterator[profile_pb2_grpc.ProfileServiceStub]:
    settings = ProfileApiSettings(grpc=GrpcSettings(port=0, max_workers=4), neo4j=neo4j_settings)
    running = start_profile_api(settings, driver=graph)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield profile_pb2_grpc.ProfileServiceStub(channel)
    finally:
        running.stop(1)


def hours_ago(hours: float) -> datetime:
    return datetime.now(UTC) - timedelta(hours=hours)


def struggling_customer(uid: str, crm: str) -> list[ev.InteractionEvent]:
    order = [ev.Fact(key="order_number", value="A-1001")]
    return [
        # Ten days ago: outside the 7-day window, so it must not count anywhere.
        interaction(f"{uid}-old", crm, at=hours_ago(240), channel=ev.CHANNEL_VOICE, kind=ev.INTERACTION_KIND_CALL,
                    topic="delivery"),
        interaction(f"{uid}-1", crm, at=hours_ago(30), channel=ev.CHANNEL_WEB,
                    kind=ev.INTERACTION_KIND_ARTICLE_FEEDBACK, topic="delivery",
                    self_service=ev.SelfService(article_id="kb-12", answer=ev.ARTICLE_ANSWER_NO)),
        interaction(f"{uid}-2", crm, at=hours_ago(29), channel=ev.CHANNEL_BOT, kind=ev.INTERACTION_KIND_BOT_TURN,
                    intent="track_order", facts=order),
        interaction(f"{uid}-3", crm, at=hours_ago(28.9), channel=ev.CHANNEL_BOT, kind=ev.INTERACTION_KIND_BOT_EXIT,
                    self_service=ev.SelfService(flow_id="orders", step="track", exit_reason="gave_up")),
        interaction(f"{uid}-4", crm, at=hours_ago(28), channel=ev.CHANNEL_CHAT, topic="delivery", facts=order),
        interaction(f"{uid}-5", crm, at=hours_ago(3), channel=ev.CHANNEL_VOICE, kind=ev.INTERACTION_KIND_CALL,
                    topic="delivery", facts=order),
        # The brand's own message is not the customer's effort.
        interaction(f"{uid}-6", crm, at=hours_ago(1), channel=ev.CHANNEL_EMAIL,
                    kind=ev.INTERACTION_KIND_NOTIFICATION, direction=ev.DIRECTION_OUTBOUND, facts=order),
    ]  # fmt: skip


def test_the_360_view_and_the_handoff_give_the_same_effort(
    graph: neo4j.Driver, profile: profile_pb2_grpc.ProfileServiceStub, timeline: Harness, uid: str
):
    crm = f"crm:EFF-{uid}"
    seed_graph(graph, struggling_customer(uid, crm))

    view = profile.GetCustomer(profile_pb2.GetCustomerRequest(identifier=identifier(crm)), timeout=10).customer.effort
    handoff = timeline.stub.GetHandoffContext(tl.GetHandoffContextRequest(customer=by_identifier(crm)), timeout=10)

    assert {c.name: (c.count, c.points) for c in view.components} == {
        "bot_turns": (1, 3),
        "failed_self_service": (2, 20),  # the article answered No, the bot exit
        "channel_switches": (3, 24),  # web -> bot -> chat -> voice
        "repeat_contacts": (1, 12),  # delivery by chat, then by phone
        "repeated_facts": (2, 16),  # the order number, given three times
    }
    assert (view.score, view.level) == (75, tl.EFFORT_LEVEL_HIGH)
    mine = (view.score, view.level, list(view.components), list(view.reasons))
    theirs = handoff.effort
    assert mine == (theirs.score, theirs.level, list(theirs.components), list(theirs.reasons))
    span = view.window_end.ToDatetime() - view.window_start.ToDatetime()
    assert span == timedelta(days=7)
    assert span == theirs.window_end.ToDatetime() - theirs.window_start.ToDatetime()
