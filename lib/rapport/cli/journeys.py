"""`rapport journeys`: the journey report for a time range, from the JourneyService.

    rapport journeys --since 2026-11-02 --until 2026-11-09            tables on the terminal
    rapport journeys --since 2026-11-02 --until 2026-11-09 --json     the JourneyReport as JSON
    rapport journeys --since ... --until ... --html report.html       a page with charts

Times are ISO 8601 (a date, or a date and time; UTC unless an offset is given). The service is
the profile API server (RAPPORT_PROFILE_ADDR); a supervisor or admin token when auth is on.
Exit codes: 0 ok, 1 failure, 2 bad input.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import grpc
import typer
from google.protobuf.json_format import MessageToJson
from rich.console import Console, Group
from rich.table import Table

from rapport.channels import open_channel
from rapport.journeys import html
from rapport.settings import PROFILE_PORT, GrpcSettings
from rapport.v1 import journeys_pb2, journeys_pb2_grpc

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhd])\s*$")
_UNITS = {"m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, option: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 date or time", param_hint=option) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_window(text: str) -> timedelta:
    match = _DURATION.match(text)
    if not match:
        raise typer.BadParameter(f"{text!r} is not a duration like 90m, 24h or 2d", param_hint="'--journey-window'")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def report_request(
    since: datetime, until: datetime, rows: int, window: timedelta | None
) -> journeys_pb2.GetJourneyReportRequest:
    if until <= since:
        raise typer.BadParameter("must be after --since", param_hint="'--until'")
    request = journeys_pb2.GetJourneyReportRequest(max_rows=rows)
    request.since.FromDatetime(since.astimezone(UTC))
    request.until.FromDatetime(until.astimezone(UTC))
    if window is not None:
        request.journey_window.FromTimedelta(window)
    return request


def _table(title: str, headers: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title, title_justify="left")
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    if not rows:
        table.add_row("(none)", *[""] * (len(headers) - 1))
    return table


def render(report: journeys_pb2.JourneyReport) -> Group:
    t, b, rc, rq, e = report.totals, report.bot, report.repeat_contacts, report.repeat_questions, report.effort
    pc = html.percent
    summary = _table(
        f"Journeys {html.when(report.since)} to {html.when(report.until)}",
        ["measure", "value"],
        [
            ["interactions", f"{t.interactions:,}"],
            ["customers", f"{t.customers:,}"],
            ["touches", f"{t.touches:,}"],
            ["contacts", f"{t.contacts:,}"],
            ["journeys", f"{t.journeys:,}"],
            ["self-service attempts", f"{t.self_service_attempts:,}"],
            ["bot containment / handoff", f"{pc(b.containment_rate)} / {pc(b.handoff_rate)} of {b.journeys:,}"],
            ["repeat contacts within 7 days", f"{pc(rc.rate)} ({rc.repeats:,} of {rc.contacts:,})"],
            ["repeat questions", f"{pc(rq.rate)} ({rq.given_again:,} of {rq.facts_given:,} facts)"],
            ["effort: mean, low / medium / high", f"{e.mean_score:.1f}, {e.low:,} / {e.medium:,} / {e.high:,}"],
        ],
    )
    return Group(
        summary,
        _table(
            "Top intents",
            ["intent", "interactions", "customers"],
            [[i.intent, f"{i.interactions:,}", f"{i.customers:,}"] for i in report.top_intents],
        ),
        _table(
            "Issues by impact: contacts x (unresolved + repeat rate + effort/100) / 3",
            ["topic", "contacts", "unresolved", "repeats", "effort", "impact"],
            [
                [
                    i.topic,
                    f"{i.contacts:,}",
                    pc(i.unresolved_rate),
                    pc(i.repeat_rate),
                    f"{i.mean_effort:.1f}",
                    f"{i.impact:.2f}",
                ]
                for i in report.issues
            ],
        ),
        _table(
            "Self-service exit points",
            ["article or flow", "attempts", "failed", "escalated", "rate", "left at"],
            [
                [
                    f"{p.kind} {p.id}" + (f" ({p.title})" if p.title else ""),
                    f"{p.attempts:,}",
                    f"{p.failed:,}",
                    f"{p.escalations:,}",
                    pc(p.escalation_rate),
                    p.top_exit_step or "-",
                ]
                for p in report.exit_points
            ],
        ),
        _table(
            "Channel mix",
            ["channel", "touches", "customers", "share"],
            [
                [html.channel_name(c.channel), f"{c.touches:,}", f"{c.customers:,}", pc(c.share)]
                for c in report.channel_mix
            ],
        ),
        _table(
            "Channel-switch paths",
            ["path", "journeys", "share"],
            [[html.path_text(p), f"{p.journeys:,}", pc(p.share)] for p in report.channel_paths],
        ),
        _table("Facts given again", ["key", "times"], [[k.key, f"{k.given_again:,}"] for k in rq.top_keys]),
    )


def journeys(
    *,
    since: Annotated[str, typer.Option(help="Start of the range (inclusive), ISO 8601.", show_default=False)],
    until: Annotated[str, typer.Option(help="End of the range (exclusive), ISO 8601.", show_default=False)],
    rows: Annotated[int, typer.Option(min=1, max=100, help="Rows in each ranked list.")] = 10,
    journey_window: Annotated[
        str | None, typer.Option(help="How long a journey lasts from its first touch, e.g. 24h [default: 24h].")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JourneyReport as JSON.")] = False,
    html_path: Annotated[
        Path | None, typer.Option("--html", help="Also write an HTML report with charts to this file.")
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            envvar="RAPPORT_PROFILE_ADDR",
            help="host:port of the profile API server [default: RAPPORT_PROFILE_HOST:RAPPORT_PROFILE_PORT]",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the report.")] = 60.0,
) -> None:
    """The journey report: top intents, issues by impact, self-service exits, channels, repeats, effort."""
    window = parse_window(journey_window) if journey_window else None
    request = report_request(parse_time(since, "'--since'"), parse_time(until, "'--until'"), rows, window)
    target = address or GrpcSettings.from_env("profile", PROFILE_PORT).address
    with open_channel(target) as channel:
        stub = journeys_pb2_grpc.JourneyServiceStub(channel)
        try:
            report = stub.GetJourneyReport(request, timeout=timeout).report
        except grpc.RpcError as exc:
            code = exc.code()  # type: ignore[attr-defined]
            typer.echo(f"error: {code.name}: {exc.details()}", err=True)  # type: ignore[attr-defined]
            raise typer.Exit(2 if code == grpc.StatusCode.INVALID_ARGUMENT else 1) from None
    if html_path is not None:
        html_path.write_text(html.render(report), encoding="utf-8")
    if as_json:
        typer.echo(MessageToJson(report, preserving_proto_field_name=True, indent=2))
    else:
        Console().print(render(report))
        if html_path is not None:
            typer.echo(f"HTML report written to {html_path}")


def register(app: typer.Typer) -> None:
    app.command("journeys")(journeys)
