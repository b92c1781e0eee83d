"""How an event becomes the properties of an Interaction node."""

import json

import pytest

from rapport.events import validate
from rapport.v1 import events_pb2 as ev
from rapport_profile.domain.interactions import interaction_record, mask, short_name
from rapport_profile.synthetic import identifier, interaction

pytestmark = pytest.mark.unit


def test_enum_values_become_short_lower_case_names():
    assert short_name(ev.Channel.DESCRIPTOR, ev.CHANNEL_IN_STORE) == "in_store"
    assert short_name(ev.InteractionKind.DESCRIPTOR, ev.INTERACTION_KIND_ARTICLE_FEEDBACK) == "article_feedback"
    assert short_name(ev.ArticleAnswer.DESCRIPTOR, ev.ARTICLE_ANSWER_NO) == "no"
    assert short_name(ev.Outcome.DESCRIPTOR, ev.OUTCOME_UNSPECIFIED) is None


def test_sensitive_facts_are_masked_and_others_kept():
    event = interaction(
        "e1",
        "email:ana@example.com",
        facts=[
            ev.Fact(key="card", value="4111 1111 1111 1234", sensitive=True),
            ev.Fact(key="pin", value="0000", sensitive=True),
            ev.Fact(key="order", value="A-1001"),
        ],
    )
    facts = json.loads(interaction_record(event, validate(event)).properties["facts"])
    assert facts == [
        {"key": "card", "value": "****1234", "sensitive": True},
        {"key": "pin", "value": "****", "sensitive": True},
        {"key": "order", "value": "A-1001", "sensitive": False},
    ]
    assert "4111" not in json.dumps(facts)


def test_mask_hides_short_secrets_entirely():
    assert mask("hunter2") == "****"


def test_empty_fields_are_left_out_and_identity_keys_kept():
    event = interaction(
        "e1",
        "email:Ana@Example.com",
        identifier("phone:07700 900123", verified=False),
        channel=ev.CHANNEL_VOICE,
        kind=ev.INTERACTION_KIND_CALL,
        outcome=ev.OUTCOME_RESOLVED,
        csat=5,
    )
    rec = interaction_record(event, validate(event))
    assert rec.properties["channel"] == "voice"
    assert rec.properties["kind"] == "call"
    assert rec.properties["outcome"] == "resolved"
    assert rec.properties["identity_keys"] == ["email:ana@example.com", "phone:+447700900123"]
    assert "summary" not in rec.properties and "agent_id" not in rec.properties
    assert rec.resolved and rec.csat == 5


def test_the_verified_sighting_wins_when_an_identifier_repeats():
    event = interaction("e1", identifier("email:a@example.com", verified=False), identifier("email:A@example.com"))
    rec = interaction_record(event, validate(event))
    assert len(rec.identities) == 1 and rec.identities[0].identifier.verified


def test_case_device_and_traits_are_carried():
    event = interaction(
        "e1",
        "crm:C-1",
        case=ev.CaseRef(id="K-1", status=ev.CASE_STATUS_OPEN, title="No internet", proactive=True),
        device=ev.Device(id="D-1", model="HB-5"),
        traits=ev.CustomerTraits(language="fr", tier="gold"),
        self_service=ev.SelfService(article_id="kb-1", answer=ev.ARTICLE_ANSWER_YES),
    )
    rec = interaction_record(event, validate(event))
    assert rec.case is not None and rec.case.status == "open" and rec.case.proactive is True
    assert rec.device is not None and rec.device.model == "HB-5" and rec.device.firmware is None
    assert rec.traits == {"language": "fr", "tier": "gold"}
    assert rec.properties["case_id"] == "K-1" and rec.properties["answer"] == "yes"
