"""Who may call what: roles mapped to fully-qualified gRPC method patterns.

A pattern is a method path as gRPC sends it, `/package.Service/Method`, where `*` matches any
run of characters: `/rapport.v1.TimelineService/*` is every timeline method, `*` everything.
A caller may call a method when any of its roles has a matching pattern; nothing is granted
otherwise, so a method added to a contract is admin-only until the policy names it.

The built-in policy follows the jobs of Rapport's callers:

* agent       an agent's desktop: the customer's view and timeline, its own status and offers,
              completing its contacts;
* integrator  an IVR, bot, chat widget or CRM: route and track contacts, identify the
              customer, read the timeline and hand-off context so nobody repeats themselves;
* supervisor  a team lead: what an agent may do, plus the agent roster, queue, contact
              cancellation, the merge review list (approve, reject, unmerge) and the journey
              report;
* admin       everything, including erasure (ForgetCustomer) and anything new.

A deployment replaces it with RAPPORT_AUTH_POLICY_FILE, a JSON object of the same shape as
`DEFAULT_POLICY.roles`: `{"roles": {"agent": ["/rapport.v1.TimelineService/*", ...], ...}}`.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

# Probes and tooling work without a token.
OPEN_METHODS = (
    "/grpc.health.v1.Health/*",
    "/grpc.reflection.v1alpha.ServerReflection/*",
    "/grpc.reflection.v1.ServerReflection/*",
)

_PATTERN = re.compile(r"^(\*|/[A-Za-z0-9_.*]+/[A-Za-z0-9_*]+)$")
_ROLE = re.compile(r"^[a-z][a-z0-9_\-]{0,63}$")

PROFILE = "/rapport.v1.ProfileService/"
TIMELINE = "/rapport.v1.TimelineService/"
ROUTER = "/rapport.v1.RouterService/"
JOURNEYS = "/rapport.v1.JourneyService/"

_READ_CUSTOMER = (PROFILE + "GetCustomer", PROFILE + "ResolveIdentity", TIMELINE + "*")
_AGENT_DESKTOP = (
    ROUTER + "GetAgent",
    ROUTER + "SetAgentStatus",
    ROUTER + "StreamOffers",
    ROUTER + "AcceptOffer",
    ROUTER + "RejectOffer",
    ROUTER + "GetContact",
    ROUTER + "CompleteContact",
)
_CONTACT_INTAKE = (
    ROUTER + "RouteContact",
    ROUTER + "GetContact",
    ROUTER + "CancelContact",
    ROUTER + "GetQueue",
)
_TEAM_LEAD = (
    ROUTER + "UpsertAgent",
    ROUTER + "ListAgents",
    ROUTER + "GetQueue",
    ROUTER + "CancelContact",
    PROFILE + "ListMergeCandidates",
    PROFILE + "ApproveMergeCandidate",
    PROFILE + "RejectMergeCandidate",
    PROFILE + "UnmergeCustomer",
    JOURNEYS + "GetJourneyReport",
)


@dataclass(frozen=True)
class Policy:
    roles: Mapping[str, tuple[str, ...]]
    open_methods: tuple[str, ...] = OPEN_METHODS
    _cache: dict[tuple[frozenset[str], str], bool] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for role, patterns in self.roles.items():
            if not _ROLE.match(role):
                raise ValueError(f"policy: invalid role name {role!r}")
            for pattern in patterns:
                if not _PATTERN.match(pattern):
                    raise ValueError(
                        f"policy: role {role}: {pattern!r} is not a method pattern like /rapport.v1.Service/Method"
                    )

    def is_open(self, method: str) -> bool:
        return _matches_any(self.open_methods, method)

    def allows(self, roles: Iterable[str], method: str) -> bool:
        key = (frozenset(roles), method)
        allowed = self._cache.get(key)
        if allowed is None:
            allowed = any(_matches_any(self.roles.get(role, ()), method) for role in key[0])
            if len(self._cache) < 10_000:  # bounded: method names come from the registered services
                self._cache[key] = allowed
        return allowed

    @classmethod
    def from_mapping(cls, data: object) -> Policy:
        roles = data.get("roles") if isinstance(data, dict) else None
        if not isinstance(roles, dict):
            raise ValueError('policy must be {"roles": {"role": ["/package.Service/Method", ...]}}')
        parsed: dict[str, tuple[str, ...]] = {}
        for role, patterns in roles.items():
            if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
                raise ValueError(f"policy: role {role}: patterns must be a list of strings")
            parsed[role] = tuple(patterns)
        return cls(parsed)

    @classmethod
    def from_file(cls, path: str) -> Policy:
        with open(path, "rb") as f:
            try:
                data = json.load(f)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ValueError(f"policy file {path} is not JSON: {exc}") from None
        return cls.from_mapping(data)


@functools.lru_cache(maxsize=4096)
def _matches(pattern: str, method: str) -> bool:
    return fnmatchcase(method, pattern)


def _matches_any(patterns: Iterable[str], method: str) -> bool:
    return any(_matches(p, method) for p in patterns)


DEFAULT_POLICY = Policy(
    {
        "agent": (*_READ_CUSTOMER, *_AGENT_DESKTOP),
        "integrator": (*_READ_CUSTOMER, *_CONTACT_INTAKE),
        "supervisor": (*_READ_CUSTOMER, *_AGENT_DESKTOP, *_TEAM_LEAD),
        "admin": ("*",),
    }
)

# Named by the policy before their contracts exist (issue 11: merges and erasure).
PLANNED_METHODS = frozenset(
    {
        PROFILE + "ApproveMergeCandidate",
        PROFILE + "RejectMergeCandidate",
        PROFILE + "UnmergeCustomer",
    }
)
