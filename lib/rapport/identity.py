"""Identifier normalisation and strength: the rules that decide who a customer is.

Strong identifiers (verified email or phone, CRM id, account number) merge customers
automatically; weak ones (device id, unverified contact details, social handle, cookie) only
link customers as merge candidates for review.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from functools import lru_cache

import phonenumbers

from rapport.v1 import events_pb2

Kind = events_pb2.IdentifierKind

MAX_IDENTIFIER_LENGTH = 256
DEFAULT_PHONE_REGION = "GB"

_KIND_NAMES = {
    Kind.IDENTIFIER_KIND_EMAIL: "email",
    Kind.IDENTIFIER_KIND_PHONE: "phone",
    Kind.IDENTIFIER_KIND_CRM_ID: "crm",
    Kind.IDENTIFIER_KIND_DEVICE_ID: "device",
    Kind.IDENTIFIER_KIND_SOCIAL_HANDLE: "social",
    Kind.IDENTIFIER_KIND_COOKIE: "cookie",
    Kind.IDENTIFIER_KIND_ACCOUNT_NUMBER: "account",
}
_KINDS_BY_NAME = {name: kind for kind, name in _KIND_NAMES.items()}
# Lower is preferred as the Kafka key, so one customer's events share a partition.
_KEY_PREFERENCE = [
    Kind.IDENTIFIER_KIND_CRM_ID,
    Kind.IDENTIFIER_KIND_ACCOUNT_NUMBER,
    Kind.IDENTIFIER_KIND_EMAIL,
    Kind.IDENTIFIER_KIND_PHONE,
    Kind.IDENTIFIER_KIND_SOCIAL_HANDLE,
    Kind.IDENTIFIER_KIND_DEVICE_ID,
    Kind.IDENTIFIER_KIND_COOKIE,
]
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TOKEN = re.compile(r"^[\w.:/+\-#@]+$")
_PLATFORM = re.compile(r"^[a-z0-9_.\-]{1,32}$")


class Strength(enum.StrEnum):
    STRONG = "strong"
    WEAK = "weak"


class InvalidIdentifier(ValueError):
    """The identifier cannot be normalised; `field` names what is wrong."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, order=True)
class NormalisedIdentifier:
    kind: str
    value: str
    verified: bool = False
    # Unique graph key of the identity, e.g. `email:ana@example.com`. Both are derived once:
    # the ingest worker reads them several times for every identifier of every event.
    key: str = field(init=False, repr=False, compare=False)
    strength: Strength = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"{self.kind}:{self.value}")
        strong = self.kind in ("crm", "account") or (self.kind in ("email", "phone") and self.verified)
        object.__setattr__(self, "strength", Strength.STRONG if strong else Strength.WEAK)


def kind_name(kind: int) -> str:
    try:
        return _KIND_NAMES[kind]  # type: ignore[index]
    except KeyError:
        raise InvalidIdentifier("kind", f"unknown identifier kind {kind}") from None


def kind_from_name(name: str) -> int:
    try:
        return _KINDS_BY_NAME[name.strip().lower()]
    except KeyError:
        raise InvalidIdentifier("kind", f"unknown identifier kind {name!r}; one of {sorted(_KINDS_BY_NAME)}") from None


# A customer's identifiers recur on every event, and phone parsing costs ~0.1 ms; the cache makes
# the ingest worker's validation cheap. Pure function, so caching cannot change an answer
# (errors are raised again, not cached).
@lru_cache(maxsize=65536)
def normalise_value(kind: str, value: str, platform: str = "") -> str:
    raw = value.strip()
    if not raw:
        raise InvalidIdentifier("value", "is empty")
    if len(raw) > MAX_IDENTIFIER_LENGTH:
        raise InvalidIdentifier("value", f"longer than {MAX_IDENTIFIER_LENGTH} characters")
    if kind == "email":
        email = "".join(raw.split()).lower()
        if not _EMAIL.match(email):
            raise InvalidIdentifier("value", f"{value!r} is not an email address")
        return email
    if kind == "phone":
        try:
            number = phonenumbers.parse(raw, DEFAULT_PHONE_REGION)
        except phonenumbers.NumberParseException as exc:
            raise InvalidIdentifier("value", f"{value!r} is not a phone number") from exc
        if not phonenumbers.is_possible_number(number):
            raise InvalidIdentifier("value", f"{value!r} is not a possible phone number")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if kind == "social":
        plat = platform.strip().lower()
        if not _PLATFORM.match(plat):
            raise InvalidIdentifier("platform", "a social handle needs its platform, e.g. 'x' or 'instagram'")
        handle = raw.lstrip("@").lower()
        if not handle or not _TOKEN.match(handle):
            raise InvalidIdentifier("value", f"{value!r} is not a social handle")
        return f"{plat}/{handle}"
    if not _TOKEN.match(raw):
        raise InvalidIdentifier("value", f"{value!r} contains characters not allowed in an id")
    return raw.lower() if kind == "cookie" else raw


def normalise(identifier: events_pb2.Identifier) -> NormalisedIdentifier:
    return _normalised(identifier.kind, identifier.value, identifier.platform, identifier.verified)


# The same customer's identifiers recur on every event: one shared, immutable answer each.
@lru_cache(maxsize=65536)
def _normalised(kind: int, value: str, platform: str, verified: bool) -> NormalisedIdentifier:
    name = kind_name(kind)
    return NormalisedIdentifier(name, normalise_value(name, value, platform), verified)


def parse_identifier(text: str) -> NormalisedIdentifier:
    """Parses `kind:value` as people type it (`email:ana@example.com`, `social:x/ana`)."""
    kind, sep, value = text.partition(":")
    if not sep:
        raise InvalidIdentifier("identifier", f"{text!r} is not of the form kind:value")
    name = _KIND_NAMES[kind_from_name(kind)]  # type: ignore[index]
    platform = ""
    if name == "social" and "/" in value:
        platform, _, value = value.partition("/")
    return NormalisedIdentifier(name, normalise_value(name, value, platform))


def partition_key(identifiers: list[events_pb2.Identifier]) -> bytes:
    """The Kafka key: the customer's most stable identifier, normalised."""
    best: NormalisedIdentifier | None = None
    best_rank = len(_KEY_PREFERENCE)
    for ident in identifiers:
        rank = _KEY_PREFERENCE.index(ident.kind) if ident.kind in _KEY_PREFERENCE else len(_KEY_PREFERENCE)
        if best is None or rank < best_rank:
            best, best_rank = normalise(ident), rank
    if best is None:
        raise InvalidIdentifier("identifiers", "at least one identifier is required")
    return best.key.encode()
