"""The gRPC entrypoint: decode the request, read the graph within the call's deadline, answer.

Errors are raised, not set on the context: rapport.errors.StatusInterceptor maps them
(InvalidArgument naming the field, NotFound, Unavailable) to status codes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import grpc

from rapport.effort import DEFAULT_WINDOW
from rapport.errors import InvalidArgument, NotFound
from rapport.security.interceptor import current_principal
from rapport.v1 import profile_pb2, profile_pb2_grpc
from rapport_profile.api import candidate_pages, customer_view, merge_review, receipts
from rapport_profile.api.graph_reader import ProfileReader
from rapport_profile.erasure import ErasureService
from rapport_profile.merge_review import MergeReviewService

# Time kept back from the caller's deadline to send the answer (or the error) back.
_REPLY_MARGIN = 0.1


def read_budget(context: grpc.ServicerContext, ceiling: float) -> float:
    """Seconds a graph read may take: what the call has left, less a margin, at most `ceiling`."""
    remaining = context.time_remaining()
    if remaining is None:
        return ceiling
    return max(min(remaining - min(_REPLY_MARGIN, remaining * 0.2), ceiling), 0.0)


class ProfileServicer(profile_pb2_grpc.ProfileServiceServicer):
    def __init__(
        self,
        reader: ProfileReader,
        read_timeout: float,
        *,
        effort_window: int = DEFAULT_WINDOW,
        clock: Callable[[], int] = time.time_ns,
        erasure: ErasureService,
        erasure_timeout: float = 30.0,
        review: MergeReviewService,
        review_timeout: float = 30.0,
    ) -> None:
        self._review = review
        # Merge review writes of calls without a deadline get this long.
        self._review_timeout = review_timeout
        self._erasure = erasure
        self._erasure_timeout = erasure_timeout
        self._reader = reader
        # Reads of calls without a deadline get this long.
        self._read_timeout = read_timeout
        self._effort_window = effort_window
        self._clock = clock

    def GetCustomer(
        self, request: profile_pb2.GetCustomerRequest, context: grpc.ServicerContext
    ) -> profile_pb2.GetCustomerResponse:
        lookup, limits = customer_view.get_customer_request(request)
        limits = replace(limits, effort_end=self._clock(), effort_window=self._effort_window)
        found = self._reader.customer_view(lookup, limits, read_budget(context, self._read_timeout))
        if found is None:
            raise NotFound(f"{lookup.describe()} not found")
        return profile_pb2.GetCustomerResponse(
            customer=customer_view.customer_view(found.row, limits), merged_customer_id=found.merged_customer_id or ""
        )

    def ResolveIdentity(
        self, request: profile_pb2.ResolveIdentityRequest, context: grpc.ServicerContext
    ) -> profile_pb2.ResolveIdentityResponse:
        if not request.HasField("identifier"):
            raise InvalidArgument("identifier", "is required")
        key = customer_view.identifier(request.identifier).key
        found = self._reader.resolve_identity(key, read_budget(context, self._read_timeout))
        if found is None:
            raise NotFound(f"identity {key} not found")
        return customer_view.resolve_identity_response(found.customer_id, found.identity)

    def ListMergeCandidates(
        self, request: profile_pb2.ListMergeCandidatesRequest, context: grpc.ServicerContext
    ) -> profile_pb2.ListMergeCandidatesResponse:
        query = candidate_pages.candidate_query(request)
        rows = self._reader.merge_candidates(query, read_budget(context, self._read_timeout))
        return candidate_pages.candidate_page(query, rows)

    def ForgetCustomer(
        self, request: profile_pb2.ForgetCustomerRequest, context: grpc.ServicerContext
    ) -> profile_pb2.ForgetCustomerResponse:
        order = receipts.forget_request(request)
        principal = current_principal()
        receipt = self._erasure.forget(
            order.lookup,
            order.reason,
            principal.subject if principal is not None else "anonymous",
            read_budget(context, self._erasure_timeout),
        )
        return profile_pb2.ForgetCustomerResponse(receipt=receipts.receipt_message(receipt))

    def UnmergeCustomer(
        self, request: profile_pb2.UnmergeCustomerRequest, context: grpc.ServicerContext
    ) -> profile_pb2.UnmergeCustomerResponse:
        merge_id, reason = merge_review.unmerge_request(request)
        done = self._review.unmerge(merge_id, _caller(), reason, read_budget(context, self._review_timeout))
        return merge_review.unmerge_response(done)

    def ApproveMergeCandidate(
        self, request: profile_pb2.ApproveMergeCandidateRequest, context: grpc.ServicerContext
    ) -> profile_pb2.ApproveMergeCandidateResponse:
        pair = merge_review.pair_request(request)
        done = self._review.approve(
            pair.customer_id, pair.other_id, _caller(), pair.reason, read_budget(context, self._review_timeout)
        )
        return merge_review.approve_response(done)

    def RejectMergeCandidate(
        self, request: profile_pb2.RejectMergeCandidateRequest, context: grpc.ServicerContext
    ) -> profile_pb2.RejectMergeCandidateResponse:
        pair = merge_review.pair_request(request)
        decision = self._review.reject(
            pair.customer_id, pair.other_id, _caller(), pair.reason, read_budget(context, self._review_timeout)
        )
        return profile_pb2.RejectMergeCandidateResponse(decision=merge_review.decision_message(decision))


def _caller() -> str:
    """Who decides: the caller's token subject, or "anonymous" on a stack without token checks."""
    principal = current_principal()
    return principal.subject if principal is not None else "anonymous"
