"""Contacts read while the router changes them: a reader never sees half of a change.

Neo4j readers take no locks, and a read that runs while another transaction's commit is being
applied can see part of it (neo4j/neo4j#12250): a contact `offered` without its offer id, say.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import neo4j
import pytest
from test_router_support import (  # type: ignore[import-not-found]
    CALL_TIMEOUT,
    RouterHarness,
    agent,
    cleanup_fixture,  # noqa: F401
    email,
    serve_router,
)

from rapport.settings import KafkaSettings, Neo4jSettings
from rapport.v1 import router_pb2 as rt
from rapport_router.adapters.graph import RouterGraph
from rapport_router.deadline import deadline_scope
from rapport_router.domain.contact import ContactRecord
from rapport_router.domain.model import ContactState

pytestmark = pytest.mark.integration

# Torn reads are rare (a few in a thousand reads of an offer being made): enough writers and
# readers for long enough that unguarded reads failed 3 runs in 5 on a loaded 2-core machine.
_SECONDS = 10.0
_WRITERS = 3
_GRAPH_READERS = 4
_GRPC_READERS = 1


@pytest.fixture
def router(
    neo4j_settings: Neo4jSettings, isolated_topics: KafkaSettings, graph: neo4j.Driver, cleanup: str
) -> Iterator[RouterHarness]:
    harness = serve_router(neo4j_settings, isolated_topics, driver=graph)
    yield harness
    harness.close()


def _half_written_message(contact: rt.Contact) -> str | None:
    if contact.state == rt.CONTACT_STATE_OFFERED and (
        not contact.offer.offer_id.startswith(f"{contact.id}~") or contact.offer.agent_id != contact.agent_id
    ):
        return f"offered without its offer ({contact.offer.offer_id!r}, {contact.offer.agent_id!r})"
    if contact.state == rt.CONTACT_STATE_WAITING and (contact.offer.offer_id or contact.agent_id):
        return f"waiting with an offer ({contact.offer.offer_id!r}, {contact.agent_id!r})"
    return None


def _half_written_record(record: ContactRecord) -> str | None:
    if record.state is ContactState.OFFERED and (record.offer is None or record.offer.agent_id != record.agent_id):
        return f"offered without its offer ({record.offer}, {record.agent_id!r})"
    if record.state is ContactState.WAITING and (record.offer is not None or record.agent_id):
        return f"waiting with an offer ({record.offer}, {record.agent_id!r})"
    return None


def test_a_contact_read_while_offers_are_made_and_rejected_is_never_offered_without_its_offer(
    router: RouterHarness, graph: neo4j.Driver, neo4j_settings: Neo4jSettings, uid: str
):
    """Offer, reject, re-offer, reject, cancel, over and over, read all the while by GetContact
    and by the router's graph adapter: every OFFERED contact read can be accepted."""
    adapter = RouterGraph(graph, neo4j_settings.database)
    teams = [f"{uid}-t{w}" for w in range(_WRITERS)]
    for w, team in enumerate(teams):
        router.add_agents(agent(f"{uid}-a{w}x", team), agent(f"{uid}-a{w}y", team))
    current: list[str] = []
    problems: list[str] = []
    offered_reads = [0]
    routed = [0] * _WRITERS
    stop = threading.Event()

    def note(contact_id: str, state: object, problem: str | None) -> None:
        if state in (rt.CONTACT_STATE_OFFERED, ContactState.OFFERED):
            offered_reads[0] += 1
        if problem:
            problems.append(f"{contact_id}: {problem}")

    def read_graph(k: int) -> None:
        rng = random.Random(k)
        while not stop.is_set():
            if not current:
                time.sleep(0.001)
                continue
            with deadline_scope(CALL_TIMEOUT):
                record = adapter.get_contact(current[-1 - rng.randrange(min(_WRITERS, len(current)))])
            if record is not None:
                note(record.id, record.state, _half_written_record(record))

    def read_grpc(k: int) -> None:
        rng = random.Random(k)
        while not stop.is_set():
            if not current:
                time.sleep(0.001)
                continue
            contact = router.contact(current[-1 - rng.randrange(min(_WRITERS, len(current)))])
            note(contact.id, contact.state, _half_written_message(contact))

    def write(w: int) -> None:
        agents = sorted([f"{uid}-a{w}x", f"{uid}-a{w}y"])
        until = time.monotonic() + _SECONDS
        while time.monotonic() < until and not problems:
            routed[w] += 1
            contact_id = f"{uid}-c{w}-{routed[w]}"
            contact = router.route(
                contact_id=contact_id, identifier=email(f"u{w}-{routed[w]}.{uid}"), topic="billing", team=teams[w]
            )
            current.append(contact_id)
            while contact.state == rt.CONTACT_STATE_OFFERED:
                contact = router.stub.RejectOffer(
                    rt.RejectOfferRequest(offer_id=contact.offer.offer_id, agent_id=contact.offer.agent_id),
                    timeout=CALL_TIMEOUT,
                ).contact
            assert contact.state == rt.CONTACT_STATE_WAITING and sorted(contact.declined_by) == agents
            router.stub.CancelContact(rt.CancelContactRequest(contact_id=contact_id), timeout=CALL_TIMEOUT)

    threads = [threading.Thread(target=read_graph, args=(k,), daemon=True) for k in range(_GRAPH_READERS)]
    threads += [threading.Thread(target=read_grpc, args=(k,), daemon=True) for k in range(_GRPC_READERS)]
    writers = [threading.Thread(target=write, args=(w,)) for w in range(_WRITERS)]
    for t in threads + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in threads:
        t.join(CALL_TIMEOUT)
    adapter.close()
    assert not problems, problems[:5]
    # The readers really did watch offers being made and taken back (else this proves nothing).
    assert sum(routed) >= 30 and offered_reads[0] >= 100, (routed, offered_reads)
    assert all(router.active(f"{uid}-a{w}{s}") == 0 for w in range(_WRITERS) for s in "xy")
