"""The server interceptor that checks every call's bearer token against the policy.

`authorization: Bearer <token>` metadata is required on every method but health and
reflection. Missing, malformed, unknown, expired or forged tokens are UNAUTHENTICATED; a valid
token whose roles do not grant the method is PERMISSION_DENIED. The check and the request's
decoding run on the call's worker thread, after which the handler can read the caller with
`current_principal()` (for audit records such as an erasure receipt).
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

import grpc

from rapport.security.handlers import Behaviour, rewrap
from rapport.security.policy import Policy
from rapport.security.tokens import InvalidToken, Principal, TokenVerifier

log = logging.getLogger(__name__)

_PRINCIPAL: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("rapport_principal", default=None)


def current_principal() -> Principal | None:
    """The caller of the call being handled on this thread; None when authentication is off."""
    return _PRINCIPAL.get()


def bearer_token(metadata: Sequence[tuple[str, Any]] | None) -> tuple[str, str]:
    """(token, "") or ("", why the metadata carries no usable token)."""
    values = [v for k, v in metadata or () if k == "authorization"]
    if not values:
        return "", "missing bearer token"
    if len(values) > 1:
        return "", "more than one authorization header"
    value = values[0]
    if not isinstance(value, str):
        return "", "malformed authorization header"
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return "", "authorization must be 'Bearer <token>'"
    return token, ""


class AuthInterceptor(grpc.ServerInterceptor):
    def __init__(self, verifier: TokenVerifier, policy: Policy) -> None:
        self.verifier = verifier
        self.policy = policy

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or self.policy.is_open(method):
            return handler
        # Only the header is read here (on gRPC's polling thread); verification waits for the
        # worker thread.
        token, problem = bearer_token(handler_call_details.invocation_metadata)

        def admit(context: grpc.ServicerContext) -> Principal:
            if problem:
                self._refuse(context, grpc.StatusCode.UNAUTHENTICATED, problem, method)
            try:
                principal = self.verifier.verify(token)
            except InvalidToken as exc:
                self._refuse(context, grpc.StatusCode.UNAUTHENTICATED, str(exc), method)
            if not self.policy.allows(principal.roles, method):
                roles = ", ".join(sorted(principal.roles)) or "none"
                self._refuse(
                    context,
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"{principal.subject} (roles: {roles}) may not call {method}",
                    method,
                    principal.subject,
                )
            return principal

        def wrap(behaviour: Behaviour, _request_streaming: bool, response_streaming: bool) -> Behaviour:
            if response_streaming:

                def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                    _PRINCIPAL.set(admit(context))
                    try:
                        yield from behaviour(request, context)
                    finally:
                        _PRINCIPAL.set(None)

                return stream

            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                _PRINCIPAL.set(admit(context))
                try:
                    return behaviour(request, context)
                finally:
                    _PRINCIPAL.set(None)

            return unary

        return rewrap(handler, wrap)

    @staticmethod
    def _refuse(
        context: grpc.ServicerContext, code: grpc.StatusCode, reason: str, method: str, subject: str = ""
    ) -> NoReturn:
        log.warning(
            "call refused",
            extra={"method": method, "code": code.name, "reason": reason, "peer": context.peer(), "subject": subject},
        )
        context.abort(code, reason)
