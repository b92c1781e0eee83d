"""The ProfileService from a shell, for people and scripts.

    rapport customer <id-or-identifier>                   the 360° view
    rapport forget <id-or-identifier> --reason "..."      erase a customer; prints the receipt
    rapport retention purge --older-than DAYS [--dry-run]  purge old interactions now

`forget` calls ForgetCustomer (an admin token: RAPPORT_AUTH_TOKEN / _FILE). `retention purge`
runs the ProfileService's purge itself against the graph (RAPPORT_NEO4J_*) and announces the
customers it touched on the customer-updates topic (RAPPORT_KAFKA_*), as the scheduled purge
does. Exit codes: 0 ok, 1 failure, 2 bad input or not found.
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import Annotated

import grpc
import typer
from google.protobuf.json_format import MessageToJson
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console
from rich.table import Table

from rapport.channels import open_channel
from rapport.identity import InvalidIdentifier, kind_from_name
from rapport.settings import PROFILE_PORT, GrpcSettings, KafkaSettings, Neo4jSettings
from rapport.v1 import events_pb2, profile_pb2, profile_pb2_grpc, timeline_pb2

_LOOKUP_HELP = (
    "A customer id (cus_...) or an identifier as kind:value: email:ana@example.com, phone:+447700900123, "
    "crm:C-1001, account:A-9, device:D-1, social:x/ana, cookie:abc. A bare email address or phone number works too."
)


ADDRESS = Annotated[
    str | None,
    typer.Option(
        envvar="RAPPORT_PROFILE_ADDR",
        help="host:port of the ProfileService [default: RAPPORT_PROFILE_HOST:RAPPORT_PROFILE_PORT]",
        show_default=False,
    ),
]


def lookup_request(text: str) -> profile_pb2.GetCustomerRequest:
    """What the user typed as a GetCustomerRequest; the server normalises and validates the value."""
    text = text.strip()
    if text.startswith("cus_"):
        return profile_pb2.GetCustomerRequest(customer_id=text)
    kind_name, sep, value = text.partition(":")
    if not sep or "@" in kind_name:
        # No kind given: an email address or a phone number, by its look.
        kind_name, value = ("email", text) if "@" in text else ("phone", text)
    try:
        kind = kind_from_name(kind_name)
    except InvalidIdentifier as exc:
        raise typer.BadParameter(exc.reason, param_hint="'WHO'") from exc
    platform = ""
    if kind == events_pb2.IDENTIFIER_KIND_SOCIAL_HANDLE and "/" in value:
        platform, _, value = value.partition("/")
    return profile_pb2.GetCustomerRequest(
        identifier=events_pb2.Identifier(kind=kind, value=value, platform=platform)  # type: ignore[arg-type]
    )


def _when(ts: Timestamp) -> str:
    if not ts.seconds and not ts.nanos:
        return "-"
    return ts.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M")


def _name(enum: object, value: int) -> str:
    """CHANNEL_IN_STORE -> "in store"."""
    full = enum.Name(value)  # type: ignore[attr-defined]
    prefix = enum.Name(0).removesuffix("UNSPECIFIED")  # type: ignore[attr-defined]
    return "-" if value == 0 else full.removeprefix(prefix).lower().replace("_", " ")


def render(response: profile_pb2.GetCustomerResponse) -> str:
    """The view as an agent reads it."""
    c = response.customer
    a = c.attributes
    lines = [f"{a.display_name or '(no name)'}  {c.customer_id}"]
    if response.merged_customer_id:
        lines.append(f"  (you asked for {response.merged_customer_id}, merged into this customer)")
    traits = ", ".join(f"{k} {v}" for k, v in (("language", a.language), ("tier", a.tier), ("segment", a.segment)) if v)
    if traits:
        lines.append(f"  {traits}")
    lines.append(
        f"  {c.interaction_count} interactions, first {_when(c.first_contact_at)}, last {_when(c.last_contact_at)}"
    )
    lines.append("Identities:")
    for i in c.identities:
        how = f" ({i.identifier.verification_method})" if i.identifier.verification_method else ""
        verified = "verified" + how if i.identifier.verified else "unverified"
        lines.append(f"  {i.key}  {_name(profile_pb2.IdentityStrength, i.strength)}, {verified}")
    if c.channels:
        lines.append("Channels:")
        lines += [
            f"  {_name(events_pb2.Channel, ch.channel):<10} {ch.interaction_count:>5}  last {_when(ch.last_at)}"
            for ch in c.channels
        ]
    if c.top_topics:
        lines.append("Top topics: " + ", ".join(f"{t.topic} ({t.interaction_count})" for t in c.top_topics))
    if c.recent_agents:
        lines.append("Recent agents:")
        for ag in c.recent_agents:
            csat = f", csat {ag.average_csat:.1f}" if ag.HasField("average_csat") else ""
            lines.append(
                f"  {ag.agent_id}  {_when(ag.last_contact_at)} {_name(events_pb2.Channel, ag.last_channel)}, "
                f"last outcome {_name(events_pb2.Outcome, ag.last_outcome)}, "
                f"{ag.resolved_count}/{ag.interaction_count} resolved{csat}"
            )
    if c.open_cases:
        lines.append("Open cases:")
        lines += [f"  {k.case.id}  {_name(events_pb2.CaseStatus, k.case.status)}  {k.case.title}" for k in c.open_cases]
    if c.devices:
        lines.append("Devices: " + ", ".join(f"{d.id} {d.model}".strip() for d in c.devices))
    s = c.sentiment
    if s.HasField("recent_average"):
        earlier = f" vs {s.earlier_average:+.2f} earlier" if s.HasField("earlier_average") else ""
        lines.append(
            f"Sentiment: {_name(profile_pb2.SentimentDirection, s.direction)}, recent {s.recent_average:+.2f}{earlier}"
        )
    if c.HasField("effort"):
        days = (c.effort.window_end.ToDatetime() - c.effort.window_start.ToDatetime()).days
        why = "; ".join(c.effort.reasons) or "nothing unusual"
        lines.append(
            f"Effort: {_name(timeline_pb2.EffortLevel, c.effort.level)} {c.effort.score}/100 over {days} days ({why})"
        )
    if c.merges:
        # The merge id first: it is what `rapport merges undo` takes.
        lines.append("Merges (undo one with: rapport merges undo MERGE_ID --reason ...):")
        for m in c.merges:
            # Earlier merges of customers this one absorbed name their own survivor.
            into = f" into {m.survivor_customer_id}" if m.survivor_customer_id not in ("", c.customer_id) else ""
            lines.append(
                f"  {m.merge_id or '-'}  {_when(m.merged_at)}  absorbed {m.absorbed_customer_id}{into} "
                f"via {', '.join(m.linking_identity_keys) or '-'} ({m.absorbed_interaction_count} interactions)"
            )
    return "\n".join(lines)


def customer(
    who: Annotated[str, typer.Argument(help=_LOOKUP_HELP, show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the GetCustomerResponse as JSON.")] = False,
    address: Annotated[
        str | None,
        typer.Option(
            envvar="RAPPORT_PROFILE_ADDR",
            help="host:port of the ProfileService [default: RAPPORT_PROFILE_HOST:RAPPORT_PROFILE_PORT]",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 5.0,
) -> None:
    """Show a customer's 360° view: identities, channels, agents, topics, sentiment, merges."""
    request = lookup_request(who)
    target = address or GrpcSettings.from_env("profile", PROFILE_PORT).address
    with open_channel(target) as channel:
        stub = profile_pb2_grpc.ProfileServiceStub(channel)
        try:
            response = stub.GetCustomer(request, timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code()  # type: ignore[attr-defined]
            typer.echo(f"error: {code.name}: {exc.details()}", err=True)  # type: ignore[attr-defined]
            raise typer.Exit(2 if code == grpc.StatusCode.NOT_FOUND else 1) from None
    if as_json:
        typer.echo(MessageToJson(response, preserving_proto_field_name=True, indent=2))
    else:
        typer.echo(render(response))


def forget_request(text: str, reason: str) -> profile_pb2.ForgetCustomerRequest:
    """What the user typed as a ForgetCustomerRequest (the same lookups as `rapport customer`)."""
    lookup = lookup_request(text)
    if lookup.HasField("identifier"):
        return profile_pb2.ForgetCustomerRequest(identifier=lookup.identifier, reason=reason)
    return profile_pb2.ForgetCustomerRequest(customer_id=lookup.customer_id, reason=reason)


def render_receipt(receipt: profile_pb2.ErasureReceipt) -> Table:
    """The receipt as a table: one row per store and kind of record removed."""
    when = receipt.erased_at.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    state = "already erased" if receipt.already_erased else "erased"
    table = Table(
        title=f"{receipt.receipt_id}: {', '.join(receipt.customer_ids)} {state} {when} by {receipt.erased_by}",
        caption=f"reason: {receipt.reason}; {receipt.tombstone_count} identifiers tombstoned",
    )
    for column in ("store", "removed", "count", "note"):
        table.add_column(column, justify="right" if column == "count" else "left")
    for store in receipt.stores:
        counts = sorted(store.removed.items()) or [("-", 0)]
        for n, (kind, count) in enumerate(counts):
            table.add_row(store.store if n == 0 else "", kind, str(count), store.note if n == 0 else "")
    return table


def forget(
    who: Annotated[str, typer.Argument(help=_LOOKUP_HELP, show_default=False)],
    reason: Annotated[str, typer.Option(help="Why, kept in the receipt (e.g. the ticket number).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the ForgetCustomerResponse as JSON.")] = False,
    address: ADDRESS = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the erasure.")] = 60.0,
) -> None:
    """Erase a customer (and every customer merged into it) everywhere; print the receipt."""
    request = forget_request(who, reason)
    target = address or GrpcSettings.from_env("profile", PROFILE_PORT).address
    with open_channel(target) as channel:
        stub = profile_pb2_grpc.ProfileServiceStub(channel)
        try:
            response = stub.ForgetCustomer(request, timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code()  # type: ignore[attr-defined]
            typer.echo(f"error: {code.name}: {exc.details()}", err=True)  # type: ignore[attr-defined]
            bad_input = code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
            raise typer.Exit(2 if bad_input else 1) from None
    if as_json:
        typer.echo(MessageToJson(response, preserving_proto_field_name=True, indent=2))
    else:
        Console(width=160).print(render_receipt(response.receipt))


retention = typer.Typer(help="Interaction retention: purge what is older than the configured age.")


@retention.command("purge")
def retention_purge(
    older_than: Annotated[float, typer.Option("--older-than", help="Purge interactions older than this many days.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be purged; change nothing.")] = False,
    batch_size: Annotated[int, typer.Option(help="Interactions per transaction.", min=1, max=100_000)] = 500,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Purge interactions older than --older-than days now, aggregates corrected, in batches."""
    # The purge is the ProfileService's own code, run here as a one-off job.
    import neo4j.exceptions
    from kafka.errors import KafkaError

    from rapport.errors import RapportError
    from rapport.graph.driver import open_driver
    from rapport_profile.adapters.notices import KafkaCustomerNotices
    from rapport_profile.adapters.retention import GraphRetention
    from rapport_profile.domain.retention import MAX_RETENTION_DAYS
    from rapport_profile.retention import RetentionService

    if not 0 < older_than <= MAX_RETENTION_DAYS:
        typer.echo(f"error: --older-than must be 1 to {MAX_RETENTION_DAYS} days", err=True)
        raise typer.Exit(2)
    settings = Neo4jSettings.from_env()
    driver = open_driver(settings)
    notices = KafkaCustomerNotices(KafkaSettings.from_env())
    try:
        service = RetentionService(GraphRetention(driver, settings.database), notices, batch_size=batch_size)
        report = service.purge(older_than, dry_run=dry_run)
    except (neo4j.exceptions.Neo4jError, neo4j.exceptions.DriverError, KafkaError, RapportError) as exc:
        typer.echo(f"error: the purge failed: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        notices.close()
        driver.close()
    summary = dict(report.as_dict())
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    verb = "would purge" if dry_run else "purged"
    typer.echo(
        f"{verb} {summary['interactions']} interactions of {summary['customers']} customers older than "
        f"{summary['cutoff']}"
        + (
            ""
            if dry_run
            else f" in {summary['batches']} batches; affinity links updated "
            f"{summary['affinity_updated']}, removed {summary['affinity_removed']}"
        )
    )


def register(app: typer.Typer) -> None:
    app.command("customer")(customer)
    app.command("forget")(forget)
    app.add_typer(retention, name="retention")
