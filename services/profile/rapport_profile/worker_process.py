"""The ingest worker as a real child process, for integration tests, benchmarks and demos.

Starts `python -m rapport_profile.worker` with its settings in the environment, waits for its
health endpoint, stops it with SIGTERM or SIGKILL, and samples its memory.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

from rapport.settings import KafkaSettings, Neo4jSettings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_env(
    kafka: KafkaSettings,
    neo4j: Neo4jSettings,
    *,
    group: str,
    port: int,
    batch_size: int | None = None,
    linger: float | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "RAPPORT_KAFKA_BOOTSTRAP": kafka.bootstrap_servers,
            "RAPPORT_INTERACTIONS_TOPIC": kafka.interactions_topic,
            "RAPPORT_DEAD_LETTER_TOPIC": kafka.dead_letter_topic,
            "RAPPORT_CUSTOMER_UPDATES_TOPIC": kafka.customer_updates_topic,
            "RAPPORT_NEO4J_URI": neo4j.uri,
            "RAPPORT_NEO4J_USER": neo4j.user,
            "RAPPORT_NEO4J_PASSWORD": neo4j.password,
            "RAPPORT_NEO4J_DATABASE": neo4j.database,
            "RAPPORT_PROFILE_GROUP": group,
            "RAPPORT_PROFILE_WORKER_PORT": str(port),
        }
    )
    if batch_size is not None:
        env["RAPPORT_PROFILE_BATCH_SIZE"] = str(batch_size)
    if linger is not None:
        env["RAPPORT_PROFILE_LINGER"] = str(linger)
    env.update(extra or {})
    return env


class WorkerProcess:
    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.env = dict(env)
        self.port = int(self.env["RAPPORT_PROFILE_WORKER_PORT"])
        self.log_path = log_path
        self.popen: subprocess.Popen[bytes] | None = None
        self.peak_rss = 0
        # CPU seconds (user + system) the worker had used when last sampled.
        self.cpu_seconds = 0.0
        self._sampler: threading.Thread | None = None

    def start(self, ready_timeout: float = 60.0) -> WorkerProcess:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "rapport_profile.worker"], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self._sampler = threading.Thread(target=self._sample_memory, args=(self.popen,), daemon=True)
        self._sampler.start()
        self.wait_live(ready_timeout)
        return self

    def _sample_memory(self, popen: subprocess.Popen[bytes]) -> None:
        try:
            proc = psutil.Process(popen.pid)
            while popen.poll() is None:
                self.peak_rss = max(self.peak_rss, proc.memory_info().rss)
                times = proc.cpu_times()
                self.cpu_seconds = times.user + times.system
                time.sleep(0.1)
        except psutil.Error:
            return

    def _get(self, path: str) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def health(self) -> tuple[int, dict[str, Any]]:
        return self._get("/health")

    def wait_live(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen is not None and self.popen.poll() is not None:
                raise RuntimeError(f"worker exited with {self.popen.returncode}; log: {self.log_tail()}")
            try:
                if self._get("/live")[0] == 200:
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"worker not live after {timeout} s; log: {self.log_tail()}")

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM, then wait for the graceful exit; returns the exit status."""
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
        """Whatever state it is in, make sure it is gone (for test teardown)."""
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

    def __enter__(self) -> WorkerProcess:
        # `with WorkerProcess(...).start():` is the same as `with WorkerProcess(...):` (starting
        # again would leave the first process running, unowned).
        return self if self.running else self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
