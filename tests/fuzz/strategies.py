"""Hypothesis strategies for hostile protobuf input: well-formed messages of any type built from
its descriptor (with values steered towards ones the system knows, so calls get past the first
check), and raw bytes that are not well-formed at all (mutated, truncated, lying lengths, deep
nesting, invalid UTF-8 in string fields, oversized)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

MAX_DEPTH = 4
F = FieldDescriptor

# Characters that have broken parsers before: controls, NUL, RTL marks, combining marks, emoji,
# wide CJK, full-width '@', look-alike quotes and the Cypher/JSON/regex metacharacters.
NASTY = "\x00\x07\t\n\r\x1b\u200b\u200e\u202e\u0301\ufeff\uff20\u2028\U0001f600\u4e2d'\"`\\{}[]()$%*?^|:/@#+.-_ "
_TEXT = st.one_of(
    st.text(max_size=24),
    st.text(alphabet=st.sampled_from(NASTY), max_size=16),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=300),
    # just past the length limits, and past gRPC's 16 KB metadata limit if an error quotes it
    st.sampled_from((100, 129, 257, 5000, 20_000, 100_000)).map(lambda n: "x" * n),
)


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint((number << 3) | wire_type)


def length_delimited(number: int, payload: bytes) -> bytes:
    return tag(number, 2) + varint(len(payload)) + payload


def text_values(known: Sequence[str]) -> st.SearchStrategy[str]:
    if not known:
        return _TEXT
    pool = st.sampled_from(sorted(set(known)))
    return st.one_of(
        pool,
        pool,
        _TEXT,
        st.tuples(pool, _TEXT).map(lambda p: p[0] + p[1]),
        st.tuples(pool, st.integers(0, 40)).map(lambda p: p[0][: p[1]]),
        pool.map(str.upper),
    )


def _int(bits: int, signed: bool) -> st.SearchStrategy[int]:
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    # Mostly the small numbers requests carry (page sizes, limits), then anything.
    small = st.integers(0, 10)
    return st.one_of(small, small, st.integers(max(low, -3), 600), st.integers(low, high), st.sampled_from([low, high]))


def _enum_numbers(field: FieldDescriptor) -> list[int]:
    assert field.enum_type is not None
    return [v.number for v in field.enum_type.values]


def _plausible_scalar(field: FieldDescriptor, known: Sequence[str]) -> st.SearchStrategy[Any]:
    """Values a well-behaved client would send: known strings, small numbers, defined enums."""
    t = field.type
    if t == F.TYPE_STRING:
        return st.sampled_from(sorted(set(known))) if known else st.text(max_size=12)
    if t == F.TYPE_ENUM:
        return st.sampled_from(_enum_numbers(field))
    if t in (F.TYPE_FLOAT, F.TYPE_DOUBLE):
        return st.floats(-1, 1)
    if t in (F.TYPE_BOOL, F.TYPE_BYTES):
        return _scalar(field, known)
    return st.integers(0, 10)


def _scalar(field: FieldDescriptor, known: Sequence[str]) -> st.SearchStrategy[Any]:
    t = field.type
    if t in (F.TYPE_STRING,):
        return text_values(known)
    if t == F.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == F.TYPE_BOOL:
        return st.booleans()
    if t in (F.TYPE_DOUBLE,):
        return st.floats()
    if t == F.TYPE_FLOAT:
        return st.floats(width=32)
    if t in (F.TYPE_INT32, F.TYPE_SINT32, F.TYPE_SFIXED32):
        return _int(32, True)
    if t in (F.TYPE_INT64, F.TYPE_SINT64, F.TYPE_SFIXED64):
        return _int(64, True)
    if t in (F.TYPE_UINT32, F.TYPE_FIXED32):
        return _int(32, False)
    if t in (F.TYPE_UINT64, F.TYPE_FIXED64):
        return _int(64, False)
    if t == F.TYPE_ENUM:
        numbers = _enum_numbers(field)
        return st.one_of(st.sampled_from(numbers), st.integers(-(1 << 31), (1 << 31) - 1))
    raise TypeError(f"no strategy for field type {t} ({field.full_name})")


def _set(message: Message, field: FieldDescriptor, value: Any) -> None:
    target = getattr(message, field.name)
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value_field = field.message_type.fields_by_name["value"]
        for k, v in value.items():
            if value_field.message_type is not None:
                target[k].CopyFrom(v)
            else:
                target[k] = v
    elif field.is_repeated:
        if field.message_type is not None:
            for item in value:
                target.add().CopyFrom(item)
        else:
            target.extend(value)
    elif field.message_type is not None:
        target.CopyFrom(value)
    else:
        setattr(message, field.name, value)


@functools.cache
def _field_strategy(
    field: FieldDescriptor, known: tuple[str, ...], depth: int, plausible: bool
) -> st.SearchStrategy[Any]:
    scalar = _plausible_scalar if plausible else _scalar
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key_field = field.message_type.fields_by_name["key"]
        value_field = field.message_type.fields_by_name["value"]
        value = (
            messages(value_field.message_type, known, depth + 1, plausible)
            if value_field.message_type is not None
            else scalar(value_field, known)
        )
        return st.dictionaries(scalar(key_field, known), value, max_size=8)
    one = (
        messages(field.message_type, known, depth + 1, plausible)
        if field.message_type is not None
        else scalar(field, known)
    )
    if field.is_repeated:
        if plausible:
            return st.lists(one, max_size=3)
        return st.one_of(st.lists(one, max_size=4), st.lists(one, min_size=30, max_size=80))
    return one


@functools.cache
def messages(
    descriptor: Descriptor, known: tuple[str, ...] = (), depth: int = 0, plausible: bool = False
) -> st.SearchStrategy[Message]:
    """Messages of `descriptor`'s type with any subset of fields set (nested up to MAX_DEPTH);
    `plausible` ones carry values a well-behaved client would send."""
    cls = GetMessageClass(descriptor)
    fields = [f for f in descriptor.fields if depth < MAX_DEPTH or f.message_type is None]

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = cls()
        chosen = draw(st.lists(st.sampled_from(fields), unique=True, max_size=len(fields))) if fields else []
        for field in chosen:
            _set(message, field, draw(_field_strategy(field, known, depth, plausible)))
        return message

    return build()


def _string_fields(descriptor: Descriptor) -> list[int]:
    return [f.number for f in descriptor.fields if f.type == F.TYPE_STRING]


def _message_fields(descriptor: Descriptor) -> list[int]:
    return [f.number for f in descriptor.fields if f.message_type is not None] or [1]


def _nested(numbers: list[int], depth: int, inner: bytes) -> bytes:
    payload = inner
    for i in range(depth):
        payload = length_delimited(numbers[i % len(numbers)], payload)
    return payload


def hostile_bytes(descriptor: Descriptor, known: tuple[str, ...] = ()) -> st.SearchStrategy[bytes]:
    """Serialized messages, most of them valid, the rest broken in the ways attackers break them."""
    valid = st.one_of(messages(descriptor, known), messages(descriptor, known, plausible=True)).map(
        lambda m: m.SerializeToString()
    )
    strings = _string_fields(descriptor) or [1]
    nested_fields = _message_fields(descriptor)

    def flip(args: tuple[bytes, int, int]) -> bytes:
        data, at, value = args
        if not data:
            return bytes([value])
        at %= len(data)
        return data[:at] + bytes([value]) + data[at + 1 :]

    return st.one_of(
        valid,
        valid,
        valid,
        st.tuples(valid, st.integers(0, 1 << 16), st.integers(0, 255)).map(flip),
        st.tuples(valid, st.integers(0, 1 << 16)).map(lambda p: p[0][: p[1] % (len(p[0]) + 1)]),
        st.binary(max_size=256),
        # invalid UTF-8 where a string belongs
        st.tuples(st.sampled_from(strings), st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"a\x80b"])).map(
            lambda p: length_delimited(p[0], p[1])
        ),
        # a length prefix that promises more than follows
        st.tuples(st.sampled_from(strings), st.integers(1, (1 << 63) - 1)).map(
            lambda p: tag(p[0], 2) + varint(p[1]) + b"abc"
        ),
        # deep nesting through the message's own sub-message fields, or any field number
        st.integers(10, 3000).map(lambda d: _nested(nested_fields, d, b"")),
        st.tuples(st.integers(1, 536_870_911), st.integers(90, 400)).map(lambda p: _nested([p[0]], p[1], b"")),
        # unknown fields of every wire type, group markers, a huge field number
        st.tuples(st.integers(1, 536_870_911), st.sampled_from([0, 1, 3, 4, 5, 6, 7])).map(
            lambda p: tag(p[0], p[1]) + b"\x01" * 8
        ),
        # large but under the 4 MB limit
        st.tuples(st.sampled_from(strings), st.integers(100_000, 1_000_000)).map(
            lambda p: length_delimited(p[0], b"a" * p[1])
        ),
    )


def _base_event() -> Message:
    from rapport.v1 import events_pb2

    event = events_pb2.InteractionEvent(
        event_id="evt-base",
        channel=events_pb2.CHANNEL_CHAT,
        kind=events_pb2.INTERACTION_KIND_MESSAGE,
        identifiers=[events_pb2.Identifier(kind=events_pb2.IDENTIFIER_KIND_EMAIL, value="ana@example.com")],
    )
    event.occurred_at.seconds = 1_736_150_400
    return event


def plausible_events(known: tuple[str, ...] = ()) -> st.SearchStrategy[Message]:
    """A valid event with generated fields merged over it, so validation runs past its first
    checks (and often all the way) before something generated breaks it."""
    from rapport.v1 import events_pb2

    def merge(overlay: Message) -> Message:
        event = _base_event()
        event.MergeFrom(overlay)
        return event

    descriptor = events_pb2.InteractionEvent.DESCRIPTOR
    return st.one_of(messages(descriptor, known, plausible=True), messages(descriptor, known)).map(merge)
