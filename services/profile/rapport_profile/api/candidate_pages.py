"""Paging through merge candidates, free of I/O.

Pages are keyset pages in a stable order (customer id, then the other customer's id), so a
candidate added or reviewed between two pages never shifts the others. The token is opaque to
clients: URL-safe base64 of a small JSON object holding the last pair returned and the
`customer_id` filter it belongs to.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import TypedDict

from rapport.errors import InvalidArgument
from rapport.v1 import profile_pb2
from rapport_profile.api.customer_view import customer_id, timestamp

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
_MAX_TOKEN_LENGTH = 512


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: after the pair (customer_id, other_id)."""

    customer_id: str = ""
    other_id: str = ""


@dataclass(frozen=True)
class CandidateQuery:
    # As the client sent it (before merges are followed); the token is bound to it.
    customer_id: str | None
    page_size: int
    after: Cursor


class CandidateRow(TypedDict):
    customer_id: str
    other_id: str
    display_name: str | None
    other_display_name: str | None
    # One list per MAYBE_SAME relationship between the pair.
    keys: list[list[str] | None]
    linked_at: datetime | None


def encode_token(filter_id: str | None, after: Cursor) -> str:
    payload = {"f": filter_id or "", "c": after.customer_id, "o": after.other_id}
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_token(token: str, filter_id: str | None) -> Cursor:
    if not token:
        return Cursor()
    if len(token) > _MAX_TOKEN_LENGTH:
        raise InvalidArgument("page_token", "is not a token this service issued")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
        after = Cursor(str(payload["c"]), str(payload["o"]))
        issued_for = str(payload["f"])
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise InvalidArgument("page_token", "is not a token this service issued") from exc
    if issued_for != (filter_id or ""):
        raise InvalidArgument("page_token", "belongs to a different customer_id filter")
    return after


def candidate_query(request: profile_pb2.ListMergeCandidatesRequest) -> CandidateQuery:
    if request.page_size < 0:
        raise InvalidArgument("page_size", "must not be negative")
    filter_id = customer_id(request.customer_id) if request.customer_id else None
    return CandidateQuery(
        customer_id=filter_id,
        page_size=min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
        after=decode_token(request.page_token, filter_id),
    )


def candidate_page(query: CandidateQuery, rows: list[CandidateRow]) -> profile_pb2.ListMergeCandidatesResponse:
    """`rows` is up to page_size + 1 rows in page order; the extra row only says there is more."""
    page = rows[: query.page_size]
    response = profile_pb2.ListMergeCandidatesResponse()
    for row in page:
        keys = sorted({k for group in row["keys"] for k in (group or [])})
        candidate = response.candidates.add(
            customer_id=row["customer_id"],
            other_customer_id=row["other_id"],
            shared_identity_keys=keys,
            display_name=row["display_name"] or "",
            other_display_name=row["other_display_name"] or "",
        )
        linked = timestamp(row["linked_at"])
        if linked is not None:
            candidate.linked_at.CopyFrom(linked)
    if len(rows) > query.page_size and page:
        last = page[-1]
        response.next_page_token = encode_token(query.customer_id, Cursor(last["customer_id"], last["other_id"]))
    return response
