"""`rapport merges` against the real ProfileService (tokens checked) and the real graph.

A supervisor lists the review queue, approves a pair, finds the merge id with `rapport
customer`, undoes it, rejects another pair; mistakes come back as one line and exit code 2,
a missing permission or an unreachable service as exit code 1.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc
import neo4j
import pytest
import typer
from typer.testing import CliRunner, Result

from rapport.cli import merges as merges_cli
from rapport.cli import profile as profile_cli
from rapport.settings import AuthSettings, GrpcSettings, KafkaSettings, Neo4jSettings
from rapport.v1 import events_pb2 as ev
from rapport.v1 import profile_pb2 as pb
from rapport.v1 import profile_pb2_grpc
from rapport_profile.adapters.graph import seed_graph
from rapport_profile.api.bootstrap import start_profile_api
from rapport_profile.api.config import ProfileApiSettings
from rapport_profile.synthetic import BASE_TIME, identifier, interaction
from rapport_profile.worker_process import free_port

pytestmark = pytest.mark.integration

SUPERVISOR = "supervisor-" + uuid.uuid4().hex
AGENT = "agent-" + uuid.uuid4().hex
HOUR = timedelta(hours=1)
T = 15.0
MERGE_ID = re.compile(r"\bmrg_[0-9a-f]{16}\b")


@dataclass
class Shell:
    """The `rapport` command wired to one ProfileService, and a stub to check what it did."""

    app: typer.Typer
    address: str
    stub: profile_pb2_grpc.ProfileServiceStub
    graph: neo4j.Driver

    def run(self, *args: str, token: str | None = SUPERVISOR) -> Result:
        env = {"RAPPORT_PROFILE_ADDR": self.address, "RAPPORT_AUTH_TOKEN": token, "RAPPORT_AUTH_TOKEN_FILE": None}
        return CliRunner().invoke(self.app, list(args), env=env)

    def customer_of(self, key: str) -> str:
        request = pb.ResolveIdentityRequest(identifier=identifier(key))
        return self.stub.ResolveIdentity(request, timeout=T, metadata=_bearer(SUPERVISOR)).customer_id

    def view(self, customer_id: str) -> pb.GetCustomerResponse:
        request = pb.GetCustomerRequest(customer_id=customer_id)
        return self.stub.GetCustomer(request, timeout=T, metadata=_bearer(SUPERVISOR))

    def candidates(self, customer_id: str) -> list[tuple[str, str]]:
        request = pb.ListMergeCandidatesRequest(customer_id=customer_id)
        page = self.stub.ListMergeCandidates(request, timeout=T, metadata=_bearer(SUPERVISOR))
        return [(c.customer_id, c.other_customer_id) for c in page.candidates]

    def pair(self, uid: str, tag: str, *, first: str = "Ana", second: str = "Bob") -> tuple[str, str, str]:
        """Two customers, the first the older, sharing a weak cookie: a merge candidate."""
        ka, kb, cookie = f"crm:{tag}A-{uid}", f"crm:{tag}B-{uid}", f"cookie:{tag}-{uid}"
        for n, (key, name) in enumerate(((ka, first), (kb, second))):
            event = interaction(
                f"{uid}-{tag}{n}",
                key,
                identifier(cookie, verified=False),
                at=BASE_TIME + n * HOUR,
                traits=ev.CustomerTraits(display_name=name),
            )
            seed_graph(self.graph, [event])
        return self.customer_of(ka), self.customer_of(kb), cookie


def _bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
def shell(
    neo4j_settings: Neo4jSettings, isolated_topics: KafkaSettings, graph: neo4j.Driver, tmp_path: Path
) -> Iterator[Shell]:
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
    settings = ProfileApiSettings(
        grpc=GrpcSettings(port=0, max_workers=4, auth=AuthSettings(tokens_file=str(tokens))),
        neo4j=neo4j_settings,
        kafka=isolated_topics,
    )
    running = start_profile_api(settings, driver=graph)
    app = typer.Typer()

    @app.callback()
    def group() -> None:
        pass

    profile_cli.register(app)
    merges_cli.register(app)
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        yield Shell(app, f"127.0.0.1:{running.port}", profile_pb2_grpc.ProfileServiceStub(channel), graph)
    finally:
        channel.close()
        running.stop(1.0)


def one_line_error(result: Result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert result.stdout == ""
    return lines[0]


def test_candidates_list_the_pairs_page_by_page_as_a_table_or_json(shell: Shell, uid: str):
    a, b, cookie_b = shell.pair(uid, "p", second="Bob")
    # A third customer sharing another cookie with the first: two pairs involving `a`.
    kc, cookie_c = f"crm:pC-{uid}", f"cookie:pc-{uid}"
    shared = identifier(cookie_c, verified=False)
    seed_graph(shell.graph, [interaction(f"{uid}-pa2", f"crm:pA-{uid}", shared, at=BASE_TIME + 2 * HOUR)])
    cy = ev.CustomerTraits(display_name="Cy")
    seed_graph(shell.graph, [interaction(f"{uid}-pc", kc, shared, at=BASE_TIME + 3 * HOUR, traits=cy)])
    c = shell.customer_of(kc)
    expected = sorted([(a, b, cookie_b, "Bob"), (a, c, cookie_c, "Cy")], key=lambda row: row[1])

    table = shell.run("merges", "candidates", "--customer", f"crm:pA-{uid}")

    assert table.exit_code == 0, table.output
    assert f"2 merge candidates involving {a}" in table.stdout
    rows = [line for line in table.stdout.splitlines() if a in line and "involving" not in line]
    assert len(rows) == 2
    for row, (_, other, key, name) in zip(rows, expected, strict=True):
        assert other in row and key in row and f"Ana / {name}" in row

    first = shell.run("merges", "candidates", "--customer", a, "--page-size", "1", "--json")
    assert first.exit_code == 0, first.output
    page = json.loads(first.stdout)
    assert [(p["customer_id"], p["other_customer_id"]) for p in page["candidates"]] == [expected[0][:2]]
    assert page["next_page_token"]
    rest = shell.run("merges", "candidates", "--customer", a, "--page-token", page["next_page_token"], "--json")
    assert [p["other_customer_id"] for p in json.loads(rest.stdout)["candidates"]] == [expected[1][1]]

    hint = shell.run("merges", "candidates", "--customer", a, "--page-size", "1")
    assert hint.exit_code == 0 and "more candidates: --all" in hint.stdout

    every = shell.run("merges", "candidates", "--customer", a, "--page-size", "1", "--all", "--json")
    assert every.exit_code == 0, every.output
    listed = json.loads(every.stdout)
    assert listed["next_page_token"] == ""
    assert [(p["other_customer_id"], p["shared_identity_keys"], p["other_display_name"]) for p in
            listed["candidates"]] == [(other, [key], name) for _, other, key, name in expected]  # fmt: skip


def test_approve_merges_the_pair_and_undo_restores_it(shell: Shell, uid: str):
    a, b, cookie = shell.pair(uid, "m")

    approved = shell.run("merges", "approve", b, a, "--reason", "same person per CRM ticket 7")

    assert approved.exit_code == 0, approved.output
    assert re.search(r"^dec_[0-9a-f]{16} approved by sup-1 at .*: same person per CRM ticket 7$", approved.stdout, re.M)
    assert f"{a} absorbed {b}" in approved.stdout and f"linked by {cookie}" in approved.stdout
    merge_id = MERGE_ID.findall(approved.stdout)[0]
    assert f"undo with: rapport merges undo {merge_id}" in approved.stdout
    view = shell.view(b)
    assert (view.customer.customer_id, view.merged_customer_id) == (a, b)
    assert view.customer.interaction_count == 2
    assert [m.merge_id for m in view.customer.merges] == [merge_id]
    assert shell.candidates(a) == []

    # What a supervisor reads to find the merge to undo.
    shown = shell.run("customer", b, token=AGENT)
    assert shown.exit_code == 0, shown.output
    assert re.search(rf"^  {merge_id}  .*  absorbed {b} via {cookie} \(1 interactions\)$", shown.stdout, re.M)

    undone = shell.run("merges", "undo", merge_id, "--reason", "approved by mistake")

    assert undone.exit_code == 0, undone.output
    lines = undone.stdout.splitlines()
    decided = rf"^dec_[0-9a-f]{{16}} unmerged by sup-1 at .*: approved by mistake \(merge {merge_id}\)$"
    assert re.match(decided, lines[0]), lines[0]
    assert lines[1:] == [
        f"survivor {a}: keeps 1 interactions",
        f"restored {b}: 1 interactions, identities crm:mB-{uid}",
    ]
    assert shell.view(b).customer.customer_id == b and shell.view(a).customer.interaction_count == 1
    assert list(shell.view(a).customer.merges) == []

    again = shell.run("merges", "undo", merge_id, "--reason", "twice")
    assert again.exit_code == 2
    assert one_line_error(again).startswith("error: FAILED_PRECONDITION: ") and "already undone" in again.stderr


def test_reject_keeps_the_pair_apart_and_leaves_the_list(shell: Shell, uid: str):
    a, b, _ = shell.pair(uid, "r")

    rejected = shell.run("merges", "reject", a, b, "--reason", "family sharing a laptop", "--json")

    assert rejected.exit_code == 0, rejected.output
    decision = json.loads(rejected.stdout)["decision"]
    assert decision["kind"] == "MERGE_DECISION_KIND_REJECTED" and decision["decision_id"].startswith("dec_")
    assert decision["customer_ids"] == sorted([a, b]) and decision["merge_id"] == ""
    assert (decision["decided_by"], decision["reason"]) == ("sup-1", "family sharing a laptop")
    assert shell.candidates(a) == [] and shell.candidates(b) == []
    listed = shell.run("merges", "candidates", "--customer", b)
    assert listed.exit_code == 0 and listed.stdout == f"no merge candidates involving {b}\n"
    assert shell.view(a).customer.customer_id == a and shell.view(b).customer.customer_id == b

    human = shell.run("merges", "reject", b, a, "--reason", "again")
    assert human.exit_code == 2 and one_line_error(human).startswith("error: FAILED_PRECONDITION: ")


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        (" ", "reason: is required"),
        ("x" * 257, "reason: is 257 characters; at most 256"),
        ("a\x00b", "reason: must not contain control characters"),
    ],
)
def test_a_bad_reason_is_one_line_and_exit_code_2_and_changes_nothing(
    shell: Shell, uid: str, reason: str, message: str
):
    a, b, _ = shell.pair(uid, "x")
    for command in (["approve", a, b], ["reject", a, b], ["undo", "mrg_" + "0" * 16]):
        result = shell.run("merges", *command, "--reason", reason)
        assert result.exit_code == 2, (command, result.output)
        assert one_line_error(result).startswith(f"error: INVALID_ARGUMENT: {message}"), command
    assert shell.candidates(a) == [(a, b)]


def test_mistakes_denials_and_an_unreachable_service_are_one_line_each(shell: Shell, uid: str):
    a, b, _ = shell.pair(uid, "e")
    cases = [
        (["undo", "mrg_" + "0" * 16, "--reason", "r"], SUPERVISOR, 2, "error: NOT_FOUND: "),
        (["undo", "mrg_xyz", "--reason", "r"], SUPERVISOR, 2, "error: INVALID_ARGUMENT: merge_id: "),
        (["approve", a, a, "--reason", "r"], SUPERVISOR, 2, "error: INVALID_ARGUMENT: other_customer_id: "),
        (["approve", a, "bob", "--reason", "r"], SUPERVISOR, 2, "error: INVALID_ARGUMENT: other_customer_id: "),
        (["candidates", "--customer", f"crm:nobody-{uid}"], SUPERVISOR, 2, "error: NOT_FOUND: "),
        (["approve", a, b, "--reason", "r"], AGENT, 1, "error: PERMISSION_DENIED: "),
        (["approve", a, b, "--reason", "r"], None, 1, "error: UNAUTHENTICATED: "),
        (["candidates", "--address", f"127.0.0.1:{free_port()}", "--timeout", "3"], SUPERVISOR, 1,
         "error: UNAVAILABLE: "),
        (["undo", "mrg_" + "0" * 16, "--reason", "r", "--timeout", "0.000001"], SUPERVISOR, 1,
         "error: DEADLINE_EXCEEDED: "),
        # Never sent: a token goes to another machine only over TLS.
        (["candidates", "--address", "192.0.2.1:50051"], SUPERVISOR, 1, "error: refusing to send a bearer token"),
    ]  # fmt: skip
    for args, token, code, start in cases:
        result = shell.run("merges", *args, token=token)
        assert result.exit_code == code, (args, result.output)
        assert one_line_error(result).startswith(start), (args, result.stderr)
    # No pair: whether or not the call reaches the service, nothing can be recorded.
    late = shell.run("merges", "approve", a, "cus_" + "f" * 16, "--reason", "r", "--timeout", "0.000001")
    assert late.exit_code == 1 and "the decision may still have been recorded" in late.stderr
    slow = shell.run("merges", "candidates", "--customer", a, "--timeout", "0.000001")
    assert slow.exit_code == 1 and "try a larger --timeout" in slow.stderr
    denied = shell.run("merges", "reject", a, b, "--reason", "r", token=AGENT)
    assert "supervisor's or admin's token" in denied.stderr
    missing = shell.run("merges", "approve", a, b)
    assert missing.exit_code == 2 and "Missing option '--reason'" in missing.output
    assert shell.candidates(a) == [(a, b)]
