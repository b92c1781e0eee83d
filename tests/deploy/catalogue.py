"""The Rapport services the manifests deploy, and how to read each one's listening settings.

Only the wiring lives here (Deployment name, `python -m` module, image target); ports, hosts,
grace times and the variables read all come from the service's own settings code.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

from rapport.settings import GrpcSettings


@dataclass(frozen=True)
class Listener:
    host: str
    port: int
    # Seconds from SIGTERM until the process is done with in-flight work.
    drain: float


@dataclass(frozen=True)
class RapportService:
    deployment: str
    entry: str  # python -m <entry>
    target: str  # build target in deploy/images/Containerfile
    grpc: bool

    def listener(self, settings: list[object]) -> Listener:
        """Where the service listens and how long it drains, read from its loaded settings."""
        if self.grpc:
            servers = {(g.host, g.port, g.grace) for g in find(settings, GrpcSettings)}
            assert len(servers) == 1, f"{self.entry}: expected one gRPC server in its settings, found {servers}"
            host, port, grace = servers.pop()
            # grace for in-flight calls, then closing the driver and flushing telemetry.
            return Listener(host, port, grace + 5)
        holders = [s for s in _objects(settings) if hasattr(s, "web_port") and hasattr(s, "web_host")]
        assert len({(h.web_host, h.web_port) for h in holders}) == 1, f"{self.entry}: no single web listener"
        holder: Any = holders[0]
        # The batch in hand may take one whole graph transaction before offsets are committed.
        return Listener(holder.web_host, holder.web_port, float(getattr(holder, "transaction_timeout", 0)) + 10)


@dataclass(frozen=True)
class RapportJob:
    name: str
    entry: str  # what its container runs with python -m
    image_target: str  # whose image it borrows


SERVICES = (
    RapportService("rapport-profile-worker", "rapport_profile.worker", "profile-worker", grpc=False),
    RapportService("rapport-profile", "rapport_profile", "profile", grpc=True),
    RapportService("rapport-timeline", "rapport_timeline", "timeline", grpc=True),
    RapportService("rapport-router", "rapport_router", "router", grpc=True),
)
AUTOSCALED = ("rapport-router", "rapport-timeline")
JOBS = (RapportJob("rapport-provision", "rapport.provision", "profile-worker"),)
# (kind, name, python -m entry) of every Rapport workload whose settings come from the environment.
WORKLOADS = (
    *(("Deployment", s.deployment, s.entry) for s in SERVICES),
    *(("Job", j.name, j.entry) for j in JOBS),
)


def _objects(roots: list[object]) -> Iterator[object]:
    seen: set[int] = set()
    pending = list(roots)
    while pending:
        obj = pending.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        yield obj
        if is_dataclass(obj) and not isinstance(obj, type):
            pending.extend(getattr(obj, f.name) for f in fields(obj))


def find(roots: list[object], kind: type[Any]) -> list[Any]:
    return [o for o in _objects(roots) if isinstance(o, kind)]
