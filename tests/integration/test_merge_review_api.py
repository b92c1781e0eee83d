"""Merge review end to end: events through the real worker process and Kafka, the ProfileService
and TimelineService over gRPC with bearer tokens checked, the real Neo4j graph.

The issue's case: an unmerge after later events restores both histories exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc
import neo4j
import pytest
from test_ingest_worker import caught_up, read_topic, wait_for  # type: ignore[import-not-found]
from test_timeline_support import Harness, serve  # type: ignore[import-not-found]

from rapport.publisher import InteractionPublisher
from rapport.settings import AuthSettings, GrpcSettings, KafkaSettings, Neo4jSettings
from rapport.v1 import events_pb2 as ev
from rapport.v1 import profile_pb2 as pb
from rapport.v1 import profile_pb2_grpc
from rapport.v1 import timeline_pb2 as tl
from rapport_profile.adapters.graph import seed_graph
from rapport_profile.api.bootstrap import start_profile_api
from rapport_profile.api.config import ProfileApiSettings
from rapport_profile.synthetic import BASE_TIME, identifier, interaction
from rapport_profile.worker_process import WorkerProcess, free_port, worker_env

pytestmark = pytest.mark.integration

T = 15.0
HOUR = timedelta(hours=1)
SUPERVISOR = "supervisor-token-" + "s" * 40
AGENT = "agent-token-" + "a" * 40


@dataclass
class Stack:
    profile: profile_pb2_grpc.ProfileServiceStub
    timeline: Harness
    kafka: KafkaSettings
    worker: WorkerProcess
    publisher: InteractionPublisher
    graph: neo4j.Driver

    def send(self, *events: ev.InteractionEvent) -> None:
        """Publishes and waits until the worker has written them all."""
        for future in self.publisher.publish_many(events):
            future.get(timeout=T)
        wait_for(caught_up(self.worker, self.kafka), 60, "the worker to catch up", self.worker)


def as_supervisor() -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {SUPERVISOR}"),)


def as_agent() -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {AGENT}"),)


@pytest.fixture
def stack(
    isolated_topics: KafkaSettings, neo4j_settings: Neo4jSettings, graph: neo4j.Driver, uid: str, tmp_path: Path
) -> Iterator[Stack]:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(
        json.dumps(
            {
                "tokens": [
                    {"subject": "sup-1", "roles": ["supervisor"], "token": SUPERVISOR},
                    {"subject": "desk-1", "roles": ["agent"], "token": AGENT},
                ]
            }
        )
    )
    grpc_settings = GrpcSettings(port=0, max_workers=8, auth=AuthSettings(tokens_file=str(tokens)))
    profile = start_profile_api(
        ProfileApiSettings(grpc=grpc_settings, neo4j=neo4j_settings, kafka=isolated_topics), driver=graph
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{profile.port}")
    timeline = serve(neo4j_settings, isolated_topics, graph)
    env = worker_env(isolated_topics, neo4j_settings, group=f"test-{uid}", port=free_port(), batch_size=200)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    publisher = InteractionPublisher(isolated_topics)
    try:
        yield Stack(profile_pb2_grpc.ProfileServiceStub(channel), timeline, isolated_topics, worker, publisher, graph)
    finally:
        publisher.close(5)
        worker.stop()
        timeline.close()
        timeline.server.stop(1.0)
        channel.close()
        profile.stop(1.0)


@pytest.fixture(scope="module")
def supervised_profile(
    neo4j_settings: Neo4jSettings, graph: neo4j.Driver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[profile_pb2_grpc.ProfileServiceStub]:
    """The ProfileService alone, tokens checked: for requests that never reach the graph."""
    tokens = tmp_path_factory.mktemp("tokens") / "tokens.json"
    tokens.write_text(json.dumps({"tokens": [{"subject": "sup-1", "roles": ["supervisor"], "token": SUPERVISOR}]}))
    grpc_settings = GrpcSettings(port=0, max_workers=4, auth=AuthSettings(tokens_file=str(tokens)))
    profile = start_profile_api(ProfileApiSettings(grpc=grpc_settings, neo4j=neo4j_settings), driver=graph)
    channel = grpc.insecure_channel(f"127.0.0.1:{profile.port}")
    try:
        yield profile_pb2_grpc.ProfileServiceStub(channel)
    finally:
        channel.close()
        profile.stop(1.0)


def timeline_ids(stack: Stack, customer_id: str) -> list[str]:
    ids: list[str] = []
    request = tl.ListInteractionsRequest(customer=tl.CustomerRef(customer_id=customer_id), page_size=500)
    while True:
        page = stack.timeline.stub.ListInteractions(request, timeout=T)
        assert page.customer_id == customer_id
        ids += [i.event_id for i in page.interactions]
        if not page.next_page_token:
            return sorted(ids)
        request.page_token = page.next_page_token


def affinity(graph: neo4j.Driver, customer_id: str) -> list[list[object]]:
    records, _, _ = graph.execute_query(
        "MATCH (:Customer {id: $id})-[s:SERVED_BY]->(a:Agent) "
        "RETURN [a.id, s.contacts, s.resolved, s.csat_sum, s.csat_count] AS row ORDER BY a.id",
        id=customer_id,
    )
    return [r["row"] for r in records]


def get(stack: Stack, customer_id: str) -> pb.GetCustomerResponse:
    return stack.profile.GetCustomer(pb.GetCustomerRequest(customer_id=customer_id), timeout=T, metadata=as_agent())


def rpc_error(call, request, metadata) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call(request, timeout=T, metadata=metadata)
    return raised.value


def test_an_unmerge_after_later_events_restores_both_histories_exactly(stack: Stack, uid: str):
    ana, bob, bob_new = f"email:ana.{uid}@example.com", f"crm:BOB-{uid}", f"account:BOB-NEW-{uid}"
    g1, g2 = f"ag1-{uid}", f"ag2-{uid}"
    # Ana has a long history (the timeline caches histories of 200 interactions and more).
    ana_before = [f"{uid}-a{n:03d}" for n in range(210)]
    stack.send(
        *(
            interaction(
                e,
                ana,
                at=BASE_TIME + n * timedelta(minutes=1),
                agent_id=g1 if n % 2 else None,
                outcome=ev.OUTCOME_RESOLVED if n % 4 == 1 else ev.OUTCOME_UNSPECIFIED,
            )
            for n, e in enumerate(ana_before)
        )
    )
    # Bob after Ana, so Ana is the older customer: the survivor of their merge.
    stack.send(
        interaction(f"{uid}-b1", bob, at=BASE_TIME + 5 * HOUR, agent_id=g1, csat=3,
                    traits=ev.CustomerTraits(display_name="Bob"), device=ev.Device(id=f"dev-{uid}")),
        interaction(f"{uid}-b2", bob, at=BASE_TIME + 6 * HOUR, agent_id=g2),
    )  # fmt: skip
    ana_id = stack.profile.ResolveIdentity(
        pb.ResolveIdentityRequest(identifier=identifier(ana)), timeout=T, metadata=as_agent()
    ).customer_id
    bob_id = stack.profile.ResolveIdentity(
        pb.ResolveIdentityRequest(identifier=identifier(bob)), timeout=T, metadata=as_agent()
    ).customer_id
    assert ana_id != bob_id

    stack.send(interaction(f"{uid}-link", ana, bob, at=BASE_TIME + 7 * HOUR))
    merged = get(stack, bob_id)
    assert (merged.merged_customer_id, merged.customer.customer_id) == (bob_id, ana_id)
    (merge,) = [m for m in merged.customer.merges if m.absorbed_customer_id == bob_id]
    assert timeline_ids(stack, ana_id) == sorted([*ana_before, f"{uid}-b1", f"{uid}-b2", f"{uid}-link"])

    stack.send(
        interaction(f"{uid}-a-later", ana, at=BASE_TIME + 8 * HOUR, agent_id=g2, outcome=ev.OUTCOME_RESOLVED),
        interaction(f"{uid}-b3", bob, at=BASE_TIME + 9 * HOUR, agent_id=g1, csat=5),
        interaction(f"{uid}-both", ana, bob, at=BASE_TIME + 10 * HOUR, agent_id=g2),
        interaction(f"{uid}-b4", bob, bob_new, at=BASE_TIME + 11 * HOUR),
    )
    stack.send(interaction(f"{uid}-b5", bob_new, at=BASE_TIME + 12 * HOUR, agent_id=g2))
    assert len(timeline_ids(stack, ana_id)) == 210 + 8  # the merged history, cached by the timeline

    request = pb.UnmergeCustomerRequest(merge_id=merge.merge_id, reason="ticket 42: two different people")
    assert rpc_error(stack.profile.UnmergeCustomer, request, as_agent()).code() == grpc.StatusCode.PERMISSION_DENIED
    assert rpc_error(stack.profile.UnmergeCustomer, request, ()).code() == grpc.StatusCode.UNAUTHENTICATED

    done = stack.profile.UnmergeCustomer(request, timeout=T, metadata=as_supervisor())

    ana_after = sorted([*ana_before, f"{uid}-link", f"{uid}-a-later", f"{uid}-both"])
    bob_after = sorted(f"{uid}-b{n}" for n in range(1, 6))
    assert (done.survivor_customer_id, done.restored_customer_id) == (ana_id, bob_id)
    assert sorted(done.restored_identity_keys) == sorted([bob, bob_new])
    assert (done.restored_interaction_count, done.survivor_interaction_count) == (5, len(ana_after))
    decision = done.decision
    assert decision.kind == pb.MERGE_DECISION_KIND_UNMERGED and decision.decision_id.startswith("dec_")
    assert (list(decision.customer_ids), decision.merge_id) == ([ana_id, bob_id], merge.merge_id)
    assert (decision.decided_by, decision.reason) == ("sup-1", "ticket 42: two different people")

    ana_view, bob_view = get(stack, ana_id), get(stack, bob_id)
    assert bob_view.merged_customer_id == "" and bob_view.customer.customer_id == bob_id
    assert [i.key for i in ana_view.customer.identities] == [ana]
    assert sorted(i.key for i in bob_view.customer.identities) == sorted([bob, bob_new])
    assert ana_view.customer.interaction_count == len(ana_after)
    assert bob_view.customer.interaction_count == 5
    assert list(ana_view.customer.merges) == [] and list(bob_view.customer.merges) == []
    assert bob_view.customer.attributes.display_name == "Bob" and ana_view.customer.attributes.display_name == ""
    assert [d.id for d in bob_view.customer.devices] == [f"dev-{uid}"] and not ana_view.customer.devices
    assert timeline_ids(stack, ana_id) == ana_after
    assert timeline_ids(stack, bob_id) == bob_after
    # [agent, contacts, resolved, csat_sum, csat_count], as if they had never merged.
    assert affinity(stack.graph, ana_id) == [[g1, 105, 53, 0, 0], [g2, 2, 1, 0, 0]]
    assert affinity(stack.graph, bob_id) == [[g1, 2, 0, 8, 2], [g2, 2, 0, 0, 0]]

    updates = [
        ev.CustomerUpdated.FromString(r.value) for r in read_topic(stack.kafka, stack.kafka.customer_updates_topic)
    ]
    assert {u.customer_id for u in updates if u.history_removed} == {ana_id, bob_id}

    again = rpc_error(stack.profile.UnmergeCustomer, request, as_supervisor())
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION and "already undone" in (again.details() or "")
    unknown = pb.UnmergeCustomerRequest(merge_id="mrg_" + "0" * 16, reason="no such merge")
    assert rpc_error(stack.profile.UnmergeCustomer, unknown, as_supervisor()).code() == grpc.StatusCode.NOT_FOUND

    # The next event carrying both identifiers joins the survivor and merges nothing.
    stack.send(interaction(f"{uid}-again", ana, bob, at=BASE_TIME + 13 * HOUR))
    assert timeline_ids(stack, bob_id) == bob_after
    assert f"{uid}-again" in timeline_ids(stack, ana_id)
    assert list(get(stack, ana_id).customer.merges) == []


def weak(key: str) -> ev.Identifier:
    return identifier(key, verified=False)


def candidates(stack: Stack, customer_id: str) -> list[tuple[str, str, list[str]]]:
    page = stack.profile.ListMergeCandidates(
        pb.ListMergeCandidatesRequest(customer_id=customer_id), timeout=T, metadata=as_supervisor()
    )
    return [(c.customer_id, c.other_customer_id, list(c.shared_identity_keys)) for c in page.candidates]


def candidate_pair(stack: Stack, uid: str) -> tuple[str, str, str, str]:
    ka, kb, cookie = f"crm:A-{uid}", f"crm:B-{uid}", f"cookie:{uid}"
    seed_graph(stack.graph, [interaction(f"{uid}-a", ka, weak(cookie), at=BASE_TIME)])
    seed_graph(stack.graph, [interaction(f"{uid}-b", kb, weak(cookie), at=BASE_TIME + HOUR)])
    a = stack.timeline.customer_of(ka)
    b = stack.timeline.customer_of(kb)
    assert candidates(stack, a) == [(a, b, [cookie])]
    return a, b, kb, cookie


def test_approving_a_candidate_merges_it_and_unmerging_undoes_the_approval(stack: Stack, uid: str):
    a, b, kb, _cookie = candidate_pair(stack, uid)
    request = pb.ApproveMergeCandidateRequest(customer_id=b, other_customer_id=a, reason="same person per CRM")
    assert (
        rpc_error(stack.profile.ApproveMergeCandidate, request, as_agent()).code() == grpc.StatusCode.PERMISSION_DENIED
    )

    approved = stack.profile.ApproveMergeCandidate(request, timeout=T, metadata=as_supervisor())

    assert approved.decision.kind == pb.MERGE_DECISION_KIND_APPROVED
    assert (approved.merge.survivor_customer_id, approved.merge.absorbed_customer_id) == (a, b)
    assert list(approved.merge.absorbed_identity_keys) == [kb]
    view = get(stack, b)
    assert view.customer.customer_id == a and view.customer.interaction_count == 2
    assert [m.merge_id for m in view.customer.merges] == [approved.merge.merge_id]
    assert candidates(stack, a) == []
    updates = [
        ev.CustomerUpdated.FromString(r.value) for r in read_topic(stack.kafka, stack.kafka.customer_updates_topic)
    ]
    assert [(u.customer_id, list(u.merged_customer_ids)) for u in updates] == [(a, [b])]

    done = stack.profile.UnmergeCustomer(
        pb.UnmergeCustomerRequest(merge_id=approved.merge.merge_id, reason="approved by mistake"),
        timeout=T,
        metadata=as_supervisor(),
    )

    assert done.restored_customer_id == b and list(done.restored_identity_keys) == [kb]
    assert timeline_ids(stack, a) == [f"{uid}-a"] and timeline_ids(stack, b) == [f"{uid}-b"]
    assert get(stack, b).customer.customer_id == b


def test_a_rejected_candidate_leaves_the_review_list_for_good(stack: Stack, uid: str):
    a, b, kb, cookie = candidate_pair(stack, uid)
    request = pb.RejectMergeCandidateRequest(customer_id=a, other_customer_id=b, reason="family sharing a laptop")

    rejected = stack.profile.RejectMergeCandidate(request, timeout=T, metadata=as_supervisor())

    assert rejected.decision.kind == pb.MERGE_DECISION_KIND_REJECTED
    assert list(rejected.decision.customer_ids) == sorted([a, b]) and rejected.decision.merge_id == ""
    assert candidates(stack, a) == [] and candidates(stack, b) == []
    stack.send(interaction(f"{uid}-b2", kb, weak(cookie), at=BASE_TIME + 2 * HOUR))
    assert candidates(stack, a) == []
    again = rpc_error(stack.profile.RejectMergeCandidate, request, as_supervisor())
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize(
    ("method", "request_", "field"),
    [
        ("UnmergeCustomer", pb.UnmergeCustomerRequest(reason="why"), "merge_id"),
        ("UnmergeCustomer", pb.UnmergeCustomerRequest(merge_id="mrg_xyz", reason="why"), "merge_id"),
        ("UnmergeCustomer", pb.UnmergeCustomerRequest(merge_id="mrg_" + "1" * 16), "reason"),
        ("UnmergeCustomer", pb.UnmergeCustomerRequest(merge_id="mrg_" + "1" * 16, reason="x" * 257), "reason"),
        ("ApproveMergeCandidate", pb.ApproveMergeCandidateRequest(other_customer_id="cus_" + "1" * 16, reason="r"),
         "customer_id"),
        ("ApproveMergeCandidate", pb.ApproveMergeCandidateRequest(customer_id="cus_" + "1" * 16, reason="r"),
         "other_customer_id"),
        ("RejectMergeCandidate", pb.RejectMergeCandidateRequest(customer_id="cus_" + "1" * 16,
                                                                other_customer_id="cus_" + "1" * 16, reason="r"),
         "other_customer_id"),
        ("RejectMergeCandidate", pb.RejectMergeCandidateRequest(customer_id="cus_" + "1" * 16,
                                                                other_customer_id="cus_" + "2" * 16, reason=" "),
         "reason"),
    ],
)  # fmt: skip
def test_malformed_review_requests_are_invalid_argument_naming_the_field(
    supervised_profile: profile_pb2_grpc.ProfileServiceStub, method: str, request_: object, field: str
):
    error = rpc_error(getattr(supervised_profile, method), request_, as_supervisor())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith(f"{field}: "), error.details()
