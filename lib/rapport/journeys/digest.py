"""An interaction's digest: the fields journey analytics read, in one short string.

The profile worker stores it as `Interaction.digest` when it creates the interaction, so a
report over half a million interactions reads one property per interaction instead of a dozen
(property reads, not the aggregation, dominate such a scan). Fields are separated by U+001F,
facts (as `rapport.effort.fact_key` makes them) by U+001E; the first field is the format
version. Interactions stored before digests existed are read field by field (`from_fields`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rapport.effort import Touchpoint, fact_key

VERSION = "1"
FIELD = "\x1f"
FACT = "\x1e"
_SEPARATORS = str.maketrans("", "", FIELD + FACT)
# Touchpoint fields in digest order (after the version), then the article title.
_NAMES = ("channel", "kind", "direction", "topic", "intent", "outcome", "answer", "article_id", "flow_id", "step",
          "contact_id")  # fmt: skip


def _clean(value: Any) -> str:
    return "" if value is None else str(value).translate(_SEPARATORS)


def encode(properties: Mapping[str, Any], facts: Sequence[tuple[str, str]]) -> str:
    """The digest of an interaction's stored properties (short names) and its facts (key, value
    as stored, sensitive values masked)."""
    keys = dict.fromkeys(_clean(fact_key(k, v)) for k, v in facts if k.strip())
    values = [_clean(properties.get(n)) for n in _NAMES]
    return FIELD.join([VERSION, *values, _clean(properties.get("article_title")), FACT.join(keys)])


def decode(at: int, digest: str) -> tuple[Touchpoint, str | None] | None:
    """(touchpoint, article title) from a digest and the event time in nanoseconds; None for a
    digest of a format this code does not know."""
    parts = digest.split(FIELD)
    if parts[0] != VERSION or len(parts) != len(_NAMES) + 3:
        return None
    facts = tuple(parts[-1].split(FACT)) if parts[-1] else ()
    return Touchpoint._make([at, *(p or None for p in parts[1:-2]), facts]), parts[-2] or None


def from_fields(at: int, fields: Sequence[Any], facts: tuple[str, ...]) -> Touchpoint:
    """A touchpoint from the stored properties in `_NAMES` order (for interactions without a digest)."""
    return Touchpoint._make([at, *(str(v) if v is not None and v != "" else None for v in fields), facts])


FIELD_NAMES = _NAMES
