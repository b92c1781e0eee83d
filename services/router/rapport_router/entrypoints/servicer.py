"""The RouterService servicer: decode, call the use case, encode.

Errors are raised as `rapport.errors` types (or escape from the Neo4j driver) and become status
codes in the server's StatusInterceptor. Every call runs under a deadline: the caller's, a
little shortened so the answer (UNAVAILABLE included) arrives before the caller gives up, or
the configured default when the caller set none.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from rapport.v1 import router_pb2, router_pb2_grpc
from rapport_router.deadline import deadline_scope
from rapport_router.entrypoints import messages as m
from rapport_router.offers import OfferBroker, OfferMade, OfferWithdrawn
from rapport_router.routing import ContactView, Router

T = TypeVar("T")
# Part of the caller's deadline kept for the answer to travel back.
_DEADLINE_MARGIN = 0.1
_MIN_MARGIN = 0.02
# How often an idle offer stream checks that its client is still there.
_STREAM_CHECK = 1.0


class RouterServicer(router_pb2_grpc.RouterServiceServicer):
    def __init__(self, router: Router, broker: OfferBroker, default_timeout: float) -> None:
        self.router = router
        self.broker = broker
        self.default_timeout = default_timeout

    def _within_deadline(self, context: grpc.ServicerContext, work: Callable[[], T]) -> T:
        left = context.time_remaining()
        budget = self.default_timeout
        if left is not None:
            budget = min(budget, left - max(_MIN_MARGIN, left * _DEADLINE_MARGIN))
        with deadline_scope(budget):
            return work()

    def _view(self, view: ContactView, *, explained: bool = True) -> router_pb2.Contact:
        return m.contact_out(view, explained=explained)

    # -- agents

    def UpsertAgent(
        self, request: router_pb2.UpsertAgentRequest, context: grpc.ServicerContext
    ) -> router_pb2.UpsertAgentResponse:
        if not request.HasField("agent"):
            raise m.InvalidArgument("agent", "is required")
        agent = m.agent_in(request.agent)
        status = m.status_of(request.agent.status, "agent.status", required=False)
        record, created = self._within_deadline(context, lambda: self.router.upsert_agent(agent, status))
        return router_pb2.UpsertAgentResponse(agent=m.agent_out(record), created=created)

    def SetAgentStatus(
        self, request: router_pb2.SetAgentStatusRequest, context: grpc.ServicerContext
    ) -> router_pb2.SetAgentStatusResponse:
        agent_id = m.identifier_of(request.agent_id, "agent_id")
        status = m.status_of(request.status, "status", required=True)
        assert status is not None
        record, withdrawn = self._within_deadline(context, lambda: self.router.set_agent_status(agent_id, status))
        return router_pb2.SetAgentStatusResponse(agent=m.agent_out(record), withdrawn_contact_ids=withdrawn)

    def GetAgent(
        self, request: router_pb2.GetAgentRequest, context: grpc.ServicerContext
    ) -> router_pb2.GetAgentResponse:
        agent_id = m.identifier_of(request.agent_id, "agent_id")
        record = self._within_deadline(context, lambda: self.router.get_agent(agent_id))
        return router_pb2.GetAgentResponse(agent=m.agent_out(record))

    def ListAgents(
        self, request: router_pb2.ListAgentsRequest, context: grpc.ServicerContext
    ) -> router_pb2.ListAgentsResponse:
        team = m.team_of(request.team, "team")
        status = m.status_of(request.status, "status", required=False)
        size = m.page_size(request.page_size, "page_size")
        after = m.page_token_in(request.page_token)
        agents = self._within_deadline(context, lambda: self.router.list_agents(team, status, after, size + 1))
        more = len(agents) > size
        agents = agents[:size]
        return router_pb2.ListAgentsResponse(
            agents=[m.agent_out(a) for a in agents],
            next_page_token=m.page_token_out(agents[-1].id) if more and agents else "",
        )

    # -- contacts

    def RouteContact(
        self, request: router_pb2.RouteContactRequest, context: grpc.ServicerContext
    ) -> router_pb2.RouteContactResponse:
        req = m.route_in(request)
        view = self._within_deadline(context, lambda: self.router.route(req))
        return router_pb2.RouteContactResponse(contact=self._view(view))

    def GetContact(
        self, request: router_pb2.GetContactRequest, context: grpc.ServicerContext
    ) -> router_pb2.GetContactResponse:
        contact_id = m.identifier_of(request.contact_id, "contact_id")
        view = self._within_deadline(context, lambda: self.router.get_contact(contact_id))
        return router_pb2.GetContactResponse(contact=self._view(view))

    def StreamOffers(
        self, request: router_pb2.StreamOffersRequest, context: grpc.ServicerContext
    ) -> Iterator[router_pb2.StreamOffersResponse]:
        agent_id = m.identifier_of(request.agent_id, "agent_id")
        self._within_deadline(context, lambda: self.router.get_agent(agent_id))  # NOT_FOUND for a stranger
        sub = self._within_deadline(context, lambda: self.broker.subscribe(agent_id))
        try:
            while context.is_active() and not sub.closed:
                try:
                    event = sub.events.get(timeout=_STREAM_CHECK)
                except queue.Empty:
                    continue
                if event is None:
                    return
                if isinstance(event, OfferMade):
                    yield router_pb2.StreamOffersResponse(
                        offered=self._view(ContactView(event.contact, self.router.clock()))
                    )
                elif isinstance(event, OfferWithdrawn):
                    yield router_pb2.StreamOffersResponse(
                        withdrawn=router_pb2.OfferWithdrawn(
                            offer_id=event.offer_id, contact_id=event.contact_id, reason=event.reason
                        )
                    )
        finally:
            self.broker.unsubscribe(sub)

    def AcceptOffer(
        self, request: router_pb2.AcceptOfferRequest, context: grpc.ServicerContext
    ) -> router_pb2.AcceptOfferResponse:
        offer = _offer_id(request.offer_id)
        agent_id = m.identifier_of(request.agent_id, "agent_id")
        view = self._within_deadline(context, lambda: self.router.accept(offer, agent_id))
        return router_pb2.AcceptOfferResponse(contact=self._view(view, explained=False))

    def RejectOffer(
        self, request: router_pb2.RejectOfferRequest, context: grpc.ServicerContext
    ) -> router_pb2.RejectOfferResponse:
        offer = _offer_id(request.offer_id)
        agent_id = m.identifier_of(request.agent_id, "agent_id")
        reason = m._text(request.reason, "reason")
        view = self._within_deadline(context, lambda: self.router.reject(offer, agent_id, reason))
        return router_pb2.RejectOfferResponse(contact=self._view(view))

    def CompleteContact(
        self, request: router_pb2.CompleteContactRequest, context: grpc.ServicerContext
    ) -> router_pb2.CompleteContactResponse:
        contact_id = m.identifier_of(request.contact_id, "contact_id")
        agent_id = m.optional_id(request.agent_id, "agent_id")
        completion = m.completion_in(request)
        view, event_id = self._within_deadline(context, lambda: self.router.complete(contact_id, agent_id, completion))
        return router_pb2.CompleteContactResponse(contact=self._view(view, explained=False), event_id=event_id)

    def CancelContact(
        self, request: router_pb2.CancelContactRequest, context: grpc.ServicerContext
    ) -> router_pb2.CancelContactResponse:
        contact_id = m.identifier_of(request.contact_id, "contact_id")
        reason = m._text(request.reason, "reason")
        view = self._within_deadline(context, lambda: self.router.cancel(contact_id, reason))
        return router_pb2.CancelContactResponse(contact=self._view(view, explained=False))

    def GetQueue(
        self, request: router_pb2.GetQueueRequest, context: grpc.ServicerContext
    ) -> router_pb2.GetQueueResponse:
        channel = m.channel_of(request.channel, "channel", required=False)
        team = m.team_of(request.team, "team")
        limit = m.page_size(request.limit, "limit")
        views, total, oldest = self._within_deadline(context, lambda: self.router.queue(channel, team, limit))
        response = router_pb2.GetQueueResponse(contacts=[self._view(v) for v in views], total_waiting=total)
        response.oldest_age.CopyFrom(m.duration(oldest))
        return response


def _offer_id(value: str) -> str:
    if not value:
        raise m.InvalidArgument("offer_id", "is required")
    if len(value) > 80 or not m.ID_PATTERN.match(value.replace("~", "")):
        raise m.InvalidArgument("offer_id", "is not an offer id")
    return value


def register(servicer: RouterServicer) -> Callable[[grpc.Server], Any]:
    def add(server: grpc.Server) -> None:
        router_pb2_grpc.add_RouterServiceServicer_to_server(servicer, server)

    return add
