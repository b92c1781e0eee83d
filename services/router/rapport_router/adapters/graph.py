"""All of the router's Cypher: agents, customer context, atomic reservations, the durable queue.

Every statement runs as one auto-commit transaction, bounded by the current deadline. Each
statement that changes a contact or an agent first takes the node's write lock, by writing to
it (an agent's `rev`, a contact's `updated_at`: writes every change makes anyway), and only
then reads what it checks, so two router processes can never both pass the same check:
capacity, state, and the offer being the current one. Locks are always taken contact first,
then agent. The statements of the route-accept-complete cycle carry concurrent calls together
(`for_each_row`), each row in turn, holding its locks to the end: rows are ordered (agents by
id) so that most of these transactions cannot deadlock one another; Neo4j detects any cycle
left, which surfaces as a transient error and is retried.

Every change is guarded by the state it expects, so re-running a statement whose commit was
lost in a broken connection is harmless.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import neo4j
from neo4j.exceptions import (
    ConstraintError,
    DriverError,
    Neo4jError,
    ServiceUnavailable,
    SessionExpired,
    TransientError,
)

from rapport.effort import MAX_TOUCHPOINTS, Touchpoint, facts_from_json
from rapport.graph.driver import Rows
from rapport_router import deadline
from rapport_router.adapters.coalescing import Coalescer
from rapport_router.domain.contact import OFFER_SEPARATOR, ContactRecord, OfferInfo
from rapport_router.domain.model import (
    CHANNELS,
    AgentRecord,
    AgentStatus,
    AssignmentMode,
    ContactSpec,
    ContactState,
    CustomerContext,
    IdentityRef,
    OpenCase,
    PastInteraction,
    RaisedContact,
    ServedBy,
    SkillNeed,
)
from rapport_router.domain.performance import Fresh, OutcomeTally, Performance, Sample
from rapport_router.domain.scoring import DAY, ScoringParams

log = logging.getLogger(__name__)

# Retries of a statement that hit a deadlock or a dropped connection, within the deadline.
_RETRY_BACKOFF = (0.01, 0.03, 0.1, 0.2, 0.4)
_MAX_CONNECTION_RETRIES = 2
# Interactions per intent read for a contact's intent record: the recent ones say who solves it now.
INTENT_RECORD_LIMIT = 500


# What a graph call can fail with when Neo4j is slow, restarting or unreachable.
GRAPH_ERRORS: tuple[type[BaseException], ...] = (Neo4jError, DriverError, TimeoutError, OSError)


class ContactExists(Exception):
    """A contact with this id exists already (RouteContact is idempotent on the id)."""


def _now_dt(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)


def _ms(at: float) -> int:
    """Contact and offer times go to Neo4j as epoch milliseconds (DateTime parameters are slow
    to encode in the driver) and become DateTimes there."""
    return int(at * 1000)


# `$now` in a statement: the time of the change, passed as epoch milliseconds (see `_ms`).
_NOW = "datetime({epochMillis: $now})"


def _seconds(millis: Any) -> float | None:
    """Epoch milliseconds (as the projections return times) to epoch seconds."""
    return None if millis is None else float(millis) / 1000.0


def rev(now: float) -> int:
    """Milliseconds: the agent's revision, for incremental roster refreshes."""
    return int(now * 1000)


def _total_active(var: str) -> str:
    return f"reduce(s = 0, k IN keys({var}) | s + CASE WHEN k STARTS WITH 'active_' THEN {var}[k] ELSE 0 END)"


# ---------------------------------------------------------------- agents

# Agents and contacts leave the graph as plain values: times as epoch milliseconds, so
# decoding hundreds of them per second stays cheap.
AGENT = """{id: a.id, status: a.status, display_name: a.display_name, languages: a.languages, teams: a.teams,
  skill_names: a.skill_names, skill_levels: a.skill_levels, channels: a.channels,
  capacity: [ch IN coalesce(a.channels, []) | coalesce(a['capacity_' + ch], 0)],
  active: [k IN keys(a) WHERE k STARTS WITH 'active_' AND a[k] > 0 | [substring(k, 7), a[k]]],
  idle_since: a.idle_since.epochMillis, updated_at: a.updated_at.epochMillis}"""

_CONTACT_TIMES = ("created_at", "offered_at", "offer_expires_at", "accepted_at", "ended_at")


def contact_projection(var: str = "c", *, explained: bool = True) -> str:
    times = ", ".join(f"{t}: {var}.{t}.epochMillis" for t in _CONTACT_TIMES)
    dropped = "updated_at: null, outbox_at: null, event_published_at: null"
    if not explained:
        dropped += ", explanation: null"
    return f"{var} {{.*, {times}, {dropped}}}"


CONTACT = contact_projection()
# Without the offer's explanation (a few kB), for the answers and events that leave it out.
CONTACT_BRIEF = contact_projection(explained=False)


UPSERT_AGENT = f"""
MERGE (a:Agent {{id: $id}})
SET a.rev = $rev
WITH a, a.created_at IS NULL AS created, a.status AS before
SET a.created_at = coalesce(a.created_at, {_NOW}),
    a.display_name = $display_name,
    a.languages = $languages,
    a.teams = $teams,
    a.skill_names = $skill_names,
    a.skill_levels = $skill_levels,
    a.channels = $channels,
    a.updated_at = {_NOW},
    a.rev = $rev
SET a += $capacity
FOREACH (ch IN $channels | SET a['active_' + ch] = coalesce(a['active_' + ch], 0))
SET a.status = coalesce($status, a.status, 'offline')
SET a.status_changed_at = CASE WHEN before IS NULL OR before <> a.status THEN {_NOW} ELSE a.status_changed_at END
SET a.idle_since = CASE
      WHEN a.status = 'available' AND coalesce(before, '') <> 'available' AND {_total_active("a")} = 0 THEN {_NOW}
      ELSE a.idle_since END
WITH a, created
OPTIONAL MATCH (a)-[old:HAS_SKILL]->(s:Skill)
WHERE NOT s.name IN $skill_names
DELETE old
WITH DISTINCT a, created
FOREACH (sk IN $skills |
    MERGE (s:Skill {{name: sk.name}})
    MERGE (a)-[r:HAS_SKILL]->(s)
    SET r.level = sk.level)
RETURN {AGENT} AS agent, created
"""

SET_AGENT_STATUS = f"""
MATCH (a:Agent {{id: $id}})
SET a.rev = $rev
WITH a, a.status AS before
SET a.status = $status, a.updated_at = {_NOW}, a.rev = $rev
SET a.status_changed_at = CASE WHEN before = $status THEN a.status_changed_at ELSE {_NOW} END
SET a.idle_since = CASE
      WHEN $status = 'available' AND coalesce(before, '') <> 'available' AND {_total_active("a")} = 0 THEN {_NOW}
      ELSE a.idle_since END
RETURN {AGENT} AS agent, before
"""

GET_AGENT = f"MATCH (a:Agent {{id: $id}}) WHERE a.status IS NOT NULL RETURN {AGENT} AS agent"

LIST_AGENTS = f"""
MATCH (a:Agent)
WHERE a.status IS NOT NULL AND a.id > $after
  AND ($team IS NULL OR $team IN a.teams)
  AND ($status IS NULL OR a.status = $status)
RETURN {AGENT} AS agent
ORDER BY a.id
LIMIT $limit
"""

AGENTS_CHANGED = f"""
MATCH (a:Agent)
WHERE a.rev >= $since AND a.id IS NOT NULL
RETURN {AGENT} AS agent
"""

# ---------------------------------------------------------------- customers

_CUSTOMER_PROJECTION = """
RETURN c.id AS id, c.language AS language, c.tier AS tier, c.segment AS segment,
  [(c)-[:OWNS]->(d:Device) WHERE d.model IS NOT NULL | d.model] AS models,
  [(c)-[s:SERVED_BY]->(ag:Agent) | {agent: ag.id, contacts: s.contacts, resolved: s.resolved,
      csat_sum: s.csat_sum, csat_count: s.csat_count, last_at: s.last_at.epochMillis}] AS served,
  [(c)-[:HAS_CASE]->(k:Case) WHERE k.status IN ['open', 'pending'] |
      {id: k.id, status: k.status, owner: k.owner_agent_id, title: k.title,
       proactive: k.proactive, attach_until: k.attach_until.epochMillis}] AS cases,
  COLLECT {
      MATCH (c)-[:HAD]->(i:Interaction) WHERE i.at >= datetime({epochMillis: $effort_since})
      RETURN [i.event_id, i.at.epochMillis, i.kind, i.outcome, i.sentiment]
      ORDER BY i.at DESC LIMIT 20 } AS recent,
  COLLECT {
      MATCH (c)-[:HAD]->(i:Interaction) WHERE i.at >= datetime({epochMillis: $effort_since})
      RETURN [i.at.epochSeconds, i.at.nanosecond, i.channel, i.kind, i.direction, i.topic, i.intent, i.outcome,
              i.answer, i.article_id, i.flow_id, i.step, i.contact_id, i.facts]
      ORDER BY i.at DESC, i.event_id DESC LIMIT $max_touchpoints } AS touchpoints,
  COLLECT {
      MATCH (c)-[:HAD]->(i:Interaction) WHERE i.at >= datetime({epochMillis: $history_since}) AND i.agent_id IS NOT NULL
      RETURN [i.event_id, i.at.epochMillis, i.agent_id, i.topic, i.outcome, i.csat, i.kind]
      ORDER BY i.at DESC LIMIT 15 } AS handled,
  COLLECT {
      MATCH (k:Identity)-[:IDENTIFIES]->(c)
      RETURN k {.kind, .value, .verified}
      ORDER BY CASE k.kind WHEN 'crm' THEN 0 WHEN 'account' THEN 1 WHEN 'email' THEN 2 WHEN 'phone' THEN 3
               ELSE 9 END, k.verified DESC
      LIMIT 1 } AS identity,
  COLLECT {
      MATCH (x:Contact) WHERE x.customer_id = c.id AND x.state IN ['waiting', 'offered'] AND x.origin IS NOT NULL
      RETURN x {.id, .origin, .state, .case_id, .topic, .intent, .attributes, .offer_id, .agent_id, .created_ms}
      ORDER BY x.created_ms LIMIT 5 } AS raised
"""

CUSTOMER_BY_ID = (
    """
MATCH (c0:Customer {id: $id})
OPTIONAL MATCH (s:Customer {id: c0.merged_into})
WITH coalesce(s, c0) AS c
"""
    + _CUSTOMER_PROJECTION
)

CUSTOMER_BY_IDENTITY = (
    """
MATCH (:Identity {key: $key})-[:IDENTIFIES]->(c0:Customer)
WITH c0 ORDER BY c0.merged_into IS NULL DESC, c0.last_contact_at DESC LIMIT 1
OPTIONAL MATCH (s:Customer {id: c0.merged_into})
WITH coalesce(s, c0) AS c
"""
    + _CUSTOMER_PROJECTION
)

CUSTOMERS_BY_ID = (
    """
UNWIND $ids AS wanted
MATCH (c0:Customer {id: wanted})
OPTIONAL MATCH (s:Customer {id: c0.merged_into})
WITH wanted, coalesce(s, c0) AS c
"""
    + _CUSTOMER_PROJECTION
    + ", wanted"
)

# ---------------------------------------------------------------- contacts

GET_CONTACT = f"MATCH (c:Contact {{id: $id}}) RETURN {CONTACT} AS contact"

# The same read, after taking the contact's write lock (a no-op write: nothing is changed or
# logged), so any commit changing it has been applied in full before it is read.
GET_CONTACT_LOCKED = f"MATCH (c:Contact {{id: $id}}) SET c.updated_at = c.updated_at RETURN {CONTACT} AS contact"

_AGENT_FREE = "a.status = 'available' AND coalesce(a[$active_key], 0) < coalesce(a[$capacity_key], 0)"

# A new contact, offered at once: lock the agent, check, count the contact in, create it.
RESERVE_NEW = f"""
MATCH (a:Agent {{id: $agent_id}})
SET a.rev = $rev
WITH a, {_AGENT_FREE} AS ok
FOREACH (_ IN CASE WHEN ok THEN [1] ELSE [] END |
    SET a[$active_key] = coalesce(a[$active_key], 0) + 1,
        a.idle_since = null, a.last_offer_at = {_NOW}, a.updated_at = {_NOW}, a.rev = $rev
    CREATE (c:Contact)
    SET c = $contact, c.agent_id = a.id, c.state = 'offered',
        c.created_at = datetime({{epochMillis: c.created_ms}}), c.updated_at = c.created_at,
        c.offered_at = datetime({{epochMillis: $offered_ms}}),
        c.offer_expires_at = datetime({{epochMillis: $expires_ms}}))
RETURN ok, {AGENT} AS agent
"""

# A waiting contact, offered: lock the contact, then the agent; both must still qualify.
RESERVE_WAITING = f"""
MATCH (c:Contact {{id: $contact_id}})
SET c.updated_at = {_NOW}
WITH c
MATCH (a:Agent {{id: $agent_id}})
SET a.rev = $rev
WITH c, a, c.state = 'waiting' AS waiting, a.id IN coalesce(c.declined_by, []) AS declined, {_AGENT_FREE} AS free
WITH c, a, waiting, declined, waiting AND NOT declined AND free AS ok
FOREACH (_ IN CASE WHEN ok THEN [1] ELSE [] END |
    SET a[$active_key] = coalesce(a[$active_key], 0) + 1,
        a.idle_since = null, a.last_offer_at = {_NOW}, a.updated_at = {_NOW}, a.rev = $rev
    SET c += $offer, c.state = 'offered', c.agent_id = a.id, c.offer_attempt = coalesce(c.offer_attempt, 0) + 1,
        c.offered_at = datetime({{epochMillis: $offered_ms}}),
        c.offer_expires_at = datetime({{epochMillis: $expires_ms}}),
        c.updated_at = {_NOW}
    SET c.offer_id = c.id + '{OFFER_SEPARATOR}' + toString(c.offer_attempt))
RETURN ok, waiting, declined, {AGENT} AS agent, {CONTACT} AS contact
"""

_OFFER_FIELDS = (
    "c.offer_id = null, c.agent_id = null, c.offered_at = null, c.offer_expires_at = null, c.offer_mode = null, "
    "c.score = null, c.explanation = null, c.relaxation_step = null"
)


def _release_agent(var: str = "a") -> str:
    """Clauses that take one contact off `var`'s load on the contact's channel (agent locked first)."""
    key = "'active_' + c.channel"
    return f"""
    SET {var}.rev = $rev
    SET {var}[{key}] = CASE WHEN coalesce({var}[{key}], 0) > 0 THEN {var}[{key}] - 1 ELSE 0 END,
        {var}.updated_at = {_NOW}, {var}.rev = $rev
    SET {var}.idle_since = CASE WHEN {_total_active(var)} = 0 THEN coalesce({var}.idle_since, {_NOW})
                                ELSE {var}.idle_since END"""


# An offer that ends unaccepted (rejected, expired, withdrawn): the contact waits again, never
# to be offered to that agent, whose capacity is freed.
RELEASE_OFFER = f"""
MATCH (c:Contact {{id: $contact_id}})
SET c.updated_at = {_NOW}
WITH c, c.state = 'offered' AND c.offer_id = $offer_id AND ($agent_id IS NULL OR c.agent_id = $agent_id) AS ok
OPTIONAL MATCH (a:Agent {{id: c.agent_id}}) WHERE ok
FOREACH (_ IN CASE WHEN a IS NOT NULL THEN [1] ELSE [] END | {_release_agent()})
FOREACH (_ IN CASE WHEN ok THEN [1] ELSE [] END |
    SET c.declined_by = coalesce(c.declined_by, []) + c.agent_id,
        c.last_offer_end = $reason, c.last_offer_note = $note, c.state = 'waiting', c.updated_at = {_NOW},
        {_OFFER_FIELDS})
RETURN ok, {CONTACT} AS contact, CASE WHEN a IS NULL THEN null ELSE {AGENT} END AS agent
"""

ACCEPT_OFFER = f"""
MATCH (c:Contact {{id: $contact_id}})
SET c.updated_at = {_NOW}
WITH c, c.state = 'offered' AND c.offer_id = $offer_id AND c.agent_id = $agent_id
        AND c.offer_expires_at >= {_NOW} AS ok
FOREACH (_ IN CASE WHEN ok THEN [1] ELSE [] END |
    SET c.state = 'assigned', c.accepted_at = {_NOW}, c.updated_at = {_NOW})
WITH c, ok
// The first agent to take up a proactive case owns it: continuity prefers them from then on.
OPTIONAL MATCH (k:Case {{id: c.case_id}}) WHERE ok AND k.proactive AND k.owner_agent_id IS NULL
FOREACH (_ IN CASE WHEN k IS NULL THEN [] ELSE [1] END | SET k.owner_agent_id = c.agent_id, c.owns_case = true)
RETURN ok, {CONTACT_BRIEF} AS contact
"""

COMPLETE_CONTACT = f"""
MATCH (c:Contact {{id: $contact_id}})
SET c.updated_at = {_NOW}
WITH c, c.state AS before, c.state = 'assigned' AND ($agent_id IS NULL OR c.agent_id = $agent_id) AS ok
OPTIONAL MATCH (a:Agent {{id: c.agent_id}}) WHERE ok
FOREACH (_ IN CASE WHEN a IS NOT NULL THEN [1] ELSE [] END | {_release_agent()})
FOREACH (_ IN CASE WHEN ok THEN [1] ELSE [] END |
    SET c += $ending, c.state = 'completed', c.ended_at = {_NOW}, c.updated_at = {_NOW},
        c.handle_seconds = coalesce($ending.handle_seconds,
                                   toInteger(round(duration.inSeconds(c.accepted_at, {_NOW}).seconds))),
        c.event_id = $event_id, c.outbox_at = {_NOW}
    SET c:Outbox)
RETURN before, ok, {CONTACT_BRIEF} AS contact, CASE WHEN a IS NULL THEN null ELSE {AGENT} END AS agent
"""

CANCEL_CONTACT = f"""
MATCH (c:Contact {{id: $contact_id}})
SET c.updated_at = {_NOW}
WITH c, c.state AS before, c.state IN ['waiting', 'offered'] AS ok
OPTIONAL MATCH (a:Agent {{id: c.agent_id}}) WHERE ok AND before = 'offered'
FOREACH (_ IN CASE WHEN a IS NOT NULL THEN [1] ELSE [] END | {_release_agent()})
FOREACH (_ IN CASE WHEN ok THEN [1] ELSE [] END |
    SET c.last_offer_end = CASE WHEN before = 'offered' THEN 'cancelled' ELSE c.last_offer_end END,
        c.state = 'cancelled', c.end_reason = $reason, c.ended_at = {_NOW}, c.updated_at = {_NOW},
        c.event_id = $event_id, c.outbox_at = {_NOW},
        {_OFFER_FIELDS}
    SET c:Outbox)
RETURN before, ok, {CONTACT_BRIEF} AS contact, CASE WHEN a IS NULL THEN null ELSE {AGENT} END AS agent
"""

# A contact Rapport queued itself (`origin`), taken over by one the customer made: it ends
# without an ending event (nobody abandoned anything) and frees the agent it was offered to.
SUPERSEDE_CONTACT = f"""
MATCH (c:Contact {{id: $contact_id}})
SET c.updated_at = {_NOW}
WITH c, c.state AS before, c.state IN ['waiting', 'offered'] AND c.origin IS NOT NULL AS ok
OPTIONAL MATCH (a:Agent {{id: c.agent_id}}) WHERE ok AND before = 'offered'
FOREACH (_ IN CASE WHEN a IS NOT NULL THEN [1] ELSE [] END | {_release_agent()})
FOREACH (_ IN CASE WHEN ok THEN [1] ELSE [] END |
    SET c.last_offer_end = CASE WHEN before = 'offered' THEN 'superseded' ELSE c.last_offer_end END,
        c.state = 'cancelled', c.end_reason = 'superseded', c.superseded_by = $by,
        c.ended_at = {_NOW}, c.updated_at = {_NOW},
        {_OFFER_FIELDS})
RETURN ok, CASE WHEN a IS NULL THEN null ELSE {AGENT} END AS agent
"""

EXPIRED_OFFERS = f"""
MATCH (c:Contact {{state: 'offered'}})
WHERE c.offer_expires_at < {_NOW}
RETURN c.id AS id, c.offer_id AS offer_id
ORDER BY c.offer_expires_at
LIMIT $limit
"""

OFFERS_FOR_AGENTS = f"""
MATCH (c:Contact {{state: 'offered'}})
WHERE c.agent_id IN $agents
RETURN {CONTACT} AS contact
"""

OFFERED_TO_AGENT = f"""
MATCH (c:Contact {{state: 'offered'}})
WHERE c.agent_id = $agent_id
RETURN {CONTACT} AS contact
"""

# `rank`: priority with ageing, the same order at any instant (see domain.queue.queue_rank).
_RANK = "(coalesce({v}.priority, 0) * $ageing - {v}.created_ms / 1000.0)"

ENQUEUE = f"""
CREATE (c:Contact)
SET c = $contact, c.state = 'waiting', c.created_at = datetime({{epochMillis: c.created_ms}}),
    c.updated_at = c.created_at
WITH c
CALL (c) {{
    MATCH (o:Contact {{state: 'waiting'}})
    WHERE o.channel = c.channel AND coalesce(o.team, '') = coalesce(c.team, '')
    RETURN count(CASE WHEN {_RANK.format(v="o")} > {_RANK.format(v="c")} THEN 1 END) AS ahead, count(o) AS waiting
}}
RETURN ahead + 1 AS position, waiting
"""

QUEUE_POSITION = f"""
MATCH (c:Contact {{id: $contact_id, state: 'waiting'}})
CALL (c) {{
    MATCH (o:Contact {{state: 'waiting'}})
    WHERE o.channel = c.channel AND coalesce(o.team, '') = coalesce(c.team, '')
    RETURN count(CASE WHEN {_RANK.format(v="o")} > {_RANK.format(v="c")} THEN 1 END) AS ahead, count(o) AS waiting
}}
RETURN ahead + 1 AS position, waiting
"""

WAITING_FOR_BATCH = f"""
MATCH (c:Contact {{state: 'waiting'}})
WHERE c.channel IN $channels
  AND (c.team IS NULL OR c.team IN $teams OR c.relaxation CONTAINS 'any_team')
RETURN {CONTACT} AS contact
ORDER BY {_RANK.format(v="c")} DESC, c.created_ms
LIMIT $limit
"""

QUEUE = f"""
MATCH (c:Contact {{state: 'waiting'}})
WHERE ($channel IS NULL OR c.channel = $channel) AND ($team IS NULL OR c.team = $team)
WITH c ORDER BY {_RANK.format(v="c")} DESC, c.created_ms
WITH collect(c) AS queued
RETURN [x IN queued[..$limit] | {contact_projection("x")}] AS contacts, size(queued) AS total
"""

QUEUE_DEPTH = """
MATCH (c:Contact {state: 'waiting'})
RETURN c.channel AS channel, count(*) AS waiting
"""

OUTBOX_DUE = f"""
MATCH (c:Outbox)
WHERE c.outbox_at < datetime({{epochMillis: $before}})
WITH c ORDER BY c.outbox_at LIMIT $limit
SET c.outbox_at = {_NOW}
RETURN {CONTACT_BRIEF} AS contact
"""

OUTBOX_DONE = f"""
UNWIND $ids AS id
MATCH (c:Contact:Outbox {{id: id}})
REMOVE c:Outbox
SET c.event_published_at = {_NOW}
"""

# ---------------------------------------------------------------- several calls in one transaction

# A row's parameters, and the answer to it.
Row = dict[str, Any]
Answer = neo4j.Record | None

_PARAMETER = re.compile(r"\$(\w+)")
# A WITH clause (at the start of a line, so not `STARTS WITH`) ends the scope of what it does
# not name: it keeps `row` too.
_WITH_CLAUSE = re.compile(r"^(\s*)WITH\s+(DISTINCT\s+)?", re.MULTILINE)


def for_each_row(statement: str, returns: str, *, shared: Sequence[str] = (), rows: str = "$rows") -> str:
    """`statement` run once for each map in `$rows` (or the list `rows`), in order, in one transaction.

    Its parameters come from the row (`$agent_id` becomes `row.agent_id`), but for the `shared`
    ones. A CALL subquery runs for one row at a time and sees what the rows before it changed,
    so each row checks what it locks exactly as the statement alone would. `returns` lists the
    statement's columns (`*`: all); `i` says which row an answer is for (a row may have none).
    """
    body = _PARAMETER.sub(lambda m: m.group(0) if m.group(1) in shared else f"row.{m.group(1)}", statement)
    body = _WITH_CLAUSE.sub(lambda m: f"{m.group(1)}WITH {m.group(2) or ''}row, ", body)
    columns = "*, row.i AS i" if returns == "*" else f"row.i AS i, {returns}"
    return f"UNWIND {rows} AS row\nCALL (row) {{\n{body.strip()}\n}}\nRETURN {columns}"


def one_statement(parts: Mapping[str, tuple[str, Sequence[str]]], *, shared: Sequence[str] = ()) -> str:
    """Several `for_each_row` statements as one, run in the order given, each over the rows of
    `$rows` whose `kind` is its name.

    Every answer says which part (`kind`) and row (`i`) it is for; a column a part does not
    return is null. Parts with no rows cost next to nothing. All rows travel in one list so that
    the parameters' types never change: Neo4j plans a statement again for each new combination
    of parameter types (an empty list is one), and this one takes a third of a second to plan.
    """
    columns = sorted({c for _, returns in parts.values() for c in returns})
    unions = []
    for name, (statement, returns) in parts.items():
        inner = for_each_row(statement, ", ".join(returns), shared=shared, rows=f"[r IN $rows WHERE r.kind = '{name}']")
        head, _, _ = inner.rpartition("\nRETURN ")
        picked = ", ".join(c if c in returns else f"null AS {c}" for c in columns)
        unions.append(f"{head}\nRETURN '{name}' AS kind, row.i AS i, {picked}")
    # Its plan rests on unique-index seeks, which changing statistics never improve: a plan in
    # the cache is kept rather than made again as contacts come and go.
    return "CYPHER replan=skip\n" + "\nUNION ALL\n".join(unions)


# LIMIT takes no variables: the touchpoint limit is the same for every row anyway.
_SHARED_WINDOWS = {"max_touchpoints": MAX_TOUCHPOINTS}
RESERVE_NEW_ROWS = for_each_row(RESERVE_NEW, "ok, agent")
ACCEPT_OFFER_ROWS = for_each_row(ACCEPT_OFFER, "ok, contact")
COMPLETE_CONTACT_ROWS = for_each_row(COMPLETE_CONTACT, "before, ok, contact, agent")
_CUSTOMER_COLUMNS = (
    "id", "language", "tier", "segment", "models", "served", "cases", "recent", "touchpoints", "handled",
    "identity", "raised",
)  # fmt: skip
# The cycle's statements, whichever are waiting, in one transaction: a transaction is most of a
# small statement's cost in Neo4j (about 1 ms of its CPU for a write of one contact, 0.5 ms for
# a read, where the customer read's own work is a few hundred db hits), and one statement is the
# driver's. Completions go first, so a reservation after them can take the capacity they free;
# rows lock in the order of each part. The customer reads go last and take no locks: they see
# what the writes before them did, as a read just after their commit would.
CYCLE_PARTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "complete": (COMPLETE_CONTACT, ("before", "ok", "contact", "agent")),
    "reserve": (RESERVE_NEW, ("ok", "agent")),
    "accept": (ACCEPT_OFFER, ("ok", "contact")),
    "resolve": (CUSTOMER_BY_IDENTITY, _CUSTOMER_COLUMNS),
    "customer": (CUSTOMER_BY_ID, _CUSTOMER_COLUMNS),
}
CYCLE_STATEMENT = one_statement(CYCLE_PARTS, shared=tuple(_SHARED_WINDOWS))
# Rows of each part run in this order (agents, then contacts, locked in one order).
_CYCLE_ORDER: dict[str, str] = {
    "complete": "contact_id",
    "reserve": "agent_id",
    "accept": "contact_id",
    "resolve": "key",
    "customer": "id",
}
_CYCLE_RANK = {name: n for n, name in enumerate(CYCLE_PARTS)}

# ---------------------------------------------------------------- statistics

_TALLY = """
count(*) AS contacts,
sum(CASE WHEN i.outcome = 'resolved' THEN 1 ELSE 0 END) AS resolved,
sum(coalesce(i.csat, 0)) AS csat_sum,
count(i.csat) AS csat_count,
collect(CASE WHEN i.outcome = 'resolved'
             THEN [i.event_id, cid, i.at.epochMillis, i.outcome, i.csat] END)[..2] AS samples
"""

STATS_BY_TOPIC = f"""
MATCH (c:Customer)-[:HAD]->(i:Interaction)
WHERE i.at >= $since AND i.agent_id IS NOT NULL AND i.outcome IS NOT NULL
WITH i, c.id AS cid
RETURN i.agent_id AS agent, i.topic AS value, {_TALLY}
"""

STATS_BY_SEGMENT = f"""
MATCH (c:Customer)-[:HAD]->(i:Interaction)
WHERE i.at >= $since AND i.agent_id IS NOT NULL AND i.outcome IS NOT NULL AND c.segment IS NOT NULL
WITH i, c.id AS cid, c.segment AS segment
RETURN i.agent_id AS agent, segment AS value, {_TALLY}
"""

STATS_BY_DEVICE_MODEL = f"""
MATCH (d:Device)<-[:OWNS]-(c:Customer)-[:HAD]->(i:Interaction)
WHERE i.at >= $since AND i.agent_id IS NOT NULL AND i.outcome IS NOT NULL AND d.model IS NOT NULL
WITH DISTINCT i, c.id AS cid, d.model AS model
RETURN i.agent_id AS agent, model AS value, {_TALLY}
"""

# The agents' latest outcomes with these intents (the newest `$per_intent` interactions of each).
INTENT_RECORDS = """
UNWIND $intents AS intent
CALL (intent) {
    MATCH (i:Interaction {intent: intent})
    WHERE i.at >= $since AND i.agent_id IS NOT NULL AND i.outcome IS NOT NULL
    WITH i ORDER BY i.at DESC LIMIT $per_intent
    MATCH (c:Customer)-[:HAD]->(i)
    WITH i, c.id AS cid
    RETURN i.agent_id AS agent, count(*) AS contacts,
        sum(CASE WHEN i.outcome = 'resolved' THEN 1 ELSE 0 END) AS resolved,
        sum(coalesce(i.csat, 0)) AS csat_sum,
        count(i.csat) AS csat_count,
        collect(CASE WHEN i.outcome = 'resolved'
                     THEN [i.event_id, cid, i.at.epochMillis, i.outcome, i.csat] END)[..2] AS samples
}
RETURN intent AS value, agent, contacts, resolved, csat_sum, csat_count, samples
"""

HANDLE_TIMES = """
MATCH (i:Interaction)
WHERE i.at >= $since AND i.handle_seconds IS NOT NULL AND i.agent_id IS NOT NULL
RETURN i.channel AS channel, avg(i.handle_seconds) AS seconds, count(*) AS contacts
"""


# ---------------------------------------------------------------- mapping


def agent_from_props(p: Mapping[str, Any]) -> AgentRecord:
    """An agent from the AGENT projection."""
    channels = p.get("channels") or []
    status = p.get("status") or "offline"
    return AgentRecord(
        id=p["id"],
        status=AgentStatus(status) if status in _STATUSES else AgentStatus.OFFLINE,
        display_name=p.get("display_name") or "",
        languages=tuple(p.get("languages") or ()),
        teams=tuple(p.get("teams") or ()),
        skills=dict(zip(p.get("skill_names") or [], (int(x) for x in p.get("skill_levels") or []), strict=False)),
        capacity={ch: int(cap) for ch, cap in zip(channels, p.get("capacity") or [], strict=False) if cap},
        active={ch: int(n) for ch, n in p.get("active") or []},
        idle_since=_seconds(p.get("idle_since")),
        updated_at=_seconds(p.get("updated_at")),
    )


_STATUSES = frozenset(s.value for s in AgentStatus)


def _recent(raw: Sequence[Any]) -> PastInteraction:
    """[event_id, at, kind, outcome, sentiment] (lists decode faster than maps)."""
    return PastInteraction(raw[0], _seconds(raw[1]) or 0.0, kind=raw[2], outcome=raw[3], sentiment=raw[4])


def _handled(raw: Sequence[Any]) -> PastInteraction:
    """[event_id, at, agent_id, topic, outcome, csat, kind]."""
    return PastInteraction(
        raw[0], _seconds(raw[1]) or 0.0, agent_id=raw[2], topic=raw[3], outcome=raw[4], csat=raw[5], kind=raw[6]
    )


def _touchpoint(raw: Sequence[Any]) -> Touchpoint:
    """[at seconds, at nanos, channel, kind, direction, topic, intent, outcome, answer, article_id,
    flow_id, step, contact_id, facts JSON]."""
    try:
        facts = facts_from_json(json.loads(raw[13])) if raw[13] else ()
    except ValueError:
        facts = ()
    return Touchpoint(
        at=int(raw[0]) * 1_000_000_000 + int(raw[1] or 0),
        channel=raw[2],
        kind=raw[3],
        direction=raw[4],
        topic=raw[5],
        intent=raw[6],
        outcome=raw[7],
        answer=raw[8],
        article_id=raw[9],
        flow_id=raw[10],
        step=raw[11],
        contact_id=raw[12],
        facts=facts,
    )


def _raised(x: Mapping[str, Any]) -> RaisedContact:
    return RaisedContact(
        id=x["id"],
        origin=x["origin"],
        state=x["state"],
        case_id=x.get("case_id"),
        topic=x.get("topic"),
        intent=x.get("intent"),
        attributes=json.loads(x["attributes"]) if x.get("attributes") else {},
        offer_id=x.get("offer_id"),
        agent_id=x.get("agent_id"),
        created_at=(x.get("created_ms") or 0) / 1000.0,
    )


def customer_from_record(r: Mapping[str, Any]) -> CustomerContext:
    handled = tuple(_handled(x) for x in r["handled"])
    identity = r["identity"][0] if r["identity"] else None
    return CustomerContext(
        customer_id=r["id"],
        language=r["language"],
        tier=r["tier"],
        segment=r["segment"],
        device_models=tuple(sorted(set(r["models"]))),
        served_by={
            s["agent"]: ServedBy(
                s["agent"],
                int(s["contacts"] or 0),
                int(s["resolved"] or 0),
                float(s["csat_sum"] or 0),
                int(s["csat_count"] or 0),
                _seconds(s["last_at"]),
            )
            for s in r["served"]
        },
        open_cases=tuple(
            OpenCase(k["id"], k["status"], k["owner"], k["title"], bool(k["proactive"]), _seconds(k["attach_until"]))
            for k in r["cases"]
        ),
        recent=tuple(_recent(x) for x in r["recent"]),
        touchpoints=tuple(_touchpoint(x) for x in r["touchpoints"]),
        resolved_by_agents=tuple(p for p in handled if p.outcome == "resolved"),
        handled=handled,
        raised=tuple(_raised(x) for x in r["raised"]),
        identity=IdentityRef(identity["kind"], identity["value"], bool(identity["verified"])) if identity else None,
    )


def contact_props(
    spec: ContactSpec, identity: IdentityRef | None, attributes: Mapping[str, str], created_at: float
) -> dict[str, Any]:
    """The Contact node's properties for a new contact (None values are simply not stored)."""
    props: dict[str, Any] = {
        "id": spec.id,
        "customer_id": spec.customer_id,
        "channel": spec.channel,
        "topic": spec.topic,
        "intent": spec.intent,
        "language": spec.language,
        "skill_names": [s.name for s in spec.required_skills],
        "skill_levels": [s.min_level for s in spec.required_skills],
        "priority": spec.priority,
        "team": spec.team,
        "preferred_agent_id": spec.preferred_agent_id,
        "preferred_wait": spec.preferred_wait,
        "sentiment": spec.sentiment,
        "case_id": spec.case_id,
        "declined_by": sorted(spec.declined_by),
        "relaxation": spec.relaxation,
        "effort": spec.effort,
        "effort_reasons": list(spec.effort_reasons),
        "created_ms": _ms(created_at),
        "identity_kind": identity.kind if identity else None,
        "identity_value": identity.value if identity else None,
        "identity_verified": identity.verified if identity else None,
        "attributes": json.dumps(dict(sorted(attributes.items()))) if attributes else None,
        "offer_attempt": 0,
    }
    # Absent, not empty: every stored property costs a write on the hot path.
    return {k: v for k, v in props.items() if v is not None and v != []}


def offer_props(offer: OfferInfo) -> dict[str, Any]:
    return {
        "offer_id": offer.offer_id,
        "offer_mode": offer.mode.value,
        "score": offer.score,
        "explanation": offer.explanation.to_json() if offer.explanation else offer.explanation_json,
        "relaxation_step": offer.relaxation_step,
    }


def contact_is_whole(p: Mapping[str, Any]) -> bool:
    """Whether a contact as read (the CONTACT projection) holds what its state implies, and
    nothing its state has dropped.

    Neo4j readers take no locks, and a read that overlaps the commit of another transaction can
    see part of it (neo4j/neo4j#12250): a contact `offered` without its offer id or agent, or
    `waiting` with them. Such a read is taken again under the contact's lock.
    """
    state = p.get("state")
    offer_id, agent_id = p.get("offer_id"), p.get("agent_id")
    if state == "waiting":
        return offer_id is None and agent_id is None and p.get("offered_at") is None
    if state == "offered":
        return (
            agent_id is not None
            and offer_id == f"{p.get('id')}{OFFER_SEPARATOR}{p.get('offer_attempt')}"
            and p.get("offered_at") is not None
            and p.get("offer_expires_at") is not None
        )
    if state == "assigned":
        return offer_id is not None and agent_id is not None and p.get("accepted_at") is not None
    if state == "completed":
        return agent_id is not None and p.get("ended_at") is not None
    if state == "cancelled":
        return offer_id is None and p.get("ended_at") is not None
    return False


def contact_from_props(p: Mapping[str, Any]) -> ContactRecord:
    names = p.get("skill_names") or []
    levels = p.get("skill_levels") or []
    created_at = _seconds(p.get("created_at")) or (p.get("created_ms", 0) / 1000.0)
    spec = ContactSpec(
        id=p["id"],
        channel=p["channel"],
        created_at=created_at,
        customer_id=p.get("customer_id"),
        topic=p.get("topic"),
        intent=p.get("intent"),
        language=p.get("language"),
        required_skills=tuple(SkillNeed(n, int(level)) for n, level in zip(names, levels, strict=False)),
        priority=int(p.get("priority") or 0),
        team=p.get("team"),
        preferred_agent_id=p.get("preferred_agent_id"),
        preferred_wait=float(p.get("preferred_wait") or 0.0),
        sentiment=p.get("sentiment"),
        case_id=p.get("case_id"),
        declined_by=frozenset(p.get("declined_by") or ()),
        relaxation=p.get("relaxation") or "",
        effort=int(p["effort"]) if p.get("effort") is not None else None,
        effort_reasons=tuple(p.get("effort_reasons") or ()),
    )
    offer = None
    if p.get("offer_id") and p.get("agent_id"):
        raw_explanation = p.get("explanation")
        offer = OfferInfo(
            offer_id=p["offer_id"],
            agent_id=p["agent_id"],
            score=float(p.get("score") or 0.0),
            offered_at=_seconds(p.get("offered_at")) or 0.0,
            expires_at=_seconds(p.get("offer_expires_at")) or 0.0,
            mode=AssignmentMode(p.get("offer_mode") or "direct"),
            relaxation_step=int(p.get("relaxation_step") or 0),
            attempt=int(p.get("offer_attempt") or 1),
            explanation_json=raw_explanation or None,
        )
    identity = None
    if p.get("identity_kind") and p.get("identity_value"):
        identity = IdentityRef(p["identity_kind"], p["identity_value"], bool(p.get("identity_verified")))
    attributes = json.loads(p["attributes"]) if p.get("attributes") else {}
    return ContactRecord(
        spec=spec,
        state=ContactState(p["state"]),
        identity=identity,
        offer=offer,
        agent_id=p.get("agent_id"),
        accepted_at=_seconds(p.get("accepted_at")),
        ended_at=_seconds(p.get("ended_at")),
        outcome=p.get("outcome"),
        csat=p.get("csat"),
        notes=p.get("notes"),
        handle_seconds=p.get("handle_seconds"),
        end_sentiment=p.get("end_sentiment"),
        attributes=attributes,
        event_id=p.get("event_id"),
        last_offer_end=p.get("last_offer_end"),
        end_reason=p.get("end_reason"),
        attempts=int(p.get("offer_attempt") or 0),
        origin=p.get("origin"),
        owns_case=bool(p.get("owns_case")),
    )


def _tallies(records: Iterable[Mapping[str, Any]]) -> dict[str | None, dict[str, OutcomeTally]]:
    """Per value (None: interactions without one), per agent."""
    out: dict[str | None, dict[str, OutcomeTally]] = {}
    for r in records:
        samples = tuple(Sample(s[0], s[1], _seconds(s[2]), s[3], s[4]) for s in r["samples"] if s is not None)
        value = None if r["value"] is None else str(r["value"])
        out.setdefault(value, {})[r["agent"]] = OutcomeTally(
            int(r["contacts"]), int(r["resolved"]), float(r["csat_sum"]), int(r["csat_count"]), samples
        )
    return out


def _cycle_what(rows: Sequence[Row]) -> str:
    """What a cycle transaction does, for errors and logs: "reserve agent, accept offer"."""
    kinds = {r["kind"] for r in rows}
    return ", ".join(what for kind, what in _CYCLE_WHAT.items() if kind in kinds)


_CYCLE_WHAT = {
    "complete": "complete contact",
    "reserve": "reserve agent",
    "accept": "accept offer",
    "resolve": "resolve customer",
    "customer": "read customer",
}


# ---------------------------------------------------------------- adapter


class RouterGraph:
    """The router's view of the customer graph. Thread-safe (the driver pools connections)."""

    def __init__(self, driver: neo4j.Driver, database: str = "neo4j", *, ageing_seconds: float = 60.0) -> None:
        self._driver = driver
        self._database = database
        self.ageing_seconds = ageing_seconds
        # One session per thread and access mode, reused: building a session costs more than the
        # smaller statements. A session holds a connection only while a statement runs.
        self._sessions = threading.local()
        self._opened: list[neo4j.Session] = []
        self._opened_lock = threading.Lock()
        # The statements of every route, accept and completion (customer reads, reservations,
        # accepts, completions): those waiting together share one transaction (adapters.coalescing).
        self._cycle: Coalescer[tuple[str, Row], Answer] = Coalescer(self._cycle_rows, "run the cycle's statements")

    # -- plumbing

    def _session(self, write: bool) -> neo4j.Session:
        session: neo4j.Session | None = getattr(self._sessions, "write" if write else "read", None)
        if session is None:
            session = self._driver.session(
                database=self._database,
                default_access_mode=neo4j.WRITE_ACCESS if write else neo4j.READ_ACCESS,
                # Properties absent from a young graph (segment, owner_agent_id) are expected.
                notifications_min_severity=neo4j.NotificationMinimumSeverity.OFF,
            )
            setattr(self._sessions, "write" if write else "read", session)
            with self._opened_lock:
                self._opened.append(session)
        return session

    def _drop_session(self, write: bool) -> None:
        """After a failure the session's state is unknown: the next statement opens a new one."""
        session: neo4j.Session | None = getattr(self._sessions, "write" if write else "read", None)
        setattr(self._sessions, "write" if write else "read", None)
        if session is not None:
            with self._opened_lock:
                if session in self._opened:
                    self._opened.remove(session)
            with contextlib.suppress(*GRAPH_ERRORS):
                session.close()

    def close(self) -> None:
        """Closes the sessions the threads opened; the driver stays open (its owner closes it)."""
        with self._opened_lock:
            sessions, self._opened = self._opened, []
        for session in sessions:
            with contextlib.suppress(*GRAPH_ERRORS):
                session.close()

    def run(self, text: str, params: Mapping[str, Any], *, write: bool, what: str) -> list[neo4j.Record]:
        """One statement, one transaction, within the current deadline; transient failures retried."""
        attempt = 0
        connection_failures = 0
        while True:
            left = deadline.check(what)
            try:
                try:
                    result = self._session(write).run(neo4j.Query(text, timeout=max(0.001, left)), dict(params))  # type: ignore[arg-type]
                    return list(result)
                except BaseException:
                    self._drop_session(write)
                    raise
            except ConstraintError:
                raise
            except (ServiceUnavailable, SessionExpired):
                connection_failures += 1
                if connection_failures > _MAX_CONNECTION_RETRIES:
                    raise
            except TransientError as exc:
                if not exc.is_retryable():
                    raise
            except Neo4jError as exc:
                if exc.is_retryable():
                    pass
                else:
                    raise
            pause = _RETRY_BACKOFF[min(attempt, len(_RETRY_BACKOFF) - 1)]
            attempt += 1
            if deadline.remaining() <= pause * 2:
                raise deadline.DeadlineExceeded(f"graph busy or unreachable during {what}")
            time.sleep(pause)

    def read(self, text: str, what: str, **params: Any) -> list[neo4j.Record]:
        return self.run(text, params, write=False, what=what)

    def write(self, text: str, what: str, **params: Any) -> list[neo4j.Record]:
        return self.run(text, params, write=True, what=what)

    def ping(self) -> None:
        self.read("RETURN 1", "ping")

    def _cycle_rows(self, calls: Sequence[tuple[str, Row]]) -> list[Answer | BaseException]:
        """The answer to each (part, row) call of CYCLE_STATEMENT, in order, from one transaction."""
        rows = [{**row, "i": n, "kind": kind} for n, (kind, row) in enumerate(calls)]
        rows.sort(key=lambda r: (_CYCLE_RANK[r["kind"]], r[_CYCLE_ORDER[r["kind"]]]))
        answers: list[Answer | BaseException] = [None] * len(calls)
        try:
            params = {"rows": Rows(rows), **_SHARED_WINDOWS}
            for r in self.run(CYCLE_STATEMENT, params, write=True, what=_cycle_what(rows)):
                answers[r["i"]] = r
        except ConstraintError as exc:
            if len(calls) == 1:
                return [exc]
            # A contact id in use fails the whole transaction: the calls go one by one then.
            return [self._cycle_rows([call])[0] for call in calls]
        return answers

    def _reserve_rows(self, rows: Sequence[Row]) -> list[Answer | BaseException]:
        return self._cycle_rows([("reserve", row) for row in rows])

    # -- agents

    def upsert_agent(self, agent: AgentRecord, status: AgentStatus | None, now: float) -> tuple[AgentRecord, bool]:
        skills = [{"name": n, "level": level} for n, level in sorted(agent.skills.items())]
        records = self.write(
            UPSERT_AGENT,
            "upsert agent",
            id=agent.id,
            now=_ms(now),
            rev=rev(now),
            display_name=agent.display_name,
            languages=list(agent.languages),
            teams=list(agent.teams),
            skill_names=[s["name"] for s in skills],
            skill_levels=[s["level"] for s in skills],
            skills=skills,
            channels=sorted(ch for ch, cap in agent.capacity.items() if cap > 0),
            capacity={f"capacity_{ch}": int(agent.capacity.get(ch, 0)) for ch in CHANNELS},
            status=status.value if status else None,
        )
        return agent_from_props(records[0]["agent"]), bool(records[0]["created"])

    def set_agent_status(self, agent_id: str, status: AgentStatus, now: float) -> tuple[AgentRecord, str | None] | None:
        records = self.write(
            SET_AGENT_STATUS, "set agent status", id=agent_id, status=status.value, now=_ms(now), rev=rev(now)
        )
        if not records:
            return None
        return agent_from_props(records[0]["agent"]), records[0]["before"]

    def get_agent(self, agent_id: str) -> AgentRecord | None:
        records = self.read(GET_AGENT, "get agent", id=agent_id)
        return agent_from_props(records[0]["agent"]) if records else None

    def list_agents(self, team: str | None, status: AgentStatus | None, after: str, limit: int) -> list[AgentRecord]:
        records = self.read(
            LIST_AGENTS,
            "list agents",
            team=team,
            status=status.value if status else None,
            after=after,
            limit=limit,
        )
        return [agent_from_props(r["agent"]) for r in records]

    def agents_changed_since(self, since_rev: int, known: Mapping[str, AgentRecord] | None = None) -> list[AgentRecord]:
        """Agents whose router-owned properties changed at or after `since_rev` (ms), but for
        those `known` as of the same change (every change sets `updated_at`)."""
        changed = []
        for r in self.read(AGENTS_CHANGED, "read agents", since=since_rev):
            props = r["agent"]
            if props.get("id") is None:  # deleted while the roster was read
                continue
            seen = known.get(props["id"]) if known is not None else None
            if seen is None or seen.updated_at is None or seen.updated_at != _seconds(props["updated_at"]):
                changed.append(agent_from_props(props))
        return changed

    # -- customers

    def _windows(self, now: float, params: ScoringParams) -> dict[str, int]:
        return {
            "effort_since": _ms(now - params.effort_days * DAY),
            "history_since": _ms(now - 3 * params.continuity_days * DAY),
            **_SHARED_WINDOWS,
        }

    def customer_by_id(self, customer_id: str, now: float, params: ScoringParams) -> CustomerContext | None:
        record = self._cycle(("customer", {"id": customer_id, **self._windows(now, params)}))
        return customer_from_record(record) if record is not None else None

    def customer_by_identity(self, key: str, now: float, params: ScoringParams) -> CustomerContext | None:
        record = self._cycle(("resolve", {"key": key, **self._windows(now, params)}))
        return customer_from_record(record) if record is not None else None

    def customers(self, ids: Sequence[str], now: float, params: ScoringParams) -> dict[str, CustomerContext]:
        if not ids:
            return {}
        records = self.read(CUSTOMERS_BY_ID, "read customers", ids=sorted(set(ids)), **self._windows(now, params))
        return {r["wanted"]: customer_from_record(r) for r in records}

    # -- contacts

    def get_contact(self, contact_id: str) -> ContactRecord | None:
        records = self.read(GET_CONTACT, "get contact", id=contact_id)
        if not records:
            return None
        props = records[0]["contact"]
        if not contact_is_whole(props):
            props = self._locked_contact(contact_id)
        return contact_from_props(props) if props is not None else None

    def _locked_contact(self, contact_id: str) -> Mapping[str, Any] | None:
        """The contact read under its write lock: after any commit changing it is fully applied."""
        log.debug("contact read again under its lock", extra={"contact_id": contact_id})
        records = self.write(GET_CONTACT_LOCKED, "get contact", id=contact_id)
        return records[0]["contact"] if records else None

    def _contacts(self, rows: Iterable[Mapping[str, Any]], state: str) -> list[ContactRecord]:
        """The contacts read that are in `state`; one read half-written is read again."""
        contacts = []
        for read in rows:
            props = read if contact_is_whole(read) else self._locked_contact(read["id"])
            if props is not None and props["state"] == state:
                contacts.append(contact_from_props(props))
        return contacts

    @staticmethod
    def _keys(channel: str) -> dict[str, str]:
        if channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r}")
        return {"active_key": f"active_{channel}", "capacity_key": f"capacity_{channel}"}

    def reserve_new(
        self, props: Mapping[str, Any], offer: OfferInfo, channel: str, now: float
    ) -> tuple[bool, AgentRecord | None]:
        """Creates the contact offered to `offer.agent_id` if the agent still has room; atomic."""
        contact = {**props, **{k: v for k, v in offer_props(offer).items() if v is not None}, "offer_attempt": 1}
        row = {
            "agent_id": offer.agent_id,
            "contact": contact,
            "offered_ms": _ms(offer.offered_at),
            "expires_ms": _ms(offer.expires_at),
            "now": _ms(now),
            "rev": rev(now),
            **self._keys(channel),
        }
        try:
            record = self._cycle(("reserve", row))
        except ConstraintError as exc:
            raise ContactExists(props["id"]) from exc
        if record is None:
            return False, None
        return bool(record["ok"]), agent_from_props(record["agent"])

    def reserve_waiting(
        self, contact_id: str, offer: OfferInfo, channel: str, now: float
    ) -> tuple[bool, bool, bool, ContactRecord | None, AgentRecord | None]:
        """Offers a waiting contact to `offer.agent_id`; atomic. The offer id is the graph's.

        Returns (offered, contact still waiting, agent declined it before, contact, agent).
        """
        records = self.write(
            RESERVE_WAITING,
            "reserve agent",
            contact_id=contact_id,
            agent_id=offer.agent_id,
            offer={k: v for k, v in offer_props(offer).items() if v is not None},
            offered_ms=_ms(offer.offered_at),
            expires_ms=_ms(offer.expires_at),
            now=_ms(now),
            rev=rev(now),
            **self._keys(channel),
        )
        if not records:
            return False, False, False, None, None
        r = records[0]
        return (
            bool(r["ok"]),
            bool(r["waiting"]),
            bool(r["declined"]),
            contact_from_props(r["contact"]),
            agent_from_props(r["agent"]) if r["agent"] else None,
        )

    def enqueue(self, props: Mapping[str, Any]) -> tuple[int, int]:
        """Stores a waiting contact; returns (position, waiting) in its channel and team."""
        try:
            records = self.write(ENQUEUE, "enqueue contact", contact=dict(props), ageing=self.ageing_seconds)
        except ConstraintError as exc:
            raise ContactExists(props["id"]) from exc
        return int(records[0]["position"]), int(records[0]["waiting"])

    def queue_position(self, contact_id: str) -> tuple[int, int] | None:
        records = self.read(QUEUE_POSITION, "queue position", contact_id=contact_id, ageing=self.ageing_seconds)
        return (int(records[0]["position"]), int(records[0]["waiting"])) if records else None

    def release_offer(
        self, contact_id: str, offer_id: str, *, agent_id: str | None, reason: str, note: str | None, now: float
    ) -> tuple[bool, ContactRecord | None, AgentRecord | None]:
        records = self.write(
            RELEASE_OFFER,
            "release offer",
            contact_id=contact_id,
            offer_id=offer_id,
            agent_id=agent_id,
            reason=reason,
            note=note,
            now=_ms(now),
            rev=rev(now),
        )
        if not records:
            return False, None, None
        r = records[0]
        return bool(r["ok"]), contact_from_props(r["contact"]), agent_from_props(r["agent"]) if r["agent"] else None

    def accept_offer(
        self, contact_id: str, offer_id: str, agent_id: str, now: float
    ) -> tuple[bool, ContactRecord | None]:
        record = self._cycle(
            ("accept", {"contact_id": contact_id, "offer_id": offer_id, "agent_id": agent_id, "now": _ms(now)})
        )
        if record is None:
            return False, None
        return bool(record["ok"]), contact_from_props(record["contact"])

    def complete(
        self, contact_id: str, agent_id: str | None, ending: Mapping[str, Any], event_id: str, now: float
    ) -> tuple[str | None, bool, ContactRecord | None, AgentRecord | None]:
        r = self._cycle(
            (
                "complete",
                {
                    "contact_id": contact_id,
                    "agent_id": agent_id,
                    "ending": {"handle_seconds": None, **{k: v for k, v in ending.items()}},
                    "event_id": event_id,
                    "now": _ms(now),
                    "rev": rev(now),
                },
            )
        )
        if r is None:
            return None, False, None, None
        return (
            r["before"],
            bool(r["ok"]),
            contact_from_props(r["contact"]),
            agent_from_props(r["agent"]) if r["agent"] else None,
        )

    def cancel(
        self, contact_id: str, reason: str | None, event_id: str, now: float
    ) -> tuple[str | None, bool, ContactRecord | None, AgentRecord | None]:
        records = self.write(
            CANCEL_CONTACT,
            "cancel contact",
            contact_id=contact_id,
            reason=reason,
            event_id=event_id,
            now=_ms(now),
            rev=rev(now),
        )
        if not records:
            return None, False, None, None
        r = records[0]
        return (
            r["before"],
            bool(r["ok"]),
            contact_from_props(r["contact"]),
            agent_from_props(r["agent"]) if r["agent"] else None,
        )

    def intent_records(self, intents: Sequence[str], now: float, params: ScoringParams) -> dict[str, Fresh]:
        """Per intent, each agent's outcomes with it: who resolved it before (see performance)."""
        wanted = sorted({i for i in intents if i})
        if not wanted:
            return {}
        records = self.read(
            INTENT_RECORDS,
            "agent outcomes by intent",
            intents=wanted,
            since=_now_dt(now - params.stats_lookback_days * DAY),
            per_intent=INTENT_RECORD_LIMIT,
        )
        return {value: per_agent for value, per_agent in _tallies(records).items() if value is not None}

    def supersede(self, contact_id: str, by: str, now: float) -> tuple[bool, AgentRecord | None]:
        """Ends a waiting or offered contact Rapport queued itself; returns (ended, agent freed)."""
        records = self.write(
            SUPERSEDE_CONTACT, "supersede contact", contact_id=contact_id, by=by, now=_ms(now), rev=rev(now)
        )
        if not records:
            return False, None
        r = records[0]
        return bool(r["ok"]), agent_from_props(r["agent"]) if r["agent"] else None

    def expired_offers(self, now: float, limit: int = 100) -> list[tuple[str, str]]:
        records = self.read(EXPIRED_OFFERS, "find expired offers", now=_ms(now), limit=limit)
        return [(r["id"], r["offer_id"]) for r in records]

    def offers_for_agents(self, agent_ids: Sequence[str]) -> list[ContactRecord]:
        if not agent_ids:
            return []
        records = self.read(OFFERS_FOR_AGENTS, "read offers", agents=list(agent_ids))
        return self._contacts((r["contact"] for r in records), "offered")

    def offered_to(self, agent_id: str) -> list[ContactRecord]:
        records = self.read(OFFERED_TO_AGENT, "read offers", agent_id=agent_id)
        return self._contacts((r["contact"] for r in records), "offered")

    def waiting_for_batch(self, channels: Sequence[str], teams: Sequence[str], limit: int) -> list[ContactRecord]:
        records = self.read(
            WAITING_FOR_BATCH,
            "read queue",
            channels=list(channels),
            teams=list(teams),
            limit=limit,
            ageing=self.ageing_seconds,
        )
        return self._contacts((r["contact"] for r in records), "waiting")

    def queue(self, channel: str | None, team: str | None, limit: int) -> tuple[list[ContactRecord], int]:
        records = self.read(QUEUE, "read queue", channel=channel, team=team, limit=limit, ageing=self.ageing_seconds)
        if not records:
            return [], 0
        return self._contacts(records[0]["contacts"], "waiting"), int(records[0]["total"])

    def queue_depth(self) -> dict[str, int]:
        return {r["channel"]: int(r["waiting"]) for r in self.read(QUEUE_DEPTH, "queue depth")}

    # -- outbox

    def outbox_due(self, before: float, now: float, limit: int = 100) -> list[ContactRecord]:
        """Contacts whose event is unpublished since before `before`; claimed until the next retry."""
        records = self.write(OUTBOX_DUE, "claim outbox", before=_ms(before), now=_ms(now), limit=limit)
        return [contact_from_props(r["contact"]) for r in records]

    def outbox_done(self, contact_ids: Sequence[str], now: float) -> None:
        if contact_ids:
            self.write(OUTBOX_DONE, "mark events published", ids=list(contact_ids), now=_ms(now))

    # -- statistics

    def performance(self, now: float, params: ScoringParams) -> Performance:
        since = _now_dt(now - params.stats_lookback_days * DAY)
        tallies: dict[tuple[str, str], dict[str, OutcomeTally]] = {}
        overall: dict[str, OutcomeTally] = {}
        for dim, query in (
            ("topic", STATS_BY_TOPIC),
            ("segment", STATS_BY_SEGMENT),
            ("device_model", STATS_BY_DEVICE_MODEL),
        ):
            for value, per_agent in _tallies(self.read(query, f"agent outcomes by {dim}", since=since)).items():
                if dim == "topic":  # every interaction has exactly one topic row: the agent's overall record
                    for agent_id, t in per_agent.items():
                        overall[agent_id] = overall.get(agent_id, OutcomeTally()) + t
                if value is not None:
                    tallies[(dim, value)] = per_agent
        handle = {
            r["channel"]: float(r["seconds"])
            for r in self.read(HANDLE_TIMES, "handle times", since=_now_dt(now - DAY))
            if r["channel"] and r["seconds"] is not None and r["contacts"] >= 5
        }
        return Performance(tallies, overall, handle, computed_at=now)
