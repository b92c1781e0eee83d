"""Merge review decisions: who decided what about which customers, and why (no I/O).

A reviewer approves a merge candidate (the pair merges like an automatic merge, survivor the
older customer), rejects it (the pair is kept apart from then on), or undoes a recorded merge
(the two are restored and kept apart). Each decision is recorded as a (:MergeDecision) node.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from rapport_profile.domain.resolution import merge_id_for

DECISION_ID_PREFIX = "dec_"
# Customers that predate `created_at` (seeded by hand) count as the oldest, as in the worker.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class DecisionKind(enum.StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"
    UNMERGED = "unmerged"


@dataclass(frozen=True)
class MergeDecision:
    id: str
    kind: DecisionKind
    # Approve and reject: the pair, lower id first; unmerge: survivor (the live holder), then restored.
    customer_ids: tuple[str, ...]
    # The merge made or undone; None for a rejection.
    merge_id: str | None
    decided_by: str
    reason: str
    at: datetime


def new_decision_id() -> str:
    return DECISION_ID_PREFIX + secrets.token_hex(8)


def approved_merge_id(decision_id: str, absorbed_id: str) -> str:
    """The id of the merge an approval makes: derived like an automatic merge's, from the decision."""
    return merge_id_for(decision_id, absorbed_id)


def survivor_and_absorbed(a: tuple[str, datetime | None], b: tuple[str, datetime | None]) -> tuple[str, str]:
    """The survivor rule of every merge: the older customer by created_at, ties by id."""
    first, second = sorted((a, b), key=lambda c: (c[1] or _EPOCH, c[0]))
    return first[0], second[0]
