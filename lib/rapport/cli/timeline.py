"""`rapport timeline <who>` and `rapport handoff <who>`: the TimelineService for agents and scripts.

RAPPORT_TIMELINE_ADDR (default 127.0.0.1:50052) says where the service is. Every call has a
deadline; `--follow` streams live and, when the server goes away, resumes from the last cursor.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
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
from rapport.settings import TIMELINE_PORT
from rapport.v1 import events_pb2, timeline_pb2, timeline_pb2_grpc

DEFAULT_ADDRESS = f"127.0.0.1:{TIMELINE_PORT}"
_WHO_HELP = (
    "A customer id (cus_...) or an identifier as kind:value: email:ana@example.com, phone:+447700900123, "
    "crm:C-1001, account:A-9, device:D-1, social:x/ana, cookie:abc. A bare email address or phone number works too."
)
RECONNECT_DELAYS = (0.5, 1.0, 2.0, 5.0)


def customer_ref(text: str) -> timeline_pb2.CustomerRef:
    """What the user typed; the server normalises and validates the value."""
    text = text.strip()
    if text.startswith("cus_"):
        return timeline_pb2.CustomerRef(customer_id=text)
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
    return timeline_pb2.CustomerRef(
        identifier=events_pb2.Identifier(kind=kind, value=value, platform=platform)  # type: ignore[arg-type]
    )


def _address() -> str:
    return os.environ.get("RAPPORT_TIMELINE_ADDR") or DEFAULT_ADDRESS


def _when(ts: Timestamp) -> str:
    if not ts.seconds and not ts.nanos:
        return "-"
    return ts.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _name(enum: object, value: int) -> str:
    """CHANNEL_IN_STORE -> "in store"; unspecified -> ""."""
    if value == 0:
        return ""
    prefix = enum.Name(0).removesuffix("UNSPECIFIED")  # type: ignore[attr-defined]
    return str(enum.Name(value)).removeprefix(prefix).lower().replace("_", " ")  # type: ignore[attr-defined]


def _fail(exc: grpc.RpcError) -> typer.Exit:
    code = exc.code()  # type: ignore[attr-defined]
    typer.echo(f"error: {code.name}: {exc.details()}", err=True)  # type: ignore[attr-defined]
    return typer.Exit(2 if code == grpc.StatusCode.NOT_FOUND else 1)


def _what(i: timeline_pb2.Interaction) -> str:
    parts = [i.topic, f"intent {i.intent}" if i.intent else ""]
    if i.article_title or i.article_id:
        answer = _name(events_pb2.ArticleAnswer, i.answer)
        parts.append(f"article {i.article_title or i.article_id}" + (f" ({answer})" if answer else ""))
    if i.exit_reason:
        parts.append(f"left: {i.exit_reason}")
    if i.fault_code:
        parts.append(f"fault {i.fault_code} {_name(events_pb2.AlertSeverity, i.severity)}")
    return ", ".join(p for p in parts if p)


def interactions_table(items: Iterable[timeline_pb2.Interaction], title: str = "") -> Table:
    table = Table(title=title or None, show_lines=False)
    for column in ("When (UTC)", "Channel", "Kind", "What", "Agent", "Outcome", "Summary"):
        table.add_column(column, overflow="fold")
    for i in items:
        table.add_row(
            _when(i.at),
            _name(events_pb2.Channel, i.channel),
            _name(events_pb2.InteractionKind, i.kind),
            _what(i),
            i.agent_id,
            _name(events_pb2.Outcome, i.outcome),
            i.summary,
        )
    return table


def timeline(
    who: Annotated[str, typer.Argument(help=_WHO_HELP, show_default=False)],
    *,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep streaming new interactions live.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON (one object per line with --follow).")] = False,
    limit: Annotated[int, typer.Option(help="How many interactions to show (1-500).", min=1, max=500)] = 50,
    oldest_first: Annotated[bool, typer.Option("--oldest-first", help="Oldest first instead of newest.")] = False,
    page_token: Annotated[str, typer.Option("--page-token", help="Continue from a previous page.")] = "",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each answer.")] = 5.0,
) -> None:
    """Show a customer's cross-channel history, newest first (--follow for live)."""
    ref = customer_ref(who)
    console = Console()
    with open_channel(_address()) as channel:
        stub = timeline_pb2_grpc.TimelineServiceStub(channel)
        if follow:
            _follow(stub, ref, replay=limit, as_json=as_json, timeout=timeout, console=console)
            return
        order = timeline_pb2.TIMELINE_ORDER_OLDEST_FIRST if oldest_first else timeline_pb2.TIMELINE_ORDER_NEWEST_FIRST
        request = timeline_pb2.ListInteractionsRequest(
            customer=ref, order=order, page_size=limit, page_token=page_token
        )
        try:
            response = stub.ListInteractions(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise _fail(exc) from None
    if as_json:
        typer.echo(MessageToJson(response, preserving_proto_field_name=True, indent=2))
        return
    console.print(interactions_table(response.interactions, f"Timeline of {response.customer_id}"))
    if response.next_page_token:
        console.print(f"more: rapport timeline {who} --page-token {response.next_page_token}")


def _follow(
    stub: timeline_pb2_grpc.TimelineServiceStub,
    ref: timeline_pb2.CustomerRef,
    *,
    replay: int,
    as_json: bool,
    timeout: float,
    console: Console,
) -> None:
    """Streams until Ctrl-C; after a disconnect it resumes from the last cursor, so nothing is
    shown twice or missed."""
    cursor = ""
    failures = 0
    while True:
        request = timeline_pb2.WatchTimelineRequest(customer=ref, cursor=cursor, replay_last=0 if cursor else replay)
        # The stream itself is open-ended; the connection must come up within `timeout`.
        call = stub.WatchTimeline(request, wait_for_ready=False)
        try:
            for item in call:
                failures = 0
                cursor = item.cursor or cursor
                if item.HasField("interaction"):
                    if as_json:
                        typer.echo(MessageToJson(item, preserving_proto_field_name=True, indent=None))
                    else:
                        console.print(interactions_table([item.interaction]))
                elif item.HasField("merged"):
                    absorbed = ", ".join(item.merged.absorbed_ids)
                    message = f"merged: {absorbed} into {item.merged.survivor_id}; now following the survivor"
                    typer.echo(MessageToJson(item) if as_json else message)
            return
        except KeyboardInterrupt:
            call.cancel()
            return
        except grpc.RpcError as exc:
            code = exc.code()  # type: ignore[attr-defined]
            if code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) or failures >= len(
                RECONNECT_DELAYS
            ):
                raise _fail(exc) from None
            time.sleep(min(RECONNECT_DELAYS[failures], timeout))
            failures += 1


def _step_text(p: timeline_pb2.SelfServiceStep) -> tuple[str, str]:
    """What one self-service step was, and how it ended."""
    kind = _name(events_pb2.InteractionKind, p.kind)
    if p.article_id:
        return f"{kind} {p.article_title or p.article_id}", _name(events_pb2.ArticleAnswer, p.answer)
    where = " at ".join(x for x in (p.flow_id, p.step) if x)
    what = " ".join(x for x in (kind, p.intent, f"({where})" if where else "") if x)
    return what, p.exit_reason


def _handoff_text(r: timeline_pb2.GetHandoffContextResponse, console: Console) -> None:
    c = r.customer
    console.print(f"[bold]{c.display_name or c.customer_id}[/bold]  {c.customer_id}  {c.tier} {c.language}".rstrip())
    console.print(f"[bold]Probably:[/bold] {r.probable_reason}")
    console.print(
        f"Identity: {_name(timeline_pb2.VerificationLevel, r.verification.level)} ({r.verification.description})"
    )
    effort = ", ".join(r.effort.reasons) or "nothing unusual"
    console.print(f"Effort: {_name(timeline_pb2.EffortLevel, r.effort.level)} {r.effort.score}/100 ({effort})")
    latest = f", latest {r.sentiment.latest:+.2f}" if r.sentiment.HasField("latest") else ""
    console.print(f"Sentiment: {_name(timeline_pb2.SentimentTrend, r.sentiment.trend)}{latest}")
    if r.facts:
        facts = Table(title="Facts already given")
        for column in ("Key", "Value", "Given via", "When", "Times"):
            facts.add_column(column)
        for f in r.facts:
            facts.add_row(
                f.key, f.value, _name(events_pb2.Channel, f.source_channel), _when(f.last_given_at), str(f.times_given)
            )
        console.print(facts)
    ss = r.self_service
    if ss.path:
        tried = Table(title="Self-service and bot, in order")
        for column in ("When", "What", "Result"):
            tried.add_column(column)
        for p in ss.path:
            tried.add_row(_when(p.at), *_step_text(p))
        console.print(tried)
    elif ss.articles or ss.bot_intents or ss.HasField("exit"):
        tried = Table(title="Self-service and bot")
        for column in ("When", "What", "Result"):
            tried.add_column(column)
        for a in ss.articles:
            tried.add_row(_when(a.at), f"article {a.title or a.article_id}", _name(events_pb2.ArticleAnswer, a.answer))
        for b in ss.bot_intents:
            tried.add_row(_when(b.at), f"bot intent {b.intent}", b.step)
        if ss.HasField("exit"):
            tried.add_row(_when(ss.exit.at), f"left {ss.exit.flow_id} at {ss.exit.step}", ss.exit.exit_reason)
        console.print(tried)
    if r.open_cases:
        cases = Table(title="Open cases")
        for column in ("Case", "Status", "Title", "Owner", "Alert", "Updated"):
            cases.add_column(column)
        for k in r.open_cases:
            alert = f"{k.fault_code} {_name(events_pb2.AlertSeverity, k.severity)} x{k.alerts}" if k.fault_code else ""
            cases.add_row(
                k.case_id,
                _name(events_pb2.CaseStatus, k.status),
                k.title,
                k.owner_agent_id,
                alert,
                _when(k.updated_at),
            )
        console.print(cases)
    if r.devices:
        devices = Table(title="Devices")
        for column in ("Device", "Model", "Last alert", "Severity", "When", "Alerts"):
            devices.add_column(column)
        for d in r.devices:
            devices.add_row(
                d.device_id,
                d.model,
                d.last_fault_code,
                _name(events_pb2.AlertSeverity, d.last_severity),
                _when(d.last_alert_at),
                str(d.recent_alerts),
            )
        console.print(devices)
    if r.recent_agents:
        agents = Table(title="Last agents")
        for column in ("Agent", "When", "Channel", "Outcome", "Resolved", "CSAT"):
            agents.add_column(column)
        for ag in r.recent_agents:
            agents.add_row(
                ag.agent_id,
                _when(ag.last_at),
                _name(events_pb2.Channel, ag.last_channel),
                _name(events_pb2.Outcome, ag.last_outcome),
                f"{ag.resolved}/{ag.contacts}",
                f"{ag.average_csat:.1f}" if ag.average_csat else "",
            )
        console.print(agents)


def handoff(
    who: Annotated[str, typer.Argument(help=_WHO_HELP, show_default=False)],
    *,
    as_json: Annotated[bool, typer.Option("--json", help="Print the GetHandoffContextResponse as JSON.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 5.0,
) -> None:
    """What an agent needs when picking up the customer: facts given, what the bot tried, cases, effort."""
    request = timeline_pb2.GetHandoffContextRequest(customer=customer_ref(who))
    with open_channel(_address()) as channel:
        try:
            response = timeline_pb2_grpc.TimelineServiceStub(channel).GetHandoffContext(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise _fail(exc) from None
    if as_json:
        typer.echo(MessageToJson(response, preserving_proto_field_name=True, indent=2))
    else:
        _handoff_text(response, Console())


def register(app: typer.Typer) -> None:
    app.command("timeline")(timeline)
    app.command("handoff")(handoff)
