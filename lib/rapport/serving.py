"""The gRPC server every Rapport service runs: health, reflection, tracing, graceful SIGTERM."""

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
from opentelemetry.instrumentation.grpc import server_interceptor

from rapport.errors import StatusInterceptor
from rapport.settings import GrpcSettings

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024


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
) -> RunningServer:
    """Build, bind and start a server; `register` adds the service's servicers."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.max_workers),
        interceptors=[server_interceptor(), StatusInterceptor(), *interceptors],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    register(server)
    names = list(service_names)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    port = server.add_insecure_port(settings.address)
    if port == 0:
        raise RuntimeError(f"cannot bind gRPC server to {settings.address}")
    server.start()
    for name in ["", *names]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("grpc server listening", extra={"address": f"{settings.host}:{port}", "services": names})
    return RunningServer(server, port, health_servicer, names)


def stop_on_signals(running: RunningServer, grace: float) -> None:
    """SIGTERM and SIGINT stop the server gracefully (from a thread: handlers must return fast)."""

    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info("signal received, draining", extra={"signal": signal.Signals(signum).name})
        threading.Thread(target=running.stop, args=(grace,), daemon=True).start()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
