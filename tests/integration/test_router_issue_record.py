"""The similar-customer factor through the real router and graph: the agents' record on the
contact's topic leads, the record with customers of the same segment only fills in."""

from __future__ import annotations

from typing import Any

import neo4j
import pytest
from test_router_support import (  # type: ignore[import-not-found]
    agent,
    cleanup_fixture,  # noqa: F401
    days_ago,
    email,
    serve_router,
)

from rapport.settings import KafkaSettings, Neo4jSettings
from rapport.v1 import events_pb2 as ev
from rapport.v1 import router_pb2 as rt
from rapport_profile.adapters.graph import seed_graph
from rapport_profile.synthetic import interaction

pytestmark = pytest.mark.integration


def _outcomes(
    uid: str, name: str, agent_id: str, resolved: int, total: int, *, topic: str, segment: str | None
) -> list[ev.InteractionEvent]:
    """`total` past contacts of distinct customers handled by `agent_id`, `resolved` of them resolved."""
    events = []
    for n in range(total):
        ok = n < resolved
        fields: dict[str, Any] = {
            "agent_id": agent_id,
            "topic": topic,
            "outcome": ev.OUTCOME_RESOLVED if ok else ev.OUTCOME_UNRESOLVED,
            "csat": 5 if ok else 2,
        }
        if segment is not None:
            fields["traits"] = ev.CustomerTraits(segment=segment)
        events.append(
            interaction(
                f"{uid}-{name}-{n}",
                email(f"{name}{n}.{uid}"),
                at=days_ago(3 + n / 10),
                kind=ev.INTERACTION_KIND_CONTACT_COMPLETED,
                **fields,
            )
        )
    return events


def _factor(factors: object, name: str) -> rt.ScoreFactor:
    return next(f for f in factors if f.name == name)  # type: ignore[attr-defined]


def test_the_agent_who_resolves_the_topic_wins_over_the_one_who_does_well_with_the_segment(
    neo4j_settings: Neo4jSettings, isolated_topics: KafkaSettings, graph: neo4j.Driver, cleanup: str
):
    uid = cleanup
    team, topic, segment = f"{uid}-team", f"plans-{uid}", f"smb-{uid}"
    fixer, charmer = f"{uid}-fixer", f"{uid}-charmer"
    # Fixer resolves 18 of 20 on the topic; charmer 6 of 20. With this segment's customers (on
    # another topic) it is the other way round, 2 of 20 against 20 of 20: pooled by contacts,
    # the segment would cancel the topic out.
    seed_graph(
        graph,
        [
            *_outcomes(uid, "ft", fixer, 18, 20, topic=topic, segment=None),
            *_outcomes(uid, "ct", charmer, 6, 20, topic=topic, segment=None),
            *_outcomes(uid, "fs", fixer, 2, 20, topic=f"other-{uid}", segment=segment),
            *_outcomes(uid, "cs", charmer, 20, 20, topic=f"other-{uid}", segment=segment),
        ],
    )
    customer = email(f"new.{uid}")
    seed_graph(
        graph,
        [
            interaction(
                f"{uid}-profile",
                customer,
                at=days_ago(30),
                kind=ev.INTERACTION_KIND_FORM_SUBMITTED,
                traits=ev.CustomerTraits(segment=segment),
            )
        ],
    )
    # Started after the seeding, so its first statistics refresh reads these outcomes.
    router = serve_router(neo4j_settings, isolated_topics, driver=graph)
    try:
        router.add_agents(agent(fixer, team, skills={topic: 3}), agent(charmer, team, skills={topic: 3}))
        routed = router.route(contact_id=f"{uid}-c1", identifier=customer, topic=topic, team=team)
        assert routed.offer.agent_id == fixer
        mine = _factor(routed.offer.explanation.factors, "similar_customers")
        theirs = _factor(routed.offer.explanation.runner_ups[0].factors, "similar_customers")
        assert routed.offer.explanation.runner_ups[0].agent_id == charmer
        assert mine.value > 0 > theirs.value
        assert f"topic {topic}: resolved 18/20" in mine.detail and f"segment {segment}: resolved 2/20" in mine.detail
    finally:
        router.close()
