"""`rapport agents`, `rapport route` and `rapport queue` against a real router."""

from __future__ import annotations

import json
from collections.abc import Iterator

import neo4j
import pytest
from test_router_support import (  # type: ignore[import-not-found]
    RouterHarness,
    cleanup_fixture,  # noqa: F401
    serve_router,
)
from typer.testing import CliRunner

from rapport.cli import app
from rapport.cli import router as router_cli
from rapport.settings import KafkaSettings, Neo4jSettings

pytestmark = pytest.mark.integration


@pytest.fixture
def cli(
    neo4j_settings: Neo4jSettings,
    isolated_topics: KafkaSettings,
    graph: neo4j.Driver,
    cleanup: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[CliRunner, RouterHarness]]:
    harness = serve_router(neo4j_settings, isolated_topics, driver=graph)
    monkeypatch.setenv("RAPPORT_ROUTER_ADDR", f"127.0.0.1:{harness.server.port}")
    if not any(getattr(c, "name", None) == "route" for c in app.registered_commands):
        router_cli.register(app)
    yield CliRunner(), harness
    harness.close()


def test_register_route_and_watch_the_queue_from_the_shell(cli: tuple[CliRunner, RouterHarness], uid: str):
    runner, _ = cli
    team = f"{uid}-team"
    agent = f"{uid}-a"
    upsert = runner.invoke(
        app,
        [
            "agents",
            "upsert",
            agent,
            "--skill",
            "billing=4",
            "--language",
            "fr",
            "--team",
            team,
            "--capacity",
            "chat=1",
            "--status",
            "available",
            "--json",
        ],
    )
    assert upsert.exit_code == 0, upsert.output
    assert json.loads(upsert.output)["created"] is True

    first = runner.invoke(
        app, ["route", f"email:cli.{uid}@example.com", "--topic", "billing", "--team", team, "--json"]
    )
    assert first.exit_code == 0, first.output
    offered = json.loads(first.output)["contact"]
    assert offered["state"] == "CONTACT_STATE_OFFERED" and offered["offer"]["agentId"] == agent

    second = runner.invoke(app, ["route", f"email:cli2.{uid}@example.com", "--topic", "billing", "--team", team])
    assert second.exit_code == 0, second.output
    assert "waiting: position 1 of 1" in second.output

    queue = runner.invoke(app, ["queue", "--team", team])
    assert queue.exit_code == 0 and "1 waiting" in queue.output

    listed = runner.invoke(app, ["agents", "list", "--team", team])
    assert listed.exit_code == 0 and "chat 1/1" in listed.output

    bad = runner.invoke(app, ["agents", "upsert", agent, "--skill", "billing=9"])
    assert bad.exit_code == 1 and "INVALID_ARGUMENT: agent.skills[0].level" in bad.output
    unknown = runner.invoke(app, ["agents", "status", f"{uid}-nobody", "away"])
    assert unknown.exit_code == 2 and "NOT_FOUND" in unknown.output
