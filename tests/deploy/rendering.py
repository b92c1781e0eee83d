"""Rendering deploy/k8s offline and reading what came out: kustomize, Strimzi CRDs, env resolution."""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
CACHE = Path(os.environ.get("RAPPORT_TOOLS_CACHE", Path.home() / ".cache" / "rapport"))

# Pinned tools and schemas; `make deploy-tools` fetches them (see the Makefile).
KUSTOMIZE_VERSION = "v5.8.1"
KUBERNETES_VERSIONS = ("1.30.0", "1.35.0")  # the oldest Kubernetes Strimzi 0.51 supports, and a current one
STRIMZI_VERSION = "0.51.0"
STRIMZI_CRDS_JAR = CACHE / "strimzi" / f"api-{STRIMZI_VERSION}-tests.jar"
STRIMZI_CRDS_SHA256 = "b99f69303dc507ca505b74345d93f5260621bb084b8b79447f726e54b6e66a1d"

Obj = dict[str, Any]


class MissingTool(AssertionError):
    """A pinned tool or schema is not installed: the manifest tests fail rather than skip."""


def overlays() -> list[str]:
    return sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())


@functools.cache
def kustomize() -> str:
    cached = CACHE / "bin" / "kustomize"
    binary = str(cached) if cached.exists() else shutil.which("kustomize")
    if binary is None:
        raise MissingTool(f"kustomize not found in {cached.parent} or on PATH: run `make deploy-tools`")
    version = subprocess.run([binary, "version"], capture_output=True, text=True, check=True).stdout.strip()
    if KUSTOMIZE_VERSION not in version:
        raise MissingTool(
            f"{binary} is kustomize {version}, the tests pin {KUSTOMIZE_VERSION}: run `make deploy-tools`"
        )
    return binary


@functools.cache
def render(path: str) -> Rendered:
    """`kustomize build deploy/k8s/<path>`, parsed."""
    result = subprocess.run(
        [kustomize(), "build", str(K8S / path)], capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"kustomize build {path} failed:\n{result.stderr}")
    return Rendered(path, [d for d in yaml.safe_load_all(result.stdout) if d])


@dataclass
class Rendered:
    path: str
    objects: list[Obj]

    def of_kind(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]

    def find(self, kind: str, name: str) -> Obj | None:
        for o in self.of_kind(kind):
            if o["metadata"]["name"] == name:
                return o
        return None

    def get(self, kind: str, name: str) -> Obj:
        found = self.find(kind, name)
        assert found is not None, f"{self.path}: no {kind} {name}"
        return found

    def kustomization_text(self) -> str:
        return (K8S / self.path / "kustomization.yaml").read_text()


def pod_spec(workload: Obj) -> Obj:
    spec: Obj = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: Obj) -> list[Obj]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# -- environment ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvVar:
    name: str
    source: str  # "value", "configmap", "secret", "field"
    value: str | None  # None for secrets and fields: not known before the pod runs
    secret: tuple[str, str] | None = None  # (Secret name, key)
    optional: bool = False


def container_env(rendered: Rendered, container: Obj) -> list[EnvVar]:
    """Every variable the container gets, from envFrom and env, with ConfigMap values resolved.

    Fails when a ConfigMap reference (or a key in a rendered Secret) does not exist.
    """
    out: list[EnvVar] = []
    for source in container.get("envFrom", []):
        assert "prefix" not in source, "envFrom prefixes hide what a service reads"
        if "configMapRef" in source:
            ref = source["configMapRef"]
            cm = rendered.find("ConfigMap", ref["name"])
            assert cm is not None or ref.get("optional"), f"envFrom names a missing ConfigMap {ref['name']}"
            for key, value in (cm or {}).get("data", {}).items():
                out.append(EnvVar(key, "configmap", value))
        else:
            raise AssertionError(f"envFrom {source}: whole Secrets as environment hide which credentials a pod gets")
    for entry in container.get("env", []):
        name = entry["name"]
        if "value" in entry:
            out.append(EnvVar(name, "value", entry["value"]))
            continue
        value_from = entry["valueFrom"]
        if "configMapKeyRef" in value_from:
            ref = value_from["configMapKeyRef"]
            cm = rendered.get("ConfigMap", ref["name"])
            assert ref["key"] in cm.get("data", {}), f"{name}: ConfigMap {ref['name']} has no key {ref['key']}"
            out.append(EnvVar(name, "configmap", cm["data"][ref["key"]]))
        elif "secretKeyRef" in value_from:
            ref = value_from["secretKeyRef"]
            secret = rendered.find("Secret", ref["name"])
            if secret is not None:
                keys = {**secret.get("data", {}), **secret.get("stringData", {})}
                assert ref["key"] in keys, f"{name}: Secret {ref['name']} has no key {ref['key']}"
            out.append(EnvVar(name, "secret", None, (ref["name"], ref["key"]), bool(ref.get("optional"))))
        elif "fieldRef" in value_from or "resourceFieldRef" in value_from:
            out.append(EnvVar(name, "field", None))
        else:
            raise AssertionError(f"{name}: unexpected valueFrom {value_from}")
    return out


def secret_is_provided(rendered: Rendered, name: str) -> bool:
    """Rendered by the overlay, or named in its kustomization.yaml as one the operator creates."""
    return rendered.find("Secret", name) is not None or name in rendered.kustomization_text()


def runtime_env(rendered: Rendered, container: Obj) -> dict[str, str]:
    """What the process would see, as far as can be known offline (secrets get a stand-in value)."""
    env: dict[str, str] = {}
    for var in container_env(rendered, container):
        if var.source == "secret":
            assert var.secret is not None
            if var.optional and not secret_is_provided(rendered, var.secret[0]):
                continue  # an optional Secret nobody provides: the variable is absent
            env[var.name] = f"<secret {var.secret[0]}/{var.secret[1]}>"
        elif var.source == "field":
            env[var.name] = "<from the downward API>"
        else:
            assert var.value is not None
            env[var.name] = var.value
    return env


# -- Strimzi CRDs -----------------------------------------------------------------------------


@functools.cache
def strimzi_crds() -> dict[tuple[str, str, str], Obj]:
    """(group, version, kind) -> openAPIV3Schema, from the Strimzi API test jar on Maven Central."""
    if not STRIMZI_CRDS_JAR.exists():
        raise MissingTool(f"{STRIMZI_CRDS_JAR} is missing: run `make deploy-tools`")
    digest = hashlib.sha256(STRIMZI_CRDS_JAR.read_bytes()).hexdigest()
    if digest != STRIMZI_CRDS_SHA256:
        raise MissingTool(f"{STRIMZI_CRDS_JAR} has sha256 {digest}, expected {STRIMZI_CRDS_SHA256}")
    schemas: dict[tuple[str, str, str], Obj] = {}
    with zipfile.ZipFile(STRIMZI_CRDS_JAR) as jar:
        for entry in jar.namelist():
            if not (entry.startswith("crds/v1/") and entry.endswith(".yaml")):
                continue
            crd = yaml.safe_load(jar.read(entry))
            for version in crd["spec"]["versions"]:
                key = (crd["spec"]["group"], version["name"], crd["spec"]["names"]["kind"])
                schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas


def closed(schema: Any) -> Any:
    """The schema with unknown fields rejected, as `kubectl apply --validate=strict` does.

    Objects that declare properties and neither additionalProperties nor
    x-kubernetes-preserve-unknown-fields get additionalProperties: false.
    """
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: closed(v) for k, v in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for v in value.values():
            yield from walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from walk(v)
