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
