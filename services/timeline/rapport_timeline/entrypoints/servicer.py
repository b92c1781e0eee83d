"""The TimelineService servicer: decode, call the use case, encode. Errors are raised as
`rapport.errors` types and mapped to status codes by the server's StatusInterceptor."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from rapport.metrics import record_duration, timeline_duration
from rapport.v1 import timeline_pb2, timeline_pb2_grpc
from rapport_timeline.entrypoints import messages
from rapport_timeline.service import Deadline, Timeline


def _deadline(context: grpc.ServicerContext) -> Deadline:
    return Deadline(context.time_remaining())


class TimelineServicer(timeline_pb2_grpc.TimelineServiceServicer):
    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline

    def ListInteractions(
        self, request: timeline_pb2.ListInteractionsRequest, context: grpc.ServicerContext
    ) -> timeline_pb2.ListInteractionsResponse:
        with record_duration(timeline_duration(), {"rpc.method": "ListInteractions"}):
            deadline = _deadline(context)
            customer_id, page = self.timeline.list_interactions(
                messages.customer_key(request.customer),
                order=messages.order(request.order),
                filter=messages.interaction_filter(request.filter),
                page_size_requested=request.page_size,
                page_token=request.page_token,
                deadline=deadline,
            )
            return messages.list_response(customer_id, page.interactions, page.next_page_token)

    def GetInteraction(
        self, request: timeline_pb2.GetInteractionRequest, context: grpc.ServicerContext
    ) -> timeline_pb2.GetInteractionResponse:
        with record_duration(timeline_duration(), {"rpc.method": "GetInteraction"}):
            found = self.timeline.get_interaction(
                messages.customer_key(request.customer), request.event_id, _deadline(context)
            )
            return timeline_pb2.GetInteractionResponse(interaction=messages.interaction(found))

    def GetHandoffContext(
        self, request: timeline_pb2.GetHandoffContextRequest, context: grpc.ServicerContext
    ) -> timeline_pb2.GetHandoffContextResponse:
        with record_duration(timeline_duration(), {"rpc.method": "GetHandoffContext"}):
            ctx = self.timeline.handoff(messages.customer_key(request.customer), _deadline(context))
            return messages.handoff(ctx)

    def WatchTimeline(
        self, request: timeline_pb2.WatchTimelineRequest, context: grpc.ServicerContext
    ) -> Iterator[timeline_pb2.WatchTimelineResponse]:
        items = self.timeline.watch(
            messages.customer_key(request.customer),
            request.cursor,
            request.replay_last,
            context.is_active,
            _deadline(context),
        )
        for item in items:
            yield messages.watch_response(item)
