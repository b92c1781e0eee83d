"""Find, start and stop the server JVMs that belong to one state folder."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

log = logging.getLogger("rapport.devstack")


def is_ours(proc: psutil.Process, main_class: str, marker_arg: str) -> bool:
    """A live JVM running `main_class` with `marker_arg` (a path inside one state folder) on its command line.

    Matching on both guards against a recycled pid and against the same server of another state folder.
    """
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        cmdline = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return main_class in cmdline and marker_arg in cmdline


def find_processes(main_class: str, marker_arg: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        if is_ours(proc, main_class, marker_arg):
            found.append(proc)
    return found


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def write_pid(pid_file: Path, pid: int) -> None:
    tmp = pid_file.with_suffix(".tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(pid_file)


def remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def listener_pid(port: int) -> int | None:
    """Best effort: the pid listening on a local TCP port (None when unknown or not allowed to see)."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return None
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return conn.pid
    return None


def describe_listener(port: int) -> str:
    """Which process listens on a TCP port, for a 'port in use' message."""
    pid = listener_pid(port)
    if pid is None:
        return "another process"
    try:
        argv = psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        argv = []
    # A JVM's flags say little; its first word and last arguments (main class, config) say whose it is.
    shown = argv if len(argv) <= 4 else [argv[0], "...", *argv[-3:]]
    return f"pid {pid} ({' '.join(shown) or '?'})"


def launch(cmd: Sequence[str], cwd: Path, console_log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start a server detached from our session, so Ctrl-C in the shell or make's exit does not reach it."""
    console_log.parent.mkdir(parents=True, exist_ok=True)
    with console_log.open("ab") as out:
        return subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_all(procs: Sequence[psutil.Process], grace: float) -> list[int]:
    """SIGTERM every process, wait up to `grace` seconds, SIGKILL the rest. Returns the pids that needed SIGKILL."""
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(list(procs), timeout=grace)
    killed = []
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
            killed.append(proc.pid)
    if alive:
        _, still = psutil.wait_procs(alive, timeout=10)
        if still:
            log.warning("pids %s survived SIGKILL", [p.pid for p in still])
    return killed


def tail(path: Path, lines: int = 40) -> list[str]:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read()
    except OSError:
        return []
    return data.decode("utf-8", "replace").splitlines()[-lines:]


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.end
