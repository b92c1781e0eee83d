"""The components: Kafka (Strimzi) and its topics, Neo4j, the collector, network policies."""

import base64
import re
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from rapport.settings import KafkaSettings
from rapport.topics import topic_specs

from .catalogue import SERVICES
from .env_reads import otel_variables
from .rendering import Rendered, container_env, containers, labels_match, overlays, pod_spec, render, runtime_env

pytestmark = pytest.mark.unit

OVERLAYS = overlays()


def _with(kind: str) -> list[str]:
    return [o for o in OVERLAYS if render(f"overlays/{o}").of_kind(kind)]


def _service_env(rendered: Rendered, deployment: str) -> dict[str, str]:
    return runtime_env(rendered, pod_spec(rendered.get("Deployment", deployment))["containers"][0])


def _config_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


# -- Kafka ------------------------------------------------------------------------------------


def test_dev_runs_kafka_and_neo4j_in_cluster_and_prod_does_not():
    assert "dev" in _with("Kafka") and "dev" in _with("StatefulSet")
    prod = render("overlays/prod")
    assert not prod.of_kind("Kafka") and not prod.of_kind("StatefulSet")
    env = _service_env(prod, "rapport-router")
    assert env["RAPPORT_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert urlsplit(env["RAPPORT_NEO4J_URI"]).scheme == "neo4j+s"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_endpoint_is_left_at_its_placeholder(overlay):
    rendered = render(f"overlays/{overlay}")
    for cm in rendered.of_kind("ConfigMap"):
        for key, value in cm.get("data", {}).items():
            assert ".invalid" not in value, f"{cm['metadata']['name']} {key}={value}: set it in the overlay"


@pytest.mark.parametrize("overlay", _with("KafkaTopic"))
def test_kafka_topics_are_the_ones_the_code_provisions(overlay):
    """Names from the rendered settings; partitions and configs from rapport.topics."""
    rendered = render(f"overlays/{overlay}")
    kafka = KafkaSettings.from_env(_service_env(rendered, "rapport-profile-worker"))
    expected = {spec.name: spec for spec in topic_specs(kafka)}
    topics = {t["spec"]["topicName"]: t for t in rendered.of_kind("KafkaTopic")}
    assert set(topics) == set(expected)
    for name, spec in expected.items():
        topic = topics[name]["spec"]
        assert topic["partitions"] == spec.num_partitions, name
        for key, value in (spec.topic_configs or {}).items():
            assert _config_value(topic["config"][key]) == str(value), f"{name} {key}"
    # The worker replicas are sized from the same number.
    assert topics[kafka.interactions_topic]["spec"]["partitions"] == kafka.interactions_partitions


@pytest.mark.parametrize("overlay", _with("Kafka"))
def test_kafka_runs_in_kraft_mode_with_node_pools_and_durable_replication(overlay):
    rendered = render(f"overlays/{overlay}")
    (kafka,) = rendered.of_kind("Kafka")
    cluster = kafka["metadata"]["name"]
    assert "zookeeper" not in kafka["spec"]
    pools = [p for p in rendered.of_kind("KafkaNodePool") if p["metadata"]["labels"]["strimzi.io/cluster"] == cluster]
    roles = {r for p in pools for r in p["spec"]["roles"]}
    assert roles == {"controller", "broker"}
    brokers = sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"])
    config = kafka["spec"]["kafka"]["config"]
    assert config["min.insync.replicas"] <= config["default.replication.factor"] <= brokers
    assert config["min.insync.replicas"] == (2 if brokers >= 3 else 1)
    for topic in rendered.of_kind("KafkaTopic"):
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == cluster
        replicas = topic["spec"]["replicas"]
        assert replicas <= brokers
        assert topic["spec"]["config"]["min.insync.replicas"] == (2 if replicas >= 3 else 1)

    # The services' bootstrap points at the listener Strimzi creates for this cluster.
    (listener,) = [li for li in kafka["spec"]["kafka"]["listeners"] if not li["tls"]]
    for service in SERVICES:
        env = _service_env(rendered, service.deployment)
        if "RAPPORT_KAFKA_BOOTSTRAP" in env:
            assert env["RAPPORT_KAFKA_BOOTSTRAP"] == f"{cluster}-kafka-bootstrap:{listener['port']}"
            assert env["RAPPORT_KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT"
    # Only Rapport's pods reach the brokers.
    peers = listener["networkPolicyPeers"]
    assert peers == [{"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "rapport"}}}]


# -- Neo4j ------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", _with("StatefulSet"))
def test_neo4j_is_the_pinned_community_lts_with_its_password_from_the_secret_the_services_use(overlay):
    rendered = render(f"overlays/{overlay}")
    statefulset = rendered.get("StatefulSet", "rapport-neo4j")
    (container,) = pod_spec(statefulset)["containers"]
    assert re.fullmatch(r"docker\.io/library/neo4j:5\.26\.\d+-community", container["image"])
    auth = next(v for v in container_env(rendered, container) if v.name == "NEO4J_AUTH")
    assert auth.source == "secret" and auth.secret is not None
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert {m["mountPath"]: m["name"] for m in container["volumeMounts"]}["/data"] == "data"

    service = rendered.get("Service", "rapport-neo4j")
    bolt = next(p for p in service["spec"]["ports"] if p["name"] == "bolt")
    users = set()
    for svc in SERVICES:
        env = _service_env(rendered, svc.deployment)
        uri = urlsplit(env["RAPPORT_NEO4J_URI"])
        assert (uri.hostname, uri.port) == ("rapport-neo4j", bolt["port"])
        password = next(
            v
            for v in container_env(rendered, pod_spec(rendered.get("Deployment", svc.deployment))["containers"][0])
            if v.name == "RAPPORT_NEO4J_PASSWORD"
        )
        assert password.secret is not None and password.secret[0] == auth.secret[0]
        users.add(env["RAPPORT_NEO4J_USER"])
    # Both keys of the Secret carry the same password.
    secret = rendered.get("Secret", auth.secret[0])
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    (user,) = users
    assert data["NEO4J_AUTH"] == f"{user}/{data['password']}"


# -- OpenTelemetry ----------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", _with("Deployment"))
def test_every_service_exports_to_the_collector_through_standard_variables(overlay):
    rendered = render(f"overlays/{overlay}")
    collector = rendered.find("Deployment", "rapport-otel-collector")
    assert collector is not None, f"{overlay} has no collector"
    service = rendered.get("Service", "rapport-otel-collector")
    grpc_port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "otlp-grpc")
    for svc in SERVICES:
        env = _service_env(rendered, svc.deployment)
        otel = {k: v for k, v in env.items() if k.startswith("OTEL_")}
        assert set(otel) <= otel_variables()
        endpoint = urlsplit(otel["OTEL_EXPORTER_OTLP_ENDPOINT"])
        assert (endpoint.hostname, endpoint.port) == ("rapport-otel-collector", grpc_port)
        assert otel["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
        assert otel["OTEL_TRACES_EXPORTER"] == otel["OTEL_METRICS_EXPORTER"] == "otlp"
        assert otel["OTEL_TRACES_SAMPLER"].startswith("parentbased_"), "consumers follow the producer's decision"
        attributes = dict(pair.split("=", 1) for pair in otel["OTEL_RESOURCE_ATTRIBUTES"].split(","))
        assert {"k8s.pod.name", "k8s.namespace.name"} <= set(attributes)


@pytest.mark.parametrize("overlay", _with("Deployment"))
def test_the_collector_config_is_coherent(overlay):
    rendered = render(f"overlays/{overlay}")
    collector = rendered.get("Deployment", "rapport-otel-collector")
    (container,) = containers(collector)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volume = next(v for v in pod_spec(collector)["volumes"] if v["name"] == "config")
    config_map = rendered.get("ConfigMap", volume["configMap"]["name"])
    (filename,) = config_map["data"]
    assert f"--config={mounts['config']}/{filename}" in container["args"]
    config = yaml.safe_load(config_map["data"][filename])

    pipelines = config["service"]["pipelines"]
    assert {"traces", "metrics"} <= set(pipelines)
    for name, pipeline in pipelines.items():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in config[kind], f"{name} uses undefined {kind[:-1]} {component}"
        assert pipeline["processors"][0] == "memory_limiter", f"{name}: memory_limiter must come first"
    for extension in config["service"].get("extensions", []):
        assert extension in config["extensions"]

    # Ports: receiver endpoints, container ports, Service ports and probes agree.
    container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    grpc_endpoint = config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert int(grpc_endpoint.rsplit(":", 1)[1]) == container_ports["otlp-grpc"]
    health = int(config["extensions"]["health_check"]["endpoint"].rsplit(":", 1)[1])
    assert container_ports["health"] == health
    assert container["readinessProbe"]["httpGet"]["port"] in ("health", health)
    service = rendered.get("Service", "rapport-otel-collector")
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in container_ports


# -- Network policies -------------------------------------------------------------------------


def _admits(policy: dict[str, Any], pod_labels: dict[str, str], port: int, from_labels: dict[str, str]) -> bool:
    if not labels_match(policy["spec"]["podSelector"].get("matchLabels", {}), pod_labels):
        return False
    for rule in policy["spec"].get("ingress", []):
        ports = [p["port"] for p in rule.get("ports", [])]
        if ports and port not in ports:
            continue
        sources = rule.get("from")
        if not sources or any(
            "podSelector" in s and labels_match(s["podSelector"].get("matchLabels", {}), from_labels) for s in sources
        ):
            return True
    return False


@pytest.mark.parametrize("overlay", _with("NetworkPolicy"))
def test_network_policies_deny_by_default_and_admit_what_is_needed(overlay):
    rendered = render(f"overlays/{overlay}")
    policies = rendered.of_kind("NetworkPolicy")
    assert any(p["spec"]["podSelector"] == {} and "ingress" not in p["spec"] for p in policies), "no default deny"
    rapport_pod = {"app.kubernetes.io/part-of": "rapport"}
    stranger = {"app": "something-else"}

    def admitted(labels: dict[str, str], port: int, source: dict[str, str]) -> bool:
        return any(_admits(p, labels, port, source) for p in policies)

    for svc in SERVICES:
        deployment = rendered.get("Deployment", svc.deployment)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        for port in pod_spec(deployment)["containers"][0]["ports"]:
            if svc.grpc:
                assert admitted(labels, port["containerPort"], stranger), f"{svc.deployment}: callers shut out"
            else:
                assert not admitted(labels, port["containerPort"], rapport_pod), "the worker takes no calls"
    for name, port in (("rapport-neo4j", 7687), ("rapport-otel-collector", 4317)):
        workload = rendered.find("StatefulSet", name) or rendered.find("Deployment", name)
        if workload is None:
            continue
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert admitted(labels, port, rapport_pod), f"{name}: Rapport's pods shut out"
        assert not admitted(labels, port, stranger), f"{name}: open to any pod"
