"""Rebuilding a gRPC method handler around a wrapped behaviour, for any of the four call shapes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

Behaviour = Callable[[Any, grpc.ServicerContext], Any]
# (behaviour, request_streaming, response_streaming) -> wrapped behaviour
Wrap = Callable[[Behaviour, bool, bool], Behaviour]


def rewrap(handler: grpc.RpcMethodHandler, wrap: Wrap, **changes: Any) -> grpc.RpcMethodHandler:
    """The same handler with its behaviour passed through `wrap`; `changes` replace other fields
    (e.g. `request_deserializer=None` to receive raw bytes)."""
    for kind, req, resp in (
        ("unary_unary", False, False),
        ("unary_stream", False, True),
        ("stream_unary", True, False),
        ("stream_stream", True, True),
    ):
        behaviour = getattr(handler, kind)
        if behaviour is not None:
            return handler._replace(**{kind: wrap(behaviour, req, resp)}, **changes)  # type: ignore[attr-defined,no-any-return]
    return handler


class WrappedHandlers:
    """An interceptor's wrapping of each handler, built once and reused.

    A servicer's handler for a method is one object for every call, and the stateless
    interceptors' wrapping of it depends on nothing else, so rebuilding it per call is waste (the
    interceptors took ~160 us of a ~340 us health check's server CPU). A handler that is new on
    every call (one an interceptor before built per call) is wrapped per call as before; the
    table forgets everything when full.
    """

    def __init__(self, limit: int = 512) -> None:
        self._limit = limit
        self._built: dict[tuple[str, int], tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def get(
        self, method: str, handler: grpc.RpcMethodHandler, build: Callable[[], grpc.RpcMethodHandler]
    ) -> grpc.RpcMethodHandler:
        key = (method, id(handler))
        known = self._built.get(key)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = build()
        if len(self._built) >= self._limit:
            self._built.clear()
        # The handler is kept with its wrapping, so its id is not reused while the entry lives.
        self._built[key] = (handler, wrapped)
        return wrapped
