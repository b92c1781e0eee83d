"""The stateless interceptors wrap a servicer's handler once, not on every call."""

from __future__ import annotations

from typing import Any, cast

import grpc
import pytest

from rapport.errors import InvalidArgument, StatusInterceptor
from rapport.security.handlers import WrappedHandlers
from rapport.security.wire import BoundedDetailsInterceptor, RequestDecodingInterceptor


class _Details:
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata: tuple[Any, ...] = ()


class _Aborted(Exception):
    pass


class _Context:
    def __init__(self) -> None:
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def code(self) -> grpc.StatusCode | None:
        return None

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted = (code, details)
        raise _Aborted


def _handler(behaviour: Any) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(behaviour, request_deserializer=bytes.decode)


def test_a_handler_is_wrapped_once_and_another_handler_gets_its_own_wrapping():
    table = WrappedHandlers()
    first, second = _handler(lambda r, c: r), _handler(lambda r, c: r)
    builds: list[grpc.RpcMethodHandler] = []

    def build(h: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        builds.append(h)
        return h._replace(request_deserializer=None)  # type: ignore[attr-defined,no-any-return]

    a = table.get("/s/M", first, lambda: build(first))
    assert table.get("/s/M", first, lambda: build(first)) is a
    b = table.get("/s/M", second, lambda: build(second))
    assert b is not a
    assert builds == [first, second]


def _without_deserializer(h: grpc.RpcMethodHandler) -> Any:
    return lambda: h._replace(request_deserializer=None)  # type: ignore[attr-defined]


def _call(handler: grpc.RpcMethodHandler | None, raw: bytes, context: _Context) -> Any:
    assert handler is not None and handler.unary_unary is not None
    return handler.unary_unary(raw, cast(grpc.ServicerContext, context))


def test_a_full_table_forgets_and_still_answers():
    table = WrappedHandlers(limit=2)
    handlers = [_handler(lambda r, c: r) for _ in range(3)]
    wrapped = [table.get("/s/M", h, _without_deserializer(h)) for h in handlers]
    assert [w.unary_unary for w in wrapped] == [h.unary_unary for h in handlers]
    assert table.get("/s/M", handlers[2], lambda: pytest.fail("rebuilt")) is wrapped[2]


@pytest.mark.parametrize("interceptor", [StatusInterceptor, BoundedDetailsInterceptor, RequestDecodingInterceptor])
def test_the_stateless_interceptors_reuse_their_wrapping_across_calls(interceptor: type[grpc.ServerInterceptor]):
    servicer_handler = _handler(lambda r, c: r)
    chain = interceptor()
    first = chain.intercept_service(lambda _d: servicer_handler, _Details("/s/M"))
    again = chain.intercept_service(lambda _d: servicer_handler, _Details("/s/M"))
    assert first is again and first is not servicer_handler
    other = chain.intercept_service(lambda _d: servicer_handler, _Details("/s/Other"))
    assert other is not first


def test_a_reused_wrapping_still_maps_errors_and_decodes_per_call():
    def behaviour(request: str, _context: Any) -> str:
        if request == "bad":
            raise InvalidArgument("name", "is bad")
        return request.upper()

    servicer_handler = _handler(behaviour)
    status, decoding = StatusInterceptor(), RequestDecodingInterceptor()

    def lookup(details: _Details) -> grpc.RpcMethodHandler | None:
        return status.intercept_service(lambda d: decoding.intercept_service(lambda _d: servicer_handler, d), details)

    for raw, expected in ((b"ok", "OK"), (b"fine", "FINE")):
        assert _call(lookup(_Details("/s/M")), raw, _Context()) == expected
    context = _Context()
    with pytest.raises(_Aborted):
        _call(lookup(_Details("/s/M")), b"bad", context)
    assert context.aborted == (grpc.StatusCode.INVALID_ARGUMENT, "name: is bad")
