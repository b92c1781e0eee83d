"""Router replicas as real processes: no overbooking under concurrency, a restart loses nothing."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import neo4j
import pytest
from test_router_support import (  # type: ignore[import-not-found]
    CALL_TIMEOUT,
    agent,
    cleanup_fixture,  # noqa: F401
    email,
    eventually,
)

from rapport.settings import KafkaSettings, Neo4jSettings
from rapport.v1 import events_pb2 as ev
from rapport.v1 import router_pb2 as rt
from rapport.v1 import router_pb2_grpc
from rapport_router.process import RouterProcess, router_env

pytestmark = pytest.mark.integration


def start_router(neo4j_settings: Neo4jSettings, kafka: KafkaSettings, log: Path, **extra: str) -> RouterProcess:
    env = router_env(
        neo4j_settings,
        kafka,
        extra={"RAPPORT_ROUTER_TICK": "0.2", "RAPPORT_ROUTER_WORKERS": "32", "RAPPORT_LOG_LEVEL": "WARNING", **extra},
    )
    return RouterProcess(env, log).start()


@pytest.fixture
def two_routers(
    neo4j_settings: Neo4jSettings, isolated_topics: KafkaSettings, tmp_path: Path, cleanup: str
) -> Iterator[list[RouterProcess]]:
    routers = [start_router(neo4j_settings, isolated_topics, tmp_path / f"router{i}.log") for i in range(2)]
    yield routers
    for r in routers:
        r.stop()


def test_100_concurrent_routes_over_two_processes_never_overbook_10_agents(
    two_routers: list[RouterProcess], graph: neo4j.Driver, uid: str
):
    team = f"{uid}-team"
    channels = [grpc.insecure_channel(r.address) for r in two_routers]
    stubs = [router_pb2_grpc.RouterServiceStub(c) for c in channels]
    try:
        for i in range(10):
            stubs[i % 2].UpsertAgent(
                rt.UpsertAgentRequest(agent=agent(f"{uid}-a{i}", team, skills={"billing": 1 + i % 5})),
                timeout=CALL_TIMEOUT,
            )

        def route(n: int) -> rt.Contact:
            request = rt.RouteContactRequest(
                contact_id=f"{uid}-c{n}",
                identifier=email(f"n{n}.{uid}"),
                channel=ev.CHANNEL_CHAT,
                topic="billing",
                team=team,
            )
            return stubs[n % 2].RouteContact(request, timeout=30).contact

        with ThreadPoolExecutor(max_workers=50) as pool:
            contacts = list(pool.map(route, range(100)))

        offered = [c for c in contacts if c.state == rt.CONTACT_STATE_OFFERED]
        waiting = [c for c in contacts if c.state == rt.CONTACT_STATE_WAITING]
        assert len(offered) == 10 and len(waiting) == 90
        assert len({c.offer.agent_id for c in offered}) == 10  # one contact per agent
        agents = stubs[0].ListAgents(rt.ListAgentsRequest(team=team), timeout=CALL_TIMEOUT).agents
        loads = [c.active for a in agents for c in a.capacity if c.channel == ev.CHANNEL_CHAT]
        assert len(agents) == 10 and loads == [1] * 10
        queue = stubs[1].GetQueue(rt.GetQueueRequest(team=team, limit=1000), timeout=CALL_TIMEOUT)
        assert queue.total_waiting == 90 and {c.id for c in queue.contacts} == {c.id for c in waiting}
        # The graph agrees: nobody above capacity, exactly ten offers held.
        records, _, _ = graph.execute_query(
            """
            MATCH (a:Agent) WHERE a.id STARTS WITH $uid
            OPTIONAL MATCH (c:Contact {state: 'offered', agent_id: a.id})
            RETURN a.id AS agent, a.active_chat AS active, a.capacity_chat AS capacity, count(c) AS held
            """,
            uid=uid,
        )
        assert all(r["active"] <= r["capacity"] and r["held"] == r["active"] for r in records)
        assert sum(r["held"] for r in records) == 10
    finally:
        for c in channels:
            c.close()


def test_a_router_restart_with_a_full_queue_loses_nothing(
    neo4j_settings: Neo4jSettings, isolated_topics: KafkaSettings, tmp_path: Path, cleanup: str
):
    uid = cleanup
    team = f"{uid}-team"
    first = start_router(neo4j_settings, isolated_topics, tmp_path / "first.log")
    try:
        with grpc.insecure_channel(first.address) as channel:
            stub = router_pb2_grpc.RouterServiceStub(channel)
            for i in range(3):
                away = agent(f"{uid}-a{i}", team, status=rt.AGENT_STATUS_AWAY)
                stub.UpsertAgent(rt.UpsertAgentRequest(agent=away), timeout=CALL_TIMEOUT)
            for n in range(5):
                routed = stub.RouteContact(
                    rt.RouteContactRequest(
                        contact_id=f"{uid}-c{n}",
                        identifier=email(f"q{n}.{uid}"),
                        channel=ev.CHANNEL_CHAT,
                        team=team,
                        priority=n % 2,
                    ),
                    timeout=CALL_TIMEOUT,
                ).contact
                assert routed.state == rt.CONTACT_STATE_WAITING
                assert routed.queue.reason == "no qualified agent is available"
            before = stub.GetQueue(rt.GetQueueRequest(team=team), timeout=CALL_TIMEOUT)
        first.kill()  # a crash, not a drain
    finally:
        first.stop()
    assert before.total_waiting == 5

    second = start_router(neo4j_settings, isolated_topics, tmp_path / "second.log")
    try:
        with grpc.insecure_channel(second.address) as channel:
            stub = router_pb2_grpc.RouterServiceStub(channel)
            after = stub.GetQueue(rt.GetQueueRequest(team=team), timeout=CALL_TIMEOUT)
            assert [c.id for c in after.contacts] == [c.id for c in before.contacts]
            assert [c.priority for c in after.contacts] == [1, 1, 0, 0, 0]
            assert [c.created_at for c in after.contacts] == [c.created_at for c in before.contacts]
            for i in range(3):
                stub.SetAgentStatus(
                    rt.SetAgentStatusRequest(agent_id=f"{uid}-a{i}", status=rt.AGENT_STATUS_AVAILABLE),
                    timeout=CALL_TIMEOUT,
                )

            def three_offered() -> list[rt.Contact] | None:
                contacts = [
                    stub.GetContact(rt.GetContactRequest(contact_id=c.id), timeout=CALL_TIMEOUT).contact
                    for c in before.contacts
                ]
                offered = [c for c in contacts if c.state == rt.CONTACT_STATE_OFFERED]
                return contacts if len(offered) == 3 else None

            contacts = eventually(three_offered)
            # The queue's head (higher priority, then older) went first.
            assert [c.state for c in contacts[:3]] == [rt.CONTACT_STATE_OFFERED] * 3
            assert [c.state for c in contacts[3:]] == [rt.CONTACT_STATE_WAITING] * 2
            assert all(c.offer.mode == rt.ASSIGNMENT_MODE_BATCH for c in contacts[:3])
    finally:
        second.stop()
