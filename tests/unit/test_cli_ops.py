# ruff: noqa: E501
"""`rapport emit` and `rapport dlq`: parsing what the user typed, without Kafka."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from rapport.cli.ops import BadInput, build_event, dlq_entry, parse_identifier, parse_position
from rapport.cli.ops import register as register_ops
from rapport.v1 import events_pb2 as ev

pytestmark = pytest.mark.unit


def test_flags_make_a_valid_event_with_defaults():
    event = build_event(
        identifiers=["email:Ana@Example.com", "social:x/ana"], channel="chat", kind="message", topic="billing"
    )
    assert event.channel == ev.CHANNEL_CHAT and event.kind == ev.INTERACTION_KIND_MESSAGE
    assert [i.kind for i in event.identifiers] == [ev.IDENTIFIER_KIND_EMAIL, ev.IDENTIFIER_KIND_SOCIAL_HANDLE]
    assert event.identifiers[1].platform == "x" and event.identifiers[1].value == "ana"
    assert event.event_id and event.occurred_at.seconds > 0 and event.source == "rapport-cli"


def test_json_event_is_read_and_flags_override_it():
    text = json.dumps(
        {
            "eventId": "e-1",
            "occurredAt": "2025-01-06T09:00:00Z",
            "channel": "CHANNEL_EMAIL",
            "kind": "INTERACTION_KIND_MESSAGE",
            "identifiers": [{"kind": "IDENTIFIER_KIND_PHONE", "value": "+447700900123"}],
        }
    )
    event = build_event(event_json=text, topic="delivery", channel="voice", kind="call")
    assert event.event_id == "e-1" and event.topic == "delivery" and event.channel == ev.CHANNEL_VOICE
    assert event.occurred_at.ToJsonString() == "2025-01-06T09:00:00Z"


def test_json_from_a_file(tmp_path):
    path = tmp_path / "e.json"
    path.write_text(
        '{"channel": "CHANNEL_SMS", "kind": "INTERACTION_KIND_MESSAGE", "identifiers": [{"kind": "IDENTIFIER_KIND_CRM_ID", "value": "C-1"}]}'
    )
    assert build_event(event_json=f"@{path}").channel == ev.CHANNEL_SMS


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"channel": "chat", "kind": "message"}, "add --id"),
        ({"identifiers": ["email:a@example.com"], "channel": "pigeon", "kind": "message"}, "not one of"),
        ({"identifiers": ["fax:123"], "channel": "chat", "kind": "message"}, "unknown identifier kind"),
        ({"identifiers": ["email:not-an-email"], "channel": "chat", "kind": "message"}, "not an email"),
        ({"event_json": "{not json"}, "not an InteractionEvent"),
        ({"event_json": "@/nonexistent/file.json"}, "cannot read"),
        ({"identifiers": ["email:a@example.com"], "channel": "chat", "kind": "message", "at": "yesterday"}, "ISO 8601"),
    ],
)
def test_bad_input_says_what_to_fix(kwargs, says):
    with pytest.raises(BadInput, match=says):
        build_event(**kwargs)


def test_bare_email_or_phone_is_understood():
    assert parse_identifier("ana@example.com").kind == ev.IDENTIFIER_KIND_EMAIL
    assert parse_identifier("+447700900123").kind == ev.IDENTIFIER_KIND_PHONE


def test_positions():
    assert parse_position("3:120") == (3, 120)
    for bad in ("3", "a:1", "1:-2", ""):
        with pytest.raises(BadInput, match="PARTITION:OFFSET"):
            parse_position(bad)


def test_dlq_entry_reads_the_reason_headers_and_the_event_id():
    event = ev.InteractionEvent(event_id="e-9")
    headers = [
        ("traceparent", b"00-abc"),
        ("rapport.dlq.error", b"invalid"),
        ("rapport.dlq.field", b"identifiers[0].value"),
        ("rapport.dlq.reason", b"'x' is not an email address"),
        ("rapport.dlq.source.topic", b"rapport.interactions.v1"),
        ("rapport.dlq.source.partition", b"2"),
        ("rapport.dlq.source.offset", b"41"),
    ]
    entry = dlq_entry(0, 7, headers, event.SerializeToString())
    assert entry["position"] == "0:7" and entry["event_id"] == "e-9"
    assert entry["field"] == "identifiers[0].value" and entry["source"] == "rapport.interactions.v1/2:41"
    assert dlq_entry(0, 8, [], b"\xff\xff not protobuf")["event_id"] == ""


def test_exit_code_2_on_bad_input():
    app = typer.Typer()
    app.callback()(lambda: None)
    register_ops(app)
    runner = CliRunner()
    result = runner.invoke(app, ["emit", "--channel", "chat", "--kind", "message"])
    assert result.exit_code == 2 and "add --id" in result.output
    result = runner.invoke(app, ["dlq", "replay", "nope"])
    assert result.exit_code == 2 and "PARTITION:OFFSET" in result.output
