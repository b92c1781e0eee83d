"""ForgetCustomer's messages, free of I/O: the request checked, the receipt as the contract says it."""

from __future__ import annotations

from dataclasses import dataclass

from rapport.errors import InvalidArgument
from rapport.v1 import profile_pb2
from rapport_profile.api.customer_view import CustomerLookup, customer_id, identifier
from rapport_profile.domain.erasure import MAX_REASON_LENGTH, ErasureReceipt


@dataclass(frozen=True)
class ForgetOrder:
    lookup: CustomerLookup
    reason: str


def reason_of(value: str, field: str = "reason") -> str:
    reason = value.strip()
    if not reason:
        raise InvalidArgument(field, "is required: say why (e.g. the request's ticket number)")
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidArgument(field, f"longer than {MAX_REASON_LENGTH} characters")
    if not reason.isprintable():
        raise InvalidArgument(field, "must be printable text on one line")
    return reason


def forget_request(request: profile_pb2.ForgetCustomerRequest) -> ForgetOrder:
    which = request.WhichOneof("lookup")
    if which == "customer_id":
        lookup = CustomerLookup(customer_id=customer_id(request.customer_id))
    elif which == "identifier":
        lookup = CustomerLookup(identity_key=identifier(request.identifier).key)
    else:
        raise InvalidArgument("lookup", "set customer_id or identifier")
    return ForgetOrder(lookup, reason_of(request.reason))


def receipt_message(receipt: ErasureReceipt) -> profile_pb2.ErasureReceipt:
    message = profile_pb2.ErasureReceipt(
        receipt_id=receipt.receipt_id,
        customer_ids=list(receipt.customer_ids),
        erased_by=receipt.erased_by,
        reason=receipt.reason,
        stores=[profile_pb2.StoreErasure(store=s.store, removed=dict(s.removed), note=s.note) for s in receipt.stores],
        tombstone_count=receipt.tombstone_count,
        already_erased=receipt.already_erased,
    )
    message.erased_at.FromDatetime(receipt.erased_at)
    return message
