"""Parameter lists the driver sends whole but does not format for its debug log line."""

import gc
import logging
import sys

import neo4j
import pytest

from rapport.graph.driver import Rows, run_rows, unlogged

pytestmark = pytest.mark.integration


def test_unlogged_lists_reach_neo4j_whole_and_their_rows_stay_out_of_the_debug_line(
    graph: neo4j.Driver, caplog: pytest.LogCaptureFixture
):
    rows = [{"n": n, "tags": ["a", f"secret-{n}"]} for n in range(500)]
    params = unlogged({"rows": rows, "label": "kept"})
    assert isinstance(params["rows"], Rows) and params["rows"] == rows
    assert params["label"] == "kept"
    with caplog.at_level(logging.DEBUG, logger="neo4j"):
        records, _, _ = graph.execute_query(
            "UNWIND $rows AS r "
            "RETURN count(r) AS n, sum(r.n) AS total, collect(r.tags[1])[499] AS last, $label AS label",
            params,
        )
    assert dict(records[0]) == {"n": 500, "total": sum(range(500)), "last": "secret-499", "label": "kept"}
    sent = [r.getMessage() for r in caplog.records if "C: RUN" in r.getMessage()]
    assert sent and all("<500 rows>" in line and "secret-" not in line for line in sent)


def test_run_rows_returns_every_record_and_lets_the_sent_rows_go_without_a_collection(graph: neo4j.Driver):
    rows = [{"n": n, "tags": ["a", f"t-{n}"]} for n in range(300)]
    watched = rows[7]
    held = sys.getrefcount(watched)

    def work(tx: neo4j.ManagedTransaction) -> list[neo4j.Record]:
        return run_rows(tx, "UNWIND $rows AS r RETURN r.n AS n, r.tags[1] AS tag ORDER BY n", unlogged({"rows": rows}))

    gc.disable()
    try:
        with graph.session() as session:
            records = session.execute_write(work)
        # Only our own list still holds the row: nothing the driver kept in a cycle does.
        assert sys.getrefcount(watched) == held
    finally:
        gc.enable()
    assert [(r["n"], r["tag"]) for r in records] == [(n, f"t-{n}") for n in range(300)]
    assert len(rows) == 300  # the caller's list is not the one emptied
