"""Faust's aiokafka transport, handing each fetched message to the streams more cheaply.

Faust delivers every fetched message with `wait_first(callback(message), suspend_flow.wait())`:
four tasks and an `asyncio.wait` per message, ~50 us of CPU (measured: a bare Faust consumer
of this worker's shape spends 92 us per message, 46 us with this transport). The race matters only
while a delivery waits (flow control during a rebalance, a full stream buffer, a full producer
buffer). So the delivery is stepped inline until it first has to wait; only then does the rest
of it take Faust's own path, racing the flow suspension exactly as before.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from faust.sensors import Monitor
from faust.serializers.schemas import DecodeFunction
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.producer import ProducerBuffer
from faust.types import AppT, EventT, Message
from mode.services import WaitResults


class _Rest:
    """The rest of a coroutine that was stepped by hand and now waits for `awaiting`."""

    def __init__(self, coro: Coroutine[Any, Any, Any], awaiting: Any) -> None:
        self._coro = coro
        self._awaiting = awaiting

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, awaiting = self._coro, self._awaiting
        while True:
            # The enclosing task waits for what the coroutine waits for, then resumes it.
            try:
                sent = yield awaiting
            except BaseException as exc:  # noqa: BLE001 - cancellation included: the coroutine gets it
                try:
                    awaiting = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    awaiting = coro.send(sent)
                except StopIteration as done:
                    return done.value


async def _finish(coro: Coroutine[Any, Any, Any], awaiting: Any) -> Any:
    return await _Rest(coro, awaiting)


class Consumer(faust_aiokafka.Consumer):  # type: ignore[misc]
    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:
        if len(coros) != 2 or timeout is not None or not self._is_delivery(*coros):
            return await super().wait_first(*coros, timeout=timeout)
        delivery, flow_suspended = coros
        try:
            awaiting = delivery.send(None)
        except StopIteration as done:
            flow_suspended.close()
            return WaitResults([delivery], [done.value], False)
        except BaseException:
            flow_suspended.close()
            raise
        return await super().wait_first(_finish(delivery, awaiting), flow_suspended)

    def _is_delivery(self, delivery: Any, other: Any) -> bool:
        """The drain loop's call: a fresh delivery coroutine and the wait for a flow suspension
        that has not happened (if it has, Faust's own path decides)."""
        frame = getattr(other, "cr_frame", None)
        return (
            frame is not None
            and frame.f_locals.get("self") is self.suspend_flow
            and not self.suspend_flow.is_set()
            and inspect.iscoroutine(delivery)
            and inspect.getcoroutinestate(delivery) == inspect.CORO_CREATED
        )


class _UnthreadedBuffer(ProducerBuffer):  # type: ignore[misc]
    """Faust's buffer of an unthreaded producer (this worker's), sized without looking the setting up.

    The stream handler asks every record whether the buffer has ebbed; Faust's own `size` reads
    `app.conf.producer_threaded` through its settings descriptors each time (~2 us a record).
    """

    @property
    def size(self) -> int:
        return int(self.pending.qsize())


class Producer(faust_aiokafka.Producer):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.app.conf.producer_threaded:
            buffer = _UnthreadedBuffer(loop=self.loop, beacon=self.beacon)
            buffer.app = self.app
            self.buffer = buffer

    def kafka_producer(self) -> AIOKafkaProducer:
        """The aiokafka producer underneath: the outbox sends its batches of updates through it."""
        return self._ensure_producer()


async def _never_called(exc: Exception, message: Message) -> None:
    """Raw bytes cannot fail to decode."""


class RawRecords(faust.Schema):  # type: ignore[misc]
    """Each record's key and value as the bytes they came as.

    Faust's `raw` codec gives the same, but looks its codec up twice per message; the worker
    decodes the protobuf itself (and must see undecodable values, to dead-letter them).
    """

    def compile(
        self,
        app: AppT,
        *,
        on_key_decode_error: Callable[[Exception, Message], Awaitable[None]] = _never_called,
        on_value_decode_error: Callable[[Exception, Message], Awaitable[None]] = _never_called,
        default_propagate: bool = False,
    ) -> DecodeFunction:
        # What app.create_event does, with the event class looked up once (Faust's settings
        # descriptors cost ~2 us a lookup).
        event_type: Callable[..., EventT[Any]] = app.conf.Event  # type: ignore[assignment]

        async def decode(message: Message, *, propagate: bool = default_propagate) -> EventT[Any]:
            return event_type(app, message.key, message.value, message.headers, message)

        return decode


class QuietMonitor(Monitor):  # type: ignore[misc]
    """Faust's monitor without its per-message and per-event counters: nothing reads them (the
    worker reports through OpenTelemetry and its own health page), and they cost ~5 us a record."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        return None

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None


class Transport(faust_aiokafka.Transport):  # type: ignore[misc]
    Consumer = Consumer
    Producer = Producer
