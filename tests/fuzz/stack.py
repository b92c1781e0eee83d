"""The services under fuzz: ProfileService, JourneyService and TimelineService in-process on loopback, with
their real servicers, adapters and interceptors (token check on), reading the real Neo4j graph
seeded with a few customers, so generated requests reach every layer down to Cypher.

Every call is made with raw bytes and classified: a status is *explained* when it is one a
client is told to expect for bad input (INVALID_ARGUMENT naming the field, NOT_FOUND, ...);
INTERNAL, UNKNOWN, UNAVAILABLE or a deadline (a hang) are findings.
"""

from __future__ import annotations

import json
import re
import tempfile
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import neo4j
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from rapport.events import validate
from rapport.serving import RunningServer, start_server
from rapport.settings import AuthSettings, GrpcSettings, KafkaSettings, Neo4jSettings
from rapport.v1 import events_pb2 as ev
from rapport.v1 import journeys_pb2, profile_pb2, timeline_pb2
from rapport_profile.adapters.graph import seed_graph
from rapport_profile.api.bootstrap import start_profile_api
from rapport_profile.api.config import ProfileApiSettings
from rapport_profile.synthetic import customer_stream, identifier, interaction
from rapport_timeline.adapters.updates import WatchHub
from rapport_timeline.bootstrap import SERVICE_NAME as TIMELINE_SERVICE
from rapport_timeline.bootstrap import build as build_timeline
from rapport_timeline.config import TimelineSettings

ADMIN_TOKEN = "fuzz-admin-" + uuid.uuid4().hex + uuid.uuid4().hex
ADMIN = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
CALL_TIMEOUT = 15.0
MAX_STREAMED = 200
HELD_OPEN_AFTER = 0.3

EXPLAINED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
# INVALID_ARGUMENT says which field is wrong: "customer.identifier.value: ...", "request: ...",
# "identifiers[2].kind: ...", "attributes['tier']: ...".
_FIELD_FIRST = re.compile(r"^[A-Za-z_][\w.]*(\[[^\]\n]*\][\w.]*)*: .")


@dataclass(frozen=True)
class Target:
    path: str
    request: Descriptor
    response: Descriptor
    server_streaming: bool
    port: int
    # For a stream that replays then goes live: True on the response that marks the live point.
    # A stream without one (an offer feed) counts as held open once it outlives HELD_OPEN_AFTER.
    live_marker: Callable[[Message], bool] | None = None

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[1]


@dataclass(frozen=True)
class Outcome:
    code: grpc.StatusCode
    details: str
    responses: int = 0

    @property
    def explained(self) -> bool:
        if self.code not in EXPLAINED:
            return False
        if self.code == grpc.StatusCode.INVALID_ARGUMENT:
            return bool(_FIELD_FIRST.match(self.details))
        return self.code == grpc.StatusCode.OK or bool(self.details)


def _targets(service: Any, port: int) -> list[Target]:
    return [
        Target(
            f"/{service.full_name}/{m.name}",
            m.input_type,
            m.output_type,
            m.server_streaming,
            port,
            _live_marker if m.name == "WatchTimeline" else None,
        )
        for m in service.methods
    ]


class _Delivered:
    """A send that succeeded at once (kafka-python's future, as far as the outbox uses it)."""

    def add_callback(self, fn: Callable[..., Any], *args: Any) -> _Delivered:
        fn(*args, None)
        return self

    def add_errback(self, fn: Callable[..., Any], *args: Any) -> _Delivered:
        return self


class DiscardedEvents:
    """The router's event sink during fuzzing: validated, then dropped; nothing reaches Kafka."""

    def publish(self, event: Any, topic: str | None = None) -> Any:
        validate(event)
        return _Delivered()

    def flush(self, timeout: float | None = None) -> None:
        return None

    def close(self, timeout: float | None = None) -> None:
        return None


class DiscardedNotices:
    """The ProfileService's customer-updates notices during fuzzing: dropped (no timeline listens)."""

    def erased(self, customer_ids: Any, timeout: float) -> None:
        return None

    def history_removed(self, customer_ids: Any, timeout: float) -> None:
        return None

    def close(self) -> None:
        return None


def unary(channel: grpc.Channel, path: str) -> Any:
    """A bytes-in, bytes-out callable for `path`."""
    return channel.unary_unary(path)


def streaming(channel: grpc.Channel, path: str) -> Any:
    return channel.unary_stream(path)


def _live_marker(response: Message) -> bool:
    """WatchTimeline's marker that replay is over: neither an interaction nor a merge."""
    return not response.HasField("interaction") and not response.HasField("merged")


@dataclass
class FuzzStack:
    targets: list[Target]
    known: tuple[str, ...]
    servers: list[RunningServer]
    channels: dict[int, grpc.Channel]
    tally: Counter[tuple[str, str]] = field(default_factory=Counter)
    # Method name -> the values its requests draw from, when not `known` (ForgetCustomer only ever
    # sees customers of its own, so the others keep theirs).
    pools: dict[str, tuple[str, ...]] = field(default_factory=dict)
    findings: list[tuple[str, bytes, Outcome]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def values_for(self, name: str) -> tuple[str, ...]:
        return self.pools.get(name, self.known)

    def call(self, target: Target, payload: bytes, metadata: tuple[tuple[str, str], ...] = ADMIN) -> Outcome:
        channel = self.channels[target.port]
        try:
            if target.server_streaming:
                outcome = self._stream(channel, target, payload, metadata)
            else:
                unary(channel, target.path)(payload, metadata=metadata, timeout=CALL_TIMEOUT)
                outcome = Outcome(grpc.StatusCode.OK, "")
        except grpc.RpcError as exc:
            outcome = Outcome(exc.code(), exc.details() or "")
        with self._lock:
            self.tally[(target.name, outcome.code.name)] += 1
            if not outcome.explained:
                self.findings.append((target.path, payload, outcome))
        return outcome

    def _stream(
        self, channel: grpc.Channel, target: Target, payload: bytes, metadata: tuple[tuple[str, str], ...]
    ) -> Outcome:
        decode: Callable[[bytes], Message] = GetMessageClass(target.response).FromString
        call = streaming(channel, target.path)(payload, metadata=metadata, timeout=CALL_TIMEOUT)
        count = 0
        try:
            if target.live_marker is None:
                ended = threading.Event()
                call.add_done_callback(lambda _call: ended.set())
                if not ended.wait(HELD_OPEN_AFTER):
                    return Outcome(grpc.StatusCode.OK, "held open")
                for _raw in call:
                    count += 1
                return Outcome(grpc.StatusCode.OK, "", count)
            for raw in call:
                count += 1
                if target.live_marker(decode(raw)) or count >= MAX_STREAMED:
                    break
        finally:
            call.cancel()
        return Outcome(grpc.StatusCode.OK, "", count)

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()
        for server in self.servers:
            server.stop(1.0)


def _seed_reviews(driver: neo4j.Driver, database: str, prefix: str) -> set[str]:
    """Merge candidates and merges of their own, for the merge review methods to approve, reject
    and undo: the customers the other methods read are never candidates nor merged."""
    events: list[Any] = []
    for n in range(3):
        cookie = identifier(f"cookie:{prefix}-K{n}", verified=False)
        events += [
            interaction(f"{prefix}-r{n}a", f"crm:{prefix}-R{n}A", cookie),
            interaction(f"{prefix}-r{n}b", f"crm:{prefix}-R{n}B", cookie),
            interaction(f"{prefix}-m{n}a", f"crm:{prefix}-M{n}A"),
            interaction(f"{prefix}-m{n}b", f"crm:{prefix}-M{n}B"),
            interaction(f"{prefix}-m{n}ab", f"crm:{prefix}-M{n}A", f"crm:{prefix}-M{n}B"),
        ]
    result = seed_graph(driver, events, database)
    return {m.id for m in result.merges} | {m.absorbed_id for m in result.merges} | set(result.owners.values())


def _seed(driver: neo4j.Driver, database: str) -> tuple[str, ...]:
    prefix = "fz" + uuid.uuid4().hex[:8]
    events = list(customer_stream(4, 60, prefix=prefix, agents=5))
    result = seed_graph(driver, events, database)
    known: set[str] = set(result.owners.values()) | set(list(result.owners)[:6])
    for event in events[:10]:
        for ident in event.identifiers:
            known.add(ident.value)
    known |= {f"crm:{prefix}-C0", f"email:c1.{prefix}@example.com", "email", "crm", "phone", "x"}
    known |= {f"{prefix}-A0", f"{prefix}-A1", f"{prefix}-team", "billing", "en"}
    known |= {"cus_" + "0" * 16, "cus_" + "f" * 16, "mrg_" + "0" * 16}
    known |= _seed_reviews(driver, database, prefix)
    return tuple(sorted(known))


def _seed_forgettable(driver: neo4j.Driver, database: str) -> tuple[str, ...]:
    """Customers for ForgetCustomer to erase (some merged), and the values that find them."""
    prefix = "fzf" + uuid.uuid4().hex[:8]
    events = []
    for n in range(8):
        crm, mail = f"crm:{prefix}-F{n}", f"email:f{n}.{prefix}@example.com"
        events += [interaction(f"{prefix}-{n}a", crm, identifier(mail, verified=n % 2 == 0),
                               agent_id=f"{prefix}-A", facts=[ev.Fact(key="plan", value="fibre")])]  # fmt: skip
        if n % 4 == 0:  # a second customer merged into this one
            events += [
                interaction(f"{prefix}-{n}b", f"phone:+447700{int(prefix[3:9], 16) % 10**5:05d}{n}"),
                interaction(f"{prefix}-{n}c", crm, f"phone:+447700{int(prefix[3:9], 16) % 10**5:05d}{n}"),
            ]
    result = seed_graph(driver, events, database)
    pool = set(result.owners.values()) | {m.absorbed_id for m in result.merges}
    for event in events:
        pool |= {i.value for i in event.identifiers}
    pool |= {"cus_" + "0" * 16, "gdpr-art-17 ticket 4821", "crm", "email", "x"}
    return tuple(sorted(pool))


def _tokens(stack: FuzzStack, customer_id: str) -> set[str]:
    """Real page tokens and watch cursors, so mutations of them reach the cursor checks."""
    found: set[str] = set()
    by_name = {t.name: t for t in stack.targets}
    ref = timeline_pb2.CustomerRef(customer_id=customer_id)
    channel = stack.channels[by_name["ListInteractions"].port]
    raw = unary(channel, by_name["ListInteractions"].path)(
        timeline_pb2.ListInteractionsRequest(customer=ref, page_size=2).SerializeToString(),
        metadata=ADMIN,
        timeout=CALL_TIMEOUT,
    )
    found.add(timeline_pb2.ListInteractionsResponse.FromString(raw).next_page_token)
    call = streaming(channel, by_name["WatchTimeline"].path)(
        timeline_pb2.WatchTimelineRequest(customer=ref).SerializeToString(), metadata=ADMIN, timeout=CALL_TIMEOUT
    )
    try:
        for item in call:
            found.add(timeline_pb2.WatchTimelineResponse.FromString(item).cursor)
            break
    finally:
        call.cancel()
    return {t for t in found if t}


def start_fuzz_stack(
    neo4j_settings: Neo4jSettings, driver: neo4j.Driver, workdir: Path | None = None, *, router: bool = False
) -> FuzzStack:
    """Seeds the graph and starts the services with token checks on (callers use ADMIN).

    `router` adds RouterService. Its methods write: the agents and contacts a run generates
    stay in the graph (with generated, mostly nonsensical teams), so it is for the long run on
    a scratch stack, not for the shared test graph.
    """
    directory = Path(workdir or tempfile.mkdtemp(prefix="rapport-fuzz-"))
    tokens = directory / "tokens.json"
    tokens.write_text(json.dumps({"tokens": [{"subject": "fuzzer", "roles": ["admin"], "token": ADMIN_TOKEN}]}))
    grpc_settings = GrpcSettings(port=0, max_workers=32, auth=AuthSettings(tokens_file=str(tokens)))
    known = _seed(driver, neo4j_settings.database)

    profile = start_profile_api(
        ProfileApiSettings(grpc=grpc_settings, neo4j=neo4j_settings), driver=driver, notices=DiscardedNotices()
    )
    hub = WatchHub(max_watchers=64)
    hub.ready.set()  # no Kafka tail: watches replay from the graph, then wait for updates that never come
    timeline_settings = TimelineSettings(
        grpc=grpc_settings, neo4j=neo4j_settings, kafka=KafkaSettings(), max_watchers=64, live_wait=1.0
    )
    app = build_timeline(timeline_settings, hub=hub, tail=False)
    timeline = start_server(grpc_settings, app.register, [TIMELINE_SERVICE])
    timeline.on_stop.append(app.close)

    profile_service = profile_pb2.DESCRIPTOR.services_by_name["ProfileService"]
    timeline_service = timeline_pb2.DESCRIPTOR.services_by_name["TimelineService"]
    journey_service = journeys_pb2.DESCRIPTOR.services_by_name["JourneyService"]
    targets = (
        _targets(profile_service, profile.port)
        + _targets(journey_service, profile.port)
        + _targets(timeline_service, timeline.port)
    )
    channels = {
        port: grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", -1)])
        for port in (profile.port, timeline.port)
    }
    servers = [profile, timeline]
    if router:
        from rapport.v1 import router_pb2
        from rapport_router.bootstrap import SERVICE_NAME as ROUTER_SERVICE
        from rapport_router.bootstrap import build as build_router
        from rapport_router.config import RouterConfig

        config = RouterConfig(grpc=grpc_settings, neo4j=neo4j_settings, kafka=KafkaSettings(), stream_poll=0.1)
        router_app = build_router(config, driver=driver, sink_factory=DiscardedEvents)
        router_app.start(background=False)
        router_server = start_server(grpc_settings, router_app.register, [ROUTER_SERVICE])
        router_server.on_stop.append(router_app.close)
        servers.append(router_server)
        targets += _targets(router_pb2.DESCRIPTOR.services_by_name["RouterService"], router_server.port)
        channels[router_server.port] = grpc.insecure_channel(
            f"127.0.0.1:{router_server.port}", options=[("grpc.max_send_message_length", -1)]
        )
    stack = FuzzStack(targets, known, servers, channels)
    customer = next(k for k in known if k.startswith("cus_") and not k.endswith(("0" * 16, "f" * 16)))
    stack.known = tuple(sorted({*known, *_tokens(stack, customer)}))
    stack.pools["ForgetCustomer"] = _seed_forgettable(driver, neo4j_settings.database)
    return stack
