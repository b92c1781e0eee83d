"""The router learns from outcomes: CompleteContact -> Kafka -> the real ingest worker -> graph
-> the next decision. Nothing is seeded by hand: the only history is the completed contact."""

from __future__ import annotations

from pathlib import Path

import neo4j
import pytest
from test_router_support import (  # type: ignore[import-not-found]
    CALL_TIMEOUT,
    agent,
    cleanup_fixture,  # noqa: F401
    email,
    eventually,
    serve_router,
)

from rapport.settings import KafkaSettings, Neo4jSettings
from rapport.v1 import events_pb2 as ev
from rapport.v1 import router_pb2 as rt
from rapport_profile.worker_process import WorkerProcess, free_port, worker_env
from rapport_router.domain.scoring import Weights

pytestmark = pytest.mark.e2e


def test_after_a_bad_outcome_flows_back_affinity_sends_the_customer_elsewhere(
    neo4j_settings: Neo4jSettings,
    isolated_topics: KafkaSettings,
    graph: neo4j.Driver,
    tmp_path: Path,
    cleanup: str,
):
    uid = cleanup
    team = f"{uid}-team"
    a, b = f"{uid}-a", f"{uid}-b"
    customer = email(f"liz.{uid}")
    # Idle time is left out so that only what the graph learns can change the pick.
    router = serve_router(neo4j_settings, isolated_topics, driver=graph, weights=Weights(idle_time=0.0))
    env = worker_env(isolated_topics, neo4j_settings, group=f"router-{uid}", port=free_port(), linger=0.02)
    try:
        with WorkerProcess(env, tmp_path / "worker.log").start():
            router.add_agents(agent(a, team, skills={"billing": 3}), agent(b, team, skills={"billing": 4}))
            first = router.route(contact_id=f"{uid}-c1", identifier=customer, topic="billing", team=team)
            assert first.offer.agent_id == b  # the better skill wins while there is no history
            router.stub.AcceptOffer(rt.AcceptOfferRequest(offer_id=first.offer.offer_id, agent_id=b), timeout=5)
            router.stub.CompleteContact(
                rt.CompleteContactRequest(
                    contact_id=first.id, outcome=ev.OUTCOME_UNRESOLVED, csat=1, notes="could not fix the bill"
                ),
                timeout=CALL_TIMEOUT,
            )

            def served_by_b() -> int | None:
                records, _, _ = graph.execute_query(
                    """
                    MATCH (:Identity {key: $key})-[:IDENTIFIES]->(:Customer)-[s:SERVED_BY]->(:Agent {id: $agent})
                    RETURN s.contacts AS contacts
                    """,
                    key=f"email:liz.{uid}@example.com",
                    agent=b,
                )
                return records[0]["contacts"] if records else None

            assert eventually(served_by_b, timeout=60) == 1

            second = router.route(contact_id=f"{uid}-c2", identifier=customer, topic="billing", team=team)
            assert second.offer.agent_id == a
            runner_up = second.offer.explanation.runner_ups[0]
            assert runner_up.agent_id == b
            affinity = next(f for f in runner_up.factors if f.name == "affinity")
            assert affinity.value < 0 and "resolved 0 of 1 past contacts" in affinity.detail
            assert second.customer_id  # the worker created the customer from the completion event
    finally:
        router.close()
