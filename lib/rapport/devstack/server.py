"""What every local server has in common: its state folder, pid file, process lookup and readiness wait."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

import psutil

from rapport.devstack import proc
from rapport.devstack.errors import NotReady, StackError
from rapport.devstack.jars import JarSet
from rapport.devstack.settings import LOCAL_HOST, Settings

log = logging.getLogger("rapport.devstack")


@contextlib.contextmanager
def quiet_loggers(*names: str) -> Iterator[None]:
    """Client libraries log every refused connection while a server boots; that is expected noise here."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


class Server(ABC):
    name: str
    main_class: str
    env_var: str  # the variable that points Rapport at an existing server instead
    port_var: str  # the variable that moves the local server to another port

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # --- what each server defines -------------------------------------------------------------

    @property
    @abstractmethod
    def state(self) -> Path: ...

    @property
    @abstractmethod
    def external(self) -> bool: ...

    @property
    @abstractmethod
    def address(self) -> str:
        """Where clients connect (bootstrap servers or a Bolt URI)."""

    @property
    @abstractmethod
    def endpoint(self) -> tuple[str, int]:
        """Host and port to test for a listening socket before a full probe."""

    @property
    @abstractmethod
    def local_ports(self) -> list[int]:
        """Ports a local server of this kind binds on 127.0.0.1."""

    @property
    @abstractmethod
    def marker_arg(self) -> str:
        """A command-line argument that only this state folder's server has."""

    @abstractmethod
    def state_from_arg(self, arg: str) -> Path | None:
        """The stack state folder named by a command-line argument shaped like marker_arg, else None."""

    @abstractmethod
    def prepare(self, jars: Path) -> None:
        """Write config files and initialise storage (first run only)."""

    @abstractmethod
    def command(self, jars: Path) -> list[str]: ...

    @abstractmethod
    def probe(self) -> str:
        """One real client round trip; raises NotReady to be retried, StackError to give up."""

    @abstractmethod
    def log_files(self) -> list[Path]:
        """Logs worth showing when the server fails, most useful first."""

    def jar_set(self) -> JarSet:
        return JarSet(self.name, self.settings.repo_root / "deploy" / "local" / self.name / "pom.xml")

    # --- shared behaviour ---------------------------------------------------------------------

    @property
    def pid_file(self) -> Path:
        return self.state / "pid"

    @property
    def run_file(self) -> Path:
        return self.state / "run.json"

    @property
    def console_log(self) -> Path:
        return self.state / "logs" / "console.log"

    def processes(self, forget_stale: bool = True) -> list[psutil.Process]:
        """This state folder's live server processes; drops a pid file that names a dead or foreign pid."""
        found: dict[int, psutil.Process] = {}
        pid = proc.read_pid(self.pid_file)
        if pid is not None:
            try:
                candidate = psutil.Process(pid)
            except psutil.NoSuchProcess:
                candidate = None
            if candidate is not None and proc.is_ours(candidate, self.main_class, self.marker_arg):
                found[pid] = candidate
            elif forget_stale:
                log.info("%s: removing stale pid file (pid %d is not this server)", self.name, pid)
                proc.remove(self.pid_file)
        # A scan also finds a server whose pid file was lost, so `down` never leaves one behind.
        for other in proc.find_processes(self.main_class, self.marker_arg):
            found.setdefault(other.pid, other)
        return list(found.values())

    def _recorded(self) -> dict[str, object]:
        try:
            data = json.loads(self.run_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def stack_of(self, pid: int) -> Path | None:
        """If `pid` is this kind of server run by another devstack, the state folder of that stack."""
        try:
            argv = psutil.Process(pid).cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        if self.main_class not in argv:
            return None
        for arg in argv:
            folder = self.state_from_arg(arg)
            if folder is not None and folder != self.settings.state_dir:
                return folder
        return None

    def shared_from(self) -> tuple[int, Path] | None:
        """(pid, state folder) when our port is already served by the same server of another devstack."""
        port = self.local_ports[0]
        if not proc.port_open(LOCAL_HOST, port):
            return None
        pid = proc.listener_pid(port)
        folder = self.stack_of(pid) if pid is not None else None
        return (pid, folder) if pid is not None and folder is not None else None

    def recorded_address(self) -> str | None:
        """The address the running server was started with (the environment may have changed since)."""
        address = self._recorded().get("address")
        return address if isinstance(address, str) else None

    def recorded_ports(self) -> list[int]:
        ports = self._recorded().get("ports")
        if isinstance(ports, list) and ports and all(isinstance(p, int) for p in ports):
            return ports
        return self.local_ports

    def start(self, jars: Path) -> subprocess.Popen[bytes]:
        self.prepare(jars)
        popen = proc.launch(self.command(jars), cwd=self.state, console_log=self.console_log, env=self.child_env())
        proc.write_pid(self.pid_file, popen.pid)
        self.run_file.write_text(
            json.dumps(
                {"pid": popen.pid, "address": self.address, "ports": self.local_ports, "started_at": time.time()}
            )
        )
        return popen

    def child_env(self) -> dict[str, str]:
        return dict(os.environ)

    def wait_ready(self, popen: subprocess.Popen[bytes] | None, pid: int | None, timeout: float) -> str:
        """Block until a client round trip succeeds; fail early if the process dies."""
        deadline = proc.Deadline(timeout)
        last = "nothing listening yet"
        host, port = self.endpoint
        while True:
            if popen is not None and popen.poll() is not None:
                raise StackError(f"{self.name} exited with code {popen.returncode} while starting")
            if popen is None and pid is not None and not psutil.pid_exists(pid):
                raise StackError(f"{self.name} (pid {pid}) exited while we waited for it")
            if proc.port_open(host, port):
                try:
                    return self.probe()
                except NotReady as exc:
                    last = str(exc)
            if deadline.expired():
                raise StackError(f"{self.name} at {self.address} not ready after {timeout:.0f} s: {last}")
            time.sleep(0.5)

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for path in self.log_files():
            text = proc.tail(path, lines)
            if any(line.strip() for line in text):
                parts.append(f"--- last {len(text)} lines of {path} ---\n" + "\n".join(text))
        return "\n".join(parts) if parts else f"(no log output under {self.state / 'logs'})"
