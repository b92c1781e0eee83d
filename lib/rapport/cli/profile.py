"""`rapport customer <id-or-identifier>`: the 360° view from the ProfileService, for people and scripts."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated

import grpc
import typer
from google.protobuf.json_format import MessageToJson
from google.protobuf.timestamp_pb2 import Timestamp

from rapport.channels import open_channel
from rapport.identity import InvalidIdentifier, kind_from_name
from rapport.settings import PROFILE_PORT, GrpcSettings
from rapport.v1 import events_pb2, profile_pb2, profile_pb2_grpc

_LOOKUP_HELP = (
    "A customer id (cus_...) or an identifier as kind:value: email:ana@example.com, phone:+447700900123, "
    "crm:C-1001, account:A-9, device:D-1, social:x/ana, cookie:abc. A bare email address or phone number works too."
)


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
    if c.merges:
        lines.append("Merges:")
        lines += [
            f"  {_when(m.merged_at)} absorbed {m.absorbed_customer_id} via {', '.join(m.linking_identity_keys)} "
            f"({m.absorbed_interaction_count} interactions)"
            for m in c.merges
        ]
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


def register(app: typer.Typer) -> None:
    app.command("customer")(customer)
