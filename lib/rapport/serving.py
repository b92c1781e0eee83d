"""The gRPC server every Rapport service runs: health, reflection, tracing, graceful SIGTERM,
and the security its settings ask for (TLS or mutual TLS, bearer tokens checked against the
role policy; see `rapport.security`)."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass, field
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from rapport.errors import StatusInterceptor
from rapport.security.policy import Policy
from rapport.security.server import server_security
from rapport.security.wire import BoundedDetailsInterceptor
from rapport.settings import GrpcSettings
from rapport.telemetry import ServerTracing

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
MAX_METADATA_BYTES = 16 * 1024

# Connection hygiene: dead peers (a watch whose client vanished) are found by keepalive pings;
# clients may ping every 20 s (rapport.channels pings every 30 s), more often is abuse; one
# connection cannot open more than 100 concurrent streams.
SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_metadata_size", MAX_METADATA_BYTES),
    ("grpc.max_concurrent_streams", 100),
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 20_000),
    ("grpc.http2.max_ping_strikes", 2),
    ("grpc.so_reuseport", 0),
]


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer
    service_names: list[str]
    on_stop: list[Callable[[], None]] = field(default_factory=list)
    _stopped: threading.Event = field(default_factory=threading.Event)
    _cleaned_up: threading.Event = field(default_factory=threading.Event)

    def stop(self, grace: float) -> None:
        """NOT_SERVING first so balancers drain us, then finish in-flight calls, then clean up."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait(grace + 1)
        for callback in reversed(self.on_stop):
            try:
                callback()
            except Exception:
                log.exception("shutdown step failed")
        self._cleaned_up.set()

    def wait(self) -> None:
        """Returns once the server has stopped and every shutdown step has run."""
        self.server.wait_for_termination()
        if self._stopped.is_set():
            self._cleaned_up.wait()


def start_server(
    settings: GrpcSettings,
    register: Callable[[grpc.Server], None],
    service_names: Iterable[str],
    *,
    interceptors: Iterable[grpc.ServerInterceptor] = (),
    policy: Policy | None = None,
) -> RunningServer:
    """Build, bind and start a server; `register` adds the service's servicers.

    TLS, mutual TLS and token checks come from `settings.tls` and `settings.auth` (read from
    RAPPORT_TLS_* / RAPPORT_AUTH_* by `GrpcSettings.from_env`); `policy` replaces the role policy
    (default: RAPPORT_AUTH_POLICY_FILE, else `rapport.security.DEFAULT_POLICY`). Raises
    `InsecureConfiguration` for plaintext or unauthenticated gRPC on a non-loopback address
    unless the settings allow it explicitly.
    """
    security = server_security(settings, policy)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.max_workers),
        interceptors=[
            ServerTracing(),
            BoundedDetailsInterceptor(),
            StatusInterceptor(),
            *security.interceptors,
            *interceptors,
        ],
        options=SERVER_OPTIONS,
    )
    register(server)
    names = list(service_names)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    if security.credentials is None:
        port = server.add_insecure_port(settings.address)
    else:
        port = server.add_secure_port(settings.address, security.credentials)
    if port == 0:
        raise RuntimeError(f"cannot bind gRPC server to {settings.address}")
    server.start()
    for name in ["", *names]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "grpc server listening",
        extra={
            "address": f"{settings.host}:{port}",
            "services": names,
            "transport": security.transport,
            "auth": security.auth,
        },
    )
    return RunningServer(server, port, health_servicer, names)


def stop_on_signals(running: RunningServer, grace: float, end_streams: Iterable[Callable[[], None]] = ()) -> None:
    """SIGTERM and SIGINT stop the server gracefully (from a thread: handlers must return fast).

    `end_streams` run first: long-lived server streams (watches, offer streams) end at once so
    their clients resume on another replica, instead of holding the drain for the whole grace.
    """
    closers = list(end_streams)

    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info("signal received, draining", extra={"signal": signal.Signals(signum).name})
        for close in closers:
            close()
        threading.Thread(target=running.stop, args=(grace,), daemon=True).start()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
