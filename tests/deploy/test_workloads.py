"""The Deployments as the services need them: probes, limits, hardening, and exactly their settings."""

import re
from typing import Any

import pytest

from rapport.settings import GrpcSettings

from .catalogue import AUTOSCALED, JOBS, SERVICES, WORKLOADS, RapportService, find
from .env_reads import env_vars_read, load_settings, otel_variables
from .rendering import (
    Obj,
    Rendered,
    container_env,
    containers,
    labels_match,
    overlays,
    pod_spec,
    render,
    runtime_env,
    secret_is_provided,
)

pytestmark = pytest.mark.unit

OVERLAYS = overlays()
CASES = [pytest.param(o, s, id=f"{o}-{s.deployment}") for o in OVERLAYS for s in SERVICES]
GRPC_CASES = [pytest.param(o, s, id=f"{o}-{s.deployment}") for o in OVERLAYS for s in SERVICES if s.grpc]
WORKLOAD_CASES = [pytest.param(o, *w, id=f"{o}-{w[1]}") for o in OVERLAYS for w in WORKLOADS]
WILDCARD_HOSTS = {"0.0.0.0", "[::]", "::"}
CREDENTIAL = re.compile(r"PASSWORD|SECRET|TOKEN$|_KEY$")
FILE_SETTING = re.compile(r"(_FILE|_CAFILE|_CERTFILE|_KEYFILE)$")


def _workload(overlay: str, kind: str, name: str) -> tuple[Rendered, Obj, Obj]:
    rendered = render(f"overlays/{overlay}")
    workload = rendered.get(kind, name)
    return rendered, workload, pod_spec(workload)["containers"][0]


def _deployment(overlay: str, service: RapportService) -> tuple[Rendered, Obj, Obj]:
    return _workload(overlay, "Deployment", service.deployment)


def _settings(overlay: str, service: RapportService) -> list[object]:
    rendered, _, container = _deployment(overlay, service)
    return load_settings(service.entry, runtime_env(rendered, container))


def _cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def _bytes(quantity: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 1e3, "M": 1e6, "G": 1e9}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    return float(quantity)


@pytest.mark.parametrize(("overlay", "kind", "name", "entry"), WORKLOAD_CASES)
def test_the_workload_sets_exactly_the_variables_the_settings_read(overlay, kind, name, entry):
    rendered, _, container = _workload(overlay, kind, name)
    declared = container_env(rendered, container)
    names = [v.name for v in declared]
    assert len(names) == len(set(names)), f"declared twice: {sorted({n for n in names if names.count(n) > 1})}"

    read = env_vars_read(entry)
    rapport = {n for n in names if n.startswith("RAPPORT_")}
    missing, unread = sorted(read - rapport), sorted(rapport - read)
    assert not missing and not unread, (
        f"{kind} {name} ({overlay}): the settings read {missing or 'nothing more'} but the manifests do "
        f"not set them; the manifests set {unread or 'nothing more'} that no setting reads. Settings live in "
        "deploy/k8s/base/config/*.env, credentials in the workload's env (secretKeyRef)."
    )

    # Besides Rapport's settings: standard OTEL_* variables, and downward-API values that exist
    # only to be expanded into another variable.
    others = [v for v in declared if not v.name.startswith("RAPPORT_")]
    expanded = " ".join(str(v.value) for v in declared if v.source == "value")
    for var in others:
        if var.name.startswith("OTEL_"):
            assert var.name in otel_variables(), f"{var.name} is not a variable OpenTelemetry reads"
        else:
            assert var.source == "field" and f"$({var.name})" in expanded, f"{var.name} is read by nothing"


@pytest.mark.parametrize(("overlay", "service"), CASES)
def test_the_service_listens_beyond_loopback(overlay, service):
    listener = service.listener(_settings(overlay, service))
    assert listener.host in WILDCARD_HOSTS, f"listening on {listener.host}: unreachable from the kubelet and peers"


@pytest.mark.parametrize(("overlay", "service"), GRPC_CASES)
def test_grpc_servers_are_secured_or_explicitly_allowed_not_to_be(overlay, service):
    """What start_server enforces on a non-loopback address, checked before any pod starts."""
    (server,) = {g for g in find(_settings(overlay, service), GrpcSettings)}
    assert server.tls.enabled or server.tls.allow_plaintext, "no TLS files and plaintext not allowed"
    assert server.auth.enabled or server.auth.allow_anonymous, "no token check and anonymous calls not allowed"
    if overlay == "prod":
        assert server.auth.enabled and not server.auth.allow_anonymous, "prod checks every caller's token"


@pytest.mark.parametrize(("overlay", "kind", "name", "entry"), WORKLOAD_CASES)
def test_the_settings_accept_the_rendered_configuration(overlay, kind, name, entry):
    rendered, _, container = _workload(overlay, kind, name)
    assert load_settings(entry, runtime_env(rendered, container)), f"{entry}: no settings loader found"


@pytest.mark.parametrize(("overlay", "kind", "name", "entry"), WORKLOAD_CASES)
def test_credentials_come_only_from_secrets(overlay, kind, name, entry):
    rendered, _, container = _workload(overlay, kind, name)
    for var in container_env(rendered, container):
        if CREDENTIAL.search(var.name):
            assert var.source == "secret", f"{var.name} must come from a secretKeyRef, not {var.source}"
            assert var.secret is not None
            provided = secret_is_provided(rendered, var.secret[0])
            if not var.optional:
                assert provided, (
                    f"Secret {var.secret[0]} is neither generated nor named in overlays/{overlay}/kustomization.yaml"
                )
            else:
                assert not provided, f"{var.name}: {var.secret[0]} is provided here, so the reference must be required"
    for cm in rendered.of_kind("ConfigMap"):
        assert not [k for k in cm.get("data", {}) if CREDENTIAL.search(k)], f"credentials in ConfigMap {cm}"


@pytest.mark.parametrize(("overlay", "kind", "name", "entry"), WORKLOAD_CASES)
def test_every_file_a_setting_names_is_mounted(overlay, kind, name, entry):
    rendered, workload, container = _workload(overlay, kind, name)
    volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
    mounts = {m["mountPath"].rstrip("/"): volumes[m["name"]] for m in container.get("volumeMounts", [])}
    for name, value in runtime_env(rendered, container).items():
        if not FILE_SETTING.search(name) or not value:
            continue
        directory, _, filename = value.rpartition("/")
        assert directory in mounts, f"{name}={value}: nothing is mounted at {directory}"
        volume = mounts[directory]
        source = volume.get("secret") or volume.get("configMap")
        assert source is not None, f"{name}: {directory} should be a Secret or ConfigMap volume"
        items = source.get("items")
        if items is not None:
            assert filename in {i["path"] for i in items}, f"{name}: {filename} is not projected into {directory}"
        secret_name = source.get("secretName")
        if secret_name:
            assert secret_is_provided(rendered, secret_name), f"Secret {secret_name} is provided by nobody"


@pytest.mark.parametrize(("overlay", "service"), CASES)
def test_probes_and_ports_follow_the_settings(overlay, service):
    rendered, deployment, container = _deployment(overlay, service)
    listener = service.listener(_settings(overlay, service))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    kinds = ("startupProbe", "readinessProbe", "livenessProbe")
    assert all(kind in container for kind in kinds), "startup, readiness and liveness probes are all needed"
    probes: list[Obj] = [container[kind] for kind in kinds]
    if service.grpc:
        assert ports == {"grpc": listener.port}
        for probe in probes:
            assert probe["grpc"]["port"] == listener.port, "native gRPC probes on the service's own port"
            assert probe["grpc"].get("service", "") == ""  # the server-wide health status
        service_obj = rendered.get("Service", service.deployment)
        assert labels_match(service_obj["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"])
        (port,) = service_obj["spec"]["ports"]
        assert port["targetPort"] in (listener.port, "grpc")
        assert port.get("appProtocol") == "grpc"
    else:
        assert ports == {"health": listener.port}
        for probe in probes:
            assert probe["httpGet"]["port"] == listener.port
        assert {p["httpGet"]["path"] for p in probes} <= {"/live", "/ready", "/health"}
        assert container["readinessProbe"]["httpGet"]["path"] != "/live", "readiness must reflect the graph"


@pytest.mark.parametrize(("overlay", "service"), CASES)
def test_termination_grace_outlasts_the_drain(overlay, service):
    _, deployment, container = _deployment(overlay, service)
    listener = service.listener(_settings(overlay, service))
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    if service.grpc:
        assert pre_stop > 0, "a preStop pause lets endpoints drop the pod before it drains"
    assert pod_spec(deployment)["terminationGracePeriodSeconds"] > pre_stop + listener.drain


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_is_hardened(overlay):
    rendered = render(f"overlays/{overlay}")
    workloads = rendered.of_kind("Deployment") + rendered.of_kind("StatefulSet") + rendered.of_kind("Job")
    assert workloads
    for workload in workloads:
        name = f"{workload['kind']}/{workload['metadata']['name']}"
        spec = pod_spec(workload)
        assert spec.get("automountServiceAccountToken") is False, name
        assert spec.get("enableServiceLinks") is False, f"{name}: service links inject *_PORT variables"
        account = rendered.get("ServiceAccount", spec["serviceAccountName"])
        assert account.get("automountServiceAccountToken") is False, name
        pod_security = spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True, name
        assert pod_security.get("runAsUser", 1) != 0, name
        assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), name
        for container in containers(workload):
            where = f"{name} container {container['name']}"
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where
            assert not security.get("privileged"), where
            # The one documented exception: Neo4j's entrypoint writes its config at start.
            if container["name"] != "neo4j":
                assert security["readOnlyRootFilesystem"] is True, where
            resources = container["resources"]
            for kind in ("cpu", "memory"):
                request, limit = resources["requests"][kind], resources["limits"][kind]
                parse = _cpu if kind == "cpu" else _bytes
                assert parse(request) <= parse(limit), f"{where}: {kind} request above its limit"
            image = container["image"]
            assert re.search(r"(:[\w.-]+|@sha256:[0-9a-f]{64})$", image.rsplit("/", 1)[-1]), f"{where}: {image}"
            assert not image.endswith(":latest"), where


@pytest.mark.parametrize(("overlay", "kind", "name", "entry"), WORKLOAD_CASES)
def test_python_workloads_get_a_writable_tmp_and_read_only_mounts(overlay, kind, name, entry):
    _, workload, container = _workload(overlay, kind, name)
    volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    for path, volume in mounts.items():
        if "emptyDir" not in volumes[volume]:
            assert next(m for m in container["volumeMounts"] if m["mountPath"] == path).get("readOnly"), path


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_disruption_budgets_cover_every_deployment_and_never_block_drains(overlay):
    rendered = render(f"overlays/{overlay}")
    budgets = rendered.of_kind("PodDisruptionBudget")
    for deployment in rendered.of_kind("Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        covering = [b for b in budgets if labels_match(b["spec"]["selector"]["matchLabels"], labels)]
        assert len(covering) == 1, f"{deployment['metadata']['name']}: {len(covering)} budgets"
        assert covering[0]["spec"] == {"maxUnavailable": 1, "selector": covering[0]["spec"]["selector"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_router_and_timeline_scale_with_an_autoscaler_where_they_have_one(overlay):
    rendered = render(f"overlays/{overlay}")
    autoscalers = {h["spec"]["scaleTargetRef"]["name"]: h for h in rendered.of_kind("HorizontalPodAutoscaler")}
    assert set(autoscalers) <= set(AUTOSCALED)
    for name in AUTOSCALED:
        deployment = rendered.get("Deployment", name)
        if name in autoscalers:
            hpa = autoscalers[name]
            assert "replicas" not in deployment["spec"], f"{name}: the autoscaler owns replicas"
            assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
            # Utilization targets are relative to requests, which must exist.
            assert pod_spec(deployment)["containers"][0]["resources"]["requests"]["cpu"]
        else:
            assert deployment["spec"].get("replicas", 1) == 1


def test_prod_autoscales_router_and_timeline_and_dev_runs_one_of_each():
    assert {
        h["spec"]["scaleTargetRef"]["name"] for h in render("overlays/prod").of_kind("HorizontalPodAutoscaler")
    } == (set(AUTOSCALED))
    dev = render("overlays/dev")
    assert not dev.of_kind("HorizontalPodAutoscaler")
    for service in SERVICES:
        assert dev.get("Deployment", service.deployment)["spec"].get("replicas", 1) == 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_profile_workers_never_outnumber_the_partitions(overlay):
    rendered = render(f"overlays/{overlay}")
    worker = next(s for s in SERVICES if not s.grpc)
    settings = _settings(overlay, worker)
    (partitions,) = {s.interactions_partitions for s in _kafka(settings)}
    replicas = rendered.get("Deployment", worker.deployment)["spec"]["replicas"]
    assert 1 <= replicas <= partitions
    strategy = rendered.get("Deployment", worker.deployment)["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxSurge"] == 0, "a surge would add a consumer with nothing to consume"
    if overlay == "prod":
        assert replicas == partitions


def test_prod_spreads_every_deployment_over_zones_and_nodes():
    for deployment in render("overlays/prod").of_kind("Deployment"):
        spec = pod_spec(deployment)
        own = deployment["spec"]["selector"]["matchLabels"]
        keys = {c["topologyKey"] for c in spec["topologySpreadConstraints"] if c["labelSelector"]["matchLabels"] == own}
        assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}, deployment["metadata"]["name"]
        terms = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        assert any(t["podAffinityTerm"]["labelSelector"]["matchLabels"] == own for t in terms)


def _kafka(settings: list[object]) -> list[Any]:
    from rapport.settings import KafkaSettings

    return find(settings, KafkaSettings)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_jobs_run_their_module_from_a_rapport_image_and_retry(overlay):
    rendered = render(f"overlays/{overlay}")
    for job in JOBS:
        spec = rendered.get("Job", job.name)["spec"]
        (container,) = spec["template"]["spec"]["containers"]
        assert container["command"] == ["/opt/rapport/bin/python", "-m", job.entry]
        worker = rendered.get("Deployment", next(s.deployment for s in SERVICES if s.target == job.image_target))
        assert container["image"] == pod_spec(worker)["containers"][0]["image"], "the same build as the services"
        assert spec["template"]["spec"]["restartPolicy"] == "OnFailure" and spec["backoffLimit"] >= 5
        assert spec["ttlSecondsAfterFinished"] > 0, "finished Jobs make way for the next apply"
