"""The customer graph's schema: a versioned list of migrations, applied idempotently.

The graph model every service shares (written by the profile worker, read by timeline/router):

(:Customer {id, language, tier, segment, display_name, traits_at, created_at, first_contact_at,
            last_contact_at, merged_into, merged_at})
    `id` is "cus_" + 16 hex chars. A customer absorbed by a merge keeps its node with
    `merged_into` = the survivor's id and no relationships left; live customers have
    `merged_into IS NULL`. Readers resolve an id by following `merged_into` to the survivor
    (the writer keeps chains one hop long). `traits_at` is the event time of the traits kept.
(:Identity {key, kind, value, verified, verification_method, first_seen_at, last_seen_at})
        -[:IDENTIFIES]->(:Customer)
    `key` = "<kind>:<normalised value>" (see rapport.identity), e.g. "email:ana@example.com".
    Every identity identifies exactly one customer. `verified` only ever turns true.
(:Customer)-[:HAD]->(:Interaction {event_id, at, channel, kind, direction, topic, intent,
            sentiment, outcome, csat, summary, agent_id, contact_id, case_id, device_id,
            article_id, article_title, answer, flow_id, step, exit_reason, intent_confidence,
            fault_code, severity, readings, handle_seconds, source, facts, attributes,
            identity_keys, digest, ingested_at})
    `at` is a DateTime (event time, UTC). Enum values are stored as short lower-case names
    without the prefix: channel "chat", kind "article_feedback", outcome "resolved",
    answer "no", severity "critical". `facts` is a JSON list of {key, value, sensitive} with
    sensitive values already masked; `attributes` and `readings` JSON objects; `identity_keys`
    the identity keys the event carried (evidence for unmerge); `digest` the short form journey
    analytics read (rapport.journeys.digest). Absent values are not stored.
(:Interaction)-[:HANDLED_BY]->(:Agent {id})
(:Interaction)-[:ABOUT]->(:Topic {name})
(:Interaction)-[:IN_CASE]->(:Case)
(:Customer)-[:OWNS]->(:Device {id, model, firmware, updated_at, last_alert_at})
(:Customer)-[:HAS_CASE]->(:Case {id, status, title, owner_agent_id, proactive, opened_at, updated_at,
            device_id, fault_code, severity, readings, alerts, last_alert_at, attach_until,
            notified_at, outreach_contact_id})
    A proactive case (rapport_profile.domain.proactive) is opened by the profile worker from
    device alerts: one open case per (device_id, fault_code), "pc_" + 20 hex chars unless the
    alert named its own case. `severity` is the highest reported (never lowered), `readings`
    the latest alert's (JSON), `alerts` how many; the customer's contacts without a case until
    `attach_until` (last alert + the attach window) join it. `notified_at`: when the worker
    stored its notification, an outbound NOTIFICATION Interaction with event_id
    "<case id>.notification"; `outreach_contact_id`: the outreach Contact it created.
(:Customer)-[:SERVED_BY {contacts, resolved, csat_sum, csat_count, last_at}]->(:Agent)
    the affinity aggregate, counted once per interaction that names an agent (when the
    Interaction is created, so replays never count twice).
(:Merge {id, at, event_at, event_id, survivor_id, absorbed_id, linking_keys,
         absorbed_identity_keys, absorbed_event_ids, absorbed_device_ids, absorbed_case_ids,
         absorbed_affinity, absorbed_attributes, survivor_attributes, decision_id,
         undone_at, undone_by})
    the evidence of a merge, for review and unmerge: one per absorbed customer, holding only
    what came from that customer itself (`absorbed_affinity` the SERVED_BY values it brought, a
    JSON list; `absorbed_attributes` its traits, a JSON object; `survivor_attributes` the
    survivor's traits and traits_at just before, a JSON object). `at` is when it merged.
    Survivor: the oldest customer by created_at, ties by id. A merge a reviewer approved has
    `decision_id` and no event. UnmergeCustomer sets `undone_at` and `undone_by` (the decision
    id); an undone merge is history only (GetCustomer no longer lists it). `survivor_id` is
    rewritten to the restored customer when an unmerge takes a later-absorbed customer with it.
(:Customer)-[:MAYBE_SAME {keys, at}]->(:Customer)   a weak-identifier merge candidate, one
    relationship per pair, from the lower id to the higher; removed when the two merge.
(:Customer)-[:NOT_SAME {decision_id, at}]->(:Customer)   a reviewer decided these are different
    people (RejectMergeCandidate, UnmergeCustomer), lower id to higher. It holds for everything
    merged into either side later: the worker never merges the two groups nor links them as
    candidates (see rapport_profile.domain.resolution).
(:MergeDecision {id, kind, customer_ids, merge_id, decided_by, reason, at})
    One per review decision: `id` "dec_" + 16 hex chars, `kind` "approved" | "rejected" |
    "unmerged", `customer_ids` the pair (for an unmerge: survivor, then restored), `decided_by`
    the caller's token subject or "anonymous".
(:Agent {id, display_name, status, languages, teams, skill_names, skill_levels, channels,
         capacity_<channel>, active_<channel>, idle_since, status_changed_at, last_offer_at,
         created_at, updated_at, rev})-[:HAS_SKILL {level}]->(:Skill {name})
    Owned by the router (UpsertAgent, SetAgentStatus, reservations); the profile worker only
    MERGEs `(:Agent {id})` to hang HANDLED_BY and SERVED_BY on, so an Agent without `status` is
    not routable. `status` is "available" | "away" | "offline". Capacity and load are one pair
    of integer properties per channel short name: `capacity_chat` contacts at once,
    `active_chat` held now (offered or assigned); the router never lets `active_<ch>` exceed
    `capacity_<ch>`: a reservation locks the Agent node, then checks and increments in the same
    transaction. `skill_names`/`skill_levels` are parallel lists mirroring HAS_SKILL (read in
    bulk without traversals); `languages` are lower-case BCP 47 tags; `idle_since` is when the
    agent last became free of every contact (null while busy); `rev` is epoch milliseconds of
    the last router write (incremental roster reads).
(:Contact {id, state, customer_id, channel, topic, intent, language, skill_names, skill_levels,
           priority, team, preferred_agent_id, preferred_wait, sentiment, case_id, attributes,
           relaxation, declined_by, identity_kind, identity_value, identity_verified,
           created_at, created_ms, updated_at, agent_id, offer_id, offer_attempt, offered_at,
           offer_expires_at, offer_mode, score, explanation, relaxation_step, last_offer_end,
           last_offer_note, accepted_at, ended_at, end_reason, outcome, csat, notes,
           handle_seconds, end_sentiment, event_id, outbox_at, event_published_at, origin,
           owns_case, superseded_by})
    The router's contacts and durable queue. `state` is "waiting" | "offered" | "assigned" |
    "completed" | "cancelled". `customer_id` is null for a customer the graph did not know;
    `identity_*` is the identifier the ending event is keyed by. `agent_id` is the offered or
    handling agent; `offer_id` is "<contact id>~<attempt>". `declined_by` lists agents who
    rejected or let an offer expire (never offered it again). `relaxation` is the relaxation
    policy the contact was created with (text form, see rapport_router.domain.relaxation);
    `created_ms` is epoch milliseconds (queue order: priority with ageing). `explanation` is
    the JSON explanation of the current offer. A Contact labelled `:Outbox` has an ending
    event (`event_id`) not yet acknowledged by Kafka. `origin` is set on contacts the profile
    worker creates waiting in the queue: "proactive_outreach" (id "po_" + 20 hex, from a
    proactive case) or "self_service_escalation" (id "esc_" + 20 hex, from a failed
    self-service event); their `attributes` say why ("proactive.*", "escalation.*"). When the
    customer routes a contact of their own first, it takes over: the queued one ends
    "cancelled" with end_reason "superseded" and `superseded_by`, without an ending event.
    `owns_case`: the accepting agent took up the contact's unowned proactive case (became its
    `owner_agent_id`).
(:Tombstone {hash, kind, receipt_id, at})
    What ForgetCustomer leaves of an erased customer, so replayed or late events cannot bring it
    back: `hash` is the hex HMAC-SHA256, keyed with the deployment's RAPPORT_ERASURE_SALT, of
    "<kind>\0<value>" where `kind` is "identity" (value: an identity key), "event" (an event id
    the customer had) or "customer" (a customer id, so a repeated erasure finds its receipt).
    The profile worker drops events whose id or identity keys are all tombstoned and stores the
    others without their tombstoned keys. Never deleted.
(:ErasureReceipt {id, customer_ids, erased_at, erased_by, reason, stores, tombstone_count})
    One per erasure, holding no personal data: `id` "era_" + 16 hex chars, `stores` the JSON
    list of what each store removed (store, removed counts by kind, note).
(:RetentionRun {name, cutoff, started_at, finished_at, purged})
    One per retention job ("interactions"): each purge batch locks it first, so replicas and
    the CLI purging at once take turns; it also records the last run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import neo4j

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "uniqueness constraints on every id; range index on Interaction.at",
        (
            "CREATE CONSTRAINT customer_id IF NOT EXISTS FOR (n:Customer) REQUIRE n.id IS UNIQUE",
            "CREATE CONSTRAINT identity_key IF NOT EXISTS FOR (n:Identity) REQUIRE n.key IS UNIQUE",
            "CREATE CONSTRAINT interaction_event_id IF NOT EXISTS FOR (n:Interaction) REQUIRE n.event_id IS UNIQUE",
            "CREATE CONSTRAINT agent_id IF NOT EXISTS FOR (n:Agent) REQUIRE n.id IS UNIQUE",
            "CREATE CONSTRAINT topic_name IF NOT EXISTS FOR (n:Topic) REQUIRE n.name IS UNIQUE",
            "CREATE CONSTRAINT device_id IF NOT EXISTS FOR (n:Device) REQUIRE n.id IS UNIQUE",
            "CREATE CONSTRAINT case_id IF NOT EXISTS FOR (n:Case) REQUIRE n.id IS UNIQUE",
            "CREATE CONSTRAINT skill_name IF NOT EXISTS FOR (n:Skill) REQUIRE n.name IS UNIQUE",
            "CREATE CONSTRAINT merge_id IF NOT EXISTS FOR (n:Merge) REQUIRE n.id IS UNIQUE",
            "CREATE CONSTRAINT contact_id IF NOT EXISTS FOR (n:Contact) REQUIRE n.id IS UNIQUE",
            "CREATE INDEX interaction_at IF NOT EXISTS FOR (n:Interaction) ON (n.at)",
            "CREATE INDEX contact_state IF NOT EXISTS FOR (n:Contact) ON (n.state)",
            "CREATE INDEX customer_merged_into IF NOT EXISTS FOR (n:Customer) ON (n.merged_into)",
        ),
    ),
    Migration(
        2,
        "router: incremental agent reads, contacts by customer",
        (
            "CREATE INDEX agent_rev IF NOT EXISTS FOR (n:Agent) ON (n.rev)",
            "CREATE INDEX contact_customer_id IF NOT EXISTS FOR (n:Contact) ON (n.customer_id)",
        ),
    ),
    Migration(
        3,
        "merge history and unmerge look merges up by either side",
        (
            "CREATE INDEX merge_absorbed_id IF NOT EXISTS FOR (n:Merge) ON (n.absorbed_id)",
            "CREATE INDEX merge_survivor_id IF NOT EXISTS FOR (n:Merge) ON (n.survivor_id)",
        ),
    ),
    Migration(
        4,
        "erasure tombstones and receipts, retention runs, contacts by identity",
        (
            "CREATE CONSTRAINT tombstone_hash IF NOT EXISTS FOR (n:Tombstone) REQUIRE n.hash IS UNIQUE",
            "CREATE CONSTRAINT erasure_receipt_id IF NOT EXISTS FOR (n:ErasureReceipt) REQUIRE n.id IS UNIQUE",
            "CREATE CONSTRAINT retention_run_name IF NOT EXISTS FOR (n:RetentionRun) REQUIRE n.name IS UNIQUE",
            "CREATE INDEX contact_identity IF NOT EXISTS FOR (n:Contact) ON (n.identity_kind, n.identity_value)",
        ),
    ),
    Migration(
        5,
        "merge review decisions",
        ("CREATE CONSTRAINT merge_decision_id IF NOT EXISTS FOR (n:MergeDecision) REQUIRE n.id IS UNIQUE",),
    ),
    Migration(
        6,
        "the agents' record with a contact's intent: its recent interactions",
        ("CREATE INDEX interaction_intent IF NOT EXISTS FOR (n:Interaction) ON (n.intent, n.at)",),
    ),
)


def applied_version(session: neo4j.Session) -> int:
    record = session.run("MATCH (m:SchemaMigration) RETURN max(m.version) AS v").single()
    return int(record["v"]) if record and record["v"] is not None else 0


def apply_migrations(driver: neo4j.Driver, database: str = "neo4j") -> list[int]:
    """Applies migrations newer than the recorded version; returns the versions applied.

    Each statement is idempotent (IF NOT EXISTS), so two processes racing here are harmless.
    """
    applied = []
    with driver.session(database=database) as session:
        current = applied_version(session)
        for migration in MIGRATIONS:
            if migration.version <= current:
                continue
            for statement in migration.statements:
                session.run(statement).consume()
            session.run(
                "MERGE (m:SchemaMigration {version: $v}) SET m.description = $d, m.applied_at = datetime()",
                v=migration.version,
                d=migration.description,
            ).consume()
            applied.append(migration.version)
            log.info("applied graph migration", extra={"version": migration.version})
    return applied
