"""`rapport agents ...`, `rapport route ...` and `rapport queue`: the RouterService from a shell.

RAPPORT_ROUTER_ADDR (default 127.0.0.1:50053) says where the service is; the channel is
secured as RAPPORT_TLS_* and RAPPORT_AUTH_TOKEN say (rapport.channels). Every call has a
deadline. Human output by default; `--json` prints the service's answer as JSON for scripts.

    rapport agents upsert agt_1 --skill billing=4 --language fr --team tier1 --capacity chat=3 --status available
    rapport agents status agt_1 away
    rapport agents list --team tier1
    rapport route email:ana@example.com --channel chat --topic billing --language fr --team tier1
    rapport queue --team tier1
"""

from __future__ import annotations

import os
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
from rapport.identity import InvalidIdentifier, kind_from_name
from rapport.settings import ROUTER_PORT
from rapport.v1 import events_pb2, router_pb2, router_pb2_grpc

DEFAULT_ADDRESS = f"127.0.0.1:{ROUTER_PORT}"
TIMEOUT = 10.0
JSON = Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")]

agents = typer.Typer(help="Register agents, set their status, list them.", no_args_is_help=True)


def _address() -> str:
    return os.environ.get("RAPPORT_ROUTER_ADDR") or DEFAULT_ADDRESS


def _stub() -> router_pb2_grpc.RouterServiceStub:
    # TLS, client certificates and bearer tokens from RAPPORT_TLS_* / RAPPORT_AUTH_TOKEN, when set.
    return router_pb2_grpc.RouterServiceStub(open_channel(_address()))


def _fail(exc: grpc.RpcError) -> typer.Exit:
    code = exc.code()  # type: ignore[attr-defined]
    typer.echo(f"error: {code.name}: {exc.details()}", err=True)  # type: ignore[attr-defined]
    return typer.Exit(2 if code == grpc.StatusCode.NOT_FOUND else 1)


def _json(message: Message) -> None:
    typer.echo(MessageToJson(message, indent=2))


def _when(ts: Timestamp) -> str:
    if not ts.seconds and not ts.nanos:
        return "-"
    return ts.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _enum(enum: object, name: str, option: str) -> int:
    """ "chat" -> CHANNEL_CHAT for the enum whose zero value is <PREFIX>_UNSPECIFIED."""
    prefix = enum.Name(0).removesuffix("UNSPECIFIED")  # type: ignore[attr-defined]
    try:
        return int(enum.Value(prefix + name.strip().upper().replace("-", "_")))  # type: ignore[attr-defined]
    except ValueError:
        names = [n.removeprefix(prefix).lower() for n in enum.keys()[1:]]  # type: ignore[attr-defined]
        raise typer.BadParameter(f"{name!r} is not one of {', '.join(names)}", param_hint=option) from None


def _label(enum: object, value: int) -> str:
    if value == 0:
        return "-"
    prefix = enum.Name(0).removesuffix("UNSPECIFIED")  # type: ignore[attr-defined]
    return str(enum.Name(value)).removeprefix(prefix).lower()  # type: ignore[attr-defined]


def _pairs(values: list[str], option: str) -> list[tuple[str, int]]:
    out = []
    for v in values:
        name, sep, number = v.partition("=")
        if not sep or not number.strip().isdigit():
            raise typer.BadParameter(f"{v!r} is not NAME=NUMBER", param_hint=option)
        out.append((name.strip(), int(number)))
    return out


def _customer(text: str, request: router_pb2.RouteContactRequest) -> None:
    text = text.strip()
    if text.startswith("cus_"):
        request.customer_id = text
        return
    kind_name, sep, value = text.partition(":")
    if not sep or "@" in kind_name:
        kind_name, value = ("email", text) if "@" in text else ("phone", text)
    try:
        kind = kind_from_name(kind_name)
    except InvalidIdentifier as exc:
        raise typer.BadParameter(exc.reason, param_hint="'WHO'") from exc
    platform = ""
    if kind == events_pb2.IDENTIFIER_KIND_SOCIAL_HANDLE and "/" in value:
        platform, _, value = value.partition("/")
    request.identifier.CopyFrom(events_pb2.Identifier(kind=kind, value=value, platform=platform))  # type: ignore[arg-type]


def _agent_table(items: list[router_pb2.Agent]) -> Table:
    table = Table("agent", "status", "load", "skills", "languages", "teams", "idle since")
    for a in items:
        load = ", ".join(f"{_label(events_pb2.Channel, c.channel)} {c.active}/{c.capacity}" for c in a.capacity)
        skills = ", ".join(f"{s.name} {s.level}" for s in a.skills)
        table.add_row(
            a.id,
            _label(router_pb2.AgentStatus, a.status),
            load,
            skills,
            ", ".join(a.languages),
            ", ".join(a.teams),
            _when(a.idle_since),
        )
    return table


@agents.command("upsert")
def upsert_agent(
    agent_id: Annotated[str, typer.Argument(help="The agent's id, e.g. agt_0042.")],
    *,
    skill: Annotated[list[str], typer.Option("--skill", help="NAME=LEVEL (1-5); repeat.")] = [],  # noqa: B006
    language: Annotated[list[str], typer.Option("--language", help="BCP 47 tag; repeat.")] = [],  # noqa: B006
    team: Annotated[list[str], typer.Option("--team", help="Team or queue; repeat.")] = [],  # noqa: B006
    capacity: Annotated[
        list[str], typer.Option("--capacity", help="CHANNEL=N concurrent contacts, e.g. chat=3; repeat.")
    ] = [],  # noqa: B006
    status: Annotated[str | None, typer.Option(help="available, away or offline.")] = None,
    name: Annotated[str, typer.Option("--name", help="Display name.")] = "",
    as_json: JSON = False,
) -> None:
    """Create or replace an agent's profile (live load is kept)."""
    agent = router_pb2.Agent(
        id=agent_id,
        display_name=name,
        skills=[router_pb2.AgentSkill(name=n, level=lvl) for n, lvl in _pairs(skill, "--skill")],
        languages=language,
        teams=team,
        capacity=[
            router_pb2.ChannelCapacity(channel=_enum(events_pb2.Channel, ch, "--capacity"), capacity=n)  # type: ignore[arg-type]
            for ch, n in _pairs(capacity, "--capacity")
        ],
    )
    if status:
        agent.status = _enum(router_pb2.AgentStatus, status, "--status")  # type: ignore[assignment]
    try:
        reply = _stub().UpsertAgent(router_pb2.UpsertAgentRequest(agent=agent), timeout=TIMEOUT)
    except grpc.RpcError as exc:
        raise _fail(exc) from exc
    if as_json:
        _json(reply)
        return
    Console().print(_agent_table([reply.agent]))
    typer.echo("created" if reply.created else "updated")


@agents.command("status")
def agent_status(
    agent_id: Annotated[str, typer.Argument(help="The agent's id.")],
    status: Annotated[str, typer.Argument(help="available, away or offline.")],
    as_json: JSON = False,
) -> None:
    """Set an agent available, away or offline (pending offers go to the next best agent)."""
    request = router_pb2.SetAgentStatusRequest(
        agent_id=agent_id,
        status=_enum(router_pb2.AgentStatus, status, "STATUS"),  # type: ignore[arg-type]
    )
    try:
        reply = _stub().SetAgentStatus(request, timeout=TIMEOUT)
    except grpc.RpcError as exc:
        raise _fail(exc) from exc
    if as_json:
        _json(reply)
        return
    Console().print(_agent_table([reply.agent]))
    if reply.withdrawn_contact_ids:
        typer.echo("offers withdrawn and routed again: " + ", ".join(reply.withdrawn_contact_ids))


@agents.command("list")
def list_agents(
    team: Annotated[str, typer.Option(help="Only this team.")] = "",
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    as_json: JSON = False,
) -> None:
    """Agents with their live load, every page."""
    stub = _stub()
    found: list[router_pb2.Agent] = []
    token = ""
    while True:
        request = router_pb2.ListAgentsRequest(team=team, page_size=500, page_token=token)
        if status:
            request.status = _enum(router_pb2.AgentStatus, status, "--status")  # type: ignore[assignment]
        try:
            reply = stub.ListAgents(request, timeout=TIMEOUT)
        except grpc.RpcError as exc:
            raise _fail(exc) from exc
        found += list(reply.agents)
        token = reply.next_page_token
        if not token:
            break
    if as_json:
        _json(router_pb2.ListAgentsResponse(agents=found))
        return
    Console().print(_agent_table(found))


def _show_contact(contact: router_pb2.Contact) -> None:
    console = Console()
    state = _label(router_pb2.ContactState, contact.state)
    console.print(f"[bold]{contact.id}[/bold] {state} ({_label(events_pb2.Channel, contact.channel)})")
    if contact.HasField("offer"):
        offer = contact.offer
        console.print(
            f"offered to [bold]{offer.agent_id}[/bold], score {offer.score:.2f}, "
            f"{_label(router_pb2.AssignmentMode, offer.mode)}, expires {_when(offer.expires_at)}"
        )
        if offer.relaxation.step:
            console.print(f"relaxation step {offer.relaxation.step}: {offer.relaxation.description}")
        table = Table("factor", "value", "weight", "contribution", "why")
        for f in offer.explanation.factors:
            table.add_row(f.name, f"{f.value:+.2f}", f"{f.weight:.2f}", f"{f.contribution:+.3f}", f.detail)
        console.print(table)
        if offer.explanation.evidence:
            evidence = Table("evidence", "factor", "what", "when")
            for e in offer.explanation.evidence:
                evidence.add_row(_label(router_pb2.EvidenceKind, e.kind), e.factor, e.description, _when(e.at))
            console.print(evidence)
        for r in offer.explanation.runner_ups:
            console.print(f"runner-up {r.agent_id}: {r.score:.2f}")
    if contact.HasField("queue"):
        q = contact.queue
        wait = f"{q.estimated_wait.seconds} s" if q.HasField("estimated_wait") else "unknown"
        console.print(f"waiting: position {q.position} of {q.waiting}, estimated wait {wait}")
        console.print(f"relaxation step {q.relaxation.step} ({q.relaxation.description}); {q.reason}")


def route(
    who: Annotated[str, typer.Argument(help="cus_... or an identifier: email:ana@example.com, crm:C-1, ...")],
    *,
    channel: Annotated[str, typer.Option(help="voice, chat, email, sms, social, ...")] = "chat",
    topic: Annotated[str, typer.Option(help="What the contact is about, e.g. billing.")] = "",
    language: Annotated[str, typer.Option(help="BCP 47 tag the customer needs.")] = "",
    team: Annotated[str, typer.Option(help="Only agents of this team.")] = "",
    skill: Annotated[list[str], typer.Option("--skill", help="Required NAME=MIN_LEVEL; repeat.")] = [],  # noqa: B006
    priority: Annotated[int, typer.Option(help="0 (normal) to 10.")] = 0,
    preferred_agent: Annotated[str, typer.Option(help="Prefer this agent.")] = "",
    contact_id: Annotated[str, typer.Option(help="Idempotency key.")] = "",
    as_json: JSON = False,
) -> None:
    """Route a contact: the offer with its explanation, or the place in the queue."""
    request = router_pb2.RouteContactRequest(
        contact_id=contact_id,
        channel=_enum(events_pb2.Channel, channel, "--channel"),  # type: ignore[arg-type]
        topic=topic,
        language=language,
        team=team,
        priority=priority,
        preferred_agent_id=preferred_agent,
        required_skills=[router_pb2.SkillRequirement(name=n, min_level=lvl) for n, lvl in _pairs(skill, "--skill")],
    )
    _customer(who, request)
    try:
        reply = _stub().RouteContact(request, timeout=TIMEOUT)
    except grpc.RpcError as exc:
        raise _fail(exc) from exc
    if as_json:
        _json(reply)
        return
    _show_contact(reply.contact)


def queue(
    team: Annotated[str, typer.Option(help="Only this team.")] = "",
    channel: Annotated[str | None, typer.Option(help="Only this channel.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many contacts.")] = 100,
    as_json: JSON = False,
) -> None:
    """The waiting contacts in queue order, with age, relaxation step and why they wait."""
    request = router_pb2.GetQueueRequest(team=team, limit=limit)
    if channel:
        request.channel = _enum(events_pb2.Channel, channel, "--channel")  # type: ignore[assignment]
    try:
        reply = _stub().GetQueue(request, timeout=TIMEOUT)
    except grpc.RpcError as exc:
        raise _fail(exc) from exc
    if as_json:
        _json(reply)
        return
    table = Table("#", "contact", "channel", "team", "priority", "age", "step", "relaxation", "est. wait", "why")
    for c in reply.contacts:
        q = c.queue
        table.add_row(
            str(q.position),
            c.id,
            _label(events_pb2.Channel, c.channel),
            c.team or "-",
            f"{c.priority} ({q.effective_priority:.1f})",
            f"{c.age.seconds} s",
            str(q.relaxation.step),
            q.relaxation.description,
            f"{q.estimated_wait.seconds} s" if q.HasField("estimated_wait") else "-",
            q.reason,
        )
    Console().print(table)
    typer.echo(f"{reply.total_waiting} waiting; oldest {reply.oldest_age.seconds} s")


def register(app: typer.Typer) -> None:
    app.add_typer(agents, name="agents")
    app.command("route")(route)
    app.command("queue")(queue)
