"""The merge review use case: decide in the graph, then tell every timeline replica.

An unmerge moves interactions between two customers, so both are announced with
`history_removed` (cached timeline pages of either are stale). An approved merge announces the
survivor with the absorbed customer in `merged_customer_ids`, as the worker announces its own
merges, so watchers of the absorbed id follow. A rejection changes no history: no notice.

The graph transaction is the decision. A notice that cannot be sent is logged and the call
still succeeds: a retry could not resend it anyway (the merge is already undone), and nothing
serves a stale page for long without it: every timeline read resolves the customer in the graph
first, and a cached index holding more interactions than the graph counts is rebuilt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from kafka.errors import KafkaError

from rapport_profile.adapters.merge_review import ApprovedMerge, MergeReview, Unmerged
from rapport_profile.domain.merge_decisions import MergeDecision

log = logging.getLogger(__name__)

# A notice waits at most this long for Kafka.
NOTICE_TIMEOUT = 5.0


class ReviewNotices(Protocol):
    """The CustomerUpdated notices merge review sends (rapport_profile.adapters.notices)."""

    def history_removed(self, customer_ids: Sequence[str], timeout: float) -> None: ...

    def merged(self, survivor_id: str, absorbed_ids: Sequence[str], timeout: float) -> None: ...


class MergeReviewService:
    def __init__(self, review: MergeReview, notices: ReviewNotices) -> None:
        self._review = review
        self._notices = notices

    def unmerge(self, merge_id: str, decided_by: str, reason: str, timeout: float) -> Unmerged:
        done = self._review.unmerge(merge_id, decided_by, reason, timeout)
        self._notify(
            "unmerge",
            done.decision,
            lambda: self._notices.history_removed([done.survivor_id, done.restored_id], NOTICE_TIMEOUT),
        )
        return done

    def approve(self, customer_id: str, other_id: str, decided_by: str, reason: str, timeout: float) -> ApprovedMerge:
        done = self._review.approve(customer_id, other_id, decided_by, reason, timeout)
        self._notify(
            "approve", done.decision, lambda: self._notices.merged(done.survivor_id, [done.absorbed_id], NOTICE_TIMEOUT)
        )
        return done

    def reject(self, customer_id: str, other_id: str, decided_by: str, reason: str, timeout: float) -> MergeDecision:
        return self._review.reject(customer_id, other_id, decided_by, reason, timeout)

    @staticmethod
    def _notify(what: str, decision: MergeDecision, send: Callable[[], None]) -> None:
        try:
            send()
        except (KafkaError, OSError, TimeoutError) as exc:
            # The decision is committed; the notice only makes caches refresh sooner.
            log.warning(
                "merge review committed, but the customer-updates notice failed",
                extra={
                    "decision": what,
                    "decision_id": decision.id,
                    "customers": list(decision.customer_ids),
                    "error": repr(exc)[:200],
                },
            )
