"""Requests are decoded by Rapport, not by gRPC, so bytes that are not the method's message get
INVALID_ARGUMENT naming the type (gRPC itself answers INTERNAL "Exception deserializing
request!", which reads as a server bug), and so nothing is parsed before the caller is
authorised: this interceptor runs inside `AuthInterceptor`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, cast

import grpc

from rapport.security.handlers import Behaviour, WrappedHandlers, rewrap

log = logging.getLogger(__name__)


def _type_name(decode: Callable[[bytes], Any]) -> str:
    descriptor = getattr(getattr(decode, "__self__", None), "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", "request message"))


class RequestDecodingInterceptor(grpc.ServerInterceptor):
    def __init__(self) -> None:
        self._wrapped = WrappedHandlers()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        decode = handler.request_deserializer
        return self._wrapped.get(handler_call_details.method, handler, lambda: _decoding(handler, decode))


def _decoding(handler: grpc.RpcMethodHandler, decode: Callable[[bytes], Any]) -> grpc.RpcMethodHandler:
    """The handler, receiving raw bytes and decoding them itself."""
    name = _type_name(decode)

    def parse(raw: bytes, context: grpc.ServicerContext) -> Any:
        try:
            return decode(raw)
        except Exception as exc:  # noqa: BLE001 - any failure to parse hostile bytes is the caller's
            log.info("undecodable request", extra={"type": name, "error": type(exc).__name__})
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"request: not a valid {name}")

    def wrap(behaviour: Behaviour, request_streaming: bool, response_streaming: bool) -> Behaviour:
        if request_streaming:

            def requests(raws: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[Any]:
                for raw in raws:
                    yield parse(raw, context)

            return lambda raws, context: behaviour(requests(raws, context), context)
        return lambda raw, context: behaviour(parse(raw, context), context)

    return rewrap(handler, wrap, request_deserializer=None)


MAX_DETAILS_CHARS = 1024


def bounded_details(details: str | None) -> str | None:
    """Status details cut to MAX_DETAILS_CHARS: an error message that quotes a hostile value
    must not echo megabytes (trailers over gRPC's metadata limit reach the client as
    RESOURCE_EXHAUSTED "Stream removed", and the log line grows with them)."""
    if details is None or len(details) <= MAX_DETAILS_CHARS:
        return details
    return details[: MAX_DETAILS_CHARS - 16] + " ... (truncated)"


class _BoundedContext:
    """The servicer context, with status details bounded; everything else passes through."""

    def __init__(self, context: grpc.ServicerContext) -> None:
        self._context = context

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self._context.abort(code, bounded_details(details) or "")

    def set_details(self, details: str) -> None:
        self._context.set_details(bounded_details(details) or "")


class BoundedDetailsInterceptor(grpc.ServerInterceptor):
    """Outside the error mapping, so every status a handler or interceptor sets is bounded."""

    def __init__(self) -> None:
        self._wrapped = WrappedHandlers()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        return self._wrapped.get(handler_call_details.method, handler, lambda: rewrap(handler, _bounded))


def _bounded(behaviour: Behaviour, _request_streaming: bool, _response_streaming: bool) -> Behaviour:
    return lambda request, context: behaviour(request, cast(grpc.ServicerContext, _BoundedContext(context)))
