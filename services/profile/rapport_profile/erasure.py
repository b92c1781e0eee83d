"""The erasure use case: forget a customer in the graph, then tell every timeline replica.

The graph transaction is what erases (and what the receipt records); the notice only makes the
timeline drop pages it holds in memory, which it never serves anyway (each read resolves the
customer in the graph first). When the notice cannot be sent the call fails UNAVAILABLE after
the erasure committed: the retry finds the receipt (`already_erased`) and sends the notice again.
"""

from __future__ import annotations

import logging

from rapport.errors import NotFound, Unavailable
from rapport_profile.adapters.erasure import Eraser
from rapport_profile.adapters.notices import CustomerNotices
from rapport_profile.api.customer_view import CustomerLookup
from rapport_profile.domain.erasure import ErasureReceipt

log = logging.getLogger(__name__)

# A notice waits at most this long for Kafka, within what the call has left.
NOTICE_TIMEOUT = 5.0


class ErasureService:
    def __init__(self, eraser: Eraser, notices: CustomerNotices) -> None:
        self._eraser = eraser
        self._notices = notices

    def forget(self, lookup: CustomerLookup, reason: str, erased_by: str, timeout: float) -> ErasureReceipt:
        receipt = self._eraser.forget(lookup, reason, erased_by, timeout)
        if receipt is None:
            raise NotFound(f"{lookup.describe()} not found")
        try:
            self._notices.erased(receipt.customer_ids, NOTICE_TIMEOUT)
        except Exception as exc:
            log.warning(
                "erased, but the customer-updates notice failed",
                extra={"receipt_id": receipt.receipt_id, "error": type(exc).__name__},
            )
            raise Unavailable(
                f"erased (receipt {receipt.receipt_id}), but the timeline notice could not be sent "
                f"({type(exc).__name__}); retry: the retry returns the receipt and sends the notice again"
            ) from exc
        return receipt
