"""Parameter lists the driver sends whole but does not format for its debug log line."""

import logging

import neo4j
import pytest

from rapport.graph.driver import Rows, unlogged

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
