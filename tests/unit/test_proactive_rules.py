"""The rules for proactive device cases and self-service escalations (no I/O)."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from rapport.events import validate
from rapport.v1 import events_pb2 as ev
from rapport_profile.domain import proactive as rules
from rapport_profile.domain.interactions import InteractionRecord, interaction_record
from rapport_profile.proactive_config import proactive_settings
from rapport_profile.synthetic import interaction

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SETTINGS = rules.ProactiveSettings().checked()


def record(event: ev.InteractionEvent) -> InteractionRecord:
    return interaction_record(event, validate(event))


def alert(event_id: str, severity: int, minutes: float, *, fault: str = "E42", model: str = "HB 5", **kw: object):
    return record(
        interaction(
            event_id,
            "device:hub-1",
            at=NOW + timedelta(minutes=minutes),
            channel=ev.CHANNEL_DEVICE,
            kind=ev.INTERACTION_KIND_DEVICE_ALERT,
            device=ev.Device(id="hub-1", model=model),
            alert=ev.DeviceAlert(fault_code=fault, severity=severity, readings={"temp_c": 70 + minutes}),  # type: ignore[arg-type]
            **kw,
        )
    )


def state(severity: str, *, notified: bool = False, outreach: str | None = None) -> rules.CaseState:
    return rules.CaseState("pc_1", "cus_1", severity, notified, outreach)


def test_alerts_for_one_device_and_fault_make_one_group_with_the_highest_severity_and_latest_readings():
    records = [
        alert("a2", ev.ALERT_SEVERITY_CRITICAL, 1),
        alert("a1", ev.ALERT_SEVERITY_WARNING, 0),
        alert("a3", ev.ALERT_SEVERITY_INFO, 2),
        alert("b1", ev.ALERT_SEVERITY_INFO, 3, fault="E7"),
    ]
    groups = rules.alert_groups(records, {r.event_id: "cus_1" for r in records})
    assert [(g.fault_code, g.event_ids, g.severity) for g in groups] == [
        ("E42", ["a1", "a2", "a3"], "critical"),
        ("E7", ["b1"], "info"),
    ]
    e42 = groups[0]
    assert e42.opening_event_id == "a1" and json.loads(e42.readings or "{}") == {"temp_c": 72.0}
    assert e42.new_case_id == rules.case_id_for("hub-1", "E42", "a1") != rules.case_id_for("hub-1", "E42", "a2")
    assert e42.title == "HB 5 hub-1 reported E42"


def test_an_alert_naming_its_own_case_keeps_it():
    given = alert("a1", ev.ALERT_SEVERITY_WARNING, 0, case=ev.CaseRef(id="crm-case-9", proactive=True))
    (group,) = rules.alert_groups([given], {"a1": "cus_1"})
    assert group.new_case_id == "crm-case-9"


def test_info_notifies_once_and_warning_reaches_out_once_while_fresh():
    group = rules.alert_groups([alert("a1", ev.ALERT_SEVERITY_INFO, 0)], {"a1": "cus_1"})[0]
    assert rules.follow_up(state("info"), group, NOW, SETTINGS) == "notify"
    assert rules.follow_up(state("info", notified=True), group, NOW, SETTINGS) is None
    # An info case that escalates gets its outreach even though it was notified.
    assert rules.follow_up(state("warning", notified=True), group, NOW, SETTINGS) == "outreach"
    assert rules.follow_up(state("critical", outreach="po_1"), group, NOW, SETTINGS) is None
    # Someone is already talking to the customer, or the alert is history: nobody calls.
    assert rules.follow_up(state("critical"), group, NOW, SETTINGS, busy=True) is None
    assert rules.follow_up(state("critical"), group, NOW + timedelta(days=2), SETTINGS) is None


def test_the_outreach_contact_asks_for_the_device_or_fault_skill_and_carries_the_alert():
    group = rules.alert_groups([alert("a1", ev.ALERT_SEVERITY_CRITICAL, 0, topic="outage")], {"a1": "cus_1"})[0]
    props = rules.outreach_contact(group, state("critical"), NOW, SETTINGS)
    assert props["id"] == rules.outreach_contact_id("pc_1") and props["origin"] == rules.ORIGIN_OUTREACH
    assert props["skill_names"] == ["device:hb-5|fault:e42"] and props["skill_levels"] == [1]
    assert (props["channel"], props["priority"], props["case_id"], props["topic"]) == ("voice", 6, "pc_1", "outage")
    assert props["relaxation"] == SETTINGS.outreach_relaxation and "team" not in props
    attributes = json.loads(props["attributes"])
    assert attributes["proactive.fault_code"] == "E42" and attributes["proactive.device_model"] == "HB 5"
    assert props["created_ms"] == int(NOW.timestamp() * 1000)


def test_skill_names_follow_the_convention():
    assert rules.skill_name("device", " Hub 5 (EU) ") == "device:hub-5-eu"
    assert rules.outreach_skill(None, "E42/THERMAL") == "fault:e42-thermal"


def test_only_customer_contacts_without_a_case_may_join_a_proactive_case():
    def event(kind: int, **kw: object) -> InteractionRecord:
        return record(interaction("x", "email:a@example.com", at=NOW, kind=kind, **kw))  # type: ignore[arg-type]

    assert rules.may_join_case(event(ev.INTERACTION_KIND_CALL, direction=ev.DIRECTION_INBOUND))
    assert rules.may_join_case(event(ev.INTERACTION_KIND_BOT_TURN))
    assert not rules.may_join_case(event(ev.INTERACTION_KIND_CALL, case=ev.CaseRef(id="k1")))
    assert not rules.may_join_case(event(ev.INTERACTION_KIND_MESSAGE, direction=ev.DIRECTION_OUTBOUND))
    assert not rules.may_join_case(event(ev.INTERACTION_KIND_ARTICLE_VIEW))


def self_service(event_id: str, kind: int, minutes: float = 0, customer: str = "email:a@example.com", **kw: object):
    return record(interaction(event_id, customer, at=NOW + timedelta(minutes=minutes), kind=kind, **kw))  # type: ignore[arg-type]


def test_what_counts_as_a_failed_self_service_attempt():
    no = self_service(
        "f", ev.INTERACTION_KIND_ARTICLE_FEEDBACK, self_service=ev.SelfService(answer=ev.ARTICLE_ANSWER_NO)
    )
    yes = self_service(
        "y", ev.INTERACTION_KIND_ARTICLE_FEEDBACK, self_service=ev.SelfService(answer=ev.ARTICLE_ANSWER_YES)
    )
    gave_up = self_service("g", ev.INTERACTION_KIND_BOT_EXIT, self_service=ev.SelfService(exit_reason="Gave_Up"))
    done = self_service("d", ev.INTERACTION_KIND_BOT_EXIT, self_service=ev.SelfService(exit_reason="completed"))
    abandoned = self_service("a", ev.INTERACTION_KIND_PAGE_VIEW, self_service=ev.SelfService(exit_reason="abandoned"))
    assert [rules.escalation_reason(r, SETTINGS) for r in (no, yes, gave_up, done, abandoned)] == [
        rules.ARTICLE_NO,
        None,
        "gave_up",
        None,
        "abandoned",
    ]


def test_one_escalation_per_customer_per_batch_for_the_latest_fresh_failure():
    no = ev.SelfService(answer=ev.ARTICLE_ANSWER_NO)
    records = [
        self_service("f1", ev.INTERACTION_KIND_ARTICLE_FEEDBACK, 1, self_service=no),
        self_service("f2", ev.INTERACTION_KIND_BOT_EXIT, 2, self_service=ev.SelfService(exit_reason="no_match")),
        self_service("old", ev.INTERACTION_KIND_BOT_EXIT, -60 * 48, "email:b@example.com",
                     self_service=ev.SelfService(exit_reason="gave_up")),
    ]  # fmt: skip
    owners = {"f1": "cus_a", "f2": "cus_a", "old": "cus_b"}
    assert [(r.event_id, reason) for r, reason in rules.escalations(records, owners, NOW, SETTINGS)] == [
        ("f2", "no_match")
    ]


def test_the_escalation_carries_the_failed_intent_the_article_and_what_was_tried():
    failed = self_service(
        "fb",
        ev.INTERACTION_KIND_ARTICLE_FEEDBACK,
        topic="wifi",
        self_service=ev.SelfService(article_id="kb-7", article_title="Fix Wi-Fi", answer=ev.ARTICLE_ANSWER_NO),
    )
    path = [
        rules.SelfServiceStep("bot_turn", topic="wifi", intent="wifi_drops", flow_id="wifi", step="ask"),
        rules.SelfServiceStep("article_view", article_id="kb-7", article_title="Fix Wi-Fi"),
        rules.SelfServiceStep("article_feedback", topic="wifi", article_id="kb-7", answer="no"),
    ]
    props = rules.escalation_contact(failed, reason=rules.ARTICLE_NO, customer_id="cus_a", path=path, now=NOW,
                                     settings=SETTINGS)  # fmt: skip
    assert props["id"] == rules.escalation_contact_id("fb") and props["origin"] == rules.ORIGIN_ESCALATION
    assert (props["intent"], props["topic"], props["channel"], props["priority"]) == ("wifi_drops", "wifi", "chat", 2)
    attributes = json.loads(props["attributes"])
    assert attributes["escalation.article_title"] == "Fix Wi-Fi" and attributes["escalation.reason"] == "article_no"
    assert attributes["escalation.tried"] == 'article "Fix Wi-Fi" (answered no); bot: wifi_drops'
    assert "skill_names" not in props and "case_id" not in props


def test_tried_names_the_exit():
    path = [
        rules.SelfServiceStep("bot_turn", intent="reset_hub", flow_id="hub", step="lights"),
        rules.SelfServiceStep("bot_exit", flow_id="hub", step="lights", exit_reason="no_match"),
    ]
    assert rules.tried(path) == "bot: reset_hub; left at lights (no_match)"
    assert rules.tried([]) == "nothing recorded"


def test_settings_from_the_environment_are_checked_and_errors_name_the_variable():
    settings = proactive_settings(
        {
            "RAPPORT_PROFILE_OUTREACH_SEVERITY": "Critical",
            "RAPPORT_PROFILE_OUTREACH_TEAM": "proactive",
            "RAPPORT_PROFILE_OUTREACH_PRIORITY": "warning=1,critical=9",
            "RAPPORT_PROFILE_ATTACH_HOURS": "1.5",
            "RAPPORT_PROFILE_ESCALATION_EXITS": "gave_up",
        }
    )
    assert (settings.outreach_severity, settings.outreach_team, settings.attach_window) == (
        "critical",
        "proactive",
        timedelta(hours=1.5),
    )
    assert settings.outreach_priority == {"warning": 1, "critical": 9} and settings.escalating_exits == {"gave_up"}
    with pytest.raises(ValueError, match=r"RAPPORT_PROFILE_.*relaxation"):
        proactive_settings({"RAPPORT_PROFILE_OUTREACH_RELAXATION": "soon=any_skill"})
    with pytest.raises(ValueError, match="RAPPORT_PROFILE_OUTREACH_PRIORITY"):
        proactive_settings({"RAPPORT_PROFILE_OUTREACH_PRIORITY": "warning"})
    with pytest.raises(ValueError, match="channel"):
        proactive_settings({"RAPPORT_PROFILE_ESCALATION_CHANNEL": "pigeon"})
