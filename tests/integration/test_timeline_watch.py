"""WatchTimeline through gRPC: live delivery fed by the customer-updates topic, resume, merges.

The graph is written by the profile worker's GraphWriter and each commit is announced on a
per-test customer-updates topic with the CustomerUpdated record the worker publishes.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from test_timeline_support import (  # type: ignore[import-not-found]
    Harness,
    at,
    by_id,
    by_identifier,
    interaction,
    timeline_server,  # type: ignore[import-not-found]  # noqa: F401
)

from rapport.publisher import InteractionPublisher
from rapport.settings import Neo4jSettings
from rapport.v1 import timeline_pb2 as tl
from rapport_profile.worker_process import WorkerProcess, free_port, worker_env

pytestmark = pytest.mark.integration

WAIT = 20.0


class Watcher:
    """Reads a stream on a thread so the test can wait for items with a timeout."""

    def __init__(self, h: Harness, request: tl.WatchTimelineRequest) -> None:
        self.call = h.stub.WatchTimeline(request, timeout=120)
        self.items: queue.Queue[tl.WatchTimelineResponse | BaseException] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        try:
            for item in self.call:
                self.items.put(item)
        except BaseException as exc:
            self.items.put(exc)

    def next(self) -> tl.WatchTimelineResponse:
        item = self.items.get(timeout=WAIT)
        if isinstance(item, BaseException):
            raise item
        return item

    def interactions(self, n: int) -> Iterator[tl.WatchTimelineResponse]:
        got = 0
        while got < n:
            item = self.next()
            if item.HasField("interaction"):
                got += 1
                yield item

    def close(self) -> None:
        self.call.cancel()


def test_a_watcher_gets_new_interactions_in_order_and_resumes_without_gaps_or_repeats(timeline: Harness, uid: str):
    email = f"email:watch.{uid}@example.com"
    timeline.seed([interaction(f"{uid}-history", email, at=at(0))], announce=True)
    watcher = Watcher(timeline, tl.WatchTimelineRequest(customer=by_identifier(email), replay_last=1))
    replayed = watcher.next()
    assert replayed.interaction.event_id == f"{uid}-history"
    live_point = watcher.next()
    assert not live_point.HasField("interaction") and live_point.cursor

    for n in range(3):
        timeline.seed([interaction(f"{uid}-live-{n}", email, at=at(10 + n))], announce=True)
    first = list(watcher.interactions(3))
    assert [i.interaction.event_id for i in first] == [f"{uid}-live-{n}" for n in range(3)]
    resume_from = first[1].cursor  # the client saw live-2 arrive but only processed live-1
    watcher.close()

    # While nobody watches, more land, including a late one with an older event time.
    timeline.seed([interaction(f"{uid}-live-{n}", email, at=at(10 + n)) for n in (3, 4)], announce=True)
    timeline.seed([interaction(f"{uid}-late", email, at=at(1))], announce=True)

    resumed = Watcher(timeline, tl.WatchTimelineRequest(customer=by_identifier(email), cursor=resume_from))
    after = [i.interaction.event_id for i in resumed.interactions(4)]
    assert after == [f"{uid}-live-2", f"{uid}-live-3", f"{uid}-live-4", f"{uid}-late"]
    marker = resumed.next()
    assert not marker.HasField("interaction")
    timeline.seed([interaction(f"{uid}-live-5", email, at=at(15))], announce=True)
    (newest,) = resumed.interactions(1)
    assert newest.interaction.event_id == f"{uid}-live-5"
    resumed.close()


def test_a_merge_reaches_the_watchers_of_both_former_customers(timeline: Harness, uid: str):
    email, phone = f"email:mw.{uid}@example.com", f"phone:+4477007{int(uid[:5], 16) % 100000:05d}"
    timeline.seed([interaction(f"{uid}-e", email, at=at(0))], announce=True)
    timeline.seed([interaction(f"{uid}-p", phone, at=at(1))], announce=True)
    by_email, by_phone = timeline.customer_of(email), timeline.customer_of(phone)
    watchers = {cid: Watcher(timeline, tl.WatchTimelineRequest(customer=by_id(cid))) for cid in (by_email, by_phone)}
    for w in watchers.values():
        assert not w.next().HasField("interaction")  # live point

    result = timeline.seed([interaction(f"{uid}-both", email, phone, at=at(2))], announce=True)
    (merge,) = result.merges
    for w in watchers.values():
        notice = w.next()
        assert notice.merged.survivor_id == merge.survivor_id
        assert list(notice.merged.absorbed_ids) == [merge.absorbed_id]
        (item,) = w.interactions(1)
        assert item.interaction.event_id == f"{uid}-both" and item.customer_id == merge.survivor_id
    # Both keep following the survivor.
    timeline.seed([interaction(f"{uid}-after", phone, at=at(3))], announce=True)
    for w in watchers.values():
        (item,) = w.interactions(1)
        assert item.interaction.event_id == f"{uid}-after"
        w.close()


def test_watch_cursors_are_checked(timeline: Harness, uid: str):
    email = f"email:wc.{uid}@example.com"
    timeline.seed([interaction(f"{uid}-1", email, at=at(0))], announce=True)
    with pytest.raises(grpc.RpcError) as err:
        next(
            iter(
                timeline.stub.WatchTimeline(
                    tl.WatchTimelineRequest(customer=by_identifier(email), cursor="AQI"), timeout=WAIT
                )
            )
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and (err.value.details() or "").startswith("cursor")
    with pytest.raises(grpc.RpcError) as err:
        next(
            iter(
                timeline.stub.WatchTimeline(
                    tl.WatchTimelineRequest(customer=by_identifier(email), replay_last=501), timeout=WAIT
                )
            )
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith("replay_last")


@pytest.mark.e2e
def test_through_kafka_and_the_real_ingest_worker_a_watcher_resumes_with_nothing_missed(
    timeline: Harness, neo4j_settings: Neo4jSettings, uid: str, tmp_path: Path
):
    """Producer -> interactions topic -> profile worker -> graph + customer-updates -> watch."""
    kafka = timeline.settings.kafka
    env = worker_env(kafka, neo4j_settings, group=f"tl-{uid}", port=free_port(), batch_size=50, linger=0.02)
    email = f"email:e2e.{uid}@example.com"
    with WorkerProcess(env, tmp_path / "worker.log").start(), InteractionPublisher(kafka) as publisher:
        publisher.publish_sync(interaction(f"{uid}-0", email, at=at(0)))
        watcher = None
        for _ in range(100):  # the first event creates the customer
            try:
                watcher = Watcher(timeline, tl.WatchTimelineRequest(customer=by_identifier(email), replay_last=1))
                assert watcher.next().interaction.event_id == f"{uid}-0"
                break
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.NOT_FOUND
                time.sleep(0.2)
        assert watcher is not None
        assert not watcher.next().HasField("interaction")
        for n in range(1, 4):
            publisher.publish_sync(interaction(f"{uid}-{n}", email, at=at(n)))
        got = list(watcher.interactions(3))
        assert [i.interaction.event_id for i in got] == [f"{uid}-{n}" for n in range(1, 4)]
        watcher.close()
        for n in range(4, 7):
            publisher.publish_sync(interaction(f"{uid}-{n}", email, at=at(n)))
        resumed = Watcher(timeline, tl.WatchTimelineRequest(customer=by_identifier(email), cursor=got[-1].cursor))
        assert [i.interaction.event_id for i in resumed.interactions(3)] == [f"{uid}-{n}" for n in range(4, 7)]
        resumed.close()
