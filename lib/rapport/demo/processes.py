"""The demo's child processes: the profile worker and the profile, timeline and router servers.

Each runs as `python -m <module>` in its own session (so a terminal Ctrl-C reaches only the
demo, which then stops them in order), logs to `.rapport/demo/<name>.log`, and counts as
started once its health check passes: gRPC health SERVING, or the worker's HTTP /live.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rapport.settings import PROFILE_PORT, PROFILE_WORKER_WEB_PORT, ROUTER_PORT, TIMELINE_PORT

LOG_DIR = Path(".rapport/demo")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    return int(raw) if raw else default


@dataclass(frozen=True)
class Ports:
    profile: int
    timeline: int
    router: int
    worker: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Ports:
        env = os.environ if env is None else env
        return cls(
            profile=_port(env, "RAPPORT_PROFILE_PORT", PROFILE_PORT),
            timeline=_port(env, "RAPPORT_TIMELINE_PORT", TIMELINE_PORT),
            router=_port(env, "RAPPORT_ROUTER_PORT", ROUTER_PORT),
            worker=_port(env, "RAPPORT_PROFILE_WORKER_PORT", PROFILE_WORKER_WEB_PORT),
        )

    def env(self) -> dict[str, str]:
        return {
            "RAPPORT_PROFILE_HOST": "127.0.0.1",
            "RAPPORT_PROFILE_PORT": str(self.profile),
            "RAPPORT_TIMELINE_HOST": "127.0.0.1",
            "RAPPORT_TIMELINE_PORT": str(self.timeline),
            "RAPPORT_ROUTER_HOST": "127.0.0.1",
            "RAPPORT_ROUTER_PORT": str(self.router),
            "RAPPORT_PROFILE_WORKER_HOST": "127.0.0.1",
            "RAPPORT_PROFILE_WORKER_PORT": str(self.worker),
        }


def grpc_serving(address: str, timeout: float = 1.0) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def worker_health(port: int, path: str = "/health", timeout: float = 2.0) -> tuple[int, dict[str, Any]]:
    """The worker's HTTP health answer: (status, body); (0, {}) when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
            return int(response.status), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {}
    except (OSError, ValueError):
        return 0, {}


@dataclass
class Child:
    name: str
    module: str
    port: int
    grpc: bool
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    started_in: float = 0.0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, env: Mapping[str, str]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", self.module],
                env=dict(env),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def healthy(self) -> bool:
        if self.grpc:
            return grpc_serving(self.address)
        return worker_health(self.port, "/live")[0] == 200

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def terminate(self) -> None:
        if self.running:
            assert self.popen is not None
            self.popen.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float) -> int | None:
        if self.popen is None:
            return None
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait(10)


@dataclass
class Services:
    """The four children; `start` waits until all are healthy, `stop` leaves none behind."""

    ports: Ports
    log_dir: Path = LOG_DIR
    children: list[Child] = field(default_factory=list)

    def __post_init__(self) -> None:
        d = self.log_dir
        self.children = [
            Child("worker", "rapport_profile.worker", self.ports.worker, False, d / "worker.log"),
            Child("profile", "rapport_profile", self.ports.profile, True, d / "profile.log"),
            Child("timeline", "rapport_timeline", self.ports.timeline, True, d / "timeline.log"),
            Child("router", "rapport_router", self.ports.router, True, d / "router.log"),
        ]

    def by_name(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    def start(self, env: Mapping[str, str], timeout: float = 90.0) -> dict[str, float]:
        """Starts all children at once and waits for each to be healthy; returns seconds to healthy."""
        # Agents' outcome statistics every minute (default 2), so a few-minute day shows their effect.
        full = {"RAPPORT_ROUTER_STATS_REFRESH": "60", **env, **self.ports.env()}
        began = time.monotonic()
        for child in self.children:
            child.start(full)
        pending = list(self.children)
        deadline = began + timeout
        while pending:
            for child in list(pending):
                if not child.running:
                    code = child.popen.returncode if child.popen else None
                    raise RuntimeError(
                        f"{child.name} exited with {code} while starting; see {child.log_path}:\n{child.log_tail()}"
                    )
                if child.healthy():
                    child.started_in = time.monotonic() - began
                    pending.remove(child)
            if pending and time.monotonic() > deadline:
                names = ", ".join(c.name for c in pending)
                raise TimeoutError(f"{names} not healthy after {timeout:.0f} s; logs in {self.log_dir}")
            time.sleep(0.2)
        return {c.name: round(c.started_in, 2) for c in self.children}

    def pids(self) -> list[int]:
        return [c.popen.pid for c in self.children if c.popen is not None]

    def stop(self, timeout: float = 30.0) -> dict[str, int | None]:
        """SIGTERM to every child (servers first, the worker last so it commits what it has)."""
        codes: dict[str, int | None] = {}
        order = [c for c in self.children if c.name != "worker"] + [self.by_name("worker")]
        for child in order[:-1]:
            child.terminate()
        for child in order[:-1]:
            codes[child.name] = child.wait_stopped(timeout)
        worker = order[-1]
        worker.terminate()
        codes[worker.name] = worker.wait_stopped(timeout)
        return codes
