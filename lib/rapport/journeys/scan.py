"""The journey report over a range as columns: the same rules as `report`, vectorised.

`report.journey_report` states the rules one customer at a time and is the reference; this
module computes the same report from parallel arrays (one row per interaction) so half a
million interactions take well under a second. The unit tests check both agree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from rapport.effort import (
    COMPONENTS,
    CONTACT_GAP,
    CONTACT_KINDS,
    HIGH_FROM,
    MEDIUM_FROM,
    NOT_TOUCHES,
    UNASSISTED_CHANNELS,
)
from rapport.journeys import digest
from rapport.journeys.report import (
    MAX_PATH,
    REPEAT_WINDOW,
    BotOutcomes,
    ChannelPath,
    ChannelShare,
    EffortSummary,
    ExitPoint,
    IntentCount,
    IssueRank,
    JourneyReport,
    RepeatContacts,
    RepeatQuestions,
    ReportQuery,
    Totals,
)

Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
_CHANNELS, _KINDS, _DIRECTIONS, _OUTCOMES, _ANSWERS = (names for _, names in digest.ENUMS)


def _number(names: tuple[str, ...], name: str) -> int:
    return names.index(name)


def _numbers(names: tuple[str, ...], wanted: Sequence[str] | frozenset[str]) -> list[int]:
    return [n for n, name in enumerate(names) if name in wanted and n]


class _Vocabulary:
    """Strings to small integers (0 = absent), in order of first sight; `words` by code."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {"": 0}
        self.words: list[str] = [""]


@dataclass
class RangeScan:
    """Interactions of a range as parallel columns; build with `add` then `finish`."""

    customers: list[int] = field(default_factory=list)
    ats: list[int] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)

    def add(self, customer: int, at: int, text: str) -> None:
        self.customers.append(customer)
        self.ats.append(at)
        self.digests.append(text)

    def extend(self, customers: list[int], ats: list[int], texts: list[str]) -> None:
        self.customers += customers
        self.ats += ats
        self.digests += texts


@dataclass
class _Columns:
    n: int
    customer: Ints
    at: Ints
    channel: Ints
    kind: Ints
    direction: Ints
    outcome: Ints
    answer: Ints
    topic: Ints
    intent: Ints
    article: Ints
    flow: Ints
    step: Ints
    contact: Ints
    fact_row: Ints
    fact_code: Ints
    vocab: dict[str, _Vocabulary]
    titles: dict[int, str]


def _columns(scan: RangeScan) -> _Columns:
    """Decodes each distinct digest once: most interactions share theirs with many others."""
    n = len(scan.digests)
    index: dict[str, int] = dict.fromkeys(scan.digests, 0)
    uniques = list(index)
    index.update(zip(uniques, range(len(uniques)), strict=True))
    codes = np.fromiter(map(index.__getitem__, scan.digests), dtype=np.int64, count=n)
    unique = len(uniques)
    version = digest.VERSION
    heads = "".join(t[1:6] if len(t) >= 6 and t[0] == version else "-----" for t in uniques)
    letters = np.frombuffer(heads.encode("ascii", "replace"), dtype=np.uint8).reshape(unique, 5).astype(np.int64)
    enums = np.where(letters == ord(digest.ABSENT), 0, letters - ord("a") + 1)
    for j, (_, names) in enumerate(digest.ENUMS):
        enums[:, j] = np.where((enums[:, j] < 0) | (enums[:, j] >= len(names)), 0, enums[:, j])
    # Every distinct digest's text fields, padded to the eight of the format and split at once.
    sep = digest.FIELD
    width = len(_CODED) + 2
    tails = [t[7:] if len(t) > 7 and t[0] == version and t.count(sep) < width + 1 else "" for t in uniques]
    flat = sep.join(t + sep * (width - 1 - t.count(sep)) for t in tails).split(sep) if unique else []
    vocab: dict[str, _Vocabulary] = {}
    texts = np.zeros((len(_CODED), unique), dtype=np.int64)
    for j, name in enumerate(_CODED):
        texts[j], vocab[name] = _coded(flat[j::width])
    # Facts: every distinct digest's tokens split and coded in one pass, then spread to the rows.
    fact_texts = flat[len(_CODED) :: width]
    fact_counts = np.fromiter((t.count(digest.FACT) + 1 if t else 0 for t in fact_texts), np.int64, count=unique)
    all_tokens = digest.FACT.join(t for t in fact_texts if t).split(digest.FACT) if fact_counts.any() else []
    token_codes, vocab["fact"] = _coded(all_tokens)
    offsets = np.concatenate(([0], np.cumsum(fact_counts)[:-1])) if unique else np.zeros(0, dtype=np.int64)
    with_facts = np.flatnonzero(fact_counts[codes] > 0)
    per_row = fact_counts[codes[with_facts]]
    fact_row = np.repeat(with_facts, per_row)
    within = np.arange(len(fact_row)) - np.repeat(np.cumsum(per_row) - per_row, per_row)
    fact_codes = token_codes[np.repeat(offsets[codes[with_facts]], per_row) + within]
    article = texts[_CODED.index("article")]
    titles = {int(article[u]): title for u, title in enumerate(flat[width - 1 :: width]) if title and article[u]}
    row_enums = enums[codes]
    row_texts = texts[:, codes]
    return _Columns(
        n=n,
        customer=np.asarray(scan.customers, dtype=np.int64),
        at=np.asarray(scan.ats, dtype=np.int64),
        channel=row_enums[:, 0],
        kind=row_enums[:, 1],
        direction=row_enums[:, 2],
        outcome=row_enums[:, 3],
        answer=row_enums[:, 4],
        topic=row_texts[0],
        intent=row_texts[1],
        article=row_texts[2],
        flow=row_texts[3],
        step=row_texts[4],
        contact=row_texts[5],
        fact_row=fact_row,
        fact_code=fact_codes,
        vocab=vocab,
        titles=titles,
    )


# The digest's text fields coded as small integers, in digest order (facts and title follow).
_CODED = ("topic", "intent", "article", "flow", "step", "contact")


def _coded(column: list[str]) -> tuple[Ints, _Vocabulary]:
    vocabulary = _Vocabulary()
    vocabulary.words = ["", *(w for w in dict.fromkeys(column) if w)]
    vocabulary.codes = {w: i for i, w in enumerate(vocabulary.words)}
    return np.fromiter(map(vocabulary.codes.__getitem__, column), dtype=np.int64, count=len(column)), vocabulary


_SHIFT = 23


def _distinct(values: Ints) -> Ints:
    """Sorted distinct values (a sort beats np.unique's hashing on these arrays by far)."""
    ordered = np.sort(values)
    keep = np.ones(len(ordered), dtype=bool)
    keep[1:] = ordered[1:] != ordered[:-1]
    return ordered[keep]


def _distinct_pairs(a: Ints, b: Ints) -> tuple[Ints, Ints]:
    """The distinct (a, b) pairs, sorted (a non-negative, b below 2**23)."""
    keys = _distinct(a * (1 << _SHIFT) + b)
    return keys >> _SHIFT, keys & ((1 << _SHIFT) - 1)


def _rate(part: float, whole: float) -> float:
    return float(part) / float(whole) if whole else 0.0


def _starts(*keys: Ints) -> Bools:
    """True where any key differs from the row before (rows sorted by the keys)."""
    n = len(keys[0])
    start = np.zeros(n, dtype=bool)
    if n:
        start[0] = True
        for key in keys:
            start[1:] |= key[1:] != key[:-1]
    return start


def _group_ids(start: Bools) -> Ints:
    return np.cumsum(start) - 1


def _contacts(c: _Columns, rows: Ints, chrank: Ints) -> tuple[Ints, Ints, Ints, Ints]:
    """Contacts among `rows` (contact rows only): per contact its customer, first time, topic and
    outcome, as `rapport.effort.contacts` groups them."""
    if not len(rows):
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, empty
    with_id = c.contact[rows] != 0
    group = np.zeros(len(rows), dtype=np.int64)
    # With a contact id: one contact per customer and id.
    ided = rows[with_id]
    next_group = 0
    if len(ided):
        order = np.lexsort((c.contact[ided], c.customer[ided]))
        start = _starts(c.customer[ided][order], c.contact[ided][order])
        ids = np.empty(len(ided), dtype=np.int64)
        ids[order] = _group_ids(start)
        group[with_id] = ids
        next_group = int(ids.max()) + 1
    # Without: one customer's interactions on one channel less than CONTACT_GAP apart.
    loose = rows[~with_id]
    if len(loose):
        order = np.lexsort((c.at[loose], c.channel[loose], c.customer[loose]))
        cu, ch, at = c.customer[loose][order], c.channel[loose][order], c.at[loose][order]
        start = _starts(cu, ch)
        start[1:] |= (at[1:] - at[:-1]) >= CONTACT_GAP
        ids = np.empty(len(loose), dtype=np.int64)
        ids[order] = _group_ids(start) + next_group
        group[~with_id] = ids
    # Per contact, in event-time order (ties by channel name): first time, first topic, last outcome.
    order = np.lexsort((chrank[rows], c.at[rows], group))
    g, r = group[order], rows[order]
    start = _starts(g)
    first = np.flatnonzero(start)
    customer = c.customer[r[first]]
    first_at = c.at[r[first]]
    topic = _first_nonzero(c.topic[r], start)
    outcome = _last_nonzero(c.outcome[r], start)
    return customer, first_at, topic, outcome


def _first_nonzero(values: Ints, start: Bools) -> Ints:
    group = _group_ids(start)
    out = np.zeros(int(group[-1]) + 1 if len(group) else 0, dtype=np.int64)
    hit = values != 0
    idx = np.flatnonzero(hit)
    # Reversed so the earliest row of each group is written last.
    out[group[idx][::-1]] = values[idx][::-1]
    return out


def _last_nonzero(values: Ints, start: Bools) -> Ints:
    group = _group_ids(start)
    out = np.zeros(int(group[-1]) + 1 if len(group) else 0, dtype=np.int64)
    idx = np.flatnonzero(values != 0)
    out[group[idx]] = values[idx]
    return out


def _repeats_within(customer: Ints, key: Ints, at: Ints) -> Bools:
    """For each row: an earlier row (same customer and key) is at most REPEAT_WINDOW before it."""
    order = np.lexsort((at, key, customer))
    cu, k, t = customer[order], key[order], at[order]
    repeat = np.zeros(len(order), dtype=bool)
    if len(order) > 1:
        repeat[1:] = (cu[1:] == cu[:-1]) & (k[1:] == k[:-1]) & (t[1:] - t[:-1] <= REPEAT_WINDOW)
    out = np.empty(len(order), dtype=bool)
    out[order] = repeat
    return out


def _effort_scores(
    c: _Columns, *, in_range: Ints, in_range_mask: Bools, touches: Ints, chrank: Ints, customers: Ints
) -> Ints:
    """The rapport.effort score of each customer in `customers` (sorted) over the range."""
    size = len(customers)

    def per_customer(rows: Ints) -> Ints:
        return np.bincount(np.searchsorted(customers, c.customer[rows]), minlength=size).astype(np.int64)

    bot_turns = per_customer(in_range[c.kind[in_range] == _number(_KINDS, "bot_turn")])
    failed = per_customer(in_range[c.kind[in_range] == _number(_KINDS, "bot_exit")])
    failed += per_customer(in_range[c.answer[in_range] == _number(_ANSWERS, "no")])
    order = np.lexsort((chrank[touches], c.at[touches], c.customer[touches]))
    cu, ch = c.customer[touches][order], c.channel[touches][order]
    changes = np.zeros(len(order), dtype=bool)
    if len(order) > 1:
        changes[1:] = (cu[1:] == cu[:-1]) & (ch[1:] != ch[:-1])
    switches = per_customer(touches[order][changes])
    contact_rows = in_range[_is_contact(c, in_range)]
    cust, _, topic, _ = _contacts(c, contact_rows, chrank)
    named = topic != 0
    pair_customers, _ = _distinct_pairs(cust[named], topic[named])
    repeats = np.bincount(np.searchsorted(customers, cust[named]), minlength=size) - np.bincount(
        np.searchsorted(customers, pair_customers), minlength=size
    )
    fact_ok = in_range_mask[c.fact_row] & ~np.isin(c.direction[c.fact_row], _NOT_FROM_CUSTOMER)
    fact_customer = c.customer[c.fact_row[fact_ok]]
    fact_code = c.fact_code[fact_ok]
    distinct, _ = _distinct_pairs(fact_customer, fact_code)
    again = np.bincount(np.searchsorted(customers, fact_customer), minlength=size) - np.bincount(
        np.searchsorted(customers, distinct), minlength=size
    )
    counts = (bot_turns, failed, switches, repeats.astype(np.int64), again.astype(np.int64))
    score = np.zeros(size, dtype=np.int64)
    for (_, points, cap), count in zip(COMPONENTS, counts, strict=True):
        score += np.minimum(cap, points * count)
    return np.minimum(100, score)


_NOT_FROM_CUSTOMER = _numbers(_DIRECTIONS, ("outbound", "internal"))
_NOT_TOUCH_KINDS = _numbers(_KINDS, NOT_TOUCHES)
_CONTACT_KINDS = _numbers(_KINDS, CONTACT_KINDS)
_UNASSISTED = _numbers(_CHANNELS, UNASSISTED_CHANNELS)
_BOT_KINDS = _numbers(_KINDS, ("bot_turn", "bot_exit"))
_BOT = _number(_CHANNELS, "bot")
_BOT_EXIT = _number(_KINDS, "bot_exit")
_NO = _number(_ANSWERS, "no")
_RESOLVED = _number(_OUTCOMES, "resolved")
# Channel codes ranked by name: ties in time go by channel name, as in `rapport.effort`.
_CHANNEL_RANK = np.argsort(np.argsort(np.array(_CHANNELS, dtype=object))).astype(np.int64)


def _is_touch(c: _Columns, rows: Ints) -> Bools:
    return (
        (c.channel[rows] != 0)
        & ~np.isin(c.direction[rows], _NOT_FROM_CUSTOMER)
        & ~np.isin(c.kind[rows], _NOT_TOUCH_KINDS)
    )


def _is_contact(c: _Columns, rows: Ints) -> Bools:
    return np.isin(c.kind[rows], _CONTACT_KINDS) & ~np.isin(c.channel[rows], _UNASSISTED) & _is_touch(c, rows)


def _journey_ids(customer: Ints, at: Ints, window: int) -> Ints:
    """Journey number of each touch (rows sorted by customer and time): a journey lasts
    `window` from its first touch. A gap longer than the window always starts one; runs longer
    than the window are cut in rounds, each starting the next journey of every such run."""
    n = len(customer)
    if not n:
        return np.zeros(0, dtype=np.int64)
    start = _starts(customer)
    start[1:] |= (at[1:] - at[:-1]) > window
    run = _group_ids(start)
    first = np.flatnonzero(start)
    last = np.append(first[1:], n) - 1
    active = at[last] - at[first] > window
    rows = np.flatnonzero(active[run])
    current = first.copy()
    while len(rows):
        of = run[rows]
        later = at[rows] > at[current[of]] + window
        found = rows[later]
        if not len(found):
            break
        # The first later row of each run (rows ascend within a run) starts its next journey.
        head = np.ones(len(found), dtype=bool)
        head[1:] = run[found[1:]] != run[found[:-1]]
        nxt = found[head]
        start[nxt] = True
        current[run[nxt]] = nxt
        rows = found
    return _group_ids(start)


def scan_report(scan: RangeScan, query: ReportQuery) -> JourneyReport:
    """The journey report over `scan` (rows outside [read_since, until) are ignored)."""
    c = _columns(scan)
    rows_max = query.max_rows
    chrank = _CHANNEL_RANK[c.channel]
    before_until_mask = (c.at < query.until) & (c.at >= query.read_since)
    in_range_mask = before_until_mask & (c.at >= query.since)
    before_until = np.flatnonzero(before_until_mask)
    in_range = np.flatnonzero(in_range_mask)
    customers = _distinct(c.customer[in_range])
    if not len(in_range):
        return JourneyReport(query=query)

    # Intents and channel mix.
    with_intent = in_range[c.intent[in_range] != 0]
    intent_counts = np.bincount(c.intent[with_intent], minlength=len(c.vocab["intent"].words))
    intent_customers = np.bincount(
        _distinct_pairs(c.customer[with_intent], c.intent[with_intent])[1], minlength=len(intent_counts)
    )
    intent_order = sorted(
        (int(i) for i in np.flatnonzero(intent_counts)), key=lambda i: (-intent_counts[i], c.vocab["intent"].words[i])
    )[:rows_max]
    touches = in_range[_is_touch(c, in_range)]
    channel_counts = np.bincount(c.channel[touches], minlength=len(_CHANNELS))
    channel_customers = np.bincount(
        _distinct_pairs(c.customer[touches], c.channel[touches])[1], minlength=len(_CHANNELS)
    )

    # Effort per customer.
    scores = _effort_scores(
        c, in_range=in_range, in_range_mask=in_range_mask, touches=touches, chrank=chrank, customers=customers
    )

    # Contacts (with the 7 days before the range, for repeats).
    cust, first_at, topic, outcome = _contacts(c, before_until[_is_contact(c, before_until)], chrank)
    counted = first_at >= query.since
    any_repeat = _repeats_within(cust, np.zeros(len(cust), dtype=np.int64), first_at)
    named = topic != 0
    topic_repeat = np.zeros(len(cust), dtype=bool)
    topic_repeat[named] = _repeats_within(cust[named], topic[named], first_at[named])
    issues = _issues(
        c,
        cust=cust,
        topic=topic,
        outcome=outcome,
        counted=counted,
        repeat=topic_repeat,
        customers=customers,
        scores=scores,
        rows_max=rows_max,
    )

    # Journeys.
    order = np.lexsort((chrank[touches], c.at[touches], c.customer[touches]))
    jrows = touches[order]
    jid = _journey_ids(c.customer[jrows], c.at[jrows], query.journey_window)
    journeys = int(jid[-1]) + 1 if len(jid) else 0
    paths = _paths(c, jrows, jid, journeys, rows_max)
    bot, last_contact = _bot(c, jrows, jid, journeys)
    points, attempts = _exit_points(c, jrows, jid, last_contact, rows_max)

    # Repeat questions.
    keep = before_until_mask[c.fact_row] & ~np.isin(c.direction[c.fact_row], _NOT_FROM_CUSTOMER)
    fact_at = c.at[c.fact_row[keep]]
    fact_code = c.fact_code[keep]
    again = _repeats_within(c.customer[c.fact_row[keep]], fact_code, fact_at)
    given = fact_at >= query.since
    again &= given
    key_counts: Counter[str] = Counter(
        c.vocab["fact"].words[int(code)].partition("=")[0] for code in fact_code[again].tolist()
    )

    levels = np.searchsorted([MEDIUM_FROM, HIGH_FROM], scores, side="right")
    contained = bot.journeys - bot.handed_off - bot.abandoned
    return JourneyReport(
        query=query,
        totals=Totals(len(in_range), len(customers), len(touches), int(counted.sum()), journeys, attempts),
        top_intents=tuple(
            IntentCount(c.vocab["intent"].words[i], int(intent_counts[i]), int(intent_customers[i]))
            for i in intent_order
        ),
        issues=issues,
        exit_points=points,
        channel_mix=tuple(
            ChannelShare(
                _CHANNELS[ch],
                int(channel_counts[ch]),
                int(channel_customers[ch]),
                _rate(int(channel_counts[ch]), len(touches)),
            )
            for ch in sorted(np.flatnonzero(channel_counts).tolist(), key=lambda k: (-channel_counts[k], _CHANNELS[k]))
        ),
        channel_paths=paths,
        bot=BotOutcomes(
            bot.journeys,
            bot.handed_off,
            bot.abandoned,
            contained,
            _rate(contained, bot.journeys),
            _rate(bot.handed_off, bot.journeys),
        ),
        repeat_contacts=RepeatContacts(
            int(counted.sum()),
            int((any_repeat & counted).sum()),
            _rate(int((any_repeat & counted).sum()), int(counted.sum())),
        ),
        repeat_questions=RepeatQuestions(
            int(given.sum()),
            int(again.sum()),
            _rate(int(again.sum()), int(given.sum())),
            tuple(sorted(key_counts.items(), key=lambda kv: (-kv[1], kv[0]))[:rows_max]),
        ),
        effort=EffortSummary(
            len(customers),
            _rate(int(scores.sum()), len(customers)),
            int((levels == 0).sum()),
            int((levels == 1).sum()),
            int((levels == 2).sum()),
        ),
    )


def _issues(
    c: _Columns,
    *,
    cust: Ints,
    topic: Ints,
    outcome: Ints,
    counted: Bools,
    repeat: Bools,
    customers: Ints,
    scores: Ints,
    rows_max: int,
) -> tuple[IssueRank, ...]:
    mine = counted & (topic != 0)
    size = len(c.vocab["topic"].words)
    contacts = np.bincount(topic[mine], minlength=size)
    with_outcome = np.bincount(topic[mine & (outcome != 0)], minlength=size)
    unresolved = np.bincount(topic[mine & (outcome != 0) & (outcome != _RESOLVED)], minlength=size)
    repeats = np.bincount(topic[mine & repeat], minlength=size)
    pair_customers, pair_topics = _distinct_pairs(cust[mine], topic[mine])
    people = np.bincount(pair_topics, minlength=size)
    effort_sum = np.bincount(pair_topics, weights=scores[np.searchsorted(customers, pair_customers)], minlength=size)
    out = []
    for t in np.flatnonzero(contacts).tolist():
        unresolved_rate = _rate(int(unresolved[t]), int(with_outcome[t]))
        repeat_rate = _rate(int(repeats[t]), int(contacts[t]))
        effort = int(effort_sum[t]) / int(people[t]) if people[t] else 0.0
        impact = int(contacts[t]) * (unresolved_rate + repeat_rate + effort / 100) / 3
        out.append(
            IssueRank(c.vocab["topic"].words[t], int(contacts[t]), int(people[t]), unresolved_rate, int(repeats[t]),
                      repeat_rate, effort, impact)
        )  # fmt: skip
    out.sort(key=lambda i: (-round(i.impact, 9), -i.contacts, i.topic))
    return tuple(out[:rows_max])


def _paths(c: _Columns, jrows: Ints, jid: Ints, journeys: int, rows_max: int) -> tuple[ChannelPath, ...]:
    """Each journey's channel path as a number (4 bits a channel), counted, then named."""
    channel = c.channel[jrows]
    keep = _starts(jid, channel)
    j, ch = jid[keep], channel[keep]
    length = np.bincount(j, minlength=journeys)
    position = np.arange(len(j)) - np.flatnonzero(_starts(j))[_group_ids(_starts(j))]
    # Longer than MAX_PATH: the first MAX_PATH - 1 channels and the last.
    last = position == length[j] - 1
    slot = np.where(position < MAX_PATH - 1, position, np.where(last, MAX_PATH - 1, -1))
    used = slot >= 0
    keys = np.zeros(journeys, dtype=np.int64)
    np.add.at(keys, j[used], ch[used] << (4 * slot[used]))
    multi = length > 1
    found = _distinct(keys[multi])
    counts = np.bincount(np.searchsorted(found, keys[multi]), minlength=len(found))
    named: list[tuple[tuple[str, ...], int]] = []
    for key, n in zip(found.tolist(), counts.tolist(), strict=True):
        path = []
        rest = key
        while rest:
            path.append(_CHANNELS[rest & 15])
            rest >>= 4
        named.append((tuple(path), n))
    switched = int(multi.sum())
    ranked = sorted(named, key=lambda kv: (-kv[1], kv[0]))[:rows_max]
    return tuple(ChannelPath(path, n, _rate(n, switched)) for path, n in ranked)


def _bot(c: _Columns, jrows: Ints, jid: Ints, journeys: int) -> tuple[BotOutcomes, Ints]:
    position = np.arange(len(jrows))
    is_bot = (c.channel[jrows] == _BOT) | np.isin(c.kind[jrows], _BOT_KINDS)
    first_bot = np.full(journeys, np.iinfo(np.int64).max)
    np.minimum.at(first_bot, jid[is_bot], position[is_bot])
    last_contact = np.full(journeys, -1)
    contact = _is_contact(c, jrows)
    np.maximum.at(last_contact, jid[contact], position[contact])
    exited = np.zeros(journeys, dtype=bool)
    exited[jid[c.kind[jrows] == _BOT_EXIT]] = True
    used = first_bot != np.iinfo(np.int64).max
    handed = used & (last_contact > first_bot)
    abandoned = used & ~handed & exited
    return BotOutcomes(int(used.sum()), int(handed.sum()), int(abandoned.sum())), last_contact


def _exit_points(
    c: _Columns, jrows: Ints, jid: Ints, last_contact: Ints, rows_max: int
) -> tuple[tuple[ExitPoint, ...], int]:
    position = np.arange(len(jrows))
    article, flow = c.article[jrows], c.flow[jrows]
    kind = np.where(article != 0, 0, np.where(flow != 0, 1, -1))
    sel = kind >= 0
    code = np.where(kind == 0, article, flow)[sel]
    kind, jj, pos = kind[sel], jid[sel], position[sel]
    failing = ((c.answer[jrows] == _NO) | (c.kind[jrows] == _BOT_EXIT))[sel]
    if not len(kind):
        return (), 0
    order = np.lexsort((pos, code, kind, jj))
    start = _starts(jj[order], kind[order], code[order])
    group = _group_ids(start)
    first = np.flatnonzero(start)
    g_kind, g_code, g_j, g_pos = kind[order][first], code[order][first], jj[order][first], pos[order][first]
    g_failed = np.zeros(len(first), dtype=bool)
    g_failed[group[failing[order]]] = True
    g_escalated = last_contact[g_j] > g_pos
    keys = g_kind * (1 << 40) + g_code
    points = _distinct(keys)
    inverse = np.searchsorted(points, keys)
    attempts = np.bincount(inverse)
    failed = np.bincount(inverse, weights=g_failed)
    escalations = np.bincount(inverse, weights=g_escalated)
    steps: Counter[tuple[int, int]] = Counter()
    exits = (c.kind[jrows] == _BOT_EXIT) & (c.step[jrows] != 0) & (article == 0) & (flow != 0)
    for f, s in zip(flow[exits].tolist(), c.step[jrows][exits].tolist(), strict=True):
        steps[f, s] += 1
    best_step: dict[int, str] = {}
    for (f, s), _ in sorted(steps.items(), key=lambda kv: (-kv[1], c.vocab["step"].words[kv[0][1]])):
        best_step.setdefault(f, c.vocab["step"].words[s])
    out = []
    for p, key in enumerate(points.tolist()):
        k, code_value = divmod(key, 1 << 40)
        words = c.vocab["article" if k == 0 else "flow"].words
        out.append(
            ExitPoint(
                "article" if k == 0 else "flow",
                words[code_value],
                c.titles.get(code_value) if k == 0 else None,
                int(attempts[p]),
                int(failed[p]),
                int(escalations[p]),
                _rate(int(escalations[p]), int(attempts[p])),
                best_step.get(code_value) if k == 1 else None,
            )
        )
    out.sort(key=lambda x: (-x.escalations, -round(x.escalation_rate, 9), x.kind, x.id))
    return tuple(out[:rows_max]), len(first)
