"""ForgetCustomer through the real gRPC server (tokens on), the real graph, router and timeline.

After an erasure nothing answers for the customer's former ids or identifiers, the router
released what it held for them, the timeline dropped its cached pages, replays through Kafka
and the real worker do not bring the customer back, and a second call returns the receipt.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import neo4j
import pytest
import typer
from kafka import KafkaConsumer, TopicPartition
from test_ingest_worker import caught_up, wait_for  # type: ignore[import-not-found]
from test_router_support import (  # type: ignore[import-not-found]
    CALL_TIMEOUT,
    RouterHarness,
    agent,
    cleanup_fixture,  # noqa: F401  (the `cleanup` fixture)
    eventually,
    serve_router,
)
from typer.testing import CliRunner

from rapport.cli import profile as profile_cli
from rapport.events import validate
from rapport.publisher import InteractionPublisher
from rapport.serving import RunningServer, start_server
from rapport.settings import AuthSettings, GrpcSettings, KafkaSettings, Neo4jSettings
from rapport.v1 import events_pb2 as ev
from rapport.v1 import profile_pb2 as pb
from rapport.v1 import profile_pb2_grpc, timeline_pb2_grpc
from rapport.v1 import router_pb2 as rt
from rapport.v1 import timeline_pb2 as tl
from rapport_profile.adapters.graph import BatchResult, GraphWriter
from rapport_profile.api.bootstrap import start_profile_api
from rapport_profile.api.config import ErasureSettings, ProfileApiSettings
from rapport_profile.domain.erasure import Tombstones
from rapport_profile.synthetic import BASE_TIME, identifier, interaction
from rapport_profile.worker_process import WorkerProcess, free_port, worker_env
from rapport_timeline.adapters.cache import CachingTimelineGraph
from rapport_timeline.adapters.graph import Neo4jTimelineGraph
from rapport_timeline.bootstrap import SERVICE_NAME as TIMELINE_SERVICE
from rapport_timeline.bootstrap import build as build_timeline
from rapport_timeline.config import TimelineSettings

pytestmark = pytest.mark.integration

SALT = "test-erasure-salt-" + uuid.uuid4().hex
ADMIN_TOKEN = "admin-" + uuid.uuid4().hex
AGENT_TOKEN = "agent-" + uuid.uuid4().hex
HOUR = timedelta(hours=1)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@dataclass
class Profile:
    running: RunningServer
    stub: profile_pb2_grpc.ProfileServiceStub
    channel: grpc.Channel

    def forget(self, token: str = ADMIN_TOKEN, **fields: Any) -> pb.ErasureReceipt:
        fields.setdefault("reason", "gdpr-art-17 ticket 4821")
        request = pb.ForgetCustomerRequest(**fields)
        return self.stub.ForgetCustomer(request, metadata=bearer(token), timeout=30).receipt

    def code_of(self, method: str, request: Any, token: str | None = ADMIN_TOKEN) -> grpc.StatusCode:
        try:
            getattr(self.stub, method)(request, metadata=bearer(token) if token else None, timeout=10)
        except grpc.RpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK


@pytest.fixture
def profile(
    graph: neo4j.Driver, neo4j_settings: Neo4jSettings, isolated_topics: KafkaSettings, tmp_path: Path
) -> Iterator[Profile]:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(
        json.dumps(
            {
                "tokens": [
                    {"subject": "ops-1", "roles": ["admin"], "token": ADMIN_TOKEN},
                    {"subject": "desk-1", "roles": ["agent"], "token": AGENT_TOKEN},
                ]
            }
        )
    )
    settings = ProfileApiSettings(
        grpc=GrpcSettings(port=0, max_workers=4, auth=AuthSettings(tokens_file=str(tokens))),
        neo4j=neo4j_settings,
        kafka=isolated_topics,
        erasure=ErasureSettings(salt=SALT),
    )
    running = start_profile_api(settings, driver=graph)
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    yield Profile(running, profile_pb2_grpc.ProfileServiceStub(channel), channel)
    channel.close()
    running.stop(1)


def write(graph: neo4j.Driver, events: list[ev.InteractionEvent]) -> BatchResult:
    """Writes as the worker does, with the deployment's salt."""
    writer = GraphWriter(graph, tombstones=Tombstones(SALT))
    return writer.write_batch([(e, validate(e)) for e in events])


def email(address: str, verified: bool = True) -> ev.Identifier:
    return identifier(f"email:{address}", verified=verified, method="otp" if verified else "")


def phone_of(uid: str) -> str:
    return f"+447{int(uid[:8], 16) % 10**9:09d}"


def rows(graph: neo4j.Driver, query: str, **params: Any) -> list[dict[str, Any]]:
    records, _, _ = graph.execute_query(query, params)
    return [r.data() for r in records]


def removed(receipt: pb.ErasureReceipt, store: str) -> dict[str, int]:
    return dict(next(s for s in receipt.stores if s.store == store).removed)


def notices_on(settings: KafkaSettings) -> list[ev.CustomerUpdated]:
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False)
    try:
        tps = [TopicPartition(settings.customer_updates_topic, p) for p in consumer.partitions_for_topic(
            settings.customer_updates_topic) or []]  # fmt: skip
        ends = consumer.end_offsets(tps)
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        found = []
        deadline = time.monotonic() + 10
        while any(consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                found += [ev.CustomerUpdated.FromString(r.value) for r in records]
        return found
    finally:
        consumer.close()


# -- one customer, erased from every store ------------------------------------------------------


def seed_ana(graph: neo4j.Driver, uid: str) -> dict[str, str]:
    """Ana (crm, email, cookie) absorbs a customer known by phone; Olga shares a case with her
    and once used her cookie (a merge candidate). Returns the ids and keys the test checks."""
    crm, mail, cookie, phone = f"crm:C-{uid}", f"ana.{uid}@example.com", f"cookie:ck-{uid}", phone_of(uid)
    agent_a, agent_b = f"{uid}-ag-a", f"{uid}-ag-b"
    first = write(graph, [
        interaction(f"{uid}-1", crm, email(mail), identifier(cookie, verified=False), at=BASE_TIME,
                    agent_id=agent_a, outcome=ev.OUTCOME_RESOLVED, csat=5,
                    facts=[ev.Fact(key="plan", value="fibre 500"), ev.Fact(key="card", value="4111 1111 1111 1111",
                                                                                sensitive=True)],
                    case=ev.CaseRef(id=f"{uid}-case", status=ev.CASE_STATUS_OPEN, title="No dial tone"),
                    device=ev.Device(id=f"{uid}-dev", model="HB-5")),
    ])  # fmt: skip
    ana = first.owners[f"{uid}-1"]
    by_phone = write(graph, [interaction(f"{uid}-2", f"phone:{phone}", at=BASE_TIME + HOUR)]).owners[f"{uid}-2"]
    write(graph, [
        interaction(f"{uid}-3", crm, f"phone:{phone}", at=BASE_TIME + 2 * HOUR, agent_id=agent_a,
                    outcome=ev.OUTCOME_UNRESOLVED, csat=3, facts=[ev.Fact(key="router", value="HB-5")]),
        interaction(f"{uid}-4", crm, at=BASE_TIME + 3 * HOUR, agent_id=agent_b,
                    case=ev.CaseRef(id=f"{uid}-shared-case", status=ev.CASE_STATUS_OPEN)),
    ])  # fmt: skip
    # Olga's events in a batch of their own: within one batch a case goes to its latest holder.
    write(graph, [
        interaction(f"{uid}-5", f"crm:O-{uid}", at=BASE_TIME + 4 * HOUR,
                    case=ev.CaseRef(id=f"{uid}-shared-case", status=ev.CASE_STATUS_OPEN)),
        interaction(f"{uid}-6", f"crm:O-{uid}", identifier(cookie, verified=False), at=BASE_TIME + 5 * HOUR),
        interaction(f"{uid}-7", f"crm:P-{uid}", identifier(cookie, verified=False), at=BASE_TIME + 6 * HOUR),
    ])  # fmt: skip
    olga = rows(graph, "MATCH (:Identity {key: $k})-[:IDENTIFIES]->(c) RETURN c.id AS id", k=f"crm:O-{uid}")[0]["id"]
    # A reviewer decided Ana and Olga are different people (the review's graph model: the
    # candidate link replaced by NOT_SAME, and the decision recorded).
    graph.execute_query(
        """
        MATCH (a:Customer {id: $a})-[m:MAYBE_SAME]-(b:Customer {id: $b})
        DELETE m
        WITH a, b
        MATCH (x:Customer) WHERE x.id IN [a.id, b.id]
        WITH collect(x) AS pair
        WITH CASE WHEN pair[0].id < pair[1].id THEN pair[0] ELSE pair[1] END AS low,
             CASE WHEN pair[0].id < pair[1].id THEN pair[1] ELSE pair[0] END AS high
        CREATE (low)-[:NOT_SAME {decision_id: $d, at: datetime()}]->(high)
        CREATE (:MergeDecision {id: $d, kind: 'rejected', customer_ids: [$a, $b], decided_by: 'lead-1',
                                reason: 'different people', at: datetime()})
        """,
        a=ana, b=olga, d=f"dec_{uid}",
    )  # fmt: skip
    return {"ana": ana, "absorbed": by_phone, "olga": olga, "crm": crm, "email": f"email:{mail}",
            "cookie": cookie, "phone": f"phone:{phone}", "agent_a": agent_a, "agent_b": agent_b}  # fmt: skip


def timeline_for(neo4j_settings: Neo4jSettings, kafka: KafkaSettings, graph: neo4j.Driver) -> tuple[Any, Any]:

    settings = TimelineSettings(
        grpc=GrpcSettings(port=0, max_workers=8), neo4j=neo4j_settings, kafka=kafka, max_watchers=4, live_wait=5.0
    )
    cache = CachingTimelineGraph(Neo4jTimelineGraph(graph, neo4j_settings.database, 10.0), 10_000, min_interactions=1)
    app = build_timeline(settings, graph=cache)
    # The tail starts at the end of the topic: notices sent before it is positioned are not its.
    assert app.timeline.hub.ready.wait(30), "the customer-updates tail did not start"
    server = start_server(settings.grpc, app.register, [TIMELINE_SERVICE])
    server.on_stop.append(app.close)
    return server, cache


def test_forget_erases_every_store_and_returns_an_exact_receipt(
    profile: Profile,
    graph: neo4j.Driver,
    neo4j_settings: Neo4jSettings,
    isolated_topics: KafkaSettings,
    cleanup: str,
):
    uid = cleanup
    ids = seed_ana(graph, uid)
    ana, absorbed = ids["ana"], ids["absorbed"]
    assert absorbed != ana

    # The router holds three contacts of Ana: completed, offered (a reservation), waiting.
    router: RouterHarness = serve_router(neo4j_settings, isolated_topics, driver=graph)
    timeline_server, cache = timeline_for(neo4j_settings, isolated_topics, graph)
    try:
        desk, team = f"{uid}-desk", f"{uid}-team"
        router.add_agents(agent(desk, team, chat=1))
        ana_email = email(f"ana.{uid}@example.com")
        done = router.route(contact_id=f"{uid}-c0", identifier=ana_email, topic="billing", team=team)
        router.stub.AcceptOffer(
            rt.AcceptOfferRequest(offer_id=done.offer.offer_id, agent_id=desk), timeout=CALL_TIMEOUT
        )
        router.stub.CompleteContact(
            rt.CompleteContactRequest(contact_id=done.id, resolved=True, notes="refund for Ana"), timeout=CALL_TIMEOUT
        )
        offered = router.route(contact_id=f"{uid}-c1", identifier=ana_email, topic="billing", team=team)
        waiting = router.route(contact_id=f"{uid}-c2", customer_id=ana, topic="billing", team=team)
        assert offered.state == rt.CONTACT_STATE_OFFERED and offered.customer_id == ana
        assert waiting.state == rt.CONTACT_STATE_WAITING and router.active(desk) == 1

        # The timeline has Ana's history cached.
        with grpc.insecure_channel(f"127.0.0.1:{timeline_server.port}") as channel:
            timeline = timeline_pb2_grpc.TimelineServiceStub(channel)
            listed = timeline.ListInteractions(
                tl.ListInteractionsRequest(customer=tl.CustomerRef(customer_id=ana)), timeout=10
            )
            assert len(listed.interactions) == 4 and cache._cached(ana) is not None
            # A desktop watching Ana's timeline live.
            watch = timeline.WatchTimeline(
                tl.WatchTimelineRequest(customer=tl.CustomerRef(customer_id=ana)), timeout=60
            )
            live_point = next(watch)
            assert not live_point.HasField("interaction") and live_point.cursor

            receipt = profile.forget(identifier=email(f"ANA.{uid}@Example.com"))

            assert receipt.receipt_id.startswith("era_") and not receipt.already_erased
            assert list(receipt.customer_ids) == [ana, absorbed]
            assert receipt.erased_by == "ops-1" and receipt.reason == "gdpr-art-17 ticket 4821"
            assert receipt.tombstone_count == 4
            assert [s.store for s in receipt.stores] == ["graph", "router-queue", "timeline-cache", "kafka"]
            assert removed(receipt, "graph") == {
                "customers": 2,
                "identities": 4,
                "interactions": 4,
                "facts": 3,
                "cases": 1,
                "shared_cases_detached": 1,
                "devices": 1,
                "merge_records": 1,
                "merge_candidates": 1,
                "merge_decisions": 1,
                "kept_apart_links": 1,
                "affinity_links": 2,
                "affinity_contacts": 3,
                "mentions_in_other_customers": 2,
            }
            assert removed(receipt, "router-queue") == {
                "waiting": 1,
                "offered": 1,
                "ended_scrubbed": 1,
                "agent_reservations_released": 1,
            }
            assert removed(receipt, "timeline-cache") == {"erased_notices": 2}
            kafka = next(s for s in receipt.stores if s.store == "kafka")
            assert kafka.removed == {} and "retention" in kafka.note

            # Nothing answers for any former id or identifier, on the profile or the timeline.
            former = [
                ev.Identifier(kind=ev.IDENTIFIER_KIND_CRM_ID, value=f"C-{uid}"),
                email(f"ana.{uid}@example.com"),
                identifier(ids["cookie"], verified=False),
                identifier(ids["phone"]),
            ]
            for ref in former:
                assert (
                    profile.code_of("GetCustomer", pb.GetCustomerRequest(identifier=ref)) == grpc.StatusCode.NOT_FOUND
                )
                assert profile.code_of("ResolveIdentity", pb.ResolveIdentityRequest(identifier=ref)) == (
                    grpc.StatusCode.NOT_FOUND
                )
                with pytest.raises(grpc.RpcError) as raised:
                    timeline.ListInteractions(
                        tl.ListInteractionsRequest(customer=tl.CustomerRef(identifier=ref)), timeout=10
                    )
                assert raised.value.code() == grpc.StatusCode.NOT_FOUND
            for cid in (ana, absorbed):
                assert profile.code_of("GetCustomer", pb.GetCustomerRequest(customer_id=cid)) == (
                    grpc.StatusCode.NOT_FOUND
                )
                with pytest.raises(grpc.RpcError) as raised:
                    timeline.GetHandoffContext(
                        tl.GetHandoffContextRequest(customer=tl.CustomerRef(customer_id=cid)), timeout=10
                    )
                assert raised.value.code() == grpc.StatusCode.NOT_FOUND
            # The timeline heard the notice and dropped its cached pages.
            eventually(lambda: cache._cached(ana) is None)
            # ... and ended the watch.
            with pytest.raises(grpc.RpcError) as raised:
                next(watch)
            assert raised.value.code() == grpc.StatusCode.NOT_FOUND and "erased" in (raised.value.details() or "")

        # The graph: nothing of Ana's left; what was shared stays with its other holder.
        keys = [ids["crm"], ids["email"], ids["cookie"], ids["phone"]]
        assert rows(graph, "MATCH (i:Identity) WHERE i.key IN $keys RETURN i.key", keys=keys) == []
        assert rows(graph, "MATCH (c:Customer) WHERE c.id IN $ids RETURN c.id", ids=[ana, absorbed]) == []
        events = [f"{uid}-{n}" for n in range(1, 5)]
        assert rows(graph, "MATCH (i:Interaction) WHERE i.event_id IN $e RETURN i.event_id", e=events) == []
        assert rows(graph, "MATCH (k:Case {id: $id}) RETURN k.id", id=f"{uid}-case") == []
        assert rows(graph, "MATCH (d:Device {id: $id}) RETURN d.id", id=f"{uid}-dev") == []
        shared = rows(
            graph, "MATCH (c:Customer)-[:HAS_CASE]->(:Case {id: $id}) RETURN c.id AS id", id=f"{uid}-shared-case"
        )
        assert shared == [{"id": ids["olga"]}]
        assert rows(graph, "MATCH (m:Merge) WHERE m.survivor_id IN $ids OR m.absorbed_id IN $ids RETURN m.id",
                    ids=[ana, absorbed]) == []  # fmt: skip
        mentioned = rows(graph, "MATCH (i:Interaction) WHERE i.event_id IN $e RETURN i.identity_keys AS keys "
                                "ORDER BY i.event_id", e=[f"{uid}-6", f"{uid}-7"])  # fmt: skip
        assert mentioned == [{"keys": [f"crm:O-{uid}"]}, {"keys": [f"crm:P-{uid}"]}]
        assert rows(graph, "MATCH (:Customer {id: $id})-[m:MAYBE_SAME|NOT_SAME]-() RETURN m", id=ids["olga"]) == []
        assert rows(graph, "MATCH (d:MergeDecision {id: $d}) RETURN d.id", d=f"dec_{uid}") == []
        # Tombstones hold salted hashes, never the identifiers.
        tombstones = Tombstones(SALT)
        stored = rows(graph, "MATCH (t:Tombstone {receipt_id: $r}) RETURN t.hash AS hash, t.kind AS kind",
                      r=receipt.receipt_id)  # fmt: skip
        hashes = {r["hash"] for r in stored}
        assert {tombstones.identity(k) for k in keys} <= hashes
        assert {tombstones.event(e) for e in events} <= hashes
        assert {tombstones.customer(c) for c in (ana, absorbed)} <= hashes
        assert not any(uid in r["hash"] for r in stored)

        # The router: the reservation released, open contacts gone, the ended one anonymous.
        assert router.active(desk) == 0
        for gone in (offered.id, waiting.id):
            with pytest.raises(grpc.RpcError) as raised:
                router.contact(gone)
            assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        ended = rows(graph, "MATCH (c:Contact {id: $id}) RETURN c {.*} AS c", id=done.id)[0]["c"]
        assert ended["state"] == "completed" and ended["outcome"] == "resolved"
        assert ended.get("customer_id") is None and ended.get("identity_value") is None
        assert ended.get("notes") is None and ended.get("topic") is None
        # The freed capacity is routable again (at once, or by the dispatcher once its roster
        # has the agent's new revision).
        router.route(contact_id=f"{uid}-c3", identifier=email(f"bob.{uid}@example.com"), topic="billing", team=team)
        offered_again = eventually(lambda: (c := router.contact(f"{uid}-c3")).state == rt.CONTACT_STATE_OFFERED and c)
        assert offered_again.offer.agent_id == desk

        notices = [n for n in notices_on(isolated_topics) if n.erased]
        assert sorted(n.customer_id for n in notices) == sorted([ana, absorbed])
    finally:
        timeline_server.stop(0.5)
        router.close()


def test_a_second_call_by_any_former_id_or_identifier_returns_the_first_receipt(
    profile: Profile, graph: neo4j.Driver, uid: str
):
    crm, phone = f"crm:C-{uid}", phone_of(uid)
    write(graph, [interaction(f"{uid}-1", crm, at=BASE_TIME)])
    write(graph, [interaction(f"{uid}-2", f"phone:{phone}", at=BASE_TIME + HOUR)])
    write(graph, [interaction(f"{uid}-3", crm, f"phone:{phone}", at=BASE_TIME + 2 * HOUR)])
    first = profile.forget(identifier=identifier(crm), reason="first request")
    assert not first.already_erased and len(first.customer_ids) == 2

    again = [
        profile.forget(customer_id=first.customer_ids[0], reason="again"),
        profile.forget(customer_id=first.customer_ids[1], reason="again"),
        profile.forget(identifier=identifier(f"phone:{phone}"), reason="again"),
    ]
    for receipt in again:
        assert receipt.already_erased
        assert (receipt.receipt_id, receipt.reason, receipt.erased_by) == (first.receipt_id, "first request", "ops-1")
        assert receipt.erased_at == first.erased_at and list(receipt.stores) == list(first.stores)
    unknown = pb.ForgetCustomerRequest(customer_id="cus_" + uuid.uuid4().hex[:16], reason="x")
    assert profile.code_of("ForgetCustomer", unknown) == grpc.StatusCode.NOT_FOUND


def test_a_merged_away_id_erases_its_survivor_and_everything_merged_into_it(
    profile: Profile, graph: neo4j.Driver, uid: str
):
    crm, phone, mail = f"crm:C-{uid}", phone_of(uid), f"mail.{uid}@example.com"
    survivor = write(graph, [interaction(f"{uid}-1", crm, at=BASE_TIME)]).owners[f"{uid}-1"]
    by_phone = write(graph, [interaction(f"{uid}-2", f"phone:{phone}", at=BASE_TIME + HOUR)]).owners[f"{uid}-2"]
    by_mail = write(graph, [interaction(f"{uid}-3", email(mail), at=BASE_TIME + HOUR)]).owners[f"{uid}-3"]
    # The phone customer absorbs the email one, then is absorbed itself: a chain, shortened.
    write(graph, [interaction(f"{uid}-4", f"phone:{phone}", email(mail), at=BASE_TIME + 2 * HOUR)])
    write(graph, [interaction(f"{uid}-5", crm, f"phone:{phone}", at=BASE_TIME + 3 * HOUR)])

    receipt = profile.forget(customer_id=by_mail)
    assert list(receipt.customer_ids) == [survivor, *sorted([by_phone, by_mail])]
    graph_counts = removed(receipt, "graph")
    assert (graph_counts["customers"], graph_counts["identities"], graph_counts["interactions"]) == (3, 3, 5)
    assert graph_counts["merge_records"] == 2 and receipt.tombstone_count == 3


def test_only_a_caller_allowed_to_erase_may_erase(profile: Profile, graph: neo4j.Driver, uid: str):
    crm = f"crm:C-{uid}"
    customer = write(graph, [interaction(f"{uid}-1", crm, at=BASE_TIME)]).owners[f"{uid}-1"]
    request = pb.ForgetCustomerRequest(customer_id=customer, reason="agent tries")
    assert profile.code_of("ForgetCustomer", request, token=AGENT_TOKEN) == grpc.StatusCode.PERMISSION_DENIED
    assert profile.code_of("ForgetCustomer", request, token=None) == grpc.StatusCode.UNAUTHENTICATED
    assert profile.code_of("ForgetCustomer", request, token="not-a-token") == grpc.StatusCode.UNAUTHENTICATED
    # Refused calls changed nothing: the agent still sees the customer, and an admin may erase.
    assert profile.code_of("GetCustomer", pb.GetCustomerRequest(customer_id=customer), AGENT_TOKEN) == (
        grpc.StatusCode.OK
    )
    assert profile.forget(customer_id=customer).erased_by == "ops-1"
    assert profile.code_of("GetCustomer", pb.GetCustomerRequest(customer_id=customer), AGENT_TOKEN) == (
        grpc.StatusCode.NOT_FOUND
    )


def test_malformed_requests_are_invalid_argument_naming_the_field(profile: Profile, uid: str):
    cases = [
        (pb.ForgetCustomerRequest(reason="why"), "lookup"),
        (pb.ForgetCustomerRequest(customer_id="cus_0123456789abcdef"), "reason"),
        (pb.ForgetCustomerRequest(customer_id="cus_0123456789abcdef", reason="   "), "reason"),
        (pb.ForgetCustomerRequest(customer_id="cus_0123456789abcdef", reason="x" * 257), "reason"),
        (pb.ForgetCustomerRequest(customer_id="cus_0123456789abcdef", reason="two\nlines"), "reason"),
        (pb.ForgetCustomerRequest(customer_id="not-an-id", reason="why"), "customer_id"),
        (pb.ForgetCustomerRequest(identifier=ev.Identifier(value="x"), reason="why"), "identifier.kind"),
        (pb.ForgetCustomerRequest(identifier=identifier("email:not-an-email"), reason="why"), "identifier.value"),
    ]
    for request, field in cases:
        with pytest.raises(grpc.RpcError) as raised:
            profile.stub.ForgetCustomer(request, metadata=bearer(ADMIN_TOKEN), timeout=10)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (request, raised.value.details())
        assert (raised.value.details() or "").startswith(f"{field}: "), raised.value.details()


def test_the_cli_prints_the_receipt_as_a_table_or_json(profile: Profile, graph: neo4j.Driver, uid: str):
    app = typer.Typer()

    @app.callback()
    def group() -> None:
        pass

    profile_cli.register(app)
    write(graph, [interaction(f"{uid}-1", f"crm:C-{uid}", at=BASE_TIME)])
    env = {"RAPPORT_PROFILE_ADDR": f"127.0.0.1:{profile.running.port}", "RAPPORT_AUTH_TOKEN": ADMIN_TOKEN}
    runner = CliRunner()
    table = runner.invoke(app, ["forget", f"crm:C-{uid}", "--reason", "ticket 77"], env=env)
    assert table.exit_code == 0, table.output
    assert "era_" in table.output and "ops-1" in table.output and "identities" in table.output
    as_json = runner.invoke(app, ["forget", f"crm:C-{uid}", "--reason", "ticket 77", "--json"], env=env)
    assert as_json.exit_code == 0, as_json.output
    receipt = json.loads(as_json.output)["receipt"]
    assert receipt["already_erased"] is True and receipt["reason"] == "ticket 77"
    missing = runner.invoke(app, ["forget", "cus_" + "0" * 16, "--reason", "x"], env=env)
    assert missing.exit_code == 2 and "NOT_FOUND" in missing.output
    denied = runner.invoke(
        app, ["forget", "cus_" + "0" * 16, "--reason", "x"], env={**env, "RAPPORT_AUTH_TOKEN": AGENT_TOKEN}
    )
    assert denied.exit_code == 1 and "PERMISSION_DENIED" in denied.output


# -- replays through Kafka and the real worker --------------------------------------------------


@pytest.fixture
def worker(
    isolated_topics: KafkaSettings, neo4j_settings: Neo4jSettings, graph: neo4j.Driver, uid: str, tmp_path: Path
) -> Iterator[WorkerProcess]:
    """The real worker process, with the same erasure salt as the ProfileService."""
    env = worker_env(
        isolated_topics, neo4j_settings, group=f"test-{uid}", port=free_port(), batch_size=50,
        extra={"RAPPORT_ERASURE_SALT": SALT},
    )  # fmt: skip
    process = WorkerProcess(env, tmp_path / "worker.log").start()
    yield process
    process.stop()


def test_replayed_events_do_not_bring_an_erased_customer_back(
    profile: Profile, graph: neo4j.Driver, isolated_topics: KafkaSettings, worker: WorkerProcess, uid: str
):
    crm, mail, fresh = f"crm:C-{uid}", f"ana.{uid}@example.com", f"email:fresh.{uid}@example.com"
    old = [
        interaction(f"{uid}-1", crm, email(mail), at=BASE_TIME, facts=[ev.Fact(key="plan", value="fibre")]),
        interaction(f"{uid}-2", crm, at=BASE_TIME + HOUR, agent_id=f"{uid}-ag"),
        interaction(f"{uid}-3", email(mail), at=BASE_TIME + 2 * HOUR),
    ]
    with InteractionPublisher(isolated_topics) as publisher:
        for event in old:
            publisher.publish_sync(event)
        wait_for(caught_up(worker, isolated_topics), 60, "the first events", worker)
        receipt = profile.forget(identifier=identifier(crm))
        assert removed(receipt, "graph")["interactions"] == 3

        # The same events again (a replay), a late event on the erased identifiers only, one
        # mixing an erased identifier with a fresh one, and an unrelated marker.
        for event in old:
            publisher.publish_sync(event)
        publisher.publish_sync(interaction(f"{uid}-late", email(mail), at=BASE_TIME + 3 * HOUR))
        publisher.publish_sync(interaction(f"{uid}-mixed", crm, fresh, at=BASE_TIME + 4 * HOUR))
        publisher.publish_sync(interaction(f"{uid}-marker", f"crm:M-{uid}", at=BASE_TIME + 5 * HOUR))
        wait_for(caught_up(worker, isolated_topics), 60, "the replay", worker)

    for ref in (identifier(crm), email(mail)):
        assert profile.code_of("GetCustomer", pb.GetCustomerRequest(identifier=ref)) == grpc.StatusCode.NOT_FOUND
    for cid in receipt.customer_ids:
        assert profile.code_of("GetCustomer", pb.GetCustomerRequest(customer_id=cid)) == grpc.StatusCode.NOT_FOUND
    stored = rows(graph, "MATCH (i:Interaction) WHERE i.event_id STARTS WITH $p RETURN i.event_id AS e, "
                         "i.identity_keys AS keys ORDER BY e", p=f"{uid}-")  # fmt: skip
    assert stored == [
        {"e": f"{uid}-marker", "keys": [f"crm:M-{uid}"]},
        {"e": f"{uid}-mixed", "keys": [fresh]},
    ]
    # The mixed event started someone new, known only by the fresh identifier.
    view = profile.stub.GetCustomer(
        pb.GetCustomerRequest(identifier=identifier(fresh)), metadata=bearer(ADMIN_TOKEN), timeout=10
    ).customer
    assert [i.key for i in view.identities] == [fresh] and view.interaction_count == 1
    assert view.customer_id not in receipt.customer_ids
    assert rows(graph, "MATCH (i:Identity) WHERE i.key IN $k RETURN i.key", k=[crm, f"email:{mail}"]) == []


def test_an_erasure_racing_the_worker_leaves_nothing_of_the_customer(profile: Profile, graph: neo4j.Driver, uid: str):
    crm = f"crm:C-{uid}"
    results: list[BatchResult] = [write(graph, [interaction(f"{uid}-0", crm, at=BASE_TIME)])]
    written, erased = threading.Event(), threading.Event()

    def worker() -> None:
        # Writes the customer's events before, during and (five of them) after the erasure.
        n, after = 0, 0
        while after < 5:
            n += 1
            after += erased.is_set()
            results.append(write(graph, [interaction(f"{uid}-{n}", crm, at=BASE_TIME + n * HOUR)]))
            if n == 10:
                written.set()

    racing = threading.Thread(target=worker)
    racing.start()
    assert written.wait(60)
    receipt = profile.forget(identifier=identifier(crm))
    erased.set()
    racing.join(120)

    # Every event was either stored before the erasure (and erased by it) or dropped after it.
    stored = sum(len(r.stored) for r in results)
    dropped = sum(len(r.erased) for r in results)
    assert stored + dropped == len(results) and dropped >= 5
    assert removed(receipt, "graph")["interactions"] == stored
    assert rows(graph, "MATCH (i:Interaction) WHERE i.event_id STARTS WITH $p RETURN i", p=f"{uid}-") == []
    assert rows(graph, "MATCH (i:Identity {key: $k}) RETURN i", k=crm) == []
    assert rows(graph, "MATCH (c:Customer) WHERE c.id IN $ids RETURN c", ids=list(receipt.customer_ids)) == []
