# ruff: noqa: E501
"""The demo's compressed day: a team of agents, scripted customer journeys and background traffic.

Events go through the producer SDK (rapport.publisher) to the interactions topic; contacts go
through the RouterService, and a simulated agent desk accepts each offer and completes it, so
the router's completion events flow back into the graph. Simulated event time runs over the
24 hours before the demo started, compressed into the run.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import random
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from kafka import KafkaProducer

from rapport.publisher import InteractionPublisher
from rapport.settings import KafkaSettings
from rapport.v1 import events_pb2 as ev
from rapport.v1 import router_pb2 as rt
from rapport.v1 import router_pb2_grpc, timeline_pb2, timeline_pb2_grpc

log = logging.getLogger(__name__)
CALL_TIMEOUT = 10.0
TOPICS = ["billing", "wifi-dropouts", "upgrade", "outage", "delivery", "password", "roaming"]
FAILED_ARTICLE = ("kb-wifi-dropouts", "Fix Wi-Fi dropouts in three steps")


def ident(kind: int, value: str, verified: bool = True, method: str = "", platform: str = "") -> ev.Identifier:
    return ev.Identifier(kind=kind, value=value, verified=verified, verification_method=method, platform=platform)  # type: ignore[arg-type]


def email(value: str, verified: bool = True, method: str = "") -> ev.Identifier:
    return ident(ev.IDENTIFIER_KIND_EMAIL, value, verified, method)


def phone_for(prefix: str, n: int) -> str:
    """A UK mobile number of this run; the block is chosen by the prefix so runs never share one."""
    base = int(hashlib.sha256(prefix.encode()).hexdigest(), 16) % 800_000_000
    return f"+447{100_000_000 + (base + n) % 800_000_000}"


@dataclass
class Stats:
    """What the dashboard shows and the report keeps; updated from several threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    published: list[str] = field(default_factory=list)
    dead_letter_expected: list[str] = field(default_factory=list)
    router_events: list[str] = field(default_factory=list)
    routes: int = 0
    scores: list[float] = field(default_factory=list)
    completed: int = 0
    resolved: int = 0
    overloads: list[str] = field(default_factory=list)
    journeys_done: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, name: str, value: Any) -> None:
        with self.lock:
            getattr(self, name).append(value)

    def bump(self, name: str, by: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + by)

    def median_score(self) -> float | None:
        with self.lock:
            return statistics.median(self.scores) if self.scores else None


@dataclass
class Plan:
    """Sizes of a run: how long, how much background traffic."""

    duration: float  # seconds of wall time for the simulated day
    background_rate: float  # events per second at the base of the curve
    agents: int = 8
    scenario_only: bool = False


@dataclass
class Tracked:
    contact_id: str
    resolved: bool
    csat: int
    handle: float  # seconds the agent spends once assigned
    state: int = rt.CONTACT_STATE_WAITING
    agent_id: str = ""
    score: float = 0.0
    assigned_at: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)


class Desk:
    """The simulated agents: accept every offer at once, complete each contact after its handle time."""

    def __init__(self, stub: router_pb2_grpc.RouterServiceStub, stats: Stats, stop: threading.Event) -> None:
        self.stub = stub
        self.stats = stats
        self.stop = stop
        self.lock = threading.Lock()
        self.open: dict[str, Tracked] = {}
        self.thread = threading.Thread(target=self._run, name="demo-desk", daemon=True)

    def route(
        self, request: rt.RouteContactRequest, *, resolved: bool = True, csat: int = 5, handle: float = 2.0
    ) -> Tracked:
        contact = self.stub.RouteContact(request, timeout=CALL_TIMEOUT).contact
        self.stats.bump("routes")
        tracked = Tracked(contact.id, resolved, csat, handle)
        with self.lock:
            self.open[contact.id] = tracked
        self._advance(tracked, contact)
        return tracked

    def waiting(self) -> int:
        with self.lock:
            return sum(1 for t in self.open.values() if t.state in (rt.CONTACT_STATE_WAITING, rt.CONTACT_STATE_OFFERED))

    def _advance(self, tracked: Tracked, contact: rt.Contact) -> None:
        tracked.state = contact.state
        if contact.state == rt.CONTACT_STATE_OFFERED:
            offer = contact.offer
            reply = self.stub.AcceptOffer(
                rt.AcceptOfferRequest(offer_id=offer.offer_id, agent_id=offer.agent_id), timeout=CALL_TIMEOUT
            )
            tracked.state = reply.contact.state
            tracked.agent_id = offer.agent_id
            tracked.score = offer.score
            tracked.assigned_at = time.monotonic()
            self.stats.add("scores", offer.score)
        elif contact.state == rt.CONTACT_STATE_ASSIGNED and not tracked.assigned_at:
            tracked.agent_id = contact.agent_id
            tracked.assigned_at = time.monotonic()
        elif contact.state in (rt.CONTACT_STATE_COMPLETED, rt.CONTACT_STATE_CANCELLED):
            self._close(tracked)

    def _close(self, tracked: Tracked) -> None:
        with self.lock:
            self.open.pop(tracked.contact_id, None)
        tracked.done.set()

    def _complete(self, tracked: Tracked) -> None:
        reply = self.stub.CompleteContact(
            rt.CompleteContactRequest(
                contact_id=tracked.contact_id,
                agent_id=tracked.agent_id,
                resolved=tracked.resolved,
                csat=tracked.csat,
                handle_seconds=int(tracked.handle * 120),
                notes="demo: handled by the simulated desk",
            ),
            timeout=CALL_TIMEOUT,
        )
        self.stats.bump("completed")
        if tracked.resolved:
            self.stats.bump("resolved")
        if reply.event_id:
            self.stats.add("router_events", reply.event_id)
        tracked.state = rt.CONTACT_STATE_COMPLETED
        self._close(tracked)

    def step(self) -> None:
        with self.lock:
            items = list(self.open.values())
        for tracked in items:
            try:
                if tracked.state == rt.CONTACT_STATE_ASSIGNED:
                    if time.monotonic() - tracked.assigned_at >= tracked.handle:
                        self._complete(tracked)
                else:
                    contact = self.stub.GetContact(
                        rt.GetContactRequest(contact_id=tracked.contact_id), timeout=CALL_TIMEOUT
                    ).contact
                    self._advance(tracked, contact)
            except grpc.RpcError as exc:
                self.stats.add("errors", f"desk {tracked.contact_id}: {exc.code().name}: {exc.details()}")  # type: ignore[attr-defined]
                if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):  # type: ignore[attr-defined]
                    self._close(tracked)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.step()
            self.stop.wait(0.2)

    def drain(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stop.is_set():
            with self.lock:
                if not self.open:
                    return
            time.sleep(0.2)


class Scenario:
    """Runs the day; `progress()` is 0..1; `report()` says what happened, for the summary and tests."""

    def __init__(
        self,
        *,
        prefix: str,
        plan: Plan,
        kafka: KafkaSettings,
        router: router_pb2_grpc.RouterServiceStub,
        timeline: timeline_pb2_grpc.TimelineServiceStub,
        stop: threading.Event,
        seed: int = 7,
    ) -> None:
        self.prefix = prefix
        self.team = f"{prefix}-team"
        self.plan = plan
        self.kafka = kafka
        self.router = router
        self.timeline = timeline
        self.stop = stop
        self.rng = random.Random(seed)
        self.stats = Stats()
        self.desk = Desk(router, self.stats, stop)
        self.publisher = InteractionPublisher(kafka)
        self.agents = [f"{prefix}-agt-{i:02d}" for i in range(plan.agents)]
        self.fixer = self.agents[-1]
        self.started = 0.0
        self.day_start = datetime.now(UTC) - timedelta(days=1)
        self.results: dict[str, Any] = {}
        self._seq = 0
        self._threads: list[threading.Thread] = []

    # -- time and events -------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.monotonic() - self.started if self.started else 0.0

    def progress(self) -> float:
        return min(1.0, self.elapsed() / self.plan.duration)

    def sim_now(self) -> datetime:
        return self.day_start + timedelta(days=self.progress())

    def _event(
        self, name: str, channel: int, kind: int, *ids: ev.Identifier, at: datetime | None = None, **fields: Any
    ) -> ev.InteractionEvent:
        self._seq += 1
        event = ev.InteractionEvent(
            event_id=f"{self.prefix}-{name}-{self._seq}",
            channel=channel,  # type: ignore[arg-type]
            kind=kind,  # type: ignore[arg-type]
            identifiers=list(ids),
            source="rapport-demo",
            **fields,
        )
        event.occurred_at.FromDatetime(at or self.sim_now())
        return event

    def publish(self, event: ev.InteractionEvent) -> None:
        self.publisher.publish(event)
        self.stats.add("published", event.event_id)

    def wait_visible(self, who: ev.Identifier, event_ids: list[str], timeout: float = 30.0) -> str:
        """Waits until the timeline of `who` holds every id; returns the customer id."""
        self.publisher.flush()
        ref = timeline_pb2.CustomerRef(identifier=who)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stop.is_set():
            try:
                reply = self.timeline.ListInteractions(
                    timeline_pb2.ListInteractionsRequest(customer=ref, page_size=200), timeout=CALL_TIMEOUT
                )
                seen = {i.event_id for i in reply.interactions}
                if set(event_ids) <= seen:
                    return str(reply.customer_id)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
                    raise
            time.sleep(0.3)
        raise TimeoutError(f"events {event_ids} not in the timeline after {timeout:.0f} s")

    # -- setup -------------------------------------------------------------------------------
    def register_team(self) -> None:
        for i, agent_id in enumerate(self.agents):
            # Everyone is equally able on Wi-Fi dropouts, so who fixed it before makes the difference.
            skills = [
                rt.AgentSkill(name=t, level=4 if t == "wifi-dropouts" else 3 + (i + n) % 3)
                for n, t in enumerate(TOPICS)
            ]
            agent = rt.Agent(
                id=agent_id,
                display_name=f"Demo agent {i + 1}",
                skills=skills,
                languages=["en"],
                teams=[self.team],
                capacity=[
                    rt.ChannelCapacity(channel=ev.CHANNEL_CHAT, capacity=2),
                    rt.ChannelCapacity(channel=ev.CHANNEL_VOICE, capacity=1),
                    rt.ChannelCapacity(channel=ev.CHANNEL_SOCIAL, capacity=2),
                    rt.ChannelCapacity(channel=ev.CHANNEL_EMAIL, capacity=3),
                ],
            )
            self.router.UpsertAgent(rt.UpsertAgentRequest(agent=agent), timeout=CALL_TIMEOUT)
            self.router.SetAgentStatus(
                rt.SetAgentStatusRequest(agent_id=agent_id, status=rt.AGENT_STATUS_AVAILABLE), timeout=CALL_TIMEOUT
            )

    def sign_off_team(self) -> None:
        for agent_id in self.agents:
            with contextlib.suppress(grpc.RpcError):
                self.router.SetAgentStatus(
                    rt.SetAgentStatusRequest(agent_id=agent_id, status=rt.AGENT_STATUS_OFFLINE), timeout=CALL_TIMEOUT
                )

    def agent_loads(self) -> tuple[int, list[str]]:
        """(agents with at least one contact, overload descriptions) for the team now."""
        reply = self.router.ListAgents(rt.ListAgentsRequest(team=self.team, page_size=500), timeout=CALL_TIMEOUT)
        busy = 0
        over = []
        for agent in reply.agents:
            if any(c.active > 0 for c in agent.capacity):
                busy += 1
            over += [
                f"{agent.id} {c.active}/{c.capacity} on channel {c.channel}"
                for c in agent.capacity
                if c.active > c.capacity
            ]
        return busy, over

    def queue_depth(self) -> int:
        return int(self.router.GetQueue(rt.GetQueueRequest(team=self.team), timeout=CALL_TIMEOUT).total_waiting)

    # -- journeys ------------------------------------------------------------------------------
    def _route(self, who: ev.Identifier, channel: int, topic: str, **kw: Any) -> rt.RouteContactRequest:
        return rt.RouteContactRequest(identifier=who, channel=channel, topic=topic, team=self.team, language="en", **kw)  # type: ignore[arg-type]

    def history(self) -> None:
        """Earlier in the day the fixer resolved Wi-Fi dropouts: for three customers and for the one
        who escalates later (who now has the problem again)."""
        for n in range(4):
            who = email(
                f"wifi{n}.{self.prefix}@example.com" if n < 3 else f"wifi.{self.prefix}@example.com", method="password"
            )
            self.publish(
                self._event(
                    "history", ev.CHANNEL_VOICE, ev.INTERACTION_KIND_CONTACT_COMPLETED, who,
                    at=self.day_start + timedelta(hours=1 + n), agent_id=self.fixer, topic="wifi-dropouts",
                    outcome=ev.OUTCOME_RESOLVED, csat=5, handle_seconds=420, summary="Wi-Fi dropouts fixed",
                )
            )  # fmt: skip

    def bot_handoff(self) -> None:
        who = email(f"bot.{self.prefix}@example.com", method="password")
        events = [
            self._event("bot", ev.CHANNEL_BOT, ev.INTERACTION_KIND_BOT_TURN, who, intent="change_plan", topic="upgrade",
                        self_service=ev.SelfService(flow_id="plans", step="ask", intent_confidence=0.81),
                        facts=[ev.Fact(key="current_plan", value="Fibre 100")]),
            self._event("bot", ev.CHANNEL_BOT, ev.INTERACTION_KIND_BOT_TURN, who, intent="upgrade_speed", topic="upgrade",
                        self_service=ev.SelfService(flow_id="plans", step="offer", intent_confidence=0.64)),
            self._event("bot", ev.CHANNEL_BOT, ev.INTERACTION_KIND_BOT_EXIT, who, topic="upgrade",
                        self_service=ev.SelfService(flow_id="plans", step="offer", exit_reason="asked_for_agent")),
        ]  # fmt: skip
        for e in events:
            self.publish(e)
        customer = self.wait_visible(who, [e.event_id for e in events])
        tracked = self.desk.route(self._route(who, ev.CHANNEL_CHAT, "upgrade", intent="upgrade_speed"), handle=1.5)
        context = self._handoff(who)
        self.results["bot"] = {
            "customer_id": customer,
            "who": f"email:{who.value}",
            "contact_id": tracked.contact_id,
            "last_bot_intent": context.self_service.last_bot_intent,
        }
        tracked.done.wait(30)
        self.results["bot"]["agent_id"] = tracked.agent_id

    def merged_customer(self) -> None:
        mail = email(f"ana.{self.prefix}@example.com")
        number = phone_for(self.prefix, 1)
        phone = ident(ev.IDENTIFIER_KIND_PHONE, number, method="otp")
        events = [
            self._event("merge", ev.CHANNEL_EMAIL, ev.INTERACTION_KIND_MESSAGE, mail, topic="billing",
                        direction=ev.DIRECTION_INBOUND, summary="Why was I charged twice?",
                        traits=ev.CustomerTraits(display_name="Ana Demo", language="en")),
            self._event("merge", ev.CHANNEL_CHAT, ev.INTERACTION_KIND_MESSAGE, phone,
                        ident(ev.IDENTIFIER_KIND_COOKIE, f"{self.prefix}-web", verified=False),
                        topic="billing", direction=ev.DIRECTION_INBOUND, summary="Still charged twice",
                        facts=[ev.Fact(key="order", value=f"ORD-{self.prefix[:6]}")]),
            self._event("merge", ev.CHANNEL_VOICE, ev.INTERACTION_KIND_CALL, mail, phone, topic="billing",
                        direction=ev.DIRECTION_INBOUND, summary="Called about the double charge", sentiment=-0.4),
        ]  # fmt: skip
        for e in events:
            self.publish(e)
            self.publisher.flush()
        customer = self.wait_visible(mail, [e.event_id for e in events])
        self.results["merged"] = {
            "customer_id": customer,
            "email": mail.value,
            "phone": number,
            "event_ids": [e.event_id for e in events],
        }

    def escalation(self) -> None:
        who = email(f"wifi.{self.prefix}@example.com", method="password")
        article_id, title = FAILED_ARTICLE
        events = [
            self._event("kb", ev.CHANNEL_WEB, ev.INTERACTION_KIND_ARTICLE_VIEW, who, topic="wifi-dropouts",
                        self_service=ev.SelfService(article_id=article_id, article_title=title)),
            self._event("kb", ev.CHANNEL_WEB, ev.INTERACTION_KIND_ARTICLE_FEEDBACK, who, topic="wifi-dropouts",
                        self_service=ev.SelfService(article_id=article_id, article_title=title,
                                                    answer=ev.ARTICLE_ANSWER_NO)),
        ]  # fmt: skip
        for e in events:
            self.publish(e)
        customer = self.wait_visible(who, [e.event_id for e in events])
        tracked = self.desk.route(self._route(who, ev.CHANNEL_CHAT, "wifi-dropouts", priority=5), handle=2.0)
        context = self._handoff(who)
        articles = [
            {"article_id": a.article_id, "title": a.title, "answer": ev.ArticleAnswer.Name(a.answer)}
            for a in context.self_service.articles
        ]
        tracked.done.wait(30)
        self.results["escalation"] = {
            "customer_id": customer,
            "who": f"email:{who.value}",
            "contact_id": tracked.contact_id,
            "agent_id": tracked.agent_id,
            "fixer": self.fixer,
            "articles": articles,
            "probable_reason": context.probable_reason,
        }

    def device_call(self) -> None:
        device = ident(ev.IDENTIFIER_KIND_DEVICE_ID, f"{self.prefix}-hub", verified=False)
        account = ident(ev.IDENTIFIER_KIND_ACCOUNT_NUMBER, f"A-{self.prefix}")
        case = ev.CaseRef(
            id=f"{self.prefix}-case-hub", status=ev.CASE_STATUS_OPEN, title="Hub overheating", proactive=True
        )
        alert = self._event("device", ev.CHANNEL_DEVICE, ev.INTERACTION_KIND_DEVICE_ALERT, device, account,
                            topic="outage", device=ev.Device(id=device.value, model="HB-5", firmware="5.2.1"),
                            alert=ev.DeviceAlert(fault_code="E42-THERMAL", severity=ev.ALERT_SEVERITY_CRITICAL,
                                                 readings={"temp_c": 81.5}), case=case)  # fmt: skip
        self.publish(alert)
        caller = ident(ev.IDENTIFIER_KIND_PHONE, phone_for(self.prefix, 2), method="knowledge-based")
        call = self._event("device", ev.CHANNEL_VOICE, ev.INTERACTION_KIND_CALL, caller, account, topic="outage",
                           direction=ev.DIRECTION_INBOUND, case=case, summary="My hub keeps switching off")  # fmt: skip
        self.publish(call)
        customer = self.wait_visible(account, [alert.event_id, call.event_id])
        tracked = self.desk.route(self._route(account, ev.CHANNEL_VOICE, "outage", case_id=case.id), handle=1.5)
        self.results["device"] = {
            "customer_id": customer,
            "who": f"account:{account.value}",
            "contact_id": tracked.contact_id,
        }

    def social(self) -> None:
        handle = ident(ev.IDENTIFIER_KIND_SOCIAL_HANDLE, f"demo_{self.prefix}", verified=False, platform="x")
        post = self._event("social", ev.CHANNEL_SOCIAL, ev.INTERACTION_KIND_MESSAGE, handle, topic="outage",
                           direction=ev.DIRECTION_INBOUND, sentiment=-0.7, summary="Internet down again?!")  # fmt: skip
        self.publish(post)
        tracked = self.desk.route(self._route(handle, ev.CHANNEL_SOCIAL, "outage"), handle=1.0)
        self.results["social"] = {"who": f"social:x/{handle.value}", "contact_id": tracked.contact_id}

    def bad_event(self) -> None:
        """One record a careless producer sends without the SDK's validation: it goes to the DLQ."""
        event = self._event("bad", ev.CHANNEL_EMAIL, ev.INTERACTION_KIND_MESSAGE, email("not-an-email-address"))
        producer = KafkaProducer(bootstrap_servers=self.kafka.bootstrap_servers, acks="all")
        try:
            producer.send(self.kafka.interactions_topic, key=b"demo-bad", value=event.SerializeToString()).get(
                CALL_TIMEOUT
            )
        finally:
            producer.close(CALL_TIMEOUT)
        self.stats.add("dead_letter_expected", event.event_id)

    # -- background ------------------------------------------------------------------------------
    def rate(self) -> float:
        """Arrivals per second now: a base all day long and a peak around 60% of the day."""
        f = self.progress()
        return self.plan.background_rate * (0.4 + 1.6 * math.exp(-(((f - 0.6) / 0.12) ** 2)))

    def background(self) -> None:
        customers = 12 if self.plan.scenario_only else 60
        credit = 0.0
        last = time.monotonic()
        n = 0
        while not self.stop.is_set() and self.progress() < 1.0:
            now = time.monotonic()
            credit += self.rate() * (now - last)
            last = now
            while credit >= 1.0:
                credit -= 1.0
                n += 1
                c = self.rng.randrange(customers)
                who = ident(ev.IDENTIFIER_KIND_CRM_ID, f"{self.prefix}-C{c}")
                channel, kind = self.rng.choice(
                    [(ev.CHANNEL_VOICE, ev.INTERACTION_KIND_CALL), (ev.CHANNEL_CHAT, ev.INTERACTION_KIND_MESSAGE),
                     (ev.CHANNEL_EMAIL, ev.INTERACTION_KIND_MESSAGE), (ev.CHANNEL_WEB, ev.INTERACTION_KIND_ARTICLE_VIEW),
                     (ev.CHANNEL_APP, ev.INTERACTION_KIND_PAGE_VIEW)]
                )  # fmt: skip
                topic = self.rng.choice(TOPICS)
                self.publish(self._event("bg", channel, kind, who, topic=topic, direction=ev.DIRECTION_INBOUND))
                if channel in (ev.CHANNEL_VOICE, ev.CHANNEL_CHAT) and n % 3 == 0:
                    try:
                        self.desk.route(
                            self._route(who, channel, topic),
                            resolved=self.rng.random() < 0.8,
                            csat=self.rng.randint(2, 5),
                            handle=self.rng.uniform(1.0, 4.0),
                        )
                    except grpc.RpcError as exc:
                        self.stats.add("errors", f"route: {exc.code().name}: {exc.details()}")  # type: ignore[attr-defined]
            self.stop.wait(0.1)

    # -- the run ---------------------------------------------------------------------------------
    def _handoff(self, who: ev.Identifier) -> timeline_pb2.GetHandoffContextResponse:
        request = timeline_pb2.GetHandoffContextRequest(customer=timeline_pb2.CustomerRef(identifier=who))
        return self.timeline.GetHandoffContext(request, timeout=CALL_TIMEOUT)  # type: ignore[no-any-return]

    def _journeys(self) -> None:
        steps: list[tuple[float, str, Callable[[], None]]] = [
            (0.0, "history", self.history),
            (0.05, "bot handoff", self.bot_handoff),
            (0.2, "email, chat, phone merged", self.merged_customer),
            (0.35, "article 'No' then escalation", self.escalation),
            (0.5, "device alert then call", self.device_call),
            (0.65, "social message", self.social),
            (0.7, "bad record to the DLQ", self.bad_event),
        ]
        for at, name, step in steps:
            while self.progress() < at and not self.stop.is_set():
                self.stop.wait(0.1)
            if self.stop.is_set():
                return
            try:
                step()
                self.stats.add("journeys_done", name)
            except Exception as exc:
                log.warning("journey failed", exc_info=True)
                self.stats.add("errors", f"{name}: {exc}")

    def start(self) -> None:
        self.register_team()
        self.started = time.monotonic()
        self.desk.thread.start()
        for target in (self._journeys, self.background):
            thread = threading.Thread(target=target, name=f"demo-{target.__name__}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def finished(self) -> bool:
        return self.progress() >= 1.0 and not any(t.is_alive() for t in self._threads)

    def finish(self, drain: float = 20.0) -> None:
        """After the day: let the desk complete open contacts, flush, sign the team off."""
        for thread in self._threads:
            thread.join(timeout=drain)
        self.desk.drain(drain)
        try:
            self.publisher.flush()
        finally:
            self.publisher.close()
        self.sign_off_team()

    def report(self) -> dict[str, Any]:
        s = self.stats
        with s.lock:
            return {
                "prefix": self.prefix,
                "team": self.team,
                "agents": list(self.agents),
                "published": list(s.published),
                "dead_letter_expected": list(s.dead_letter_expected),
                "router_events": list(s.router_events),
                "routes": s.routes,
                "completed": s.completed,
                "resolved": s.resolved,
                "median_score": statistics.median(s.scores) if s.scores else None,
                "overloads": list(s.overloads),
                "journeys_done": list(s.journeys_done),
                "errors": list(s.errors),
                **self.results,
            }
