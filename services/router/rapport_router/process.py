"""The router as a real child process, for integration tests, benchmarks and demos.

Starts `python -m rapport_router` with its settings in the environment on a free port, waits
until gRPC health says SERVING, and stops it with SIGTERM (graceful) or SIGKILL (a crash).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rapport.settings import KafkaSettings, Neo4jSettings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def router_env(
    neo4j: Neo4jSettings,
    kafka: KafkaSettings,
    *,
    port: int | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "RAPPORT_KAFKA_BOOTSTRAP": kafka.bootstrap_servers,
            "RAPPORT_INTERACTIONS_TOPIC": kafka.interactions_topic,
            "RAPPORT_NEO4J_URI": neo4j.uri,
            "RAPPORT_NEO4J_USER": neo4j.user,
            "RAPPORT_NEO4J_PASSWORD": neo4j.password,
            "RAPPORT_NEO4J_DATABASE": neo4j.database,
            "RAPPORT_ROUTER_HOST": "127.0.0.1",
            "RAPPORT_ROUTER_PORT": str(port or free_port()),
        }
    )
    env.update(extra or {})
    return env


class RouterProcess:
    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.env = dict(env)
        self.port = int(self.env["RAPPORT_ROUTER_PORT"])
        self.log_path = log_path
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, ready_timeout: float = 60.0) -> RouterProcess:
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "rapport_router"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.wait_serving(ready_timeout)
        return self

    def wait_serving(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.popen is not None and self.popen.poll() is not None:
                    raise RuntimeError(f"router exited with {self.popen.returncode}; log: {self.log_tail()}")
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                time.sleep(0.2)
        raise TimeoutError(f"router not serving after {timeout} s; log: {self.log_tail()}")

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.popen is not None
        self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout)

    def kill(self) -> None:
        assert self.popen is not None
        self.popen.kill()
        self.popen.wait(30)

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self) -> None:
        if self.running:
            try:
                self.terminate(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> RouterProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
