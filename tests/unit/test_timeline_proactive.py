"""The handoff context of a proactive case and of an escalation from self-service (no I/O)."""

from __future__ import annotations

import pytest

from rapport_timeline.domain import handoff as h
from rapport_timeline.domain.model import NANOS, Case, CustomerSnapshot, Device, Interaction
from rapport_timeline.domain.model import Customer as CustomerModel

pytestmark = pytest.mark.unit

MIN = 60 * NANOS
DAY = 24 * 60 * MIN


def item(n: int, **fields: object) -> Interaction:
    return Interaction(event_id=f"e{n:04d}", customer_id="cus_1", at=n * MIN, **fields)  # type: ignore[arg-type]


def snapshot(recent: tuple[Interaction, ...], cases: tuple[Case, ...], devices: tuple[Device, ...] = ()):
    return CustomerSnapshot(CustomerModel("cus_1"), (), recent, cases, devices, ())


def proactive(case_id: str, alert_minute: int, **kw: object) -> Case:
    fields: dict[str, object] = {
        "status": "open",
        "title": "HB-5 hub-1 reported E42",
        "proactive": True,
        "opened_at": alert_minute * MIN,
        "updated_at": alert_minute * MIN,
        "device_id": "hub-1",
        "fault_code": "E42",
        "severity": "critical",
        "alerts": 2,
        "last_alert_at": alert_minute * MIN,
    }
    fields.update(kw)
    return Case(case_id, **fields)  # type: ignore[arg-type]


def test_a_recent_proactive_alert_leads_the_reason_and_the_open_cases():
    recent = (
        item(70, kind="call", channel="voice", topic="billing", case_id="pc_1"),
        item(12, kind="device_alert", channel="device", device_id="hub-1", fault_code="E42", severity="critical"),
    )
    cases = (Case("k-newer", "open", "Refund", updated_at=69 * MIN), proactive("pc_1", 12, owner_agent_id="a1"))
    ctx = h.handoff_context(snapshot(recent, cases, (Device("hub-1", "HB-5"),)), now=71 * MIN)
    assert [c.id for c in ctx.open_cases] == ["pc_1", "k-newer"]
    assert ctx.probable_reason.startswith(
        "Probably about the E42 fault on their HB-5: HB-5 reported E42 (critical), proactive case pc_1, owned by a1; "
    )
    # The device is named once, and the other open case still shows.
    assert ctx.probable_reason.count("reported E42") == 1 and "case k-newer" in ctx.probable_reason


def test_an_old_alert_does_not_lead():
    cases = (Case("k-newer", "open", "Refund", updated_at=69 * MIN), proactive("pc_1", 12))
    ctx = h.handoff_context(snapshot((item(70, kind="call", topic="billing"),), cases), now=12 * MIN + 40 * DAY)
    assert [c.id for c in ctx.open_cases] == ["k-newer", "pc_1"]
    assert ctx.probable_reason.startswith("Probably about billing")
    assert h.leading_alert(cases, 13 * MIN) is cases[1]


def test_the_self_service_path_lists_articles_bot_turns_and_the_exit_oldest_first():
    recent = (
        item(9, kind="message", channel="chat"),
        item(8, kind="bot_exit", channel="bot", flow_id="pw", step="verify", exit_reason="gave_up"),
        item(7, kind="bot_turn", channel="bot", intent="reset_password", flow_id="pw", step="ask"),
        item(6, kind="article_feedback", channel="web", article_id="kb-9", answer="no"),
        item(5, kind="article_view", channel="web", article_id="kb-9", article_title="Reset your password"),
    )
    ctx = h.handoff_context(snapshot(recent, ()), now=10 * MIN)
    assert [(p.kind, p.article_id or p.intent or p.exit_reason) for p in ctx.self_service.path] == [
        ("article_view", "kb-9"),
        ("article_feedback", "kb-9"),
        ("bot_turn", "reset_password"),
        ("bot_exit", "gave_up"),
    ]
    assert [(a.article_id, a.title, a.answer) for a in ctx.self_service.articles] == [
        ("kb-9", "Reset your password", "no")
    ]


def test_the_handoff_command_prints_the_path_in_order_and_the_alert_of_a_case():
    from rich.console import Console

    from rapport.cli.timeline import _handoff_text
    from rapport.v1 import events_pb2 as ev
    from rapport.v1 import timeline_pb2 as tl

    response = tl.GetHandoffContextResponse(
        probable_reason="Probably about the E42 fault on their HB-5: ...",
        self_service=tl.SelfServiceSummary(
            path=[
                tl.SelfServiceStep(
                    kind=ev.INTERACTION_KIND_ARTICLE_FEEDBACK,
                    article_id="kb-9",
                    article_title="Reset",
                    answer=ev.ARTICLE_ANSWER_NO,
                ),
                tl.SelfServiceStep(
                    kind=ev.INTERACTION_KIND_BOT_EXIT, flow_id="pw", step="verify", exit_reason="gave_up"
                ),
            ]
        ),
        open_cases=[
            tl.OpenCase(
                case_id="pc_1",
                status=ev.CASE_STATUS_OPEN,
                fault_code="E42",
                severity=ev.ALERT_SEVERITY_CRITICAL,
                alerts=2,
                proactive=True,
            )
        ],
    )
    console = Console(record=True, width=200)
    _handoff_text(response, console)
    text = console.export_text()
    assert text.index("article feedback Reset") < text.index("bot exit (pw at verify)")
    assert "gave_up" in text and "E42 critical x2" in text
