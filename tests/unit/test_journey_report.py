"""The journey report's rules (rapport.journeys.report) and the interaction digest."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rapport.effort import DAY, HOUR, Touchpoint, customer_effort
from rapport.journeys import digest
from rapport.journeys.report import JourneyReport, ReportQuery, capped_path, customer_effort_score, journey_report
from rapport.journeys.scan import RangeScan, scan_report

SINCE = 1_800_000_000 * 1_000_000_000
UNTIL = SINCE + 7 * DAY
QUERY = ReportQuery(SINCE, UNTIL)


def t(hours: float, channel: str, kind: str, **fields: object) -> Touchpoint:
    return Touchpoint(SINCE + int(hours * HOUR), channel, kind, **{"direction": "inbound", **fields})  # type: ignore[arg-type]


def stored(point: Touchpoint, title: str | None = None) -> str:
    """The digest the worker would store for this touchpoint (facts given as "key=value")."""
    properties = {**point._asdict(), "article_title": title}
    return digest.encode(properties, [tuple(f.split("=", 1)) for f in point.facts])  # type: ignore[misc]


def both(customers: list[list[Touchpoint]], query: ReportQuery, titles: dict[str, str]) -> list[JourneyReport]:
    """The reference report over the touchpoints as the digests give them back, and the scan's."""
    scan = RangeScan()
    decoded: list[list[Touchpoint]] = []
    for number, points in enumerate(customers):
        texts = [stored(p, titles.get(p.article_id or "")) for p in points]
        scan.extend([number] * len(points), [p.at for p in points], texts)
        decoded.append([d[0] for d in (digest.decode(p.at, text) for p, text in zip(points, texts, strict=True)) if d])
    return [journey_report(decoded, query, titles), scan_report(scan, query)]


def test_a_small_week_gives_the_expected_counts_and_rankings():
    ana = [
        # Before the range: only history for the repeats.
        t(-24, "voice", "call", topic="billing", outcome="resolved", facts=("order=1",)),
        t(1, "web", "article_view", article_id="kb-1", topic="billing"),
        t(1.1, "web", "article_feedback", article_id="kb-1", answer="no"),
        t(2, "bot", "bot_turn", intent="refund", flow_id="refunds"),
        t(2.1, "bot", "bot_exit", flow_id="refunds", step="amount"),
        t(3, "voice", "call", topic="billing", outcome="unresolved", facts=("order=1",)),
    ]
    bo = [
        t(10, "bot", "bot_turn", intent="refund", flow_id="refunds"),
        t(10.2, "bot", "bot_turn", intent="track", flow_id="refunds"),
        # Two days later: a new journey, chat only.
        t(60, "chat", "message", topic="delivery", outcome="resolved", contact_id="c9"),
        t(61, "email", "notification", direction="outbound"),
    ]
    reference, scanned = both([ana, bo], QUERY, {"kb-1": "Refunds"})
    assert scanned == reference
    report = scanned
    totals = report.totals
    assert (totals.interactions, totals.customers, totals.touches, totals.contacts, totals.journeys) == (9, 2, 8, 2, 3)
    assert [(i.intent, i.interactions, i.customers) for i in report.top_intents] == [("refund", 2, 2), ("track", 1, 1)]
    assert [(c.channel, c.touches, c.customers) for c in report.channel_mix] == [
        ("bot", 4, 2),
        ("web", 2, 1),
        ("chat", 1, 1),
        ("voice", 1, 1),
    ]
    assert [(p.channels, p.journeys) for p in report.channel_paths] == [(("web", "bot", "voice"), 1)]
    assert (report.bot.journeys, report.bot.handed_off, report.bot.abandoned, report.bot.contained) == (2, 1, 0, 1)
    exits = {(p.kind, p.id): p for p in report.exit_points}
    assert (exits["article", "kb-1"].attempts, exits["article", "kb-1"].escalations) == (1, 1)
    assert exits["article", "kb-1"].title == "Refunds"
    refunds = exits["flow", "refunds"]
    assert (refunds.attempts, refunds.failed, refunds.escalations, refunds.top_exit_step) == (2, 1, 1, "amount")
    assert [p.id for p in report.exit_points] == ["kb-1", "refunds"]  # same escalations, higher rate first
    # Ana's call repeats her billing call of the day before; the order number was given again.
    assert (report.repeat_contacts.contacts, report.repeat_contacts.repeats) == (2, 1)
    assert (report.repeat_questions.facts_given, report.repeat_questions.given_again) == (1, 1)
    assert report.repeat_questions.top_keys == (("order", 1),)
    billing, delivery = report.issues
    assert (billing.topic, billing.contacts, billing.unresolved_rate, billing.repeat_rate) == ("billing", 1, 1.0, 1.0)
    # Ana: bot turn 3 + failed 2 x 10 + web -> bot -> voice 2 x 8 = 39
    assert billing.mean_effort == 39
    assert billing.impact == (1.0 + 1.0 + 0.39) / 3
    # Bo: two bot turns 2 x 3 + bot -> chat 8 = 14
    assert (delivery.topic, delivery.impact) == ("delivery", 1 * (0 + 0 + 14 / 100) / 3)
    assert (report.effort.customers, report.effort.low, report.effort.medium, report.effort.mean_score) == (
        2,
        1,
        1,
        (39 + 14) / 2,
    )


def test_rows_are_bounded_and_long_paths_capped():
    many = [[t(i, "chat", "message", intent=f"intent-{i:03d}")] for i in range(150)]
    for report in both(many, ReportQuery(SINCE, UNTIL, max_rows=100), {}):
        assert len(report.top_intents) == 100
    assert capped_path([str(n) for n in range(12)]) == ("0", "1", "2", "3", "4", "5", "6", "11")


_touchpoints = st.lists(
    st.builds(
        Touchpoint,
        at=st.integers(SINCE, UNTIL - 1),
        channel=st.sampled_from(["web", "bot", "chat", "voice", None]),
        kind=st.sampled_from(["call", "message", "bot_turn", "bot_exit", "article_feedback", "notification"]),
        direction=st.sampled_from(["inbound", "outbound", None]),
        topic=st.sampled_from(["billing", "tv", None]),
        answer=st.sampled_from(["no", "yes", None]),
        contact_id=st.sampled_from(["c1", "c2", None]),
        facts=st.lists(st.sampled_from(["a=1", "b=2"]), max_size=2).map(tuple),
    ),
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(_touchpoints)
def test_the_report_scores_effort_like_the_shared_formula(touchpoints: list[Touchpoint]):
    ordered = sorted(touchpoints, key=lambda x: (x.at, x.channel or ""))
    expected = customer_effort(touchpoints, UNTIL - 1, UNTIL - 1 - SINCE).score
    assert customer_effort_score(ordered) == expected


_report_points = st.builds(
    Touchpoint,
    at=st.integers(SINCE - 8 * DAY, UNTIL + DAY),
    channel=st.sampled_from(["web", "bot", "chat", "voice", "email"]),
    kind=st.sampled_from(["call", "message", "bot_turn", "bot_exit", "article_view", "article_feedback",
                         "contact_completed", "notification"]),
    direction=st.sampled_from(["inbound", "outbound", None]),
    topic=st.sampled_from(["billing", "tv", None]),
    intent=st.sampled_from(["refund", "track", None]),
    outcome=st.sampled_from(["resolved", "unresolved", None]),
    answer=st.sampled_from(["no", "yes", None]),
    article_id=st.sampled_from(["kb-1", "kb-2", None]),
    flow_id=st.sampled_from(["orders", None]),
    step=st.sampled_from(["start", "end", None]),
    contact_id=st.sampled_from(["c1", "c2", None]),
    facts=st.lists(st.sampled_from(["order=1", "pin=2"]), max_size=2, unique=True).map(tuple),
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.lists(_report_points, max_size=12), max_size=6),
    st.sampled_from([HOUR, 24 * HOUR, 3 * DAY]),
    st.integers(1, 5),
)
def test_the_scan_computes_the_reference_report(customers: list[list[Touchpoint]], window: int, rows: int):
    reference, scanned = both(customers, ReportQuery(SINCE, UNTIL, max_rows=rows, journey_window=window), {"kb-1": "A"})
    assert scanned == reference


def test_a_digest_round_trips_and_unknown_formats_are_refused():
    properties = {"channel": "web", "kind": "article_feedback", "direction": "inbound", "article_id": "kb\x1f1",
                  "answer": "no", "article_title": "Where is my order?", "contact_id": "con_1"}  # fmt: skip
    text = digest.encode(properties, [("Order ", "A-1"), ("order", "a-1"), ("", "x")])
    assert len(text) <= 60
    decoded = digest.decode(SINCE, text)
    assert decoded is not None
    point, title = decoded
    assert point == Touchpoint(SINCE, "web", "article_feedback", "inbound", article_id="kb1", answer="no",
                               contact_id=digest.short_hash("con_1"),
                               facts=(digest.fact_token("order", "a-1"),))  # fmt: skip
    assert title == "Where is my order?"
    assert digest.decode(SINCE, "1" + text[1:]) is None
    # A chat message with a topic and an intent stays short enough to sit in the property record.
    short = digest.encode({"channel": "chat", "kind": "message", "direction": "inbound", "topic": "billing",
                           "intent": "pay_bill", "outcome": "resolved"}, [])  # fmt: skip
    assert len(short) <= 24
    assert digest.decode(SINCE, short) == (
        Touchpoint(SINCE, "chat", "message", "inbound", "billing", "pay_bill", "resolved"),
        None,
    )
