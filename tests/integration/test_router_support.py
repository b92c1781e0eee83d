"""Fixtures and helpers shared by the router's integration tests (this module holds no tests).

Routers run in-process on a free port (or as child processes, see rapport_router.process)
against the real Neo4j and Kafka. Every test scopes its agents, contacts and customers with
the `uid` prefix and routes to its own team, and removes exactly those nodes afterwards.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import grpc
import neo4j
import pytest

from rapport.serving import RunningServer, start_server
from rapport.settings import GrpcSettings, KafkaSettings, Neo4jSettings
from rapport.v1 import events_pb2 as ev
from rapport.v1 import router_pb2 as rt
from rapport.v1 import router_pb2_grpc
from rapport_router.bootstrap import SERVICE_NAME, RouterApp, build
from rapport_router.config import RouterConfig
from rapport_router.domain.relaxation import RelaxationPolicy

__all__ = [
    "CALL_TIMEOUT",
    "RouterHarness",
    "TcpProxy",
    "agent",
    "cleanup_fixture",
    "cleanup_graph",
    "days_ago",
    "email",
    "eventually",
    "serve_router",
]

CALL_TIMEOUT = 10.0
T = TypeVar("T")


def days_ago(days: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)


def email(local: str) -> ev.Identifier:
    return ev.Identifier(kind=ev.IDENTIFIER_KIND_EMAIL, value=f"{local}@example.com", verified=True)


def agent(
    agent_id: str,
    team: str,
    *,
    skills: dict[str, int] | None = None,
    languages: tuple[str, ...] = ("en",),
    chat: int = 1,
    voice: int = 0,
    status: int = rt.AGENT_STATUS_AVAILABLE,
) -> rt.Agent:
    capacity = [rt.ChannelCapacity(channel=ev.CHANNEL_CHAT, capacity=chat)]
    if voice:
        capacity.append(rt.ChannelCapacity(channel=ev.CHANNEL_VOICE, capacity=voice))
    return rt.Agent(
        id=agent_id,
        skills=[rt.AgentSkill(name=n, level=lvl) for n, lvl in (skills or {"billing": 3}).items()],
        languages=list(languages),
        teams=[team],
        capacity=capacity,
        status=status,  # type: ignore[arg-type]
    )


def eventually(probe: Callable[[], T | None], timeout: float = 15.0, interval: float = 0.1) -> T:
    """Polls until `probe` returns something truthy (a state change made by a background loop)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@dataclass
class RouterHarness:
    stub: router_pb2_grpc.RouterServiceStub
    server: RunningServer
    app: RouterApp
    config: RouterConfig
    channel: grpc.Channel

    def add_agents(self, *agents: rt.Agent) -> None:
        for a in agents:
            self.stub.UpsertAgent(rt.UpsertAgentRequest(agent=a), timeout=CALL_TIMEOUT)

    def route(self, **fields: Any) -> rt.Contact:
        fields.setdefault("channel", ev.CHANNEL_CHAT)
        return self.stub.RouteContact(rt.RouteContactRequest(**fields), timeout=CALL_TIMEOUT).contact

    def contact(self, contact_id: str) -> rt.Contact:
        return self.stub.GetContact(rt.GetContactRequest(contact_id=contact_id), timeout=CALL_TIMEOUT).contact

    def agent(self, agent_id: str) -> rt.Agent:
        return self.stub.GetAgent(rt.GetAgentRequest(agent_id=agent_id), timeout=CALL_TIMEOUT).agent

    def active(self, agent_id: str, channel: int = ev.CHANNEL_CHAT) -> int:
        return next(c.active for c in self.agent(agent_id).capacity if c.channel == channel)

    def close(self) -> None:
        self.channel.close()
        self.server.stop(0.5)


def serve_router(
    neo4j_settings: Neo4jSettings,
    kafka: KafkaSettings,
    *,
    driver: neo4j.Driver | None = None,
    relaxation: str | None = None,
    **overrides: Any,
) -> RouterHarness:
    """An in-process router with a fast loop; `overrides` replace RouterConfig fields."""
    config = RouterConfig(
        grpc=GrpcSettings(host="127.0.0.1", port=0, max_workers=24, grace=0.5),
        neo4j=neo4j_settings,
        kafka=kafka,
        tick=0.2,
        roster_max_age=0.2,
        stream_poll=0.1,
        outbox_retry=2.0,
    )
    if relaxation is not None:
        config = replace(config, relaxation=RelaxationPolicy.parse(relaxation))
    config = replace(config, **overrides)
    app = build(config, driver=driver)
    app.start()
    server = start_server(config.grpc, app.register, [SERVICE_NAME])
    server.on_stop.append(app.close)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    return RouterHarness(router_pb2_grpc.RouterServiceStub(channel), server, app, config, channel)


def cleanup_graph(graph: neo4j.Driver, uid: str) -> None:
    """Removes this test's contacts, agents and customers (and nothing else)."""
    graph.execute_query(
        "MATCH (c:Contact) WHERE c.id STARTS WITH $uid OR c.team STARTS WITH $uid DETACH DELETE c", uid=uid
    )
    graph.execute_query("MATCH (a:Agent) WHERE a.id STARTS WITH $uid DETACH DELETE a", uid=uid)
    graph.execute_query(
        """
        MATCH (k:Identity) WHERE k.value CONTAINS $uid
        OPTIONAL MATCH (k)-[:IDENTIFIES]->(c:Customer)
        OPTIONAL MATCH (c)-[:HAD]->(i:Interaction)
        OPTIONAL MATCH (c)-[:OWNS]->(d:Device)
        OPTIONAL MATCH (c)-[:HAS_CASE]->(cs:Case)
        DETACH DELETE k, c, i, d, cs
        """,
        uid=uid,
    )


@pytest.fixture(name="cleanup")
def cleanup_fixture(graph: neo4j.Driver, uid: str) -> Iterator[str]:
    yield uid
    cleanup_graph(graph, uid)


class TcpProxy:
    """A TCP relay to Neo4j that can be cut and restored, to make the graph unreachable."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        """Refuses new connections and resets the open ones: Neo4j is gone."""
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
