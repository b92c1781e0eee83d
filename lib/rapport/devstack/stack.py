"""up / down / status / clean for the whole local stack."""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from rapport.devstack import proc
from rapport.devstack.errors import StackError
from rapport.devstack.jars import ensure_jars, file_lock
from rapport.devstack.kafka_server import KafkaServer
from rapport.devstack.neo4j_server import Neo4jServer
from rapport.devstack.server import Server
from rapport.devstack.settings import LOCAL_HOST, Settings

log = logging.getLogger("rapport.devstack")

MIN_JAVA = 17


@dataclass(frozen=True)
class ServerStatus:
    name: str
    state: str  # running | starting | stopped | shared | external-up | external-down
    address: str
    pid: int | None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.state in ("running", "shared", "external-up")


def java_major(java: str) -> int:
    if not java:
        raise StackError("no `java` found (set JAVA_HOME or RAPPORT_JAVA); Java 17 or newer is needed")
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StackError(f"cannot run {java} -version: {exc}") from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        raise StackError(f"cannot read the Java version from `{java} -version`: {out.strip()[:200]}")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


class Stack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.servers: list[Server] = [KafkaServer(settings), Neo4jServer(settings)]

    def _lock(self) -> Path:
        return self.settings.state_dir / ".lock"

    # --- up -------------------------------------------------------------------------------------

    def up(self) -> list[ServerStatus]:
        """Start what is not running, then wait until every server answers a real client request."""
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        with file_lock(self._lock()):
            running: dict[str, psutil.Process] = {}
            to_start: list[Server] = []
            for server in self.servers:
                if server.external:
                    log.info("%s: %s is set, using the server at %s", server.name, server.env_var, server.address)
                    continue
                procs = server.processes()
                if procs:
                    running[server.name] = procs[0]
                    if len(procs) > 1:
                        log.warning(
                            "%s: several processes for one state folder: %s", server.name, [p.pid for p in procs]
                        )
                    proc.write_pid(server.pid_file, procs[0].pid)
                    recorded = server.recorded_address()
                    where = recorded or server.address
                    log.info("%s: already running (pid %d) on %s", server.name, procs[0].pid, where)
                    if recorded and recorded != server.address:
                        raise StackError(
                            f"{server.name} of {self.settings.state_dir} runs on {recorded}, not the requested "
                            f"{server.address}; run `down` first to change its ports"
                        )
                else:
                    to_start.append(server)
            shared = self._find_shared(to_start)
            to_start = [s for s in to_start if s.name not in shared]
            self._check_ports_free(to_start)
            started = self._start(to_start)
            return self._wait_all(started, running, shared)

    def _find_shared(self, servers: list[Server]) -> dict[str, int]:
        """Servers whose port another Rapport checkout's stack already serves: used, not started twice.

        This lets a second checkout (or CI's fresh clone) on the same machine run beside the default stack.
        """
        shared = {}
        for server in servers:
            found = server.shared_from()
            if found is None:
                continue
            pid, folder = found
            log.warning(
                "%s: %s is already served by the Rapport stack in %s (pid %d); using it. "
                "Set %s for a server of this folder's own.",
                server.name, server.address, folder, pid, server.port_var,
            )  # fmt: skip
            shared[server.name] = pid
        return shared

    def _check_ports_free(self, servers: list[Server]) -> None:
        for server in servers:
            for port in server.local_ports:
                if proc.port_open(LOCAL_HOST, port):
                    raise StackError(
                        f"{server.name}: port {port} on {LOCAL_HOST} is already in use by "
                        f"{proc.describe_listener(port)}. "
                        f"Stop it, choose other ports (RAPPORT_KAFKA_PORT, RAPPORT_KAFKA_CONTROLLER_PORT, "
                        f"RAPPORT_NEO4J_BOLT_PORT), or point Rapport at it with {server.env_var}."
                    )

    def _start(self, servers: list[Server]) -> dict[str, subprocess.Popen[bytes]]:
        if not servers:
            return {}
        major = java_major(self.settings.java)
        if major < MIN_JAVA:
            raise StackError(f"{self.settings.java} is Java {major}; Kafka 4 and Neo4j 5.26 need Java {MIN_JAVA}+")
        jar_dirs = {s.name: ensure_jars(s.jar_set(), self.settings.cache_dir, self.settings.mvn) for s in servers}
        started: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for server in servers:
                log.info("%s: starting on %s (state %s)", server.name, server.address, server.state)
                started[server.name] = server.start(jar_dirs[server.name])
        except (StackError, OSError):
            self._stop_started(started)
            raise
        return started

    def _wait_all(
        self,
        started: dict[str, subprocess.Popen[bytes]],
        running: dict[str, psutil.Process],
        shared: dict[str, int],
    ) -> list[ServerStatus]:
        statuses: list[ServerStatus] = []
        failures: list[str] = []
        began = time.monotonic()
        for server in self.servers:
            popen = started.get(server.name)
            existing = running.get(server.name)
            pid = popen.pid if popen else (existing.pid if existing else shared.get(server.name))
            try:
                detail = server.wait_ready(popen, pid, self.settings.ready_timeout)
            except StackError as exc:
                message = str(exc)
                if not server.external and server.name not in shared:
                    message += "\n" + server.log_tail()
                if popen is not None:
                    if popen.poll() is None:
                        message += f"\n{server.name}: stopping the server that failed to start (pid {popen.pid})"
                    self._stop_started({server.name: popen})
                failures.append(message)
                continue
            state = "external-up" if server.external else "shared" if server.name in shared else "running"
            log.info("%s: ready at %s after %.1f s (%s)", server.name, server.address, time.monotonic() - began, detail)
            statuses.append(ServerStatus(server.name, state, server.address, pid, detail))
        if failures:
            raise StackError("\n\n".join(failures))
        return statuses

    def _stop_started(self, started: dict[str, subprocess.Popen[bytes]]) -> None:
        by_name = {s.name: s for s in self.servers}
        procs = []
        for name, popen in started.items():
            with contextlib.suppress(psutil.NoSuchProcess):
                procs.append(psutil.Process(popen.pid))
            proc.remove(by_name[name].pid_file)
        proc.stop_all(procs, self.settings.stop_grace)
        for popen in started.values():
            popen.poll()  # reap, so no zombie stays behind while we are still running

    # --- down / clean -----------------------------------------------------------------------------

    def down(self) -> None:
        """Stop this state folder's servers (never an external one): SIGTERM, grace period, then SIGKILL."""
        # Without its folder there is nothing to lock, but a server whose folder was deleted may still run.
        lock = file_lock(self._lock()) if self.settings.state_dir.exists() else contextlib.nullcontext()
        with lock:
            targets: list[tuple[Server, list[psutil.Process]]] = [(s, s.processes()) for s in self.servers]
            every = [p for _, procs in targets for p in procs]
            for server, procs in targets:
                if procs:
                    log.info("%s: stopping pid %s", server.name, ", ".join(str(p.pid) for p in procs))
                else:
                    log.info("%s: not running", server.name)
            began = time.monotonic()
            killed = proc.stop_all(every, self.settings.stop_grace)
            if killed:
                log.warning("pids %s ignored SIGTERM for %.0f s and were killed", killed, self.settings.stop_grace)
            for server, _ in targets:
                proc.remove(server.pid_file)
                proc.remove(server.run_file)
            if every:
                names = ", ".join(s.name for s, procs in targets if procs)
                log.info("stopped %s in %.1f s", names, time.monotonic() - began)

    def clean(self) -> None:
        """down, then delete the state this tool created (never the jar cache, never unrelated files)."""
        self.down()
        root = self.settings.state_dir
        if not root.exists():
            return
        for server in self.servers:
            if server.state.exists():
                shutil.rmtree(server.state)
                log.info("%s: deleted %s", server.name, server.state)
        proc.remove(self._lock())
        try:
            root.rmdir()
        except OSError:
            log.info("kept %s: it holds files this tool did not create", root)

    # --- status -----------------------------------------------------------------------------------

    def status(self) -> list[ServerStatus]:
        result = []
        for server in self.servers:
            if server.external:
                host, port = server.endpoint
                up = proc.port_open(host, port, timeout=2.0)
                detail = f"{server.env_var} is set; " + ("port answers" if up else "port does not answer")
                result.append(
                    ServerStatus(server.name, "external-up" if up else "external-down", server.address, None, detail)
                )
                continue
            procs = server.processes(forget_stale=False)
            address = server.recorded_address() or server.address
            if procs:
                answering = all(proc.port_open(LOCAL_HOST, p) for p in server.recorded_ports())
                state = "running" if answering else "starting"
                detail = f"state {server.state}" + ("" if answering else "; process alive, port not answering")
                result.append(ServerStatus(server.name, state, address, procs[0].pid, detail))
            elif (found := server.shared_from()) is not None:
                pid, folder = found
                result.append(
                    ServerStatus(server.name, "shared", server.address, pid, f"served by the stack in {folder}")
                )
            else:
                busy = [p for p in server.local_ports if proc.port_open(LOCAL_HOST, p)]
                detail = f"state {server.state}"
                if busy:
                    detail += f"; port {busy[0]} is used by {proc.describe_listener(busy[0])}"
                result.append(ServerStatus(server.name, "stopped", server.address, None, detail))
        return result
