"""Customer effort: how hard a customer had to work to get an answer, 0 (effortless) to 100.

One formula, shared by the 360° view (profile), the handoff context (timeline), routing
priority (router) and the journey report. It reads the customer's interactions whose event
time falls in a window [end - window, end] (7 days unless RAPPORT_EFFORT_WINDOW_DAYS says
otherwise; the newest 500 of them) and counts five things the customer had to do:

    component             counts, in the window                                points  cap
    bot_turns             bot turns (kind bot_turn)                                 3    15
    failed_self_service   articles answered "No", and bot exits                    10    30
    channel_switches      changes of channel from one touch to the next             8    24
    repeat_contacts       contacts about a topic after the first one about it      12    36
    repeated_facts        facts given again (same key and value, any channel)       8    24

    score = min(100, sum over components of min(cap, points x count))
    level = low below 30, medium below 60, high from 60

Words, as the journey report uses them too:
- a touch is an interaction the customer started: not outbound or internal, and not a case
  update, a notification or a device alert. Touches are taken in event-time order (ties by
  channel name), so the count is the same whoever reads the graph.
- a contact is a conversation with a person: a call, message, form or router contact on any
  channel but the bot and devices. Interactions with the same contact id are one contact;
  without one, touches on the same channel less than 30 minutes apart are one contact. Its
  topic is the first topic any of its interactions names.
- a fact is (key, value) with the key case-folded and the value's spacing and case
  normalised; a sensitive value is compared as stored (masked). Each interaction gives a fact
  once, however often it repeats it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from google.protobuf.timestamp_pb2 import Timestamp

from rapport.v1 import timeline_pb2

NANOS = 1_000_000_000
HOUR = 3600 * NANOS
DAY = 24 * HOUR
DEFAULT_WINDOW_DAYS = 7.0
DEFAULT_WINDOW = int(DEFAULT_WINDOW_DAYS * DAY)
# Touches on one channel closer than this, without a contact id, are one contact.
CONTACT_GAP = 30 * 60 * NANOS
WINDOW_ENV = "RAPPORT_EFFORT_WINDOW_DAYS"
MAX_WINDOW_DAYS = 92.0

# (name, points per occurrence, cap), in the formula's order.
COMPONENTS: tuple[tuple[str, int, int], ...] = (
    ("bot_turns", 3, 15),
    ("failed_self_service", 10, 30),
    ("channel_switches", 8, 24),
    ("repeat_contacts", 12, 36),
    ("repeated_facts", 8, 24),
)
MEDIUM_FROM = 30
HIGH_FROM = 60

NOT_TOUCHES = frozenset({"case_update", "notification", "device_alert"})
NOT_FROM_CUSTOMER = frozenset({"outbound", "internal"})
CONTACT_KINDS = frozenset(
    {"call", "message", "form_submitted", "contact_assigned", "contact_completed", "contact_abandoned"}
)
UNASSISTED_CHANNELS = frozenset({"bot", "device"})
_MAX_NAMED = 3
# The newest this many interactions of the window count (bounds a read of a very busy customer).
MAX_TOUCHPOINTS = 500
_LEVELS = {
    "low": timeline_pb2.EFFORT_LEVEL_LOW,
    "medium": timeline_pb2.EFFORT_LEVEL_MEDIUM,
    "high": timeline_pb2.EFFORT_LEVEL_HIGH,
}


class Touchpoint(NamedTuple):
    """One interaction as the effort formula and the journey report see it.

    `at` is nanoseconds since the epoch; names are the graph's short lower-case names
    ("chat", "bot_turn", "no"); `facts` are fact keys as `fact_key` makes them.
    """

    at: int
    channel: str | None = None
    kind: str | None = None
    direction: str | None = None
    topic: str | None = None
    intent: str | None = None
    outcome: str | None = None
    answer: str | None = None
    article_id: str | None = None
    flow_id: str | None = None
    step: str | None = None
    contact_id: str | None = None
    facts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Component:
    name: str
    count: int
    points: int


@dataclass(frozen=True)
class Effort:
    score: int
    level: str  # "low" | "medium" | "high"
    components: tuple[Component, ...]
    reasons: tuple[str, ...]
    window_start: int
    window_end: int

    def count(self, name: str) -> int:
        return next(c.count for c in self.components if c.name == name)


def fact_key(key: str, value: str) -> str:
    """How two facts are compared: "order_number=a-1001" for ("Order_Number ", "A-1001")."""
    return f"{key.strip().casefold()}={' '.join(value.split()).casefold()}"


def facts_from_json(raw: object) -> tuple[str, ...]:
    """Fact keys of a stored `facts` JSON list (already parsed); malformed entries are skipped."""
    if not isinstance(raw, list):
        return ()
    keys = [
        fact_key(str(f.get("key", "")), str(f.get("value", "")))
        for f in raw
        if isinstance(f, dict) and str(f.get("key", "")).strip()
    ]
    return tuple(dict.fromkeys(keys))


def level_of(score: int) -> str:
    return "high" if score >= HIGH_FROM else "medium" if score >= MEDIUM_FROM else "low"


def window_from_env(env: Mapping[str, str]) -> int:
    """RAPPORT_EFFORT_WINDOW_DAYS (default 7, more than 0, at most 92) in nanoseconds."""
    raw = env.get(WINDOW_ENV, "").strip()
    if not raw:
        return DEFAULT_WINDOW
    try:
        days = float(raw)
    except ValueError as exc:
        raise ValueError(f"{WINDOW_ENV} must be a number of days, got {raw!r}") from exc
    if not 0 < days <= MAX_WINDOW_DAYS:
        raise ValueError(f"{WINDOW_ENV} must be more than 0 and at most {MAX_WINDOW_DAYS:g} days, got {raw!r}")
    return int(days * DAY)


def is_touch(t: Touchpoint) -> bool:
    return bool(t.channel) and t.direction not in NOT_FROM_CUSTOMER and t.kind not in NOT_TOUCHES


def is_contact(t: Touchpoint) -> bool:
    return t.kind in CONTACT_KINDS and t.channel not in UNASSISTED_CHANNELS and is_touch(t)


def in_order(touchpoints: Iterable[Touchpoint]) -> list[Touchpoint]:
    return sorted(touchpoints, key=lambda t: (t.at, t.channel or ""))


@dataclass
class Contact:
    """Interactions of one conversation with a person."""

    first_at: int
    last_at: int
    channel: str
    topic: str | None
    outcome: str | None


def contacts(ordered: Sequence[Touchpoint]) -> list[Contact]:
    """The contacts among `ordered` (event-time order), in order of their first interaction."""
    found: list[Contact] = []
    by_id: dict[str, Contact] = {}
    open_on: dict[str, Contact] = {}
    for t in ordered:
        if not is_contact(t):
            continue
        channel = t.channel or ""
        current: Contact | None
        if t.contact_id:
            current = by_id.get(t.contact_id)
        else:
            current = open_on.get(channel)
            if current is not None and t.at - current.last_at >= CONTACT_GAP:
                current = None
        if current is None:
            current = Contact(t.at, t.at, channel, t.topic, t.outcome)
            found.append(current)
            if t.contact_id:
                by_id[t.contact_id] = current
            else:
                open_on[channel] = current
        current.last_at = max(current.last_at, t.at)
        current.topic = current.topic or t.topic
        current.outcome = t.outcome or current.outcome
    return found


def channel_path(ordered: Sequence[Touchpoint]) -> list[str]:
    """The channels of the touches, consecutive repeats once: ["web", "chat", "voice"]."""
    path: list[str] = []
    for t in ordered:
        if is_touch(t) and t.channel and (not path or path[-1] != t.channel):
            path.append(t.channel)
    return path


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _named(items: Iterable[str]) -> str:
    names = list(items)
    shown = ", ".join(names[:_MAX_NAMED])
    return shown + (f" and {len(names) - _MAX_NAMED} more" if len(names) > _MAX_NAMED else "")


def customer_effort(touchpoints: Iterable[Touchpoint], window_end: int, window: int = DEFAULT_WINDOW) -> Effort:
    """The effort score over the touchpoints whose `at` is in [window_end - window, window_end]."""
    start = window_end - window
    ordered = in_order(t for t in touchpoints if start <= t.at <= window_end)[-MAX_TOUCHPOINTS:]
    reasons: list[str] = []

    bot_turns = sum(1 for t in ordered if t.kind == "bot_turn")
    if bot_turns:
        reasons.append(_plural(bot_turns, "bot turn"))

    said_no = sum(1 for t in ordered if t.answer == "no")
    bot_exits = sum(1 for t in ordered if t.kind == "bot_exit")
    if said_no or bot_exits:
        parts = [_plural(said_no, "article") + " answered No"] if said_no else []
        parts += [f"left the bot {_plural(bot_exits, 'time')}"] if bot_exits else []
        reasons.append(", ".join(parts))

    path = channel_path(ordered)
    switches = max(0, len(path) - 1)
    if switches:
        reasons.append(f"switched channel {_plural(switches, 'time')} ({' → '.join(path)})")

    per_topic = Counter(c.topic for c in contacts(ordered) if c.topic)
    repeats = sum(n - 1 for n in per_topic.values())
    if repeats:
        busiest = sorted((topic for topic, n in per_topic.items() if n > 1), key=lambda k: (-per_topic[k], k))
        reasons.append(f"{_plural(repeats, 'repeat contact')} about {_named(busiest)}")

    given = Counter(key for t in ordered if t.direction not in NOT_FROM_CUSTOMER for key in set(t.facts))
    again = sum(n - 1 for n in given.values())
    if again:
        keys = dict.fromkeys(k.partition("=")[0] for k, n in sorted(given.items()) if n > 1)
        reasons.append(f"gave {_named(keys)} again")

    counts = (bot_turns, said_no + bot_exits, switches, repeats, again)
    components = tuple(
        Component(name, count, min(cap, points * count))
        for (name, points, cap), count in zip(COMPONENTS, counts, strict=True)
    )
    score = score_of(counts)
    return Effort(score, level_of(score), components, tuple(reasons), start, window_end)


def score_of(counts: Sequence[int]) -> int:
    """The score for the five component counts, in COMPONENTS order."""
    return min(100, sum(min(cap, points * n) for (_, points, cap), n in zip(COMPONENTS, counts, strict=True)))


def _timestamp(nanos: int) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(nanos)
    return ts


def effort_message(effort: Effort) -> timeline_pb2.CustomerEffort:
    """The contract's CustomerEffort, as the handoff context and the 360° view both send it."""
    return timeline_pb2.CustomerEffort(
        level=_LEVELS[effort.level],
        score=effort.score,
        reasons=effort.reasons,
        components=[
            timeline_pb2.EffortComponent(name=c.name, count=c.count, points=c.points) for c in effort.components
        ],
        window_start=_timestamp(effort.window_start),
        window_end=_timestamp(effort.window_end),
    )
