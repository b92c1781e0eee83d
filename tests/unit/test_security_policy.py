"""The role policy: the built-in grants, written out here as the contract, and policy files."""

import json
from pathlib import Path

import pytest

from rapport.security.policy import DEFAULT_POLICY, OPEN_METHODS, PLANNED_METHODS, Policy
from rapport.v1 import journeys_pb2, profile_pb2, router_pb2, timeline_pb2

pytestmark = pytest.mark.unit

P, T, R = "/rapport.v1.ProfileService/", "/rapport.v1.TimelineService/", "/rapport.v1.RouterService/"

# (role, method, allowed): the permission boundaries a security review asks about.
CONTRACT = [
    ("agent", T + "ListInteractions", True),
    ("agent", T + "WatchTimeline", True),
    ("agent", T + "GetHandoffContext", True),
    ("agent", P + "GetCustomer", True),
    ("agent", P + "ForgetCustomer", False),
    ("agent", P + "ListMergeCandidates", False),
    ("agent", P + "UnmergeCustomer", False),
    ("agent", R + "StreamOffers", True),
    ("agent", R + "CompleteContact", True),
    ("agent", R + "RouteContact", False),
    ("agent", R + "UpsertAgent", False),
    ("agent", R + "ListAgents", False),
    ("integrator", R + "RouteContact", True),
    ("integrator", R + "CancelContact", True),
    ("integrator", T + "GetHandoffContext", True),
    ("integrator", P + "ResolveIdentity", True),
    ("integrator", R + "AcceptOffer", False),
    ("integrator", R + "SetAgentStatus", False),
    ("integrator", P + "ListMergeCandidates", False),
    ("integrator", P + "ForgetCustomer", False),
    ("supervisor", P + "ListMergeCandidates", True),
    ("supervisor", P + "ApproveMergeCandidate", True),
    ("supervisor", P + "UnmergeCustomer", True),
    ("supervisor", R + "UpsertAgent", True),
    ("supervisor", R + "GetQueue", True),
    ("supervisor", T + "ListInteractions", True),
    ("supervisor", P + "ForgetCustomer", False),
    ("admin", P + "ForgetCustomer", True),
    ("admin", R + "UpsertAgent", True),
    ("admin", "/rapport.v2.SomethingNew/Method", True),
    ("nobody", T + "ListInteractions", False),
]


@pytest.mark.parametrize(("role", "method", "allowed"), CONTRACT)
def test_the_built_in_policy_grants_each_role_its_job_and_nothing_more(role: str, method: str, allowed: bool):
    assert DEFAULT_POLICY.allows({role}, method) is allowed


def test_a_caller_with_several_roles_gets_the_union():
    assert DEFAULT_POLICY.allows({"agent", "integrator"}, R + "RouteContact")
    assert DEFAULT_POLICY.allows({"agent", "integrator"}, R + "AcceptOffer")
    assert not DEFAULT_POLICY.allows(set(), T + "ListInteractions")


def test_health_and_reflection_are_open_and_nothing_else_is():
    assert DEFAULT_POLICY.is_open("/grpc.health.v1.Health/Check")
    assert DEFAULT_POLICY.is_open("/grpc.health.v1.Health/Watch")
    assert DEFAULT_POLICY.is_open("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
    assert not DEFAULT_POLICY.is_open(T + "ListInteractions")
    assert not DEFAULT_POLICY.is_open("/grpc.health.v1.HealthX/Check")
    assert len(OPEN_METHODS) == 3


def _contract_methods() -> set[str]:
    methods = set()
    for module, name in (
        (profile_pb2, "ProfileService"),
        (timeline_pb2, "TimelineService"),
        (router_pb2, "RouterService"),
        (journeys_pb2, "JourneyService"),
    ):
        service = module.DESCRIPTOR.services_by_name[name]
        methods |= {f"/{service.full_name}/{m.name}" for m in service.methods}
    return methods


def test_every_method_the_policy_names_exists_in_the_contracts_or_is_planned():
    known = _contract_methods()
    named = {p for patterns in DEFAULT_POLICY.roles.values() for p in patterns if "*" not in p}
    assert named - known <= PLANNED_METHODS, named - known - PLANNED_METHODS


# Erasure is irreversible: only admins, by design.
ADMIN_ONLY = {"/rapport.v1.ProfileService/ForgetCustomer"}


def test_every_contract_method_is_callable_by_admin_and_by_some_other_role_but_erasure():
    for method in _contract_methods():
        assert DEFAULT_POLICY.allows({"admin"}, method)
        others = [r for r in ("agent", "integrator", "supervisor") if DEFAULT_POLICY.allows({r}, method)]
        if method in ADMIN_ONLY:
            assert others == [], method
        else:
            assert others, method


def test_a_policy_file_replaces_the_built_in_grants(tmp_path: Path):
    path = tmp_path / "policy.json"
    path.write_text(json.dumps({"roles": {"wallboard": [R + "GetQueue"], "auditor": [T + "*"]}}))
    policy = Policy.from_file(str(path))
    assert policy.allows({"wallboard"}, R + "GetQueue")
    assert not policy.allows({"wallboard"}, R + "RouteContact")
    assert policy.allows({"auditor"}, T + "GetInteraction")
    assert not policy.allows({"admin"}, R + "GetQueue")  # not granted by this file


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"roles": {"agent": ["ListInteractions"]}}, "not a method pattern"),
        ({"roles": {"agent": ["/rapport.v1.TimelineService/List Interactions"]}}, "not a method pattern"),
        ({"roles": {"Agent!": ["*"]}}, "invalid role name"),
        ({"roles": {"agent": "*"}}, "must be a list"),
        ({"agent": ["*"]}, "policy must be"),
    ],
)
def test_a_bad_policy_file_is_refused(document: dict, message: str):
    with pytest.raises(ValueError, match=message):
        Policy.from_mapping(document)
