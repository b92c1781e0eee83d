"""Retention's pure rules and the purge loop, with a fake graph and notices."""

import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from rapport_profile.adapters.retention import PurgedBatch
from rapport_profile.domain.retention import PurgedInteraction, PurgeReport, affinity_contributions, cutoff
from rapport_profile.retention import RetentionService

pytestmark = pytest.mark.unit

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def test_the_cutoff_is_the_age_before_now_and_the_age_is_bounded():
    assert cutoff(NOW, 365) == NOW - timedelta(days=365)
    assert cutoff(NOW, 0.5) == NOW - timedelta(hours=12)
    for bad in (0, -1, 36_501):
        with pytest.raises(ValueError, match="retention"):
            cutoff(NOW, bad)


def test_each_purged_interaction_takes_back_exactly_its_own_contribution():
    purged = [
        PurgedInteraction("e1", "cus_x", "ag-a", "resolved", 5),
        PurgedInteraction("e2", "cus_x", "ag-a", "unresolved", 2),
        PurgedInteraction("e3", "cus_x", "ag-a", "resolved", None),
        PurgedInteraction("e4", "cus_y", "ag-a", "resolved", 4),
        PurgedInteraction("e5", "cus_x", None, "resolved", 5),  # no agent: no affinity
        PurgedInteraction("e6", None, "ag-b", "resolved", 5),  # no customer (a broken graph): skipped
    ]
    assert affinity_contributions(purged) == [
        {"customer_id": "cus_x", "agent_id": "ag-a", "contacts": 3, "resolved": 2, "csat_sum": 7, "csat_count": 2},
        {"customer_id": "cus_y", "agent_id": "ag-a", "contacts": 1, "resolved": 1, "csat_sum": 4, "csat_count": 1},
    ]


def test_a_report_counts_each_customer_once_across_batches():
    report = PurgeReport(NOW)
    report.add(3, ["cus_x", "cus_y"], 1, 1)
    report.add(2, ["cus_y"], 0, 1)
    assert report.as_dict() == {
        "cutoff": NOW.isoformat(),
        "dry_run": False,
        "interactions": 5,
        "customers": 2,
        "affinity_updated": 1,
        "affinity_removed": 2,
        "batches": 2,
    }


class FakeGraph:
    def __init__(self, older: int) -> None:
        self.older = older
        self.limits: list[int] = []
        self.cutoffs: list[datetime] = []

    def purge_batch(self, cut: datetime, limit: int, now: datetime, timeout: float) -> PurgedBatch:
        self.limits.append(limit)
        self.cutoffs.append(cut)
        taken = min(limit, self.older)
        self.older -= taken
        return PurgedBatch(taken, [f"cus_{len(self.limits)}"] if taken else [], taken, 0)

    def count_older(self, cut: datetime, timeout: float) -> tuple[int, int]:
        return self.older, 7


class FakeNotices:
    def __init__(self) -> None:
        self.removed: list[list[str]] = []

    def erased(self, customer_ids: Sequence[str], timeout: float) -> None:
        raise AssertionError("retention never erases")

    def history_removed(self, customer_ids: Sequence[str], timeout: float) -> None:
        self.removed.append(list(customer_ids))

    def close(self) -> None:
        return None


def test_the_purge_runs_batches_until_a_short_one_and_announces_each():
    graph, notices = FakeGraph(older=7), FakeNotices()
    report = RetentionService(graph, notices, batch_size=3, clock=lambda: NOW).purge(30)
    assert graph.limits == [3, 3, 3] and set(graph.cutoffs) == {NOW - timedelta(days=30)}
    assert (report.interactions, report.batches, report.customers) == (7, 3, 3)
    assert notices.removed == [["cus_1"], ["cus_2"], ["cus_3"]]


def test_a_dry_run_only_counts():
    graph, notices = FakeGraph(older=7), FakeNotices()
    report = RetentionService(graph, notices, clock=lambda: NOW).purge(30, dry_run=True)
    assert (report.interactions, report.customers, report.dry_run) == (7, 7, True)
    assert graph.limits == [] and notices.removed == []


def test_a_stop_between_batches_ends_the_purge():
    stop = threading.Event()
    notices = FakeNotices()

    class StoppingNotices(FakeNotices):
        def history_removed(self, customer_ids: Sequence[str], timeout: float) -> None:
            notices.history_removed(customer_ids, timeout)
            stop.set()

    graph = FakeGraph(older=100)
    report = RetentionService(graph, StoppingNotices(), batch_size=10).purge(30, stop=stop)
    assert report.batches == 1 and graph.older == 90
