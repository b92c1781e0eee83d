"""A contact read half-written (a read overlapping another transaction's commit) is recognised."""

from __future__ import annotations

from typing import Any

import pytest

from rapport_router.adapters.graph import contact_is_whole

BASE: dict[str, Any] = {"id": "c1", "channel": "chat", "created_at": 1_000, "offer_attempt": 0}
OFFER: dict[str, Any] = {
    "offer_id": "c1~2",
    "agent_id": "a1",
    "offer_attempt": 2,
    "offered_at": 2_000,
    "offer_expires_at": 22_000,
    "offer_mode": "batch",
}


@pytest.mark.parametrize(
    "props",
    [
        {**BASE, "state": "waiting"},
        {**BASE, "state": "waiting", "offer_attempt": 2, "declined_by": ["a1"], "last_offer_end": "expired"},
        {**BASE, **OFFER, "state": "offered"},
        {**BASE, **OFFER, "state": "assigned", "accepted_at": 3_000},
        {**BASE, **OFFER, "state": "completed", "accepted_at": 3_000, "ended_at": 4_000},
        {**BASE, "state": "cancelled", "ended_at": 4_000, "offer_attempt": 1, "last_offer_end": "cancelled"},
    ],
)
def test_contacts_as_written_are_whole(props: dict[str, Any]):
    assert contact_is_whole(props)


@pytest.mark.parametrize(
    "props",
    [
        # Seen under load: the new state and times of an offer, without its id and agent.
        {**BASE, "state": "offered", "offer_attempt": 2, "offered_at": 2_000, "offer_expires_at": 22_000},
        {**BASE, **OFFER, "state": "offered", "agent_id": None},
        # The previous attempt's offer id next to the new attempt number.
        {**BASE, **OFFER, "state": "offered", "offer_id": "c1~1"},
        {**BASE, **OFFER, "state": "offered", "offered_at": None},
        # Back to waiting, with what the release removes still there.
        {**BASE, "state": "waiting", "agent_id": "a1"},
        {**BASE, "state": "waiting", "offer_id": "c1~2"},
        {**BASE, "state": "waiting", "offered_at": 2_000},
        {**BASE, **OFFER, "state": "assigned"},
        {**BASE, **OFFER, "state": "completed", "accepted_at": 3_000},
        {**BASE, **OFFER, "state": "cancelled", "ended_at": 4_000},
        {**BASE},
    ],
)
def test_half_written_contacts_are_not(props: dict[str, Any]):
    assert not contact_is_whole(props)
