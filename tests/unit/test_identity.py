import pytest

from rapport.identity import (
    InvalidIdentifier,
    Strength,
    normalise,
    parse_identifier,
    partition_key,
)
from rapport.v1 import events_pb2 as ev

pytestmark = pytest.mark.unit


def ident(kind: int, value: str, **kw: object) -> ev.Identifier:
    return ev.Identifier(kind=kind, value=value, **kw)  # type: ignore[arg-type]


def test_email_is_lowercased_and_stripped_of_spaces():
    n = normalise(ident(ev.IDENTIFIER_KIND_EMAIL, "  Ana.Silva @Example.COM "))
    assert n.key == "email:ana.silva@example.com"


@pytest.mark.parametrize("raw", ["+44 7700 900123", "07700 900123", "(0)7700-900-123"])
def test_phone_numbers_become_e164(raw: str):
    assert normalise(ident(ev.IDENTIFIER_KIND_PHONE, raw)).value == "+447700900123"


def test_social_handle_carries_its_platform():
    n = normalise(ident(ev.IDENTIFIER_KIND_SOCIAL_HANDLE, "@AnaS", platform="X"))
    assert n.key == "social:x/anas"


def test_social_handle_without_platform_names_the_field():
    with pytest.raises(InvalidIdentifier) as err:
        normalise(ident(ev.IDENTIFIER_KIND_SOCIAL_HANDLE, "@ana"))
    assert err.value.field == "platform"


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (ev.IDENTIFIER_KIND_EMAIL, "not-an-email"),
        (ev.IDENTIFIER_KIND_PHONE, "call me maybe"),
        (ev.IDENTIFIER_KIND_CRM_ID, "   "),
        (ev.IDENTIFIER_KIND_CRM_ID, "x" * 300),
        (ev.IDENTIFIER_KIND_CRM_ID, "has space"),
    ],
)
def test_malformed_values_are_refused(kind: int, value: str):
    with pytest.raises(InvalidIdentifier) as err:
        normalise(ident(kind, value))
    assert err.value.field == "value"


def test_unknown_kind_is_refused():
    with pytest.raises(InvalidIdentifier) as err:
        normalise(ident(99, "x"))
    assert err.value.field == "kind"


@pytest.mark.parametrize(
    ("kind", "verified", "strength"),
    [
        (ev.IDENTIFIER_KIND_EMAIL, True, Strength.STRONG),
        (ev.IDENTIFIER_KIND_EMAIL, False, Strength.WEAK),
        (ev.IDENTIFIER_KIND_PHONE, True, Strength.STRONG),
        (ev.IDENTIFIER_KIND_PHONE, False, Strength.WEAK),
        (ev.IDENTIFIER_KIND_CRM_ID, False, Strength.STRONG),
        (ev.IDENTIFIER_KIND_DEVICE_ID, True, Strength.WEAK),
        (ev.IDENTIFIER_KIND_COOKIE, True, Strength.WEAK),
    ],
)
def test_strength(kind: int, verified: bool, strength: Strength):
    values: dict[int, str] = {ev.IDENTIFIER_KIND_EMAIL: "a@b.co", ev.IDENTIFIER_KIND_PHONE: "+14155550100"}
    value = values.get(kind, "abc-1")
    assert normalise(ident(kind, value, verified=verified)).strength is strength


def test_parse_identifier_as_typed_on_a_terminal():
    assert parse_identifier("email:Ana@Example.com").key == "email:ana@example.com"
    assert parse_identifier("social:instagram/@Ana").key == "social:instagram/ana"
    with pytest.raises(InvalidIdentifier):
        parse_identifier("ana@example.com")
    with pytest.raises(InvalidIdentifier):
        parse_identifier("fax:123")


def test_partition_key_prefers_the_most_stable_identifier():
    ids = [
        ident(ev.IDENTIFIER_KIND_COOKIE, "ck-1"),
        ident(ev.IDENTIFIER_KIND_EMAIL, "Ana@Example.com"),
        ident(ev.IDENTIFIER_KIND_CRM_ID, "CRM-9"),
    ]
    assert partition_key(ids) == b"crm:CRM-9"
    assert partition_key(ids[:2]) == b"email:ana@example.com"
    with pytest.raises(InvalidIdentifier):
        partition_key([])
