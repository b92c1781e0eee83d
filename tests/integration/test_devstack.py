"""The local server stack CLI (`python -m rapport.devstack`), driven end to end.

It runs its own stack (a temporary state folder and free ports), never the default one on 9092/7687
that other tests use, and checks at the end that the default stack's processes are untouched.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
MAIN_CLASSES = ("kafka.Kafka", "org.neo4j.server.CommunityEntryPoint")
COMPONENTS = ("kafka", "neo4j")
# Settings a developer may have that would point the test stack elsewhere; cache and tool paths are kept.
_KEEP = {"RAPPORT_CACHE_DIR", "RAPPORT_JAVA", "RAPPORT_MVN"}


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _server_procs(under: Path | None = None) -> dict[int, str]:
    """Kafka/Neo4j JVMs (pid -> cmdline), optionally only those whose command line mentions `under`."""
    found = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = proc.info["cmdline"] or []
        if not any(main in cmd for main in MAIN_CLASSES):
            continue
        text = " ".join(cmd)
        if under is None or str(under) in text:
            found[proc.info["pid"]] = text
    return found


@dataclass
class DevStack:
    state: Path
    env: dict[str, str]
    ports: dict[str, int]
    first_up: subprocess.CompletedProcess[str] | None = None
    default_stack_before: dict[int, str] = field(default_factory=dict)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rapport.devstack", *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=400,
            check=False,
        )

    def pids(self) -> dict[str, int]:
        return {c: int((self.state / c / "pid").read_text()) for c in COMPONENTS}


def _explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    state = tmp_path_factory.mktemp("devstack") / "state"
    kafka_port, controller_port, bolt_port = _free_ports(3)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAPPORT_") or k in _KEEP}
    env.update(
        RAPPORT_STATE_DIR=str(state),
        RAPPORT_KAFKA_PORT=str(kafka_port),
        RAPPORT_KAFKA_CONTROLLER_PORT=str(controller_port),
        RAPPORT_NEO4J_BOLT_PORT=str(bolt_port),
        RAPPORT_KAFKA_HEAP="512m",
        RAPPORT_NEO4J_HEAP="512m",
        RAPPORT_READY_TIMEOUT="180",
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO / "lib"), os.environ.get("PYTHONPATH")) if p),
    )
    devstack = DevStack(state, env, {"kafka": kafka_port, "neo4j": bolt_port})
    devstack.default_stack_before = _server_procs(REPO / ".rapport")
    devstack.first_up = devstack.run("up")
    try:
        yield devstack
    finally:
        devstack.run("down")
        for pid in _server_procs(state):  # last resort, only this test's own servers
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()


def test_up_starts_both_servers(stack: DevStack) -> None:
    assert stack.first_up is not None
    assert stack.first_up.returncode == 0, _explain(stack.first_up)
    pids = stack.pids()
    running = _server_procs(stack.state)
    assert set(pids.values()) <= set(running), running
    assert f"127.0.0.1:{stack.ports['kafka']}" in stack.first_up.stdout
    assert f"bolt://127.0.0.1:{stack.ports['neo4j']}" in stack.first_up.stdout


def test_second_up_is_a_no_op(stack: DevStack) -> None:
    before = stack.pids()
    started = {c: psutil.Process(p).create_time() for c, p in before.items()}
    result = stack.run("up")
    assert result.returncode == 0, _explain(result)
    assert result.stderr.count("already running") == 2, result.stderr
    assert stack.pids() == before
    assert {c: psutil.Process(p).create_time() for c, p in before.items()} == started


def test_status_reports_running(stack: DevStack) -> None:
    result = stack.run("status")
    assert result.returncode == 0, _explain(result)
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    for line, component in zip(lines, COMPONENTS, strict=True):
        assert line.split()[:2] == [component, "running"]
        assert str(stack.pids()[component]) in line
        assert str(stack.ports[component]) in line


def test_another_state_folder_shares_the_running_stack(stack: DevStack, tmp_path: Path) -> None:
    # As a second checkout (or CI's fresh clone) would: same ports, its own state folder.
    other = DevStack(tmp_path / "other", {**stack.env, "RAPPORT_STATE_DIR": str(tmp_path / "other")}, stack.ports)
    pids = stack.pids()
    result = other.run("up")
    assert result.returncode == 0, _explain(result)
    assert result.stderr.count(f"already served by the Rapport stack in {stack.state}") == 2, result.stderr
    status = other.run("status")
    assert status.returncode == 0, _explain(status)
    assert [line.split()[1] for line in status.stdout.splitlines()] == ["shared", "shared"]
    assert other.run("clean").returncode == 0
    assert stack.pids() == pids and all(psutil.pid_exists(p) for p in pids.values())


def test_down_leaves_no_process(stack: DevStack) -> None:
    result = stack.run("down")
    assert result.returncode == 0, _explain(result)
    assert _server_procs(stack.state) == {}
    assert not any((stack.state / c / "pid").exists() for c in COMPONENTS)
    status = stack.run("status")
    assert status.returncode == 3, _explain(status)
    assert [line.split()[1] for line in status.stdout.splitlines()] == ["stopped", "stopped"]


def test_stale_pid_files_do_not_confuse_up(stack: DevStack) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    # kafka: a pid that no longer exists; neo4j: a live pid of an unrelated process (as after pid reuse).
    (stack.state / "kafka" / "pid").write_text(f"{dead.pid}\n")
    (stack.state / "neo4j" / "pid").write_text(f"{os.getpid()}\n")

    result = stack.run("up")
    assert result.returncode == 0, _explain(result)
    assert result.stderr.count("stale pid file") == 2, result.stderr
    assert "already running" not in result.stderr
    pids = stack.pids()
    assert dead.pid not in pids.values() and os.getpid() not in pids.values()
    assert set(pids.values()) <= set(_server_procs(stack.state))
    assert psutil.pid_exists(os.getpid())  # the foreign pid was left alone
    assert stack.run("status").returncode == 0


def test_clean_stops_and_deletes_state(stack: DevStack) -> None:
    result = stack.run("clean")
    assert result.returncode == 0, _explain(result)
    assert _server_procs(stack.state) == {}
    assert not stack.state.exists()


def test_default_stack_untouched(stack: DevStack) -> None:
    after = _server_procs(REPO / ".rapport")
    survivors = {pid: cmd for pid, cmd in stack.default_stack_before.items() if pid in after}
    assert survivors == stack.default_stack_before
