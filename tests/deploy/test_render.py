"""Every overlay renders with the pinned kustomize and validates against pinned schemas."""

import jsonschema
import kubernetes_validate
import pytest

from .rendering import KUBERNETES_VERSIONS, Obj, closed, overlays, render, strimzi_crds

pytestmark = pytest.mark.unit

TARGETS = ["base", *(f"overlays/{name}" for name in overlays())]


def _custom(obj: Obj) -> bool:
    group = obj["apiVersion"].rpartition("/")[0]
    return "." in group and not group.endswith(".k8s.io")


def test_there_are_dev_and_prod_overlays():
    assert {"dev", "prod"} <= set(overlays())


@pytest.mark.parametrize("target", TARGETS)
def test_renders_uniquely_named_objects(target):
    objects = render(target).objects
    assert objects
    ids = [(o["apiVersion"], o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("target", [t for t in TARGETS if t != "base"])
def test_every_object_lands_in_the_overlay_namespace(target):
    namespaces = {o["metadata"].get("namespace") for o in render(target).objects}
    assert len(namespaces) == 1
    assert None not in namespaces


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("target", TARGETS)
def test_core_objects_validate_against_the_pinned_kubernetes_schema(target, version):
    failures = []
    for obj in render(target).objects:
        if _custom(obj):
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("target", TARGETS)
def test_custom_resources_validate_against_their_crds(target):
    crds = strimzi_crds()
    custom = [o for o in render(target).objects if _custom(o)]
    failures = []
    for obj in custom:
        group, _, version = obj["apiVersion"].rpartition("/")
        schema = crds.get((group, version, obj["kind"]))
        if schema is None:
            failures.append(f"{obj['apiVersion']} {obj['kind']}: no CRD schema to check it against")
            continue
        validator = jsonschema.Draft7Validator(closed(schema))
        for error in validator.iter_errors(obj):
            path = ".".join(str(p) for p in error.absolute_path)
            failures.append(f"{obj['kind']}/{obj['metadata']['name']} {path}: {error.message}")
    assert not failures, "\n".join(failures)


def test_the_crd_check_rejects_a_misspelt_field():
    """The strict CRD check is not vacuous: a typo in a KafkaTopic is caught."""
    schema = closed(strimzi_crds()[("kafka.strimzi.io", "v1", "KafkaTopic")])
    topic = {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaTopic",
        "metadata": {"name": "t"},
        "spec": {"partitons": 6, "replicas": 1},
    }
    assert not jsonschema.Draft7Validator(schema).is_valid(topic)
    topic["spec"] = {"partitions": 6, "replicas": 1}
    assert jsonschema.Draft7Validator(schema).is_valid(topic)
