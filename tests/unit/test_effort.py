"""The customer-effort formula (rapport.effort): each component, its cap, the window, the levels."""

from __future__ import annotations

import pytest

from rapport import effort as e
from rapport.effort import DAY, HOUR, Touchpoint, customer_effort, fact_key

END = 1_800_000_000 * e.NANOS
MINUTE = 60 * e.NANOS


def at(hours_before_end: float) -> int:
    return END - int(hours_before_end * HOUR)


def points(result: e.Effort) -> dict[str, tuple[int, int]]:
    return {c.name: (c.count, c.points) for c in result.components}


def test_nothing_in_the_window_is_effortless():
    result = customer_effort([], END)
    assert (result.score, result.level, result.reasons) == (0, "low", ())
    assert [c.name for c in result.components] == [name for name, _, _ in e.COMPONENTS]
    assert (result.window_start, result.window_end) == (END - 7 * DAY, END)


def test_each_component_counts_and_scores_as_documented():
    journey = [
        Touchpoint(at(50), "web", "article_view", "inbound", article_id="kb-1"),
        Touchpoint(at(49.9), "web", "article_feedback", "inbound", answer="no", article_id="kb-1"),
        Touchpoint(at(49), "bot", "bot_turn", "inbound", intent="refund"),
        Touchpoint(at(48.9), "bot", "bot_turn", "inbound", intent="refund"),
        Touchpoint(at(48.8), "bot", "bot_exit", "inbound"),
        Touchpoint(at(48), "chat", "message", "inbound", topic="billing", facts=(fact_key("order", "A-1"),)),
        # The same chat five minutes later is the same contact.
        Touchpoint(at(47.9), "chat", "message", "inbound", topic="billing"),
        Touchpoint(at(2), "voice", "call", "inbound", topic="billing", facts=(fact_key("Order ", " a-1"),)),
        # Brand-side and bookkeeping interactions are not the customer's doing.
        Touchpoint(at(1), "email", "notification", "outbound", facts=(fact_key("order", "A-1"),)),
        Touchpoint(at(1), "device", "device_alert", "inbound"),
    ]
    result = customer_effort(journey, END)
    assert points(result) == {
        "bot_turns": (2, 6),
        "failed_self_service": (2, 20),
        "channel_switches": (3, 24),  # web -> bot -> chat -> voice
        "repeat_contacts": (1, 12),  # billing by chat, then by voice
        "repeated_facts": (1, 8),  # the order number, given again on the call
    }
    assert result.score == 70
    assert result.level == "high"
    assert "switched channel 3 times (web → bot → chat → voice)" in result.reasons
    assert "1 repeat contact about billing" in result.reasons
    assert "gave order again" in result.reasons
    assert "1 article answered No, left the bot 1 time" in result.reasons


def test_components_are_capped_and_the_score_at_most_100():
    many = [Touchpoint(at(100 - i), "bot", "bot_turn", "inbound") for i in range(20)]
    many += [Touchpoint(at(60 - i), "web", "article_feedback", "inbound", answer="no") for i in range(5)]
    many += [Touchpoint(at(40 - i), ("voice", "chat")[i % 2], "call", "inbound", topic="tv") for i in range(8)]
    many += [Touchpoint(at(20 - i), "email", "message", "inbound", facts=("pin=****",)) for i in range(6)]
    result = customer_effort(many, END)
    assert points(result)["bot_turns"] == (20, 15)
    assert points(result)["failed_self_service"] == (5, 30)
    assert points(result)["repeat_contacts"] == (7, 36)
    assert result.score == 100


def test_only_the_window_counts():
    old = Touchpoint(END - 7 * DAY - 1, "voice", "call", "inbound", topic="billing")
    edge = Touchpoint(END - 7 * DAY, "voice", "call", "inbound", topic="billing")
    later = Touchpoint(END + 1, "voice", "call", "inbound", topic="billing")
    now = Touchpoint(END, "voice", "call", "inbound", topic="billing")
    assert points(customer_effort([old, edge, now, later], END))["repeat_contacts"] == (1, 12)
    assert points(customer_effort([old, edge, now], END, window=DAY))["repeat_contacts"] == (0, 0)


def test_contacts_group_by_contact_id_and_by_gap_on_a_channel():
    same_contact = [
        Touchpoint(at(10), "voice", "call", "inbound", topic="tv", contact_id="con_1"),
        Touchpoint(at(8), "voice", "contact_completed", "inbound", topic="tv", contact_id="con_1"),
    ]
    assert points(customer_effort(same_contact, END))["repeat_contacts"] == (0, 0)
    apart = [
        Touchpoint(at(10), "chat", "message", "inbound", topic="tv"),
        Touchpoint(at(10) + 31 * MINUTE, "chat", "message", "inbound", topic="tv"),
    ]
    assert points(customer_effort(apart, END))["repeat_contacts"] == (1, 12)
    # Different topics are not repeats; contacts without a topic never are.
    mixed = [
        Touchpoint(at(10), "voice", "call", "inbound", topic="tv"),
        Touchpoint(at(5), "voice", "call", "inbound", topic="billing"),
        Touchpoint(at(3), "voice", "call", "inbound"),
        Touchpoint(at(1), "voice", "call", "inbound"),
    ]
    assert points(customer_effort(mixed, END))["repeat_contacts"] == (0, 0)


def test_order_of_input_and_ties_do_not_change_the_score():
    touches = [
        Touchpoint(at(3), "web", "page_view", "inbound"),
        Touchpoint(at(2), "chat", "message", "inbound"),
        Touchpoint(at(2), "voice", "call", "inbound"),
    ]
    forward = customer_effort(touches, END)
    backward = customer_effort(list(reversed(touches)), END)
    assert forward == backward
    assert points(forward)["channel_switches"] == (2, 16)


def test_a_fact_repeated_within_one_interaction_counts_once():
    result = customer_effort([Touchpoint(at(1), "chat", "message", "inbound", facts=("a=1", "a=1"))], END)
    assert points(result)["repeated_facts"] == (0, 0)
    assert e.facts_from_json([{"key": "Order", "value": "X 1"}, {"key": "order", "value": "x  1"}, "junk"]) == (
        "order=x 1",
    )


@pytest.mark.parametrize(("score", "level"), [(0, "low"), (29, "low"), (30, "medium"), (59, "medium"), (60, "high")])
def test_levels(score: int, level: str):
    assert e.level_of(score) == level


def test_window_from_env():
    assert e.window_from_env({}) == 7 * DAY
    assert e.window_from_env({e.WINDOW_ENV: "1.5"}) == int(1.5 * DAY)
    for bad in ("0", "-1", "93", "soon"):
        with pytest.raises(ValueError, match=e.WINDOW_ENV):
            e.window_from_env({e.WINDOW_ENV: bad})
