"""`rapport merges`: the merge review queue from a shell, for supervisors.

    rapport merges candidates [--customer WHO] [--page-size N] [--all]   pairs that may be one person
    rapport merges approve CUSTOMER OTHER --reason "..."                  merge a pair; prints the merge id
    rapport merges reject CUSTOMER OTHER --reason "..."                   keep a pair apart for good
    rapport merges undo MERGE_ID --reason "..."                           undo a merge (`rapport customer` lists ids)

The ProfileService is RAPPORT_PROFILE_ADDR. Approving, rejecting and undoing need a supervisor's
or admin's token (RAPPORT_AUTH_TOKEN / _FILE); the decision records its subject and the reason.
Every call has a deadline (--timeout). --json prints the service's answer.
Exit codes: 0 ok; 1 failure (unreachable, denied, timed out); 2 bad input, not found, or a
decision that no longer applies (the pair was already reviewed, the merge already undone).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from typing import Annotated

import grpc
import typer
from google.protobuf.json_format import MessageToJson
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console
from rich.table import Table

from rapport.channels import open_channel
from rapport.cli.profile import ADDRESS, lookup_request
from rapport.settings import PROFILE_PORT, GrpcSettings
from rapport.v1 import profile_pb2, profile_pb2_grpc

READ_TIMEOUT = 10.0
# The service gives a review write at most 30 s of graph time; the answer needs a little more.
WRITE_TIMEOUT = 35.0

JSON = Annotated[bool, typer.Option("--json", help="Print the service's answer as JSON.")]
REASON = Annotated[
    str,
    typer.Option(
        help="Why, kept on the recorded decision (e.g. a ticket number); at most 256 characters.",
        show_default=False,
    ),
]
WRITE_WAIT = Annotated[float, typer.Option("--timeout", help="Seconds to wait for the decision.")]
CUSTOMER_HELP = "One customer of the pair (cus_...), as `rapport merges candidates` lists it."
OTHER_HELP = "The other customer of the pair; the order does not matter."

# Retrying these will not help: the request is wrong, names nothing, or no longer applies.
_BAD_REQUEST = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION)
_TOKEN_HINT = "merge review needs a supervisor's or admin's token in RAPPORT_AUTH_TOKEN or RAPPORT_AUTH_TOKEN_FILE"

merges = typer.Typer(
    help="Review merge candidates: list them, approve or reject a pair, undo a merge.", no_args_is_help=True
)


def failure_line(exc: grpc.RpcError, target: str, *, write: bool) -> str:
    """One line saying what went wrong and, where it helps, what to do about it."""
    code: grpc.StatusCode = exc.code()  # type: ignore[attr-defined]
    details = " ".join((exc.details() or "").split())  # type: ignore[attr-defined]
    hint = {
        grpc.StatusCode.UNAUTHENTICATED: _TOKEN_HINT,
        grpc.StatusCode.PERMISSION_DENIED: _TOKEN_HINT,
        grpc.StatusCode.UNAVAILABLE: f"is the ProfileService at {target}? set --address or RAPPORT_PROFILE_ADDR",
        grpc.StatusCode.DEADLINE_EXCEEDED: (
            "the decision may still have been recorded: check `rapport merges candidates` or "
            "`rapport customer` before trying again"
            if write
            else "try a larger --timeout"
        ),
    }.get(code)
    return f"error: {code.name}: {details}" + (f" ({hint})" if hint else "")


@contextmanager
def profile_stub(address: str | None, *, write: bool) -> Iterator[profile_pb2_grpc.ProfileServiceStub]:
    """A stub on a channel secured as RAPPORT_TLS_* / RAPPORT_AUTH_TOKEN* say; gRPC errors exit."""
    target = address or GrpcSettings.from_env("profile", PROFILE_PORT).address
    try:
        channel = open_channel(target)
    except ValueError as exc:  # inconsistent TLS or token settings, or a token about to go out in plaintext
        typer.echo(f"error: {' '.join(str(exc).split())}", err=True)
        raise typer.Exit(1) from None
    with channel:
        try:
            yield profile_pb2_grpc.ProfileServiceStub(channel)
        except grpc.RpcError as exc:
            typer.echo(failure_line(exc, target, write=write), err=True)
            code = exc.code()  # type: ignore[attr-defined]
            raise typer.Exit(2 if code in _BAD_REQUEST else 1) from None


def _console() -> Console:
    # A terminal's own width; piped output gets room for ids and keys side by side.
    return Console(width=None if sys.stdout.isatty() else 160)


def _json(message: Message) -> None:
    typer.echo(
        MessageToJson(message, preserving_proto_field_name=True, indent=2, always_print_fields_with_no_presence=True)
    )


def _when(ts: Timestamp) -> str:
    if not ts.seconds and not ts.nanos:
        return "-"
    return ts.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def decision_line(decision: profile_pb2.MergeDecision) -> str:
    """`dec_... approved by sup-1 at 2026-11-23 13:07:54 UTC: ticket 42`."""
    kind = profile_pb2.MergeDecisionKind.Name(decision.kind).removeprefix("MERGE_DECISION_KIND_").lower()
    return f"{decision.decision_id} {kind} by {decision.decided_by} at {_when(decision.decided_at)}: {decision.reason}"


def candidate_table(found: list[profile_pb2.MergeCandidate], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("customer", no_wrap=True)
    table.add_column("other", no_wrap=True)
    table.add_column("shared keys", overflow="fold")
    table.add_column("linked at", no_wrap=True)
    table.add_column("names")
    for c in found:
        table.add_row(
            c.customer_id,
            c.other_customer_id,
            "\n".join(c.shared_identity_keys) or "-",
            _when(c.linked_at),
            f"{c.display_name or '-'} / {c.other_display_name or '-'}",
        )
    return table


def _customer_id(stub: profile_pb2_grpc.ProfileServiceStub, who: str, timeout: float) -> str:
    """A customer id as typed, or the customer an identifier belongs to."""
    try:
        lookup = lookup_request(who)
    except typer.BadParameter as exc:
        exc.param_hint = "'--customer'"
        raise
    if lookup.HasField("identifier"):
        request = profile_pb2.ResolveIdentityRequest(identifier=lookup.identifier)
        return stub.ResolveIdentity(request, timeout=timeout).customer_id
    return lookup.customer_id


@merges.command("candidates")
def candidates(
    *,
    customer: Annotated[
        str | None,
        typer.Option(
            "--customer",
            help="Only the pairs involving this customer: a customer id, or an identifier as kind:value "
            "(email:ana@example.com, crm:C-1001, ...).",
            show_default=False,
        ),
    ] = None,
    page_size: Annotated[int, typer.Option(min=1, max=500, help="Pairs per page.")] = 50,
    every_page: Annotated[bool, typer.Option("--all", help="Every page, not just the first.")] = False,
    page_token: Annotated[
        str, typer.Option(help="Start from this next_page_token (of --json output, same --customer).")
    ] = "",
    as_json: JSON = False,
    address: ADDRESS = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each page.")] = READ_TIMEOUT,
) -> None:
    """Pairs of customers who share a weak identifier and may be one person, in a stable order."""
    with profile_stub(address, write=False) as stub:
        request = profile_pb2.ListMergeCandidatesRequest(page_size=page_size, page_token=page_token)
        if customer:
            request.customer_id = _customer_id(stub, customer, timeout)
        found: list[profile_pb2.MergeCandidate] = []
        while True:
            page = stub.ListMergeCandidates(request, timeout=timeout)
            found += page.candidates
            if not (every_page and page.next_page_token):
                break
            request.page_token = page.next_page_token
    answer = profile_pb2.ListMergeCandidatesResponse(candidates=found, next_page_token=page.next_page_token)
    if as_json:
        _json(answer)
        return
    scope = f" involving {request.customer_id}" if request.customer_id else ""
    if not found:
        typer.echo(f"no merge candidates{scope}")
    else:
        plural = "" if len(found) == 1 else "s"
        _console().print(candidate_table(found, f"{len(found)} merge candidate{plural}{scope}"))
    if answer.next_page_token:
        typer.echo(f"more candidates: --all for every page, or --page-token {answer.next_page_token}")


@merges.command("approve")
def approve(
    customer: Annotated[str, typer.Argument(help=CUSTOMER_HELP, show_default=False)],
    other: Annotated[str, typer.Argument(help=OTHER_HELP, show_default=False)],
    *,
    reason: REASON,
    as_json: JSON = False,
    address: ADDRESS = None,
    timeout: WRITE_WAIT = WRITE_TIMEOUT,
) -> None:
    """Merge a candidate pair into the older customer; prints the merge id that undoes it."""
    request = profile_pb2.ApproveMergeCandidateRequest(customer_id=customer, other_customer_id=other, reason=reason)
    with profile_stub(address, write=True) as stub:
        answer = stub.ApproveMergeCandidate(request, timeout=timeout)
    if as_json:
        _json(answer)
        return
    m = answer.merge
    moved = ", ".join(m.absorbed_identity_keys) or "none"
    typer.echo(decision_line(answer.decision))
    typer.echo(f"merge {m.merge_id}: {m.survivor_customer_id} absorbed {m.absorbed_customer_id}")
    typer.echo(f"  linked by {', '.join(m.linking_identity_keys) or '-'}")
    typer.echo(f"  moved {m.absorbed_interaction_count} interactions and identities {moved}")
    typer.echo(f'undo with: rapport merges undo {m.merge_id} --reason "..."')


@merges.command("reject")
def reject(
    customer: Annotated[str, typer.Argument(help=CUSTOMER_HELP, show_default=False)],
    other: Annotated[str, typer.Argument(help=OTHER_HELP, show_default=False)],
    *,
    reason: REASON,
    as_json: JSON = False,
    address: ADDRESS = None,
    timeout: WRITE_WAIT = WRITE_TIMEOUT,
) -> None:
    """Keep a candidate pair apart for good: never proposed again, never merged by what they share."""
    request = profile_pb2.RejectMergeCandidateRequest(customer_id=customer, other_customer_id=other, reason=reason)
    with profile_stub(address, write=True) as stub:
        answer = stub.RejectMergeCandidate(request, timeout=timeout)
    if as_json:
        _json(answer)
        return
    typer.echo(decision_line(answer.decision))
    typer.echo(f"{' and '.join(answer.decision.customer_ids)} stay apart")


@merges.command("undo")
def undo(
    merge_id: Annotated[
        str, typer.Argument(help="The merge's id (mrg_...), as `rapport customer` lists it.", show_default=False)
    ],
    *,
    reason: REASON,
    as_json: JSON = False,
    address: ADDRESS = None,
    timeout: WRITE_WAIT = WRITE_TIMEOUT,
) -> None:
    """Undo a merge: restore the absorbed customer with its own identities and history."""
    request = profile_pb2.UnmergeCustomerRequest(merge_id=merge_id, reason=reason)
    with profile_stub(address, write=True) as stub:
        answer = stub.UnmergeCustomer(request, timeout=timeout)
    if as_json:
        _json(answer)
        return
    typer.echo(decision_line(answer.decision) + f" (merge {answer.decision.merge_id})")
    typer.echo(f"survivor {answer.survivor_customer_id}: keeps {answer.survivor_interaction_count} interactions")
    keys = ", ".join(answer.restored_identity_keys) or "none"
    typer.echo(
        f"restored {answer.restored_customer_id}: {answer.restored_interaction_count} interactions, identities {keys}"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(merges, name="merges")
