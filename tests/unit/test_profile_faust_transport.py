"""The worker's Faust transport: a delivery stepped inline, and the rest of it run as a task."""

import asyncio
from typing import Any

import pytest

from rapport_profile.adapters.faust_transport import _finish

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
