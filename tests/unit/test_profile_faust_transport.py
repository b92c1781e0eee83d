"""The worker's Faust transport: a delivery stepped inline, and the rest of it run as a task."""

import asyncio
from typing import Any

import faust
import pytest
from faust.types import Message

from rapport_profile.adapters.faust_transport import RawRecords, _finish

pytestmark = pytest.mark.unit


async def _delivery(gate: "asyncio.Future[int]", seen: list[str]) -> int:
    seen.append("started")
    try:
        value = await gate
        await asyncio.sleep(0)
        return value + 1
    except asyncio.CancelledError:
        seen.append("cancelled")
        raise


def _step(gate: "asyncio.Future[int]", seen: list[str]) -> tuple[Any, Any]:
    delivery = _delivery(gate, seen)
    return delivery, delivery.send(None)


async def _the_rest_of_a_delivery_waits_for_what_it_waited_for_and_returns_its_result() -> None:
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    seen: list[str] = []
    delivery, awaiting = _step(gate, seen)
    assert awaiting is gate and seen == ["started"]
    rest = asyncio.ensure_future(_finish(delivery, awaiting))
    await asyncio.sleep(0)
    assert not rest.done()
    gate.set_result(41)
    assert await rest == 42


async def _a_failure_while_waiting_reaches_the_caller() -> None:
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    delivery, awaiting = _step(gate, [])
    rest = asyncio.ensure_future(_finish(delivery, awaiting))
    gate.set_exception(ValueError("decode failed"))
    with pytest.raises(ValueError, match="decode failed"):
        await rest


async def _cancelling_the_rest_cancels_the_delivery_itself() -> None:
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    seen: list[str] = []
    delivery, awaiting = _step(gate, seen)
    rest = asyncio.ensure_future(_finish(delivery, awaiting))
    await asyncio.sleep(0)
    rest.cancel()
    with pytest.raises(asyncio.CancelledError):
        await rest
    assert seen == ["started", "cancelled"]


def test_the_rest_of_a_delivery_waits_for_what_it_waited_for_and_returns_its_result():
    asyncio.run(_the_rest_of_a_delivery_waits_for_what_it_waited_for_and_returns_its_result())


def test_a_failure_while_waiting_reaches_the_caller():
    asyncio.run(_a_failure_while_waiting_reaches_the_caller())


def test_cancelling_the_rest_cancels_the_delivery_itself():
    asyncio.run(_cancelling_the_rest_cancels_the_delivery_itself())


@pytest.mark.parametrize(
    ("key", "value"), [(b"crm:C-1", b"\x0a\x03evt"), (None, b"\xff\xfe not protobuf"), (b"k", None), (b"", b"")]
)
def test_raw_records_hand_over_key_value_and_headers_untouched(key: bytes | None, value: bytes | None):
    app = faust.App("handover-test", autodiscover=False)
    decode = RawRecords(key_type=bytes, value_type=bytes, allow_empty=True).compile(app)
    sent = Message("t", 3, 41, 1.7e9, 1, [("traceparent", b"00-x")], key, value, None)

    async def handed_over() -> Any:
        return await decode(sent)

    event = asyncio.run(handed_over())
    assert isinstance(event, faust.Event)
    assert (event.key, event.value, event.message) == (key, value, sent)
    assert event.headers == {"traceparent": b"00-x"}
