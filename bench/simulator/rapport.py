"""Rapport policies: every decision through the real gRPC router, outcomes back through Kafka.

`RapportStack` starts a router and an ingest worker as child processes on free ports, with
their own Kafka topics and consumer group, against the local Neo4j. Every id the run creates
(agents, contacts, customers' e-mail identifiers, the team) carries a unique prefix, so runs
never collide and nothing else in the graph is touched.

- greedy: the simulator keeps its own first-come-first-served queue and calls RouteContact only
  when it knows an eligible agent is free, so each decision is the router's best agent for one
  contact at a time (ASSIGNMENT_MODE_DIRECT).
- batch: every contact is routed on arrival; those nobody can take wait in the router's queue,
  and when CompleteContact frees capacity the router's background loop assigns the waiting
  contacts together (ASSIGNMENT_MODE_BATCH). The simulator then reads the offers back.

Simulated time runs much faster than wall time: the router's clock-based factors (idle time,
decay of affinity over days) see compressed times, which is why the relaxation of waiting
contacts is pushed out of reach and the graph statistics refresh every couple of seconds.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from rapport.publisher import InteractionPublisher
from rapport.settings import KafkaSettings, Neo4jSettings
from rapport.topics import ensure_topics
from rapport.v1 import events_pb2 as ev
from rapport.v1 import router_pb2 as rt
from rapport.v1 import router_pb2_grpc
from rapport_profile.worker_process import WorkerProcess, worker_env
from rapport_router.process import RouterProcess, free_port, router_env

from .engine import AgentState, BasePolicy, Record, Simulation
from .model import Agent, Arrival, Customer, World, prior_period
from .policies import LongestIdlePolicy

CALL_TIMEOUT = 10.0
CHANNELS = {"voice": ev.CHANNEL_VOICE, "chat": ev.CHANNEL_CHAT}
# The router's batch loop reacts to freed capacity within a tick (plus a short coalescing wait).
TICK = 0.05
# Factor names (as in ScoreFactor) to the suffix of their RAPPORT_ROUTER_WEIGHT_* variable.
WEIGHT_ENV = {"idle_time": "idle", "similar_customers": "similar", "preferred_agent": "preferred"}
STATS_REFRESH = 2.0
# The customers' CRM records are this old when the run starts (outside any effort window).
PROFILE_AGE_DAYS = 60
DAY = 86400.0


@dataclass
class RapportStack:
    """A router and an ingest worker on free ports, with isolated topics."""

    address: str
    run_id: str
    kafka: KafkaSettings
    neo4j: Neo4jSettings


@contextlib.contextmanager
def rapport_stack(
    neo4j: Neo4jSettings | None = None,
    kafka: KafkaSettings | None = None,
    *,
    weights: dict[str, float] | None = None,
    log_dir: Path | None = None,
    keep_graph: bool = False,
) -> Iterator[RapportStack]:
    """Starts the stack; afterwards removes the run's nodes from the graph unless `keep_graph`."""
    neo4j = neo4j or Neo4jSettings.from_env()
    base = kafka or KafkaSettings.from_env()
    run_id = f"qsim{uuid.uuid4().hex[:8]}"
    topics = KafkaSettings(
        bootstrap_servers=base.bootstrap_servers,
        interactions_topic=f"bench.{run_id}.interactions",
        dead_letter_topic=f"bench.{run_id}.dlq",
        customer_updates_topic=f"bench.{run_id}.customer-updates",
        interactions_partitions=1,
        request_timeout=base.request_timeout,
    )
    ensure_topics(topics)
    logs = log_dir or Path(tempfile.mkdtemp(prefix="rapport-quality-"))
    extra = {
        "RAPPORT_ROUTER_TICK": str(TICK),
        "RAPPORT_ROUTER_ROSTER_MAX_AGE": "0.05",
        "RAPPORT_ROUTER_STATS_REFRESH": str(STATS_REFRESH),
        "RAPPORT_ROUTER_OFFER_TIMEOUT": "600",
        "RAPPORT_ROUTER_OUTBOX_RETRY": "2",
        # Waiting is measured in wall time here; keep every relaxation step out of reach.
        "RAPPORT_ROUTER_RELAXATION": "86400=any_language",
    }
    for name, value in (weights or {}).items():
        if WEIGHT_ENV.get(name, name) not in {*WEIGHT_ENV.values(), "skill", "affinity", "continuity", "priority"}:
            raise ValueError(f"unknown router weight {name!r}")
        extra[f"RAPPORT_ROUTER_WEIGHT_{WEIGHT_ENV.get(name, name).upper()}"] = str(value)
    router = RouterProcess(router_env(neo4j, topics, extra=extra), logs / f"{run_id}-router.log")
    worker = WorkerProcess(
        worker_env(topics, neo4j, group=f"{run_id}-profile", port=free_port(), linger=0.02),
        logs / f"{run_id}-worker.log",
    )
    worker.start()
    try:
        router.start()
        try:
            yield RapportStack(router.address, run_id, topics, neo4j)
        except Exception:
            print(f"router log ({router.log_path}):\n{router.log_tail()}", file=sys.stderr)
            print(f"worker log ({worker.log_path}):\n{worker.log_tail()}", file=sys.stderr)
            raise
        finally:
            router.stop()
    finally:
        worker.stop()
        if not keep_graph:
            cleanup_graph(neo4j, run_id)


def _agent_message(agent: Agent, team: str) -> rt.Agent:
    return rt.Agent(
        id=agent.id,
        display_name=agent.id,
        skills=[rt.AgentSkill(name=t, level=lvl) for t, lvl in agent.declared.items()],
        languages=list(agent.languages),
        teams=[team],
        capacity=[rt.ChannelCapacity(channel=CHANNELS[ch], capacity=n) for ch, n in agent.capacity.items() if n],
        status=rt.AGENT_STATUS_AVAILABLE,
    )


def _customer_identifier(prefix: str, customer: Customer) -> ev.Identifier:
    return ev.Identifier(kind=ev.IDENTIFIER_KIND_EMAIL, value=f"{prefix}.c{customer.index}@sim.example", verified=True)


def profile_event(prefix: str, customer: Customer, at: float) -> ev.InteractionEvent:
    """The customer's CRM record as a producer publishes it: traits and the device they own."""
    event = ev.InteractionEvent(
        event_id=f"{prefix}-c{customer.index}.profile",
        channel=ev.CHANNEL_WEB,
        kind=ev.INTERACTION_KIND_FORM_SUBMITTED,
        direction=ev.DIRECTION_INBOUND,
        identifiers=[_customer_identifier(prefix, customer)],
        traits=ev.CustomerTraits(language=customer.language, tier=customer.tier, segment=customer.segment),
        device=ev.Device(id=f"{prefix}-d{customer.index}", model=customer.device),
        summary="account sign-up",
        source="sim-crm",
    )
    event.occurred_at.FromSeconds(int(at))
    return event


def history_event(prefix: str, world: World, record: Record, at: float) -> ev.InteractionEvent:
    """A contact of the prior period, completed as the router reports completions."""
    event = ev.InteractionEvent(
        event_id=f"{prefix}-h{record.index}.completed",
        channel=CHANNELS[record.channel],
        kind=ev.INTERACTION_KIND_CONTACT_COMPLETED,
        direction=ev.DIRECTION_INBOUND,
        identifiers=[_customer_identifier(prefix, world.customers[record.customer])],
        agent_id=world.agents[record.agent].id,
        topic=record.topic,
        outcome=ev.OUTCOME_RESOLVED if record.resolved else ev.OUTCOME_UNRESOLVED,
        csat=record.csat,
        handle_seconds=max(1, round(record.handle)),
        contact_id=f"{prefix}-h{record.index}",
        source="sim-history",
    )
    event.occurred_at.FromNanoseconds(int(at * 1e9))
    return event


class RapportPolicy(BasePolicy):
    """`prior_hours` > 0: before the run, the graph receives that many hours of earlier contacts
    (the same world under longest idle, so every policy starts from the same neutral history),
    as production has last month's outcomes. `profiles`: the customers' CRM records (tier,
    segment, language, device model) are published first, as a CRM integration would."""

    def __init__(
        self, stack: RapportStack, *, batch: bool, seed: int, prior_hours: float = 0.0, profiles: bool = True
    ) -> None:
        self.name = "rapport_batch" if batch else "rapport_greedy"
        self.batch = batch
        # In batch mode every contact goes to the router on arrival (it queues those nobody can take).
        self.routes_everything = batch
        self.stack = stack
        self.prior_hours = prior_hours
        self.profiles = profiles
        self.history_contacts = 0
        self.prefix = f"{stack.run_id}-s{seed}-{'b' if batch else 'g'}"
        self.team = f"{self.prefix}-team"
        self.channel = grpc.insecure_channel(stack.address)
        self.stub = router_pb2_grpc.RouterServiceStub(self.channel)
        self.agent_index: dict[str, int] = {}
        self.router_waiting: dict[int, str] = {}  # arrival index -> contact id
        self.attempts: dict[int, int] = {}
        self.contact_ids: dict[int, str] = {}
        self.calls = 0
        self.call_seconds = 0.0
        self.modes: dict[str, int] = {}
        self.requeued = 0

    # Identifiers and agents are prefixed with the run, so every run starts from an empty history.
    def _world_ids(self, world: World) -> None:
        for agent in world.agents:
            agent.id = f"{self.prefix}-{agent.id.rsplit('-', 1)[-1]}"
            self.agent_index[agent.id] = agent.index

    def start(self, sim: Simulation) -> None:
        self._world_ids(sim.world)
        for agent in sim.world.agents:
            self.stub.UpsertAgent(rt.UpsertAgentRequest(agent=_agent_message(agent, self.team)), timeout=CALL_TIMEOUT)
        # Agents exist before the history names them, so the worker links outcomes to them.
        events = self._prior_events(sim.world, time.time())
        if events:
            with InteractionPublisher(self.stack.kafka) as publisher:
                for event in events:
                    publisher.publish(event)
                publisher.flush()
            self._await_ingest(len(events))
            # The router's outcome statistics pick the history up on their next refresh.
            time.sleep(STATS_REFRESH * 1.5)

    def _prior_events(self, world: World, now: float) -> list[ev.InteractionEvent]:
        events = []
        if self.profiles:
            events += [profile_event(self.prefix, c, now - PROFILE_AGE_DAYS * DAY) for c in world.customers]
        if self.prior_hours > 0:
            prior = Simulation(prior_period(world, self.prior_hours), LongestIdlePolicy())
            start = now - self.prior_hours * 3600
            for record in prior.run():
                if record.agent >= 0:
                    ended = start + record.arrived + record.wait + record.handle
                    events.append(history_event(self.prefix, world, record, min(ended, now - 1)))
                    self.history_contacts += 1
        return events

    def _await_ingest(self, expected: int, timeout: float = 180.0) -> None:
        from rapport.graph.driver import open_driver

        driver = open_driver(self.stack.neo4j)
        try:
            deadline = time.monotonic() + timeout
            while True:
                records, _, _ = driver.execute_query(
                    "MATCH (i:Interaction) WHERE i.event_id STARTS WITH $p RETURN count(i) AS n", p=self.prefix + "-"
                )
                stored = int(records[0]["n"])
                if stored >= expected:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the worker stored {stored} of {expected} prior events in {timeout:.0f} s")
                time.sleep(0.5)
        finally:
            driver.close()

    def _route(self, sim: Simulation, arrival: Arrival) -> rt.Contact:
        attempt = self.attempts.get(arrival.index, 0) + 1
        self.attempts[arrival.index] = attempt
        contact_id = f"{self.prefix}-k{arrival.index}-{attempt}"
        self.contact_ids[arrival.index] = contact_id
        customer = sim.world.customers[arrival.customer]
        started = time.perf_counter()
        contact = self.stub.RouteContact(
            rt.RouteContactRequest(
                contact_id=contact_id,
                identifier=_customer_identifier(self.prefix, customer),
                channel=CHANNELS[arrival.channel],
                topic=arrival.topic,
                language=customer.language,
                team=self.team,
                priority=2 if customer.tier in ("gold", "platinum") else 0,
            ),
            timeout=CALL_TIMEOUT,
        ).contact
        self.calls += 1
        self.call_seconds += time.perf_counter() - started
        return contact

    def _offered(self, contact: rt.Contact) -> rt.Contact | None:
        """The contact if it holds an open offer (the router never answers OFFERED without one)."""
        if contact.state != rt.CONTACT_STATE_OFFERED:
            return None
        if not (contact.offer.offer_id and contact.offer.agent_id):
            raise AssertionError(f"contact {contact.id} is offered without its offer")
        return contact

    def _accept(self, contact: rt.Contact) -> int:
        self.stub.AcceptOffer(
            rt.AcceptOfferRequest(offer_id=contact.offer.offer_id, agent_id=contact.offer.agent_id),
            timeout=CALL_TIMEOUT,
        )
        mode = rt.AssignmentMode.Name(contact.offer.mode)
        self.modes[mode] = self.modes.get(mode, 0) + 1
        return self.agent_index[contact.offer.agent_id]

    def pick(self, sim: Simulation, arrival: Arrival, free: list[AgentState]) -> int | None:
        contact = self._route(sim, arrival)
        offered = self._offered(contact)
        if offered is not None:
            return self._accept(offered)
        if self.batch:
            self.router_waiting[arrival.index] = contact.id
            return None
        # The router queued it although the simulator saw a free agent (a booking race): its
        # next round may still offer it. Otherwise greedy keeps its own queue: take the contact
        # back and route it again (a new contact id) when capacity frees.
        if free:
            time.sleep(3 * TICK)
            contact = self.stub.GetContact(rt.GetContactRequest(contact_id=contact.id), timeout=CALL_TIMEOUT).contact
            offered = self._offered(contact)
            if offered is not None:
                return self._accept(offered)
        self.requeued += 1
        try:
            self.stub.CancelContact(
                rt.CancelContactRequest(contact_id=contact.id, reason="requeued"), timeout=CALL_TIMEOUT
            )
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
                raise
        return None

    def assign(self, sim: Simulation, waiting: list[Arrival]) -> list[tuple[Arrival, int]]:
        if not self.batch:
            return super().assign(sim, waiting)
        if not self.router_waiting:
            return []
        by_index = {a.index: a for a in waiting}
        pairs: list[tuple[Arrival, int]] = []
        # The router's loop was woken by CompleteContact; give it a couple of ticks, then read back.
        deadline = time.monotonic() + 10 * TICK
        time.sleep(2 * TICK)
        while True:
            for index, contact_id in list(self.router_waiting.items()):
                contact = self.stub.GetContact(
                    rt.GetContactRequest(contact_id=contact_id), timeout=CALL_TIMEOUT
                ).contact
                offered = self._offered(contact) if index in by_index else None
                if offered is not None:
                    del self.router_waiting[index]
                    pairs.append((by_index[index], self._accept(offered)))
            free_and_waiting = any(sim.eligible(a) for a in waiting if a.index in self.router_waiting)
            if pairs or not free_and_waiting or time.monotonic() > deadline:
                return pairs
            time.sleep(TICK)

    def completed(
        self, sim: Simulation, arrival: Arrival, agent: int, resolved: bool, csat: int, handle: float
    ) -> None:
        self.stub.CompleteContact(
            rt.CompleteContactRequest(
                contact_id=self.contact_ids[arrival.index],
                outcome=ev.OUTCOME_RESOLVED if resolved else ev.OUTCOME_UNRESOLVED,
                csat=csat,
                handle_seconds=max(1, round(handle)),
            ),
            timeout=CALL_TIMEOUT,
        )

    def abandoned(self, sim: Simulation, arrival: Arrival) -> None:
        contact_id = self.router_waiting.pop(arrival.index, None)
        if contact_id is not None:
            self.stub.CancelContact(
                rt.CancelContactRequest(contact_id=contact_id, reason="customer_hung_up"), timeout=CALL_TIMEOUT
            )

    def finish(self, sim: Simulation) -> None:
        for contact_id in self.router_waiting.values():
            with contextlib.suppress(grpc.RpcError):
                self.stub.CancelContact(rt.CancelContactRequest(contact_id=contact_id), timeout=CALL_TIMEOUT)
        self.channel.close()
        # The next run's statistics should not scan this one's history; its agents stay in the
        # router's roster until the stack removes everything.
        cleanup_graph(self.stack.neo4j, self.prefix + "-", customers_only=True)


def cleanup_graph(neo4j: Neo4jSettings, run_id: str, *, customers_only: bool = False) -> None:
    """Removes exactly this run's contacts, agents and customers (every id carries `run_id`);
    `customers_only`: the customers and their history."""
    from rapport.graph.driver import open_driver

    # Auto-commit batches (CALL ... IN TRANSACTIONS): one transaction over a long run's history
    # can exceed Neo4j's transaction memory limit.
    statements = [
        *(
            ()
            if customers_only
            else ("MATCH (x:Contact) WHERE x.id STARTS WITH $p", "MATCH (x:Agent) WHERE x.id STARTS WITH $p")
        ),
        "MATCH (k:Identity)-[:IDENTIFIES]->(c:Customer)-[:HAD]->(x:Interaction) WHERE k.value STARTS WITH $p",
        "MATCH (k:Identity)-[:IDENTIFIES]->(c:Customer)-[:HAS_CASE|OWNS]->(x) WHERE k.value STARTS WITH $p",
        "MATCH (k:Identity)-[:IDENTIFIES]->(x:Customer) WHERE k.value STARTS WITH $p",
        "MATCH (x:Identity) WHERE x.value STARTS WITH $p",
    ]
    driver = open_driver(neo4j)
    try:
        with driver.session() as session:
            for match in statements:
                session.run(
                    f"{match} WITH DISTINCT x CALL (x) {{ DETACH DELETE x }} IN TRANSACTIONS OF 1000 ROWS",  # type: ignore[arg-type]
                    p=run_id,
                ).consume()
    finally:
        driver.close()
