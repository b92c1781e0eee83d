"""The ProfileService's pure rules: requests, the 360° view from graph rows, sentiment, paging."""

from datetime import UTC, datetime

import pytest

from rapport.errors import InvalidArgument
from rapport.v1 import events_pb2, profile_pb2
from rapport_profile.api import candidate_pages, customer_view
from rapport_profile.api.candidate_pages import Cursor

pytestmark = pytest.mark.unit

CID = "cus_0123456789abcdef"
OTHER = "cus_fedcba9876543210"


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2025, 3, day, hour, tzinfo=UTC)


def view_row(**overrides):
    row: dict = {
        "id": CID,
        "merged_into": None,
        "attributes": {"language": "fr", "tier": "gold", "display_name": "Ana", "created_at": at(1)},
        "identities": [],
        "devices": [],
        "open_cases": [],
        "channels": [],
        "agents": [],
        "topics": [],
        "sentiments": [],
        "merges": [],
    }
    row.update(overrides)
    return row


# --- requests ---


def test_a_lookup_by_identifier_is_normalised_like_the_worker_does():
    request = profile_pb2.GetCustomerRequest(
        identifier=events_pb2.Identifier(kind=events_pb2.IDENTIFIER_KIND_EMAIL, value="  Ana@Example.COM ")
    )
    lookup, limits = customer_view.get_customer_request(request)
    assert lookup == customer_view.CustomerLookup(identity_key="email:ana@example.com")
    assert limits == customer_view.ViewLimits()


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (profile_pb2.GetCustomerRequest(), "lookup"),
        (profile_pb2.GetCustomerRequest(customer_id="ana"), "customer_id"),
        (profile_pb2.GetCustomerRequest(customer_id="cus_0123456789ABCDEF"), "customer_id"),
        (profile_pb2.GetCustomerRequest(identifier=events_pb2.Identifier(value="x")), "identifier.kind"),
        (
            profile_pb2.GetCustomerRequest(
                identifier=events_pb2.Identifier(kind=events_pb2.IDENTIFIER_KIND_PHONE, value="not a phone")
            ),
            "identifier.value",
        ),
        (
            profile_pb2.GetCustomerRequest(
                identifier=events_pb2.Identifier(kind=events_pb2.IDENTIFIER_KIND_SOCIAL_HANDLE, value="@ana")
            ),
            "identifier.platform",
        ),
        (profile_pb2.GetCustomerRequest(customer_id=CID, max_topics=-1), "max_topics"),
    ],
)
def test_a_malformed_request_names_the_field(request_, field):
    with pytest.raises(InvalidArgument) as raised:
        customer_view.get_customer_request(request_)
    assert raised.value.field == field
    assert str(raised.value).startswith(field + ": ")


def test_list_limits_default_and_are_capped():
    _, limits = customer_view.get_customer_request(
        profile_pb2.GetCustomerRequest(customer_id=CID, max_agents=1000, max_topics=3)
    )
    assert (limits.agents, limits.topics, limits.merges) == (customer_view.MAX_AGENTS, 3, customer_view.DEFAULT_MERGES)


# --- the view ---


def test_stored_short_names_map_back_to_contract_enums():
    assert customer_view.enum_value(events_pb2.Channel, "in_store") == events_pb2.CHANNEL_IN_STORE
    assert customer_view.enum_value(events_pb2.Outcome, "follow_up") == events_pb2.OUTCOME_FOLLOW_UP
    # A name a newer worker stores that this contract does not know yet degrades to unspecified.
    assert customer_view.enum_value(events_pb2.Channel, "hologram") == events_pb2.CHANNEL_UNSPECIFIED
    assert customer_view.enum_value(events_pb2.Outcome, None) == events_pb2.OUTCOME_UNSPECIFIED


def test_identities_come_back_strong_first_with_social_platform_split_out():
    identities = [
        {"key": "social:x/ana", "kind": "social", "value": "x/ana", "verified": None,
         "verification_method": None, "first_seen_at": at(2)},
        {"key": "phone:+447700900123", "kind": "phone", "value": "+447700900123", "verified": False,
         "verification_method": None, "first_seen_at": at(3)},
        {"key": "email:ana@example.com", "kind": "email", "value": "ana@example.com", "verified": True,
         "verification_method": "otp", "first_seen_at": at(1)},
    ]  # fmt: skip
    view = customer_view.customer_view(view_row(identities=identities))
    assert [i.key for i in view.identities] == ["email:ana@example.com", "phone:+447700900123", "social:x/ana"]
    email, phone, social = view.identities
    assert email.strength == profile_pb2.IDENTITY_STRENGTH_STRONG
    assert email.identifier.verified and email.identifier.verification_method == "otp"
    assert phone.strength == profile_pb2.IDENTITY_STRENGTH_WEAK
    assert social.identifier.kind == events_pb2.IDENTIFIER_KIND_SOCIAL_HANDLE
    assert (social.identifier.platform, social.identifier.value) == ("x", "ana")
    assert email.first_seen_at.ToDatetime(tzinfo=UTC) == at(1)


def test_contact_totals_and_span_come_from_the_channels():
    channels = [
        {"channel": "chat", "count": 3, "first_at": at(2), "last_at": at(9)},
        {"channel": "voice", "count": 2, "first_at": at(1), "last_at": at(5)},
    ]
    view = customer_view.customer_view(view_row(channels=channels))
    assert view.interaction_count == 5
    assert view.first_contact_at.ToDatetime(tzinfo=UTC) == at(1)
    assert view.last_contact_at.ToDatetime(tzinfo=UTC) == at(9)
    assert [(c.channel, c.interaction_count) for c in view.channels] == [
        (events_pb2.CHANNEL_CHAT, 3),
        (events_pb2.CHANNEL_VOICE, 2),
    ]


def test_a_customer_without_interactions_has_no_contact_times():
    view = customer_view.customer_view(view_row())
    assert view.interaction_count == 0
    assert not view.HasField("first_contact_at") and not view.HasField("last_contact_at")
    assert view.attributes.language == "fr" and view.attributes.segment == ""
    assert view.created_at.ToDatetime(tzinfo=UTC) == at(1)


def test_agents_cases_and_merges_carry_their_details():
    agents = [
        {"agent_id": "a1", "count": 3, "resolved": 1, "average_csat": 4.5, "last_at": at(9),
         "last_channel": "voice", "last_outcome": "escalated", "last_outcome_at": at(8)},
        {"agent_id": "a2", "count": 1, "resolved": 0, "average_csat": None, "last_at": at(3),
         "last_channel": "chat", "last_outcome": None, "last_outcome_at": None},
    ]  # fmt: skip
    cases = [{"id": "case-1", "status": "pending", "title": "Router", "owner_agent_id": "a1", "proactive": True,
              "opened_at": at(1), "updated_at": at(4)}]  # fmt: skip
    merges = [{"id": "mrg_1", "at": at(6), "event_id": "e9", "survivor_id": CID, "absorbed_id": OTHER,
               "linking_keys": ["email:ana@example.com"], "absorbed_identity_keys": ["phone:+447700900123"],
               "absorbed_event_count": 4}]  # fmt: skip
    view = customer_view.customer_view(view_row(agents=agents, open_cases=cases, merges=merges))
    first, second = view.recent_agents
    assert first.last_outcome == events_pb2.OUTCOME_ESCALATED and first.average_csat == 4.5
    assert not second.HasField("average_csat") and second.last_outcome == events_pb2.OUTCOME_UNSPECIFIED
    (case,) = view.open_cases
    assert case.case.status == events_pb2.CASE_STATUS_PENDING and case.case.proactive
    (merge,) = view.merges
    assert merge.absorbed_customer_id == OTHER and merge.absorbed_interaction_count == 4
    assert list(merge.linking_identity_keys) == ["email:ana@example.com"]


# --- sentiment ---


@pytest.mark.parametrize(
    ("newest_first", "direction"),
    [
        ([0.6] * 5 + [-0.4] * 5, profile_pb2.SENTIMENT_DIRECTION_IMPROVING),
        ([-0.5] * 5 + [0.2] * 3, profile_pb2.SENTIMENT_DIRECTION_DECLINING),
        ([0.1] * 5 + [0.0] * 5, profile_pb2.SENTIMENT_DIRECTION_STEADY),
        ([0.9, 0.9], profile_pb2.SENTIMENT_DIRECTION_INSUFFICIENT_DATA),
        ([], profile_pb2.SENTIMENT_DIRECTION_INSUFFICIENT_DATA),
    ],
)
def test_sentiment_direction_compares_recent_with_earlier(newest_first, direction):
    assert customer_view.sentiment_trend(newest_first).direction == direction


def test_sentiment_averages_use_the_latest_scores_as_recent():
    trend = customer_view.sentiment_trend([1.0, 0.0, 0.5, 0.5, 0.5, -1.0, 0.0], recent=5, earlier=20)
    assert (trend.recent_count, trend.earlier_count) == (5, 2)
    assert trend.recent_average == pytest.approx(0.5)
    assert trend.earlier_average == pytest.approx(-0.5)
    assert not customer_view.sentiment_trend([]).HasField("recent_average")


# --- merge candidate pages ---


def candidate(a, b, *keys):
    return {"customer_id": a, "other_id": b, "display_name": None, "other_display_name": "Bo",
            "keys": [list(keys), ["device:d1"]], "linked_at": at(2)}  # fmt: skip


def test_a_page_token_round_trips_and_is_bound_to_its_filter():
    token = candidate_pages.encode_token(CID, Cursor(CID, OTHER))
    assert candidate_pages.decode_token(token, CID) == Cursor(CID, OTHER)
    with pytest.raises(InvalidArgument, match=r"^page_token: "):
        candidate_pages.decode_token(token, None)
    for garbage in ["%%%", "bm90IGpzb24", candidate_pages.encode_token(None, Cursor())[:-3] + "x" * 600]:
        with pytest.raises(InvalidArgument, match=r"^page_token: "):
            candidate_pages.decode_token(garbage, None)


def test_a_full_page_has_a_next_token_and_the_last_page_none():
    query = candidate_pages.candidate_query(profile_pb2.ListMergeCandidatesRequest(page_size=2))
    rows = [candidate("cus_a", "cus_b", "cookie:z"), candidate("cus_a", "cus_c"), candidate("cus_b", "cus_c")]
    page = candidate_pages.candidate_page(query, rows)
    assert [(c.customer_id, c.other_customer_id) for c in page.candidates] == [("cus_a", "cus_b"), ("cus_a", "cus_c")]
    assert list(page.candidates[0].shared_identity_keys) == ["cookie:z", "device:d1"]
    assert candidate_pages.decode_token(page.next_page_token, None) == Cursor("cus_a", "cus_c")
    assert candidate_pages.candidate_page(query, rows[:2]).next_page_token == ""


def test_candidate_requests_are_checked():
    with pytest.raises(InvalidArgument, match=r"^page_size: "):
        candidate_pages.candidate_query(profile_pb2.ListMergeCandidatesRequest(page_size=-1))
    with pytest.raises(InvalidArgument, match=r"^customer_id: "):
        candidate_pages.candidate_query(profile_pb2.ListMergeCandidatesRequest(customer_id="bob"))
    query = candidate_pages.candidate_query(profile_pb2.ListMergeCandidatesRequest(page_size=10_000))
    assert query.page_size == candidate_pages.MAX_PAGE_SIZE
