"""The ProfileService servicer through a real gRPC server, with a fake graph reader."""

from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rapport.errors import Unavailable
from rapport.settings import GrpcSettings
from rapport.v1 import events_pb2, profile_pb2, profile_pb2_grpc
from rapport_profile.api.bootstrap import SERVICE_NAME, start_profile_api
from rapport_profile.api.candidate_pages import CandidateQuery
from rapport_profile.api.config import ProfileApiSettings
from rapport_profile.api.customer_view import CustomerLookup, ViewLimits
from rapport_profile.api.graph_reader import FoundCustomer, FoundIdentity

pytestmark = pytest.mark.unit

CID = "cus_0123456789abcdef"


@dataclass
class FakeReader:
    customers: dict[str, FoundCustomer] = field(default_factory=dict)
    timeouts: list[float] = field(default_factory=list)
    down: bool = False

    def customer_view(self, lookup: CustomerLookup, limits: ViewLimits, timeout: float) -> FoundCustomer | None:
        self.timeouts.append(timeout)
        if self.down:
            raise Unavailable("customer graph unavailable: ServiceUnavailable")
        return self.customers.get(lookup.customer_id or lookup.identity_key or "")

    def resolve_identity(self, key: str, timeout: float) -> FoundIdentity | None:
        self.timeouts.append(timeout)
        return None

    def merge_candidates(self, query: CandidateQuery, timeout: float) -> list:
        self.timeouts.append(timeout)
        return []


@pytest.fixture
def reader() -> FakeReader:
    return FakeReader()


@pytest.fixture
def channel(reader: FakeReader) -> Iterator[grpc.Channel]:
    settings = ProfileApiSettings(grpc=GrpcSettings(port=0, max_workers=2))
    running = start_profile_api(settings, reader=reader)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield channel
    finally:
        running.stop(0)


def test_health_reports_the_profile_service_serving(channel: grpc.Channel):
    health = health_pb2_grpc.HealthStub(channel)
    reply = health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_a_malformed_identifier_is_invalid_argument_naming_the_field(channel: grpc.Channel, reader: FakeReader):
    stub = profile_pb2_grpc.ProfileServiceStub(channel)
    bad = events_pb2.Identifier(kind=events_pb2.IDENTIFIER_KIND_EMAIL, value="not-an-email")
    with pytest.raises(grpc.RpcError) as raised:
        stub.ResolveIdentity(profile_pb2.ResolveIdentityRequest(identifier=bad), timeout=5)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith("identifier.value: ")
    assert reader.timeouts == []  # rejected before the graph is read


def test_an_unknown_customer_is_not_found(channel: grpc.Channel):
    stub = profile_pb2_grpc.ProfileServiceStub(channel)
    with pytest.raises(grpc.RpcError) as raised:
        stub.GetCustomer(profile_pb2.GetCustomerRequest(customer_id=CID), timeout=5)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert CID in (raised.value.details() or "")


def test_the_graph_read_gets_less_time_than_the_call_has(channel: grpc.Channel, reader: FakeReader):
    reader.down = True
    stub = profile_pb2_grpc.ProfileServiceStub(channel)
    with pytest.raises(grpc.RpcError) as raised:
        stub.GetCustomer(profile_pb2.GetCustomerRequest(customer_id=CID), timeout=2)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    (budget,) = reader.timeouts
    assert 0 < budget < 2


def test_a_call_without_deadline_reads_within_the_configured_timeout(channel: grpc.Channel, reader: FakeReader):
    stub = profile_pb2_grpc.ProfileServiceStub(channel)
    stub.ListMergeCandidates(profile_pb2.ListMergeCandidatesRequest())
    assert reader.timeouts == [ProfileApiSettings().neo4j.timeout]
