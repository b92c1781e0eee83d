"""`rapport customer`: what people type becomes the right request, and the answer reads well."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import typer
from typer.testing import CliRunner

from rapport.cli import profile as cli
from rapport.settings import GrpcSettings
from rapport.v1 import events_pb2, profile_pb2
from rapport_profile.api.bootstrap import start_profile_api
from rapport_profile.api.config import ProfileApiSettings
from rapport_profile.api.customer_view import CustomerLookup, ViewLimits
from rapport_profile.api.graph_reader import FoundCustomer

pytestmark = pytest.mark.unit

CID = "cus_0123456789abcdef"
ROW = {
    "id": CID,
    "merged_into": None,
    "attributes": {"language": "fr", "tier": "gold", "display_name": "Ana Lima"},
    "identities": [{"key": "email:ana@example.com", "kind": "email", "value": "ana@example.com", "verified": True,
                    "verification_method": "otp", "first_seen_at": None}],
    "devices": [],
    "open_cases": [],
    "channels": [{"channel": "voice", "count": 2, "first_at": datetime(2025, 1, 6, 9, tzinfo=UTC),
                  "last_at": datetime(2025, 1, 7, 9, tzinfo=UTC)}],
    "agents": [],
    "topics": [{"topic": "billing", "count": 2, "last_at": None}],
    "sentiments": [],
    "merges": [],
}  # fmt: skip


class OneCustomer:
    def __init__(self) -> None:
        self.lookups: list[CustomerLookup] = []

    def customer_view(self, lookup: CustomerLookup, limits: ViewLimits, timeout: float) -> FoundCustomer | None:
        self.lookups.append(lookup)
        if lookup.identity_key == "email:ana@example.com":
            return FoundCustomer(ROW, "cus_fedcba9876543210")  # type: ignore[arg-type]
        return None

    def resolve_identity(self, key, timeout):
        return None

    def merge_candidates(self, query, timeout):
        return []


@pytest.fixture
def address() -> Iterator[str]:
    running = start_profile_api(ProfileApiSettings(grpc=GrpcSettings(port=0, max_workers=2)), reader=OneCustomer())
    try:
        yield f"127.0.0.1:{running.port}"
    finally:
        running.stop(0)


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def group() -> None:
        pass

    cli.register(app)
    return app


@pytest.mark.parametrize(
    ("typed", "kind", "value", "platform"),
    [
        ("email:Ana@Example.com", events_pb2.IDENTIFIER_KIND_EMAIL, "Ana@Example.com", ""),
        ("ana@example.com", events_pb2.IDENTIFIER_KIND_EMAIL, "ana@example.com", ""),
        ("+44 7700 900123", events_pb2.IDENTIFIER_KIND_PHONE, "+44 7700 900123", ""),
        ("social:x/ana", events_pb2.IDENTIFIER_KIND_SOCIAL_HANDLE, "ana", "x"),
        ("crm:C-1:7", events_pb2.IDENTIFIER_KIND_CRM_ID, "C-1:7", ""),
    ],
)
def test_what_people_type_becomes_an_identifier(typed, kind, value, platform):
    request = cli.lookup_request(typed)
    assert request.WhichOneof("lookup") == "identifier"
    assert (request.identifier.kind, request.identifier.value, request.identifier.platform) == (kind, value, platform)


def test_a_customer_id_is_looked_up_as_an_id():
    assert cli.lookup_request(CID) == profile_pb2.GetCustomerRequest(customer_id=CID)


def test_the_view_prints_for_people(app: typer.Typer, address: str):
    result = CliRunner().invoke(app, ["customer", "email:ana@example.com", "--address", address])
    assert result.exit_code == 0, result.output
    assert "Ana Lima  " + CID in result.output
    assert "merged into this customer" in result.output
    assert "email:ana@example.com  strong, verified (otp)" in result.output
    assert "Top topics: billing (2)" in result.output
    assert "Effort: low 0/100 over 7 days (nothing unusual)" in result.output


def test_json_output_is_the_response(app: typer.Typer, address: str):
    result = CliRunner().invoke(app, ["customer", "ana@example.com", "--json", "--address", address])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["customer"]["customer_id"] == CID
    assert body["customer"]["channels"][0]["channel"] == "CHANNEL_VOICE"


def test_an_unknown_customer_exits_2_with_the_status(app: typer.Typer, address: str):
    result = CliRunner().invoke(app, ["customer", "email:nobody@example.com", "--address", address])
    assert result.exit_code == 2
    assert "NOT_FOUND" in result.output


def test_an_unknown_kind_is_a_usage_error(app: typer.Typer):
    result = CliRunner().invoke(app, ["customer", "passport:123"])
    assert result.exit_code == 2
    assert "unknown identifier kind" in result.output


def test_merges_show_the_merge_id_to_undo_them():
    view = profile_pb2.GetCustomerResponse()
    view.customer.customer_id = CID
    view.customer.merges.add(
        merge_id="mrg_00000000000000aa",
        survivor_customer_id=CID,
        absorbed_customer_id="cus_00000000000000b1",
        linking_identity_keys=["crm:C-1"],
        absorbed_interaction_count=3,
    ).merged_at.FromDatetime(datetime(2025, 1, 6, 9, tzinfo=UTC))
    view.customer.merges.add(
        merge_id="mrg_00000000000000bb",
        survivor_customer_id="cus_00000000000000b1",
        absorbed_customer_id="cus_00000000000000c2",
        absorbed_interaction_count=1,
    )
    lines = cli.render(view).splitlines()
    assert "rapport merges undo MERGE_ID" in lines[-3]
    assert (
        lines[-2]
        == "  mrg_00000000000000aa  2025-01-06 09:00  absorbed cus_00000000000000b1 via crm:C-1 (3 interactions)"
    )
    assert lines[-1] == (
        "  mrg_00000000000000bb  -  absorbed cus_00000000000000c2 into cus_00000000000000b1 via - (1 interactions)"
    )
