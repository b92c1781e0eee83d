"""Pagination rules for ListInteractions: page size, order, filters and keyset cursors."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from rapport.errors import InvalidArgument
from rapport_timeline.domain.cursor import PageToken, Position, decode_page_token, encode_page_token, fingerprint
from rapport_timeline.domain.model import Interaction

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_FILTER_VALUES = 64
MAX_FILTER_TEXT = 256


class Order(enum.StrEnum):
    NEWEST_FIRST = "newest_first"
    OLDEST_FIRST = "oldest_first"


@dataclass(frozen=True, slots=True)
class InteractionFilter:
    """All given conditions hold together; within a set any value matches. Times in ns."""

    channels: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset()
    topics: frozenset[str] = frozenset()
    agent_id: str | None = None
    case_id: str | None = None
    since: int | None = None
    until: int | None = None

    def __post_init__(self) -> None:
        for name in ("channels", "kinds", "topics"):
            values = getattr(self, name)
            if len(values) > MAX_FILTER_VALUES:
                raise InvalidArgument(f"filter.{name}", f"more than {MAX_FILTER_VALUES} values")
            if any(not v or len(v) > MAX_FILTER_TEXT for v in values):
                raise InvalidArgument(f"filter.{name}", f"values must be 1 to {MAX_FILTER_TEXT} characters")
        for name in ("agent_id", "case_id"):
            value = getattr(self, name)
            if value is not None and len(value) > MAX_FILTER_TEXT:
                raise InvalidArgument(f"filter.{name}", f"longer than {MAX_FILTER_TEXT} characters")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise InvalidArgument("filter.until", "must be after filter.since")

    def canonical(self) -> str:
        """A stable text form: equal filters give equal text whatever the order of values."""
        return "|".join(
            [
                ",".join(sorted(self.channels)),
                ",".join(sorted(self.kinds)),
                ",".join(sorted(self.topics)),
                self.agent_id or "",
                self.case_id or "",
                "" if self.since is None else str(self.since),
                "" if self.until is None else str(self.until),
            ]
        )

    def matches(self, interaction: Interaction) -> bool:
        i = interaction
        return (
            (not self.channels or i.channel in self.channels)
            and (not self.kinds or i.kind in self.kinds)
            and (not self.topics or i.topic in self.topics)
            and (self.agent_id is None or i.agent_id == self.agent_id)
            and (self.case_id is None or i.case_id == self.case_id)
            and (self.since is None or i.at >= self.since)
            and (self.until is None or i.at < self.until)
        )


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument("page_size", "must not be negative")
    if requested > MAX_PAGE_SIZE:
        raise InvalidArgument("page_size", f"at most {MAX_PAGE_SIZE}, got {requested}")
    return requested or DEFAULT_PAGE_SIZE


@dataclass(frozen=True, slots=True)
class PageQuery:
    """One ListInteractions call for a resolved customer."""

    customer_id: str
    order: Order
    filter: InteractionFilter
    limit: int
    after: Position | None = None

    @property
    def fetch_limit(self) -> int:
        """One more than the page, to know whether another page follows."""
        return self.limit + 1


@lru_cache(maxsize=1024)  # clients page with a handful of filters; a digest costs more than a lookup
def query_fingerprint(order: Order, filter: InteractionFilter) -> bytes:
    return fingerprint("list", order.value, filter.canonical())


def read_page_token(token: str, order: Order, filter: InteractionFilter) -> PageToken | None:
    """The decoded token, checked against the query it is used with; None for a first page."""
    if not token:
        return None
    decoded = decode_page_token(token)
    if decoded.query != query_fingerprint(order, filter):
        raise InvalidArgument("page_token", "was issued for a different order or filter")
    return decoded


@dataclass(frozen=True, slots=True)
class Page:
    interactions: tuple[Interaction, ...]
    next_page_token: str


def make_page(query: PageQuery, rows: Sequence[Interaction]) -> Page:
    """`rows` are at most `query.fetch_limit` interactions in the query's order."""
    items = tuple(rows[: query.limit])
    if len(rows) <= query.limit or not items:
        return Page(items, "")
    last = items[-1]
    token = PageToken(query.customer_id, query_fingerprint(query.order, query.filter), Position(last.at, last.event_id))
    return Page(items, encode_page_token(token))


def sort_key(interaction: Interaction) -> tuple[int, str]:
    return interaction.at, interaction.event_id
