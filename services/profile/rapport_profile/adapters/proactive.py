"""Proactive device cases and self-service escalations, written in the batch's transaction.

The rules are in `rapport_profile.domain.proactive`; this is their Cypher. GraphWriter calls
`link` after cases and devices are upserted and before the interactions are created (so they
are created in their case), and `follow_up` once they exist. Both cost nothing for a batch
without device alerts, customer contacts or failed self-service.

Alerts of one device are serialised by a write to the Device node before its open case is
looked up, so two workers never open two cases for one fault. Outreach and escalation contacts
are waiting (:Contact) nodes created in the same transaction as what caused them: the router's
queue lives in the graph, so they exist exactly once and survive any crash.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import neo4j

from rapport.graph.driver import run_rows, unlogged
from rapport_profile.domain import proactive as rules
from rapport_profile.domain.interactions import InteractionRecord

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# How far back the path to a failed self-service attempt is read.
JOURNEY = timedelta(hours=24)
MAX_PATH = 20


def _us(at: datetime) -> int:
    return (at - _EPOCH) // _MICROSECOND


def _dt(expr: str) -> str:
    return f"datetime({{epochSeconds: {expr} / 1000000, nanosecond: {expr} % 1000000 * 1000}})"


_LIVE_CONTACTS = (
    "COUNT { MATCH (x:Contact) WHERE x.customer_id = c.id AND x.state IN ['waiting', 'offered', 'assigned'] }"
)

# OPEN_CASES, JOINABLE_CASES and CREATE_NOTIFICATIONS keep their first plan, as the batch's other
# statements do (see rapport_profile.adapters.graph): unique-constraint seeks and bound expansions.
OPEN_CASES = f"""
CYPHER replan=skip
UNWIND $alerts AS r
MATCH (c:Customer) WHERE elementId(c) = r.customer_node
MERGE (d:Device {{id: r.device_id}})
MERGE (c)-[:OWNS]->(d)
SET d.last_alert_at = CASE WHEN d.last_alert_at IS NULL OR {_dt("r.last_us")} > d.last_alert_at
                           THEN {_dt("r.last_us")} ELSE d.last_alert_at END
WITH c, r
OPTIONAL MATCH (c)-[:HAS_CASE]->(o:Case {{device_id: r.device_id, fault_code: r.fault_code}})
WHERE o.proactive AND o.status IN ['open', 'pending']
WITH c, r, o ORDER BY o.opened_at DESC
WITH c, r, head(collect(o)) AS open
MERGE (k:Case {{id: coalesce(r.given_case_id, open.id, r.new_case_id)}})
ON CREATE SET k.status = 'open', k.title = r.title, k.opened_at = {_dt("r.first_us")},
              k.updated_at = {_dt("r.first_us")}
WITH c, r, k, k.last_alert_at AS before_at,
     CASE k.severity WHEN 'critical' THEN 3 WHEN 'warning' THEN 2 WHEN 'info' THEN 1 ELSE 0 END AS before_rank,
     {_dt("r.last_us")} AS last_at
SET k.proactive = true, k.device_id = r.device_id, k.fault_code = r.fault_code,
    k.status = coalesce(k.status, 'open'),
    k.alerts = coalesce(k.alerts, 0) + size(r.event_ids),
    k.severity = CASE WHEN r.rank > before_rank THEN r.severity ELSE k.severity END,
    k.readings = CASE WHEN r.readings IS NOT NULL AND (before_at IS NULL OR last_at >= before_at)
                      THEN r.readings ELSE k.readings END,
    k.last_alert_at = CASE WHEN before_at IS NULL OR last_at > before_at THEN last_at ELSE before_at END,
    k.updated_at = CASE WHEN k.updated_at IS NULL OR last_at > k.updated_at THEN last_at ELSE k.updated_at END
SET k.attach_until = k.last_alert_at + duration({{seconds: $attach_seconds}})
MERGE (c)-[:HAS_CASE]->(k)
RETURN collect([r.index, k.id, k.severity, k.notified_at IS NOT NULL, k.outreach_contact_id]) AS cases
"""

# Customers with a live contact (waiting, offered, assigned): someone is already helping them.
LIVE_CONTACTS = f"""
UNWIND $customers AS cid
MATCH (c:Customer {{id: cid}})
WITH c WHERE {_LIVE_CONTACTS} > 0
RETURN c.id AS cid
"""

# The open proactive cases a customer's new contacts may join.
JOINABLE_CASES = """
CYPHER replan=skip
UNWIND $customers AS r
MATCH (c:Customer)-[:HAS_CASE]->(k:Case)
WHERE elementId(c) = r.node AND k.proactive AND k.attach_until IS NOT NULL AND k.status IN ['open', 'pending']
RETURN collect([r.id, k.id,
                k.opened_at.epochSeconds * 1000000 + k.opened_at.microsecond,
                k.attach_until.epochSeconds * 1000000 + k.attach_until.microsecond,
                k.last_alert_at.epochSeconds * 1000000 + k.last_alert_at.microsecond]) AS cases
"""

CREATE_NOTIFICATIONS = f"""
CYPHER replan=skip
UNWIND $notes AS n
MATCH (c:Customer {{id: n.customer_id}})
MATCH (k:Case {{id: n.props.case_id}})
OPTIONAL MATCH (t:Topic {{name: n.props.topic}})
CREATE (c)-[:HAD]->(i:Interaction {{at: {_dt("n.at_us")}, ingested_at: {_dt("$now_us")}}})
SET i += n.props, i.identity_keys = []
CREATE (i)-[:IN_CASE]->(k)
FOREACH (_ IN CASE WHEN t IS NULL THEN [] ELSE [1] END | CREATE (i)-[:ABOUT]->(t))
SET k.notified_at = {_dt("$now_us")}
"""

# The contact's language and identity are the customer's (the router keys the contact's
# ending event by that identity); a case it is for remembers it.
CREATE_CONTACTS = """
UNWIND $contacts AS r
MATCH (cu:Customer {id: r.customer_id})
CALL (cu) {
    OPTIONAL MATCH (k:Identity)-[:IDENTIFIES]->(cu)
    RETURN k ORDER BY CASE k.kind WHEN 'crm' THEN 0 WHEN 'account' THEN 1 WHEN 'email' THEN 2 WHEN 'phone' THEN 3
                      ELSE 9 END, k.verified DESC
    LIMIT 1
}
MERGE (x:Contact {id: r.props.id})
ON CREATE SET x += r.props, x.state = 'waiting', x.language = cu.language,
              x.identity_kind = k.kind, x.identity_value = k.value, x.identity_verified = k.verified,
              x.created_at = datetime({epochMillis: x.created_ms}), x.updated_at = x.created_at
WITH x, r
OPTIONAL MATCH (kc:Case {id: r.props.case_id})
FOREACH (_ IN CASE WHEN kc IS NULL THEN [] ELSE [1] END | SET kc.outreach_contact_id = x.id)
"""

# What the customer did in self-service before a failed attempt, newest first.
ESCALATION_CONTEXT = f"""
UNWIND $rows AS r
MATCH (c:Customer {{id: r.customer_id}})
RETURN r.event_id AS event_id, {_LIVE_CONTACTS} AS live,
  COLLECT {{
      MATCH (c)-[:HAD]->(i:Interaction)
      WHERE i.at >= {_dt("r.since_us")} AND i.at <= {_dt("r.at_us")} AND i.kind IN $kinds
      RETURN [i.kind, i.topic, i.intent, i.article_id, i.article_title, i.answer, i.flow_id, i.step, i.exit_reason]
      ORDER BY i.at DESC, i.event_id DESC LIMIT {MAX_PATH} }} AS path
"""


@dataclass
class Links:
    """What `link` decided: the case each event belongs to, and the alerts' cases."""

    case_of: dict[str, str] = field(default_factory=dict)
    cases: list[tuple[rules.AlertGroup, rules.CaseState]] = field(default_factory=list)


def _run(tx: neo4j.ManagedTransaction, query: str, **params: Any) -> list[neo4j.Record]:
    return run_rows(tx, query, unlogged(params))


class ProactiveWriter:
    def __init__(self, settings: rules.ProactiveSettings) -> None:
        self.settings = settings

    def link(
        self,
        tx: neo4j.ManagedTransaction,
        records: Sequence[InteractionRecord],
        owners: Mapping[str, str],
        customer_nodes: Mapping[str, str],
    ) -> Links:
        """`customer_nodes`: each owner's element id (see rapport_profile.adapters.graph.BatchNodes)."""
        links = Links()
        groups = rules.alert_groups(records, owners)
        if groups:
            self._open_cases(tx, groups, customer_nodes, links)
        joining = [r for r in records if rules.may_join_case(r) and r.event_id not in links.case_of]
        if joining:
            self._join_cases(tx, joining, owners, customer_nodes, links)
        return links

    def _open_cases(
        self,
        tx: neo4j.ManagedTransaction,
        groups: list[rules.AlertGroup],
        customer_nodes: Mapping[str, str],
        links: Links,
    ) -> None:
        rows = [
            {
                "index": n,
                "customer_node": customer_nodes[g.customer_id],
                "device_id": g.device_id,
                "fault_code": g.fault_code,
                "severity": g.severity,
                "rank": rules.rank(g.severity),
                "readings": g.readings,
                "event_ids": g.event_ids,
                "first_us": _us(g.first_at),
                "last_us": _us(g.last_at),
                "given_case_id": g.given_case_id,
                "new_case_id": g.new_case_id,
                "title": g.title,
            }
            for n, g in enumerate(groups)
        ]
        attach = int(self.settings.attach_window.total_seconds())
        # One record holding every case, as JOINABLE_CASES.
        opened = _run(tx, OPEN_CASES, alerts=rows, attach_seconds=attach)[0]["cases"]
        for index, case_id, severity, notified, outreach in opened:
            group = groups[index]
            state = rules.CaseState(case_id, group.customer_id, severity, bool(notified), outreach)
            links.cases.append((group, state))
            for event_id in group.event_ids:
                links.case_of[event_id] = state.case_id

    def _join_cases(
        self,
        tx: neo4j.ManagedTransaction,
        joining: list[InteractionRecord],
        owners: Mapping[str, str],
        customer_nodes: Mapping[str, str],
        links: Links,
    ) -> None:
        customers = [{"id": c, "node": customer_nodes[c]} for c in sorted({owners[r.event_id] for r in joining})]
        cases: dict[str, list[tuple[int, int, int, str]]] = {}
        # One record holding every case: the driver's per-record work cost more than the rows
        # (a row per customer with an open proactive case, hundreds a batch).
        for cid, case_id, opened_us, until_us, alert_us in _run(tx, JOINABLE_CASES, customers=customers)[0]["cases"]:
            cases.setdefault(cid, []).append((alert_us or 0, opened_us or 0, until_us, case_id))
        if not cases:
            return
        for rec in joining:
            at = _us(rec.at)
            open_now = [c for c in cases.get(owners[rec.event_id], []) if c[1] <= at <= c[2]]
            if open_now:
                links.case_of[rec.event_id] = max(open_now)[3]  # the most recent alert's case

    def follow_up(
        self,
        tx: neo4j.ManagedTransaction,
        records: Sequence[InteractionRecord],
        owners: Mapping[str, str],
        links: Links,
        now: datetime,
    ) -> list[tuple[str, str]]:
        """Notifications, outreach and escalation contacts; returns the (customer, event id) of
        each notification stored."""
        notes: list[dict[str, Any]] = []
        contacts: list[dict[str, Any]] = []
        owing = [s.customer_id for g, s in links.cases if rules.follow_up(s, g, now, self.settings) == "outreach"]
        busy = self._busy(tx, owing)
        for group, state in links.cases:
            action = rules.follow_up(state, group, now, self.settings, busy=state.customer_id in busy)
            if action == "notify":
                notes.append(
                    {
                        "customer_id": state.customer_id,
                        "at_us": _us(group.last_at),
                        "props": {
                            k: v for k, v in rules.notification(group, state, self.settings).items() if v is not None
                        },
                    }
                )
            elif action == "outreach":
                contacts.append(
                    {
                        "customer_id": state.customer_id,
                        "props": rules.outreach_contact(group, state, now, self.settings),
                    }
                )
        owed = rules.escalations(records, owners, now, self.settings)
        if owed:
            contacts += self._escalation_contacts(tx, owed, owners, now)
        if notes:
            _run(tx, CREATE_NOTIFICATIONS, notes=notes, now_us=_us(now))
        if contacts:
            _run(tx, CREATE_CONTACTS, contacts=contacts)
            log.info(
                "contacts created for the router",
                extra={
                    "contacts": [c["props"]["id"] for c in contacts],
                    "origins": [c["props"]["origin"] for c in contacts],
                },
            )
        return [(n["customer_id"], n["props"]["event_id"]) for n in notes]

    def _busy(self, tx: neo4j.ManagedTransaction, customers: list[str]) -> set[str]:
        if not customers:
            return set()
        return {r["cid"] for r in _run(tx, LIVE_CONTACTS, customers=sorted(set(customers)))}

    def _escalation_contacts(
        self,
        tx: neo4j.ManagedTransaction,
        owed: list[tuple[InteractionRecord, str]],
        owners: Mapping[str, str],
        now: datetime,
    ) -> list[dict[str, Any]]:
        rows = [
            {
                "event_id": rec.event_id,
                "customer_id": owners[rec.event_id],
                "since_us": _us(rec.at - JOURNEY),
                "at_us": _us(rec.at),
            }
            for rec, _ in owed
        ]
        context = {
            r["event_id"]: (int(r["live"]), r["path"])
            for r in _run(tx, ESCALATION_CONTEXT, rows=rows, kinds=list(rules.SELF_SERVICE_KINDS))
        }
        contacts = []
        for rec, reason in owed:
            live, raw_path = context.get(rec.event_id, (0, []))
            if live:
                continue  # someone is already helping this customer
            path = [rules.SelfServiceStep(*step) for step in reversed(raw_path)]
            customer = owners[rec.event_id]
            contacts.append(
                {
                    "customer_id": customer,
                    "props": rules.escalation_contact(
                        rec, reason=reason, customer_id=customer, path=path, now=now, settings=self.settings
                    ),
                }
            )
        return contacts
