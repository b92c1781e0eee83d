"""Opaque cursors: page tokens for ListInteractions and resume cursors for WatchTimeline.

Both are URL-safe base64 of a small binary record that starts with a format version and a
kind byte, so a token of one kind (or a corrupted one) is refused with the field it came in.
A cursor names the customer it was issued for; the servicer accepts it only for a request
that resolves to the same customer (or to the survivor that customer was merged into).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

from rapport.errors import InvalidArgument

VERSION = 1
KIND_PAGE = 1
KIND_WATCH = 2
FINGERPRINT_BYTES = 8
MAX_TOKEN_CHARS = 16 * 1024
_HEADER = struct.Struct(">BB")
_INT64 = struct.Struct(">q")
_UINT16 = struct.Struct(">H")


class _Reader:
    def __init__(self, data: bytes, field: str) -> None:
        self.data = data
        self.pos = 0
        self.field = field

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise InvalidArgument(self.field, "is malformed (truncated)")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int64(self) -> int:
        return int(_INT64.unpack(self.take(8))[0])

    def text(self) -> str:
        (length,) = _UINT16.unpack(self.take(2))
        try:
            return self.take(length).decode()
        except UnicodeDecodeError:
            raise InvalidArgument(self.field, "is malformed (bad text)") from None

    def end(self) -> None:
        if self.pos != len(self.data):
            raise InvalidArgument(self.field, "is malformed (trailing bytes)")


def _text(value: str) -> bytes:
    raw = value.encode()
    return _UINT16.pack(len(raw)) + raw


def _encode(kind: int, body: bytes) -> str:
    return base64.urlsafe_b64encode(_HEADER.pack(VERSION, kind) + body).rstrip(b"=").decode()


def _decode(token: str, kind: int, field: str) -> _Reader:
    if len(token) > MAX_TOKEN_CHARS:
        raise InvalidArgument(field, "is malformed (too long)")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise InvalidArgument(field, "is malformed (not a token this service issued)") from None
    reader = _Reader(raw, field)
    version, found = _HEADER.unpack(reader.take(_HEADER.size))
    if version != VERSION:
        raise InvalidArgument(field, f"is malformed (unknown version {version})")
    if found != kind:
        raise InvalidArgument(field, "is a token of another kind (a page token and a watch cursor differ)")
    return reader


def fingerprint(*parts: str) -> bytes:
    """A short digest that binds a token to the query it was issued for."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return digest[:FINGERPRINT_BYTES]


@dataclass(frozen=True, slots=True)
class Position:
    """A place in a timeline ordered by (event time, event id)."""

    at: int
    event_id: str


@dataclass(frozen=True, slots=True)
class PageToken:
    customer_id: str
    query: bytes
    after: Position


def encode_page_token(token: PageToken) -> str:
    body = _text(token.customer_id) + token.query + _INT64.pack(token.after.at) + _text(token.after.event_id)
    return _encode(KIND_PAGE, body)


def decode_page_token(token: str, field: str = "page_token") -> PageToken:
    reader = _decode(token, KIND_PAGE, field)
    customer_id = reader.text()
    query = reader.take(FINGERPRINT_BYTES)
    at = reader.int64()
    event_id = reader.text()
    reader.end()
    if not customer_id or not event_id:
        raise InvalidArgument(field, "is malformed (empty position)")
    return PageToken(customer_id, query, Position(at, event_id))


@dataclass(frozen=True, slots=True)
class WatchToken:
    """A WatchTimeline resume point: see `rapport_timeline.domain.watch.WatchPosition`."""

    customer_id: str
    floor: int
    # (event id, stored time) of each interaction delivered at or above `floor`.
    delivered: tuple[tuple[str, int], ...]


def encode_watch_token(token: WatchToken) -> str:
    body = _text(token.customer_id) + _INT64.pack(token.floor) + _UINT16.pack(len(token.delivered))
    body += b"".join(_text(e) + _INT64.pack(stamp) for e, stamp in token.delivered)
    return _encode(KIND_WATCH, body)


def decode_watch_token(token: str, field: str = "cursor") -> WatchToken:
    reader = _decode(token, KIND_WATCH, field)
    customer_id = reader.text()
    floor = reader.int64()
    (count,) = _UINT16.unpack(reader.take(2))
    delivered = tuple((reader.text(), reader.int64()) for _ in range(count))
    reader.end()
    if not customer_id:
        raise InvalidArgument(field, "is malformed (no customer)")
    if any(stamp < floor for _, stamp in delivered):
        raise InvalidArgument(field, "is malformed (inconsistent position)")
    return WatchToken(customer_id, floor, delivered)
