"""The journey report as one self-contained HTML page: tables and inline SVG bar charts.

No script, no stylesheet or font from elsewhere: the file opens the same offline, in a mail
attachment or on a wall screen.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from html import escape

from google.protobuf.timestamp_pb2 import Timestamp

from rapport.v1 import events_pb2, journeys_pb2

_BAR_HEIGHT = 22
_LABEL_WIDTH = 220
_CHART_WIDTH = 640
_COLOURS = ("#2f6db5", "#e07b39", "#4f9d69", "#c44e52", "#8172b2", "#937860", "#da8bc3", "#8c8c8c")
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 72rem; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5rem 0 1rem; } td, th { padding: .25rem .6rem; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
.tiles { display: flex; flex-wrap: wrap; gap: .75rem; } .tile { border: 1px solid #ddd; padding: .5rem 1rem; }
.tile b { display: block; font-size: 1.4rem; } svg text { font-size: 12px; }
"""


def channel_name(value: int) -> str:
    if not value:
        return "-"
    return events_pb2.Channel.Name(value).removeprefix("CHANNEL_").lower().replace("_", " ")  # type: ignore[arg-type]


def path_text(path: journeys_pb2.ChannelPath) -> str:
    return " → ".join(channel_name(c) for c in path.channels)


def when(ts: Timestamp) -> str:
    return ts.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M UTC")


def percent(rate: float) -> str:
    return f"{rate * 100:.1f}%"


def bar_chart(title: str, rows: Sequence[tuple[str, float]], *, as_percent: bool = False) -> str:
    """Horizontal bars, longest first as given; values labelled at the bar's end."""
    if not rows:
        return f"<p><em>{escape(title)}: nothing in this range.</em></p>"
    top = max((v for _, v in rows), default=0.0) or 1.0
    height = _BAR_HEIGHT * len(rows) + 10
    width = _LABEL_WIDTH + _CHART_WIDTH + 80
    parts = [f'<svg role="img" aria-label="{escape(title)}" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">']  # fmt: skip
    for i, (label, value) in enumerate(rows):
        y = 5 + i * _BAR_HEIGHT
        length = max(1.0, _CHART_WIDTH * value / top)
        shown = percent(value) if as_percent else (f"{value:,.2f}" if value % 1 else f"{int(value):,}")
        parts.append(
            f'<text x="{_LABEL_WIDTH - 6}" y="{y + 15}" text-anchor="end">{escape(label[:40])}</text>'
            f'<rect x="{_LABEL_WIDTH}" y="{y + 3}" width="{length:.1f}" height="{_BAR_HEIGHT - 6}" '
            f'fill="{_COLOURS[0]}"><title>{escape(label)}: {shown}</title></rect>'
            f'<text x="{_LABEL_WIDTH + length + 6:.1f}" y="{y + 15}">{shown}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def stacked_bar(title: str, parts: Sequence[tuple[str, int]]) -> str:
    """One bar split into named parts (e.g. contained / handed off / abandoned), with a legend."""
    total = sum(n for _, n in parts)
    if not total:
        return f"<p><em>{escape(title)}: nothing in this range.</em></p>"
    out = [f'<svg role="img" aria-label="{escape(title)}" width="{_CHART_WIDTH + 20}" height="60" '
           f'xmlns="http://www.w3.org/2000/svg">']  # fmt: skip
    x = 0.0
    for i, (label, n) in enumerate(parts):
        w = _CHART_WIDTH * n / total
        colour = _COLOURS[i % len(_COLOURS)]
        out.append(
            f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="24" fill="{colour}">'
            f"<title>{escape(label)}: {n:,} ({percent(n / total)})</title></rect>"
        )
        out.append(
            f'<rect x="{i * 160}" y="36" width="12" height="12" fill="{colour}"/>'
            f'<text x="{i * 160 + 16}" y="47">{escape(label)} {percent(n / total)}</text>'
        )
        x += w
    out.append("</svg>")
    return "".join(out)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render(report: journeys_pb2.JourneyReport) -> str:
    t, b, rc, rq, e = report.totals, report.bot, report.repeat_contacts, report.repeat_questions, report.effort
    tiles = [
        ("interactions", f"{t.interactions:,}"),
        ("customers", f"{t.customers:,}"),
        ("contacts", f"{t.contacts:,}"),
        ("journeys", f"{t.journeys:,}"),
        ("bot containment", percent(b.containment_rate)),
        ("bot handoff", percent(b.handoff_rate)),
        ("repeat contacts (7 days)", percent(rc.rate)),
        ("repeat questions", percent(rq.rate)),
        ("mean effort", f"{e.mean_score:.1f}"),
    ]
    window = report.journey_window.ToTimedelta()
    sections = [
        f"<h1>Journey report: {escape(when(report.since))} to {escape(when(report.until))}</h1>",
        f"<p>Journeys last {escape(str(window))} from their first touch. Definitions: rapport.journeys.report.</p>",
        '<div class="tiles">'
        + "".join(f'<div class="tile">{escape(k)}<b>{escape(v)}</b></div>' for k, v in tiles)
        + "</div>",
        "<h2>Most frequent questions (intents)</h2>",
        bar_chart("intents", [(i.intent, float(i.interactions)) for i in report.top_intents]),
        table(
            ["intent", "interactions", "customers"],
            [(i.intent, i.interactions, i.customers) for i in report.top_intents],
        ),
        "<h2>Issues that hurt most</h2>",
        "<p>impact = contacts x (unresolved rate + repeat rate + mean effort / 100) / 3</p>",
        bar_chart("issue impact", [(i.topic, i.impact) for i in report.issues]),
        table(
            ["topic", "contacts", "customers", "unresolved", "repeats", "mean effort", "impact"],
            [
                (
                    i.topic,
                    i.contacts,
                    i.customers,
                    percent(i.unresolved_rate),
                    percent(i.repeat_rate),
                    f"{i.mean_effort:.1f}",
                    f"{i.impact:.2f}",
                )
                for i in report.issues
            ],
        ),
        "<h2>Where self-service sends customers to a person</h2>",
        bar_chart(
            "escalation rate",
            [(f"{p.kind} {p.title or p.id}", p.escalation_rate) for p in report.exit_points],
            as_percent=True,
        ),
        table(
            ["article or flow", "attempts", "failed", "escalations", "escalation rate", "left most at"],
            [
                (
                    f"{p.kind} {p.id}" + (f" ({p.title})" if p.title else ""),
                    p.attempts,
                    p.failed,
                    p.escalations,
                    percent(p.escalation_rate),
                    p.top_exit_step or "-",
                )
                for p in report.exit_points
            ],
        ),
        "<h2>Channel mix</h2>",
        bar_chart("touches by channel", [(channel_name(c.channel), float(c.touches)) for c in report.channel_mix]),
        "<h2>Channel-switch paths</h2>",
        bar_chart("journeys by path", [(path_text(p), float(p.journeys)) for p in report.channel_paths]),
        "<h2>Bot containment</h2>",
        stacked_bar(
            "bot journeys", [("contained", b.contained), ("handed off", b.handed_off), ("abandoned", b.abandoned)]
        ),
        f"<p>{b.journeys:,} journeys used the bot.</p>",
        "<h2>Repeats</h2>",
        table(
            ["measure", "count", "of", "rate"],
            [
                ("contacts back within 7 days", rc.repeats, rc.contacts, percent(rc.rate)),
                ("facts given again within 7 days", rq.given_again, rq.facts_given, percent(rq.rate)),
            ],
        ),
        bar_chart("facts given again", [(k.key, float(k.given_again)) for k in rq.top_keys]),
        "<h2>Customer effort</h2>",
        stacked_bar("customers by effort", [("low", e.low), ("medium", e.medium), ("high", e.high)]),
    ]
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Journey report {escape(when(report.since))}</title><style>{_STYLE}</style></head>"
        "<body>" + "\n".join(sections) + "</body></html>\n"
    )
