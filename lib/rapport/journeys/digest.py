"""An interaction's digest: the fields journey analytics read, in one short string.

The profile worker stores it as `Interaction.digest` when it creates the interaction, so a
report over half a million interactions reads one short property per interaction instead of a
dozen (property reads, not the aggregation, dominate such a scan; a string of up to about 30
ASCII characters stays inside Neo4j's property record, a longer one costs another read).

Format "2": the version, then one character each for channel, kind, direction, outcome and
answer (the enum number as a letter, "a" = 1; "-" absent), then U+001F-separated: topic,
intent, article_id, flow_id, step, contact (a 6-character hash: only grouping needs it),
facts (U+001E-separated "key=<6-character hash of the normalised value>"), article title.
Trailing empty fields are left out. Interactions without a digest (stored before digests
existed) are read field by field and encoded here the same way (`encode`).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from rapport.effort import Touchpoint
from rapport.v1 import events_pb2

VERSION = "2"
FIELD = "\x1f"
FACT = "\x1e"
ABSENT = "-"
_SEPARATORS = str.maketrans("", "", FIELD + FACT)


def _names(enum: Any) -> tuple[str, ...]:
    """Short names by enum number ("voice" for CHANNEL_VOICE = 1); index 0 is unused."""
    prefix = enum.Name(0).removesuffix("UNSPECIFIED")
    values = enum.DESCRIPTOR.values
    names = [""] * (max(v.number for v in values) + 1)
    for v in values:
        if v.number:
            names[v.number] = v.name.removeprefix(prefix).lower()
    return tuple(names)


# The enum-valued fields, in digest order, with their short names by number.
ENUMS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("channel", _names(events_pb2.Channel)),
    ("kind", _names(events_pb2.InteractionKind)),
    ("direction", _names(events_pb2.Direction)),
    ("outcome", _names(events_pb2.Outcome)),
    ("answer", _names(events_pb2.ArticleAnswer)),
)
TEXTS = ("topic", "intent", "article_id", "flow_id", "step", "contact", "facts", "title")
_CODE = [{name: chr(ord("a") + n - 1) for n, name in enumerate(names) if n} for _, names in ENUMS]
_ENUM_CODES = [(name, code) for (name, _), code in zip(ENUMS, _CODE, strict=True)]


def letter_number(letter: str) -> int:
    """The enum number a digest letter stands for; 0 for absent."""
    return 0 if letter == ABSENT else ord(letter) - ord("a") + 1


def short_hash(text: str) -> str:
    return base64.urlsafe_b64encode(hashlib.blake2b(text.encode(), digest_size=6).digest()).decode()[:6]


def fact_token(key: str, value: str) -> str:
    """A fact as the digest keeps it: the key, and a hash of the normalised value."""
    return f"{key.strip().casefold()}={short_hash(' '.join(value.split()).casefold())}"


def _clean(value: Any) -> str:
    return "" if value is None else str(value).translate(_SEPARATORS)


def encode(properties: Mapping[str, Any], facts: Sequence[tuple[str, str]]) -> str:
    """The digest of an interaction's stored properties (short names, as the graph stores them)
    and its facts (key, value as stored: sensitive values already masked)."""
    codes = "".join([code.get(properties.get(name) or "", ABSENT) for name, code in _ENUM_CODES])
    contact = properties.get("contact_id")
    tokens = dict.fromkeys(_clean(fact_token(k, v)) for k, v in facts if k.strip())
    texts = [
        _clean(properties.get("topic")),
        _clean(properties.get("intent")),
        _clean(properties.get("article_id")),
        _clean(properties.get("flow_id")),
        _clean(properties.get("step")),
        short_hash(str(contact)) if contact else "",
        FACT.join(tokens),
        _clean(properties.get("article_title")) if properties.get("article_id") else "",
    ]
    while texts and not texts[-1]:
        texts.pop()
    return VERSION + codes + (FIELD + FIELD.join(texts) if texts else "")


def decode(at: int, digest: str) -> tuple[Touchpoint, str | None] | None:
    """(touchpoint, article title) from a digest and the event time in nanoseconds (the contact
    and facts in their hashed form); None for a digest of another format."""
    if not digest.startswith(VERSION) or len(digest) < 1 + len(ENUMS):
        return None
    enums = [names[letter_number(ch)] or None if letter_number(ch) < len(names) else None
             for ch, (_, names) in zip(digest[1:6], ENUMS, strict=True)]  # fmt: skip
    texts = digest[7:].split(FIELD) if len(digest) > 6 else []
    texts += [""] * (len(TEXTS) - len(texts))
    topic, intent, article, flow, step, contact, facts, title = texts[: len(TEXTS)]
    channel, kind, direction, outcome, answer = enums
    point = Touchpoint(
        at,
        channel,
        kind,
        direction,
        topic or None,
        intent or None,
        outcome,
        answer,
        article or None,
        flow or None,
        step or None,
        contact or None,
        tuple(facts.split(FACT)) if facts else (),
    )
    return point, title or None
