"""The journey report, free of I/O: customers' touchpoints in, rankings and rates out.

The words (touch, contact, fact) are those of `rapport.effort`; a report adds:

- journey: a customer's touches within `journey_window` (24 h by default) of the journey's
  first touch; the next touch after that starts a new journey.
- channel path: the channels of a journey's touches, consecutive repeats once (web -> chat ->
  voice); journeys with one channel have no path. Paths longer than 8 keep their first 7
  channels and their last.
- self-service attempt: a journey's touches on one article (article_id) or one bot flow
  (flow_id). It failed when the article was answered "No" or the bot exited; it escalated
  when the journey has a contact after the attempt began. Escalation rate = escalated /
  attempts, per article or flow.
- bot containment: of the journeys that used the bot (a touch on the bot channel or a bot
  turn or exit), handed off = a contact followed the first bot touch; abandoned = not handed
  off but the bot exited; contained = the rest.
- repeat contact: a contact whose customer had another contact starting in the 7 days before
  it (any topic); the issue ranking counts repeats about the same topic.
- repeat question: a fact (same key and value) the customer had already given in the 7 days
  before.
- effort: the `rapport.effort` score of each customer over the range (the range is the window).
- issue impact: contacts x (unresolved rate + repeat rate + mean effort / 100) / 3, where the
  unresolved rate is the share of the topic's contacts with an outcome that did not end
  "resolved" and the mean effort is over the customers with contacts about the topic.

Everything in the range [since, until) counts; the 7 days before `since` are read only so that
repeats early in the range are seen.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from rapport.effort import (
    CONTACT_KINDS,
    DAY,
    HOUR,
    NOT_FROM_CUSTOMER,
    NOT_TOUCHES,
    UNASSISTED_CHANNELS,
    Touchpoint,
    contacts,
    level_of,
    score_of,
)

REPEAT_WINDOW = 7 * DAY
DEFAULT_JOURNEY_WINDOW = 24 * HOUR
MIN_JOURNEY_WINDOW = HOUR
MAX_JOURNEY_WINDOW = 7 * DAY
MAX_RANGE = 92 * DAY
DEFAULT_ROWS = 10
MAX_ROWS = 100
MAX_PATH = 8
_BOT_KINDS = frozenset({"bot_turn", "bot_exit"})


@dataclass(frozen=True)
class ReportQuery:
    """[since, until) in nanoseconds since the epoch."""

    since: int
    until: int
    max_rows: int = DEFAULT_ROWS
    journey_window: int = DEFAULT_JOURNEY_WINDOW

    @property
    def read_since(self) -> int:
        """Where a reader must start: the range and the 7 days before it."""
        return self.since - REPEAT_WINDOW


@dataclass(frozen=True)
class Totals:
    interactions: int = 0
    customers: int = 0
    touches: int = 0
    contacts: int = 0
    journeys: int = 0
    self_service_attempts: int = 0


@dataclass(frozen=True)
class IntentCount:
    intent: str
    interactions: int
    customers: int


@dataclass(frozen=True)
class IssueRank:
    topic: str
    contacts: int
    customers: int
    unresolved_rate: float
    repeat_contacts: int
    repeat_rate: float
    mean_effort: float
    impact: float


@dataclass(frozen=True)
class ExitPoint:
    kind: str  # "article" | "flow"
    id: str
    title: str | None
    attempts: int
    failed: int
    escalations: int
    escalation_rate: float
    top_exit_step: str | None


@dataclass(frozen=True)
class ChannelShare:
    channel: str
    touches: int
    customers: int
    share: float


@dataclass(frozen=True)
class ChannelPath:
    channels: tuple[str, ...]
    journeys: int
    share: float


@dataclass(frozen=True)
class BotOutcomes:
    journeys: int = 0
    handed_off: int = 0
    abandoned: int = 0
    contained: int = 0
    containment_rate: float = 0.0
    handoff_rate: float = 0.0


@dataclass(frozen=True)
class RepeatContacts:
    contacts: int = 0
    repeats: int = 0
    rate: float = 0.0


@dataclass(frozen=True)
class RepeatQuestions:
    facts_given: int = 0
    given_again: int = 0
    rate: float = 0.0
    top_keys: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class EffortSummary:
    customers: int = 0
    mean_score: float = 0.0
    low: int = 0
    medium: int = 0
    high: int = 0


@dataclass(frozen=True)
class JourneyReport:
    query: ReportQuery
    totals: Totals = Totals()
    top_intents: tuple[IntentCount, ...] = ()
    issues: tuple[IssueRank, ...] = ()
    exit_points: tuple[ExitPoint, ...] = ()
    channel_mix: tuple[ChannelShare, ...] = ()
    channel_paths: tuple[ChannelPath, ...] = ()
    bot: BotOutcomes = BotOutcomes()
    repeat_contacts: RepeatContacts = RepeatContacts()
    repeat_questions: RepeatQuestions = RepeatQuestions()
    effort: EffortSummary = EffortSummary()


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _order(t: Touchpoint) -> tuple[int, str]:
    return (t.at, t.channel or "")


def _is_touch(t: Touchpoint) -> bool:
    return bool(t.channel) and t.direction not in NOT_FROM_CUSTOMER and t.kind not in NOT_TOUCHES


def _is_contact(t: Touchpoint) -> bool:
    return t.kind in CONTACT_KINDS and t.channel not in UNASSISTED_CHANNELS and _is_touch(t)


def capped_path(path: Sequence[str]) -> tuple[str, ...]:
    return tuple(path) if len(path) <= MAX_PATH else (*path[: MAX_PATH - 1], path[-1])


@dataclass
class _Topic:
    contacts: int = 0
    with_outcome: int = 0
    unresolved: int = 0
    repeats: int = 0
    customers: int = 0
    effort_sum: int = 0


@dataclass
class _Point:
    attempts: int = 0
    failed: int = 0
    escalations: int = 0
    exit_steps: Counter[str] = field(default_factory=Counter)


@dataclass
class _Tally:
    """Running counts over all customers."""

    interactions: int = 0
    customers: int = 0
    touches: int = 0
    contacts: int = 0
    journeys: int = 0
    attempts: int = 0
    intents: Counter[str] = field(default_factory=Counter)
    intent_customers: Counter[str] = field(default_factory=Counter)
    channels: Counter[str] = field(default_factory=Counter)
    channel_customers: Counter[str] = field(default_factory=Counter)
    topics: defaultdict[str, _Topic] = field(default_factory=lambda: defaultdict(_Topic))
    points: defaultdict[tuple[str, str], _Point] = field(default_factory=lambda: defaultdict(_Point))
    paths: Counter[tuple[str, ...]] = field(default_factory=Counter)
    bot_journeys: int = 0
    handed_off: int = 0
    abandoned: int = 0
    repeat_contacts: int = 0
    facts_given: int = 0
    given_again: int = 0
    keys_again: Counter[str] = field(default_factory=Counter)
    effort_sum: int = 0
    levels: Counter[str] = field(default_factory=Counter)


def customer_effort_score(in_range: Sequence[Touchpoint]) -> int:
    """The rapport.effort score of touchpoints already in event-time order and in the window
    (the same counts as `rapport.effort.customer_effort`, without its reasons)."""
    bot_turns = failed = 0
    path: list[str] = []
    given: Counter[str] = Counter()
    for t in in_range:
        if t.kind == "bot_turn":
            bot_turns += 1
        elif t.kind == "bot_exit":
            failed += 1
        if t.answer == "no":
            failed += 1
        if _is_touch(t) and (not path or path[-1] != t.channel):
            path.append(t.channel)  # type: ignore[arg-type]
        if t.facts and t.direction not in NOT_FROM_CUSTOMER:
            given.update(set(t.facts))
    per_topic = Counter(c.topic for c in contacts(in_range) if c.topic)
    repeats = sum(n - 1 for n in per_topic.values())
    again = sum(n - 1 for n in given.values())
    return score_of((bot_turns, failed, max(0, len(path) - 1), repeats, again))


def _journeys(touches: Sequence[Touchpoint], window: int, tally: _Tally) -> None:
    journey: list[Touchpoint] = []
    for t in touches:
        if journey and t.at - journey[0].at > window:
            _journey(journey, tally)
            journey = []
        journey.append(t)
    if journey:
        _journey(journey, tally)


def _journey(journey: list[Touchpoint], tally: _Tally) -> None:
    tally.journeys += 1
    path: list[str] = []
    first_bot = -1
    last_contact = -1
    for i, t in enumerate(journey):
        if not path or path[-1] != t.channel:
            path.append(t.channel)  # type: ignore[arg-type]
        if first_bot < 0 and (t.channel == "bot" or t.kind in _BOT_KINDS):
            first_bot = i
        if _is_contact(t):
            last_contact = i
    if len(path) > 1:
        tally.paths[capped_path(path)] += 1
    if first_bot >= 0:
        tally.bot_journeys += 1
        if last_contact > first_bot:
            tally.handed_off += 1
        elif any(t.kind == "bot_exit" for t in journey):
            tally.abandoned += 1
    started: dict[tuple[str, str], int] = {}
    failed: set[tuple[str, str]] = set()
    for i, t in enumerate(journey):
        if t.article_id:
            key = ("article", t.article_id)
        elif t.flow_id:
            key = ("flow", t.flow_id)
        else:
            continue
        started.setdefault(key, i)
        if t.answer == "no" or t.kind == "bot_exit":
            failed.add(key)
            if t.kind == "bot_exit" and t.step and key[0] == "flow":
                tally.points[key].exit_steps[t.step] += 1
    for key, start in started.items():
        point = tally.points[key]
        point.attempts += 1
        tally.attempts += 1
        if key in failed:
            point.failed += 1
        if last_contact > start:
            point.escalations += 1


def _customer(touchpoints: Sequence[Touchpoint], query: ReportQuery, tally: _Tally) -> None:
    ordered = sorted((t for t in touchpoints if query.read_since <= t.at < query.until), key=_order)
    in_range = [t for t in ordered if t.at >= query.since]
    if not in_range:
        return
    tally.customers += 1
    tally.interactions += len(in_range)

    intents = {t.intent for t in in_range if t.intent}
    tally.intents.update(t.intent for t in in_range if t.intent)
    tally.intent_customers.update(intents)
    touches = [t for t in in_range if _is_touch(t)]
    tally.touches += len(touches)
    channels = [t.channel or "" for t in touches]
    tally.channels.update(channels)
    tally.channel_customers.update(set(channels))
    _journeys(touches, query.journey_window, tally)

    score = customer_effort_score(in_range)
    tally.effort_sum += score
    tally.levels[level_of(score)] += 1

    previous_any: int | None = None
    previous_on: dict[str, int] = {}
    topics_here: set[str] = set()
    for c in contacts(ordered):
        if c.first_at >= query.since:
            tally.contacts += 1
            if previous_any is not None and c.first_at - previous_any <= REPEAT_WINDOW:
                tally.repeat_contacts += 1
            if c.topic:
                topic = tally.topics[c.topic]
                topic.contacts += 1
                topics_here.add(c.topic)
                if c.outcome:
                    topic.with_outcome += 1
                    topic.unresolved += c.outcome != "resolved"
                before = previous_on.get(c.topic)
                if before is not None and c.first_at - before <= REPEAT_WINDOW:
                    topic.repeats += 1
        previous_any = c.first_at
        if c.topic:
            previous_on[c.topic] = c.first_at
    for name in topics_here:
        tally.topics[name].customers += 1
        tally.topics[name].effort_sum += score

    last_given: dict[str, int] = {}
    for t in ordered:
        if not t.facts or t.direction in NOT_FROM_CUSTOMER:
            continue
        counted = t.at >= query.since
        for fact in set(t.facts):
            before = last_given.get(fact)
            if counted:
                tally.facts_given += 1
                if before is not None and t.at - before <= REPEAT_WINDOW:
                    tally.given_again += 1
                    tally.keys_again[fact.partition("=")[0]] += 1
            last_given[fact] = t.at


def journey_report(
    customers: Iterable[Sequence[Touchpoint]],
    query: ReportQuery,
    titles: Mapping[str, str] | None = None,
) -> JourneyReport:
    """The report over each customer's touchpoints (any order; those outside [read_since,
    until) are ignored). `titles` names articles by id."""
    tally = _Tally()
    for touchpoints in customers:
        _customer(touchpoints, query, tally)
    titles = titles or {}
    rows = query.max_rows

    intents = sorted(tally.intents.items(), key=lambda kv: (-kv[1], kv[0]))[:rows]
    issues = []
    for name, t in tally.topics.items():
        unresolved = _rate(t.unresolved, t.with_outcome)
        repeat = _rate(t.repeats, t.contacts)
        effort = t.effort_sum / t.customers if t.customers else 0.0
        impact = t.contacts * (unresolved + repeat + effort / 100) / 3
        issues.append(IssueRank(name, t.contacts, t.customers, unresolved, t.repeats, repeat, effort, impact))
    issues.sort(key=lambda i: (-round(i.impact, 9), -i.contacts, i.topic))
    points = [
        ExitPoint(
            kind,
            pid,
            titles.get(pid) if kind == "article" else None,
            p.attempts,
            p.failed,
            p.escalations,
            _rate(p.escalations, p.attempts),
            min(p.exit_steps.items(), key=lambda kv: (-kv[1], kv[0]))[0] if p.exit_steps else None,
        )
        for (kind, pid), p in tally.points.items()
    ]
    points.sort(key=lambda p: (-p.escalations, -round(p.escalation_rate, 9), p.kind, p.id))
    mix = [
        ChannelShare(ch, n, tally.channel_customers[ch], _rate(n, tally.touches))
        for ch, n in sorted(tally.channels.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    switched = sum(tally.paths.values())
    paths = [
        ChannelPath(path, n, _rate(n, switched))
        for path, n in sorted(tally.paths.items(), key=lambda kv: (-kv[1], kv[0]))[:rows]
    ]
    contained = tally.bot_journeys - tally.handed_off - tally.abandoned
    return JourneyReport(
        query=query,
        totals=Totals(
            tally.interactions, tally.customers, tally.touches, tally.contacts, tally.journeys, tally.attempts
        ),
        top_intents=tuple(IntentCount(i, n, tally.intent_customers[i]) for i, n in intents),
        issues=tuple(issues[:rows]),
        exit_points=tuple(points[:rows]),
        channel_mix=tuple(mix),
        channel_paths=tuple(paths),
        bot=BotOutcomes(
            tally.bot_journeys,
            tally.handed_off,
            tally.abandoned,
            contained,
            _rate(contained, tally.bot_journeys),
            _rate(tally.handed_off, tally.bot_journeys),
        ),
        repeat_contacts=RepeatContacts(
            tally.contacts, tally.repeat_contacts, _rate(tally.repeat_contacts, tally.contacts)
        ),
        repeat_questions=RepeatQuestions(
            tally.facts_given,
            tally.given_again,
            _rate(tally.given_again, tally.facts_given),
            tuple(sorted(tally.keys_again.items(), key=lambda kv: (-kv[1], kv[0]))[:rows]),
        ),
        effort=EffortSummary(
            tally.customers,
            _rate(tally.effort_sum, tally.customers),
            tally.levels["low"],
            tally.levels["medium"],
            tally.levels["high"],
        ),
    )
