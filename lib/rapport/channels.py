"""The one way a CLI or client opens a gRPC channel to a Rapport service.

`open_channel("profile.rapport:50051")` reads RAPPORT_TLS_* / RAPPORT_AUTH_TOKEN* (see
`rapport.settings.ChannelSettings`) unless settings are passed, and gives a traced channel with:

* TLS verifying the server against RAPPORT_TLS_CA_FILE (or the system roots with
  RAPPORT_TLS_ENABLED=true), a client certificate for mutual TLS when one is set;
* the bearer token on every call, re-read from RAPPORT_AUTH_TOKEN_FILE when that file changes;
  a token is never sent in plaintext beyond this machine (a ValueError says so);
* keepalive pings every 30 s (a silently dropped connection is noticed within 40 s, and idle
  watch streams survive NAT and load-balancer timeouts) and Rapport's message size limits.

Use it as a context manager, or close it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import grpc

from rapport.security.files import WatchedFiles
from rapport.security.tls import channel_credentials, is_local_target
from rapport.serving import MAX_MESSAGE_BYTES
from rapport.settings import ChannelSettings
from rapport.telemetry import traced_channel

log = logging.getLogger(__name__)

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.enable_retries", 1),
    ("grpc.primary_user_agent", "rapport"),
]


def _token_text(raw: list[bytes]) -> str:
    token = raw[0].decode("utf-8", errors="strict").strip()
    if not token or any(c.isspace() for c in token):
        raise ValueError("the token file must hold one token")
    return token


class _BearerToken(grpc.AuthMetadataPlugin):
    """Adds `authorization: Bearer <token>` to each call, from the setting or the current file."""

    def __init__(self, settings: ChannelSettings) -> None:
        self._fixed = settings.token
        self._file = (
            WatchedFiles([settings.token_file], _token_text, "gRPC client token") if settings.token_file else None
        )

    def __call__(self, context: grpc.AuthMetadataContext, callback: grpc.AuthMetadataPluginCallback) -> None:
        token = self._file.current() if self._file is not None else self._fixed
        callback((("authorization", f"Bearer {token}"),), None)


def open_channel(
    target: str,
    settings: ChannelSettings | None = None,
    *,
    options: Sequence[tuple[str, Any]] = (),
    traced: bool = True,
) -> grpc.Channel:
    """A channel to `target` secured as `settings` (default: from the environment) say."""
    settings = ChannelSettings.from_env() if settings is None else settings
    all_options = list(CHANNEL_OPTIONS)
    if settings.server_name:
        all_options.append(("grpc.ssl_target_name_override", settings.server_name))
    all_options.extend(options)
    local = is_local_target(target)
    if settings.uses_tls:
        credentials = channel_credentials(settings)
    elif settings.sends_token:
        if not local:
            raise ValueError(
                f"refusing to send a bearer token in plaintext to {target}: "
                "set RAPPORT_TLS_CA_FILE (or RAPPORT_TLS_ENABLED=true)"
            )
        # Call credentials need a secure channel; local credentials are plaintext on loopback.
        unix = target.startswith(("unix:", "unix-abstract:"))
        credentials = grpc.local_channel_credentials(
            grpc.LocalConnectionType.UDS if unix else grpc.LocalConnectionType.LOCAL_TCP
        )
    else:
        credentials = None
        if not local:
            log.warning("gRPC channel is plaintext", extra={"target": target})
    if credentials is None:
        channel = grpc.insecure_channel(target, options=all_options)
    else:
        if settings.sends_token:
            credentials = grpc.composite_channel_credentials(
                credentials, grpc.metadata_call_credentials(_BearerToken(settings), name="rapport-bearer")
            )
        channel = grpc.secure_channel(target, credentials, options=all_options)
    return traced_channel(channel) if traced else channel
