"""The worker-process harness that tests, benches and the demo use owns exactly one worker."""

from pathlib import Path

import psutil
import pytest

from rapport.settings import KafkaSettings, Neo4jSettings
from rapport_profile.worker_process import WorkerProcess, free_port, worker_env

pytestmark = pytest.mark.integration


def workers_on(port: int) -> list[int]:
    """Pids of ingest workers serving health on `port`."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("RAPPORT_PROFILE_WORKER_PORT") == str(port) and "rapport_profile.worker" in (
                " ".join(proc.cmdline())
            ):
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


def test_a_worker_started_for_a_with_block_is_the_only_one_and_gone_after_it(
    isolated_topics: KafkaSettings, neo4j_settings: Neo4jSettings, uid: str, tmp_path: Path
):
    port = free_port()
    env = worker_env(isolated_topics, neo4j_settings, group=f"wp-{uid}", port=port)
    with WorkerProcess(env, tmp_path / "worker.log").start() as worker:
        assert worker.popen is not None
        assert workers_on(port) == [worker.popen.pid]
    assert workers_on(port) == []
