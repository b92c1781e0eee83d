"""Router statements that carry several calls in one transaction behave as the calls would
one after the other: capacity checked row by row, a taken contact id failing only its call."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import neo4j
import pytest
from test_router_support import cleanup_fixture  # type: ignore[import-not-found]  # noqa: F401

from rapport.settings import Neo4jSettings
from rapport_router.adapters.graph import (
    ACCEPT_OFFER_ROWS,
    COMPLETE_CONTACT_ROWS,
    RESERVE_NEW_ROWS,
    ContactExists,
    RouterGraph,
    contact_props,
)
from rapport_router.deadline import deadline_scope
from rapport_router.domain.contact import OfferInfo
from rapport_router.domain.model import AgentRecord, AgentStatus, AssignmentMode, ContactSpec

pytestmark = pytest.mark.integration


def reservation(uid: str, n: int, agent_id: str, now: float) -> dict[str, Any]:
    spec = ContactSpec(id=f"{uid}-c{n}", channel="chat", created_at=now, team=f"{uid}-team", topic="billing")
    contact = {**contact_props(spec, None, {}, now), "offer_id": f"{spec.id}~1", "offer_attempt": 1}
    return {
        "i": n,
        "agent_id": agent_id,
        "contact": contact,
        "offered_ms": int(now * 1000),
        "expires_ms": int((now + 60) * 1000),
        "now": int(now * 1000),
        "rev": int(now * 1000),
        "active_key": "active_chat",
        "capacity_key": "capacity_chat",
    }


@pytest.fixture
def adapter(graph: neo4j.Driver, neo4j_settings: Neo4jSettings, cleanup: str) -> Iterator[RouterGraph]:
    adapter = RouterGraph(graph, neo4j_settings.database)
    yield adapter
    adapter.close()


def chat_agent(adapter: RouterGraph, uid: str, capacity: int, now: float) -> str:
    """An available agent of this test with room for `capacity` chats."""
    agent_id = f"{uid}-a"
    record = AgentRecord(agent_id, AgentStatus.AVAILABLE, teams=(f"{uid}-team",), capacity={"chat": capacity})
    adapter.upsert_agent(record, AgentStatus.AVAILABLE, now)
    return agent_id


def active(adapter: RouterGraph, agent_id: str) -> int:
    record = adapter.get_agent(agent_id)
    assert record is not None
    return record.active.get("chat", 0)


def test_three_reservations_for_an_agent_with_room_for_two_in_one_transaction(adapter: RouterGraph, uid: str):
    now = time.time()
    with deadline_scope(10):
        agent_id = chat_agent(adapter, uid, 2, now)
        rows = [reservation(uid, n, agent_id, now) for n in range(3)]
        answers = {r["i"]: r["ok"] for r in adapter.write(RESERVE_NEW_ROWS, "reserve", rows=rows)}
        # Each row saw the ones before it: the third found no room, so no overbooking.
        assert answers == {0: True, 1: True, 2: False}
        assert active(adapter, agent_id) == 2
        assert adapter.get_contact(f"{uid}-c2") is None

        accepts = [
            {"i": n, "contact_id": f"{uid}-c{n}", "offer_id": f"{uid}-c{n}~1", "agent_id": agent_id, "now": row["now"]}
            for n, row in enumerate(rows[:2])
        ]
        assert all(r["ok"] for r in adapter.write(ACCEPT_OFFER_ROWS, "accept", rows=accepts))
        ending = {"handle_seconds": None, "outcome": "resolved", "csat": 5, "notes": None, "end_sentiment": None}
        completions = [
            {
                "i": n,
                "contact_id": f"{uid}-c{n}",
                "agent_id": None,
                "ending": ending,
                "event_id": f"{uid}-e{n}",
                "now": rows[n]["now"] + 1000,
                "rev": rows[n]["rev"] + 1000,
            }
            for n in range(2)
        ]
        done = adapter.write(COMPLETE_CONTACT_ROWS, "complete", rows=completions)
        assert [r["ok"] for r in sorted(done, key=lambda r: r["i"])] == [True, True]
        # Both completions released the same agent, one after the other.
        assert active(adapter, agent_id) == 0


def test_a_taken_contact_id_fails_only_its_own_call_in_a_shared_transaction(adapter: RouterGraph, uid: str):
    now = time.time()
    with deadline_scope(10):
        agent_id = chat_agent(adapter, uid, 4, now)
        assert adapter.write(RESERVE_NEW_ROWS, "reserve", rows=[reservation(uid, 0, agent_id, now)])[0]["ok"]
        rows = [reservation(uid, n, agent_id, now) for n in (1, 0, 2)]
        answers = adapter._reserve_rows(rows)  # what the coalesced reserve_new calls run
    assert isinstance(answers[1], neo4j.exceptions.ConstraintError)
    assert [a["ok"] for a in (answers[0], answers[2])] == [True, True]  # type: ignore[index]
    assert active(adapter, agent_id) == 3
    # The same through the public call: the id is taken, nothing changes.
    offer = OfferInfo(f"{uid}-c0~1", agent_id, 0.5, now, now + 60, AssignmentMode.DIRECT, 0, 1)
    with deadline_scope(10), pytest.raises(ContactExists):
        adapter.reserve_new(rows[1]["contact"], offer, "chat", now)
    assert active(adapter, agent_id) == 3


def test_a_completion_frees_the_room_a_reservation_in_the_same_transaction_takes(adapter: RouterGraph, uid: str):
    now = time.time()
    with deadline_scope(10):
        agent_id = chat_agent(adapter, uid, 1, now)
        first = reservation(uid, 0, agent_id, now)
        assert adapter._cycle_rows([("reserve", first)])[0]["ok"]  # type: ignore[index]
        accept = {"contact_id": f"{uid}-c0", "offer_id": f"{uid}-c0~1", "agent_id": agent_id, "now": first["now"]}
        assert adapter._cycle_rows([("accept", accept)])[0]["ok"]  # type: ignore[index]
        ending = {"handle_seconds": None, "outcome": "resolved", "csat": 5, "notes": None, "end_sentiment": None}
        complete = {
            "contact_id": f"{uid}-c0",
            "agent_id": agent_id,
            "ending": ending,
            "event_id": f"{uid}-e0",
            "now": first["now"] + 1000,
            "rev": first["rev"] + 1000,
        }
        # Arriving in this order, run completions first: both reservations see the freed room in
        # turn, the first takes it, the second finds the agent full again.
        calls = [
            ("reserve", reservation(uid, 1, agent_id, now + 2)),
            ("complete", complete),
            ("reserve", reservation(uid, 2, agent_id, now + 2)),
        ]
        answers = adapter._cycle_rows(calls)
    assert [a["kind"] for a in answers] == ["reserve", "complete", "reserve"]  # type: ignore[index]
    assert [a["ok"] for a in answers] == [True, True, False]  # type: ignore[index]
    assert answers[1]["before"] == "assigned"  # type: ignore[index]
    assert active(adapter, agent_id) == 1
    with deadline_scope(10):
        assert adapter.get_contact(f"{uid}-c2") is None
