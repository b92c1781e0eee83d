"""The merge review methods' requests and answers, free of I/O.

UnmergeCustomer, ApproveMergeCandidate and RejectMergeCandidate each need a reason (kept on the
recorded decision) and name what they act on by id; a malformed field is INVALID_ARGUMENT
naming it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rapport.errors import InvalidArgument
from rapport.v1 import profile_pb2
from rapport_profile.adapters.merge_review import ApprovedMerge, Unmerged
from rapport_profile.api.customer_view import customer_id, timestamp
from rapport_profile.domain.merge_decisions import DecisionKind, MergeDecision

MERGE_ID = re.compile(r"^mrg_[0-9a-f]{16}$")
MAX_REASON = 256

_KINDS = {
    DecisionKind.APPROVED: profile_pb2.MERGE_DECISION_KIND_APPROVED,
    DecisionKind.REJECTED: profile_pb2.MERGE_DECISION_KIND_REJECTED,
    DecisionKind.UNMERGED: profile_pb2.MERGE_DECISION_KIND_UNMERGED,
}


@dataclass(frozen=True)
class PairReview:
    customer_id: str
    other_id: str
    reason: str


def reason(value: str) -> str:
    text = value.strip()
    if not text:
        raise InvalidArgument("reason", "is required: say why, e.g. a ticket number")
    if len(text) > MAX_REASON:
        raise InvalidArgument("reason", f"is {len(text)} characters; at most {MAX_REASON}")
    if any(ord(c) < 0x20 and c not in "\t\n" for c in text):
        raise InvalidArgument("reason", "must not contain control characters")
    return text


def unmerge_request(request: profile_pb2.UnmergeCustomerRequest) -> tuple[str, str]:
    merge_id = request.merge_id.strip()
    if not merge_id:
        raise InvalidArgument("merge_id", "is required (MergeRecord.merge_id from GetCustomer)")
    if not MERGE_ID.match(merge_id):
        raise InvalidArgument("merge_id", f"{request.merge_id[:64]!r} is not a merge id ('mrg_' and 16 hex digits)")
    return merge_id, reason(request.reason)


def pair_request(
    request: profile_pb2.ApproveMergeCandidateRequest | profile_pb2.RejectMergeCandidateRequest,
) -> PairReview:
    first = customer_id(request.customer_id)
    second = customer_id(request.other_customer_id, "other_customer_id")
    if first == second:
        raise InvalidArgument("other_customer_id", "must differ from customer_id")
    return PairReview(first, second, reason(request.reason))


def decision_message(decision: MergeDecision) -> profile_pb2.MergeDecision:
    message = profile_pb2.MergeDecision(
        decision_id=decision.id,
        kind=_KINDS[decision.kind],
        customer_ids=list(decision.customer_ids),
        merge_id=decision.merge_id or "",
        decided_by=decision.decided_by,
        reason=decision.reason,
    )
    ts = timestamp(decision.at)
    if ts is not None:
        message.decided_at.CopyFrom(ts)
    return message


def unmerge_response(done: Unmerged) -> profile_pb2.UnmergeCustomerResponse:
    return profile_pb2.UnmergeCustomerResponse(
        decision=decision_message(done.decision),
        survivor_customer_id=done.survivor_id,
        restored_customer_id=done.restored_id,
        restored_identity_keys=done.restored_identity_keys,
        restored_interaction_count=done.restored_interactions,
        survivor_interaction_count=done.survivor_interactions,
    )


def approve_response(done: ApprovedMerge) -> profile_pb2.ApproveMergeCandidateResponse:
    merge = profile_pb2.MergeRecord(
        merge_id=done.merge_id,
        survivor_customer_id=done.survivor_id,
        absorbed_customer_id=done.absorbed_id,
        linking_identity_keys=done.linking_keys,
        absorbed_identity_keys=done.absorbed_identity_keys,
        absorbed_interaction_count=done.absorbed_interactions,
    )
    ts = timestamp(done.merged_at)
    if ts is not None:
        merge.merged_at.CopyFrom(ts)
    return profile_pb2.ApproveMergeCandidateResponse(decision=decision_message(done.decision), merge=merge)
