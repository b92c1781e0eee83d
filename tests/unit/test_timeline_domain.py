"""The timeline's pure rules: cursors, paging, the in-memory index, watch positions, handoff."""

from __future__ import annotations

import base64
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rapport import effort as effort_formula
from rapport.errors import InvalidArgument
from rapport_timeline.domain import handoff as h
from rapport_timeline.domain.cursor import (
    PageToken,
    Position,
    WatchToken,
    decode_page_token,
    decode_watch_token,
    encode_page_token,
    encode_watch_token,
)
from rapport_timeline.domain.index import TimelineIndex
from rapport_timeline.domain.model import NANOS, Case, CustomerSnapshot, Fact, Identity, Interaction
from rapport_timeline.domain.model import Customer as CustomerModel
from rapport_timeline.domain.paging import (
    InteractionFilter,
    Order,
    PageQuery,
    make_page,
    page_size,
    query_fingerprint,
    read_page_token,
)
from rapport_timeline.domain.watch import MAX_TRACKED, SKEW, WatchPosition, unseen_in_order

pytestmark = pytest.mark.unit
MIN = 60 * NANOS


def item(n: int, *, at: int | None = None, stored: int | None = None, **fields: object) -> Interaction:
    return Interaction(
        event_id=f"e{n:04d}",
        customer_id="cus_1",
        at=at if at is not None else n * MIN,
        ingested_at=stored,
        **fields,  # type: ignore[arg-type]
    )


# --- cursors -------------------------------------------------------------------------------


def test_page_tokens_round_trip_and_bind_to_order_and_filter():
    flt = InteractionFilter(channels=frozenset({"chat", "voice"}), topics=frozenset({"billing"}))
    token = PageToken("cus_1", query_fingerprint(Order.NEWEST_FIRST, flt), Position(123 * NANOS + 7, "e-1"))
    text = encode_page_token(token)
    assert decode_page_token(text) == token
    same = InteractionFilter(channels=frozenset({"voice", "chat"}), topics=frozenset({"billing"}))
    assert read_page_token(text, Order.NEWEST_FIRST, same) == token
    for order, other in [(Order.OLDEST_FIRST, flt), (Order.NEWEST_FIRST, InteractionFilter())]:
        with pytest.raises(InvalidArgument) as err:
            read_page_token(text, order, other)
        assert err.value.field == "page_token"


@pytest.mark.parametrize("bad", ["!!!", "AQ", "AgEAAAA", "AQEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "x" * 20000])
def test_malformed_page_tokens_name_the_field(bad: str):
    with pytest.raises(InvalidArgument) as err:
        decode_page_token(bad)
    assert err.value.field == "page_token"


def test_a_watch_cursor_is_not_a_page_token_and_vice_versa():
    watch = encode_watch_token(WatchToken("cus_1", 5, (("e1", 6),)))
    page = encode_page_token(PageToken("cus_1", b"\0" * 8, Position(1, "e1")))
    assert decode_watch_token(watch).delivered == (("e1", 6),)
    with pytest.raises(InvalidArgument):
        decode_page_token(watch)
    with pytest.raises(InvalidArgument) as err:
        decode_watch_token(page)
    assert err.value.field == "cursor"


@given(st.binary(max_size=200))
@settings(max_examples=200)
def test_no_byte_string_crashes_the_token_decoders(raw: bytes):
    text = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    for decode in (decode_page_token, decode_watch_token):
        with contextlib.suppress(InvalidArgument):
            decode(text)


# --- paging --------------------------------------------------------------------------------


def test_page_size_default_and_limits():
    assert page_size(0) == 50
    assert page_size(500) == 500
    for bad in (-1, 501):
        with pytest.raises(InvalidArgument) as err:
            page_size(bad)
        assert err.value.field == "page_size"


def test_filter_time_range_must_be_ordered():
    with pytest.raises(InvalidArgument) as err:
        InteractionFilter(since=10, until=10)
    assert err.value.field == "filter.until"


def test_make_page_issues_a_token_only_when_more_follow():
    query = PageQuery("cus_1", Order.NEWEST_FIRST, InteractionFilter(), 2)
    rows = [item(3), item(2), item(1)]
    page = make_page(query, rows)
    assert [i.event_id for i in page.interactions] == ["e0003", "e0002"]
    assert decode_page_token(page.next_page_token).after == Position(2 * MIN, "e0002")
    assert make_page(query, rows[:2]).next_page_token == ""


# --- the in-memory index agrees with a brute-force reading ---------------------------------

_channels = st.sampled_from(["chat", "voice", "email"])
_items = st.lists(
    st.builds(
        lambda n, minute, channel, topic: item(n, at=minute * MIN, channel=channel, topic=topic),
        st.integers(0, 9999),
        st.integers(0, 30),
        _channels,
        st.sampled_from(["billing", "delivery", None]),
    ),
    max_size=60,
    unique_by=lambda i: i.event_id,
)


@given(_items, st.sampled_from(list(Order)), st.integers(1, 7), st.sets(_channels, max_size=2), st.booleans())
@settings(max_examples=150, deadline=None)
def test_index_pages_visit_every_matching_interaction_once_in_order(items, order, size, channels, since):
    flt = InteractionFilter(channels=frozenset(channels), since=10 * MIN if since else None)
    index = TimelineIndex.build("cus_1", items[: len(items) // 2]).extended(items[len(items) // 2 :])
    expected = sorted((i for i in items if flt.matches(i)), key=lambda i: (i.at, i.event_id))
    if order is Order.NEWEST_FIRST:
        expected.reverse()
    seen: list[Interaction] = []
    after = None
    while True:
        query = PageQuery("cus_1", order, flt, size, after)
        page = make_page(query, index.page(query))
        seen.extend(page.interactions)
        if not page.next_page_token:
            break
        after = decode_page_token(page.next_page_token).after
    assert [i.event_id for i in seen] == [i.event_id for i in expected]


# --- watch positions -----------------------------------------------------------------------


def test_a_watch_position_resumes_exactly_after_what_was_delivered():
    position = WatchPosition("cus_1", 0)
    delivered = [item(n, stored=100 * NANOS + n) for n in range(5)]
    for i in delivered[:3]:
        position.mark(i)
    resumed = WatchPosition.from_token(decode_watch_token(position.cursor()))
    late = item(9, stored=100 * NANOS - 1)  # committed late, stored just before the others
    assert [i.event_id for i in unseen_in_order(resumed, [*delivered, late])] == ["e0009", "e0003", "e0004"]


def test_a_watch_position_stays_small_and_never_lists_what_its_floor_covers():
    position = WatchPosition("cus_1", 0)
    for n in range(MAX_TRACKED * 3):
        position.mark(item(n, stored=n * NANOS // 100))
    token = position.token()
    assert len(token.delivered) <= MAX_TRACKED
    assert all(stamp >= token.floor for _, stamp in token.delivered)
    assert position.seen(item(0, stored=0)) and position.seen(item(MAX_TRACKED * 3 - 1, stored=0))
    far = WatchPosition("cus_1", 0)
    far.mark(item(1, stored=0))
    far.mark(item(2, stored=SKEW * 2))
    assert far.token().delivered == (("e0002", SKEW * 2),) and far.floor == SKEW


# --- handoff -------------------------------------------------------------------------------


def test_masking_is_idempotent_and_catches_unflagged_card_numbers():
    assert h.mask("4111 1111 1111 1111") == "****1111"
    assert h.mask(h.mask("4111 1111 1111 1111")) == "****1111"
    assert h.mask("1234") == "****"
    assert h.looks_sensitive("note", "4111-1111-1111-1111")
    assert not h.looks_sensitive("order_number", "4111-1111-1111-1112")  # fails Luhn
    assert h.looks_sensitive("PIN", "1234")


def test_the_fact_ledger_deduplicates_and_masks():
    items = [
        item(1, channel="bot", facts=(Fact("order_number", "A-1"),)),
        item(2, channel="chat", facts=(Fact("Order_Number", " A-1 "), Fact("card", "4111111111111111"))),
        item(3, channel="voice", facts=(Fact("order_number", "A-2"),)),
    ]
    ledger = h.fact_ledger(items)
    assert [(f.key, f.value, f.times_given) for f in ledger] == [
        ("order_number", "A-2", 1),
        ("card", "****1111", 1),
        ("order_number", "A-1", 2),
    ]
    assert ledger[2].source_channel == "bot" and ledger[2].last_given_at == 2 * MIN


def test_the_journey_starts_after_the_last_resolved_contact():
    newest_first = [
        item(5, kind="bot_turn", channel="bot", intent="refund"),
        item(4, kind="article_feedback", article_id="kb", answer="no"),
        item(3, kind="call", agent_id="a1", outcome="resolved"),
        item(2, kind="bot_turn", intent="older"),
    ]
    journey, started = h.journey(newest_first)
    assert [i.event_id for i in journey] == ["e0005", "e0004"] and started == 4 * MIN


def test_handoff_effort_is_the_shared_formula_over_the_window_ending_now():
    calm = h.effort([item(1, kind="call", channel="voice")], now=2 * MIN)
    assert (calm.level, calm.score) == ("low", 0)
    hard = [
        item(7, kind="message", channel="chat", topic="tv", facts=(Fact("Order", "A-1"),)),
        item(6, kind="bot_exit", channel="bot", exit_reason="gave_up"),
        item(5, kind="article_feedback", channel="web", article_id="kb1", answer="no"),
        item(4, kind="call", channel="voice", topic="tv", contact_id="c2", facts=(Fact("order ", "a-1"),)),
        item(3, kind="message", channel="email", topic="tv", contact_id="c1"),
    ]
    result = h.effort(hard, now=10 * MIN)
    assert result == effort_formula.customer_effort([h.touchpoint(i) for i in hard], 10 * MIN)
    assert {c.name: c.count for c in result.components} == {
        "bot_turns": 0,
        "failed_self_service": 2,
        "channel_switches": 4,  # email -> voice -> web -> bot -> chat
        "repeat_contacts": 2,  # three contacts about tv
        "repeated_facts": 1,  # the order, once by phone and again in the chat
    }
    assert result.level == "high"
    # A five-minute window leaves out the first two: web -> bot -> chat.
    assert h.effort(hard, now=10 * MIN, window=5 * MIN).count("channel_switches") == 2


def test_sentiment_trend():
    worsening = [item(n, sentiment=s) for n, s in enumerate([0.6, 0.5, 0.1, -0.4])][::-1]
    assert h.sentiment(worsening).trend == "worsening"
    assert h.sentiment(worsening[:2]).trend == "unknown"
    assert h.sentiment([item(n, sentiment=0.1) for n in range(4)]).trend == "stable"


def test_the_handoff_context_names_the_probable_reason():
    snapshot = CustomerSnapshot(
        customer=CustomerModel("cus_1"),
        identities=(Identity("phone:+44", "phone", "+44", True, "otp"), Identity("cookie:x", "cookie", "x")),
        recent=(
            item(4, kind="bot_exit", channel="bot", flow_id="orders", step="refund", exit_reason="asked_for_agent"),
            item(3, kind="bot_turn", channel="bot", intent="track_order", topic="delivery"),
            item(2, kind="article_feedback", channel="web", article_id="kb-12", answer="no", topic="delivery"),
            item(1, kind="article_view", channel="web", article_id="kb-12", article_title="Where is my order?"),
        ),
        cases=(Case("k1", "open", "Late parcel"), Case("k0", "closed", "Old")),
        devices=(),
        agents=(),
    )
    ctx = h.handoff_context(snapshot, now=5 * MIN)
    assert ctx.verification.level == "verified" and ctx.verification.description == "phone verified by otp"
    assert [c.id for c in ctx.open_cases] == ["k1"]
    assert ctx.self_service.last_bot_intent == "track_order"
    assert ctx.self_service.exit is not None and ctx.self_service.exit.step == "refund"
    assert ctx.probable_reason.startswith("Probably about delivery: ")
    assert '"Where is my order?" did not help' in ctx.probable_reason
