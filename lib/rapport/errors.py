"""Errors the domain raises, and their one mapping to gRPC status codes.

Servicers raise these (or let neo4j's ServiceUnavailable / SessionExpired escape); the
`StatusInterceptor` turns them into precise codes, so no servicer repeats the mapping.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import neo4j.exceptions

from rapport.events import InvalidEvent
from rapport.identity import InvalidIdentifier
from rapport.security.handlers import WrappedHandlers

log = logging.getLogger(__name__)


class RapportError(Exception):
    code = grpc.StatusCode.INTERNAL


class InvalidArgument(RapportError):
    """Bad input; the message starts with the offending field's name."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


class NotFound(RapportError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(RapportError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(RapportError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(RapportError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(RapportError):
    code = grpc.StatusCode.UNAVAILABLE


_UNAVAILABLE = (
    neo4j.exceptions.ServiceUnavailable,
    neo4j.exceptions.SessionExpired,
    neo4j.exceptions.TransientError,
    TimeoutError,
)


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str] | None:
    """The status for a known error, or None for a bug (which stays INTERNAL and is logged)."""
    if isinstance(exc, RapportError):
        return exc.code, str(exc)
    if isinstance(exc, InvalidIdentifier | InvalidEvent):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, _UNAVAILABLE):
        return grpc.StatusCode.UNAVAILABLE, f"customer graph unavailable: {type(exc).__name__}"
    return None


class StatusInterceptor(grpc.ServerInterceptor):
    """Maps domain errors raised by any handler (unary or streaming) to status codes."""

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
        method = handler_call_details.method
        return self._wrapped.get(method, handler, lambda: _mapping_errors(method, handler))


def _mapping_errors(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """The handler, its domain errors raised as status codes."""

    def abort(context: grpc.ServicerContext, exc: Exception) -> None:
        status = status_of(exc)
        if status is None:
            log.exception("unhandled error", extra={"method": method})
            context.abort(grpc.StatusCode.INTERNAL, "internal error")
        else:
            context.abort(*status)

    def unary(behaviour: Callable[..., Any]) -> Callable[..., Any]:
        def call(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                return behaviour(request, context)
            except Exception as exc:
                if isinstance(exc, grpc.RpcError) or context.code() is not None:  # type: ignore[attr-defined]
                    raise
                abort(context, exc)

        return call

    def streaming(behaviour: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        def call(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                yield from behaviour(request, context)
            except Exception as exc:
                if isinstance(exc, grpc.RpcError) or context.code() is not None:  # type: ignore[attr-defined]
                    raise
                abort(context, exc)

        return call

    if handler.unary_unary:
        return handler._replace(unary_unary=unary(handler.unary_unary))  # type: ignore[attr-defined,no-any-return]
    if handler.unary_stream:
        return handler._replace(unary_stream=streaming(handler.unary_stream))  # type: ignore[attr-defined,no-any-return]
    if handler.stream_unary:
        return handler._replace(stream_unary=unary(handler.stream_unary))  # type: ignore[attr-defined,no-any-return]
    if handler.stream_stream:
        return handler._replace(stream_stream=streaming(handler.stream_stream))  # type: ignore[attr-defined,no-any-return]
    return handler
