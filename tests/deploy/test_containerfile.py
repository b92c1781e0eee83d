"""deploy/images/Containerfile, read without a container engine: stages, user, ports, entrypoints."""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .catalogue import SERVICES
from .env_reads import load_settings, module_exists
from .rendering import ROOT, overlays, pod_spec, render

pytestmark = pytest.mark.unit

CONTAINERFILE = ROOT / "deploy" / "images" / "Containerfile"
PINNED_PYTHON = re.compile(r"^(docker\.io/library/)?python:3\.11\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?$")


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the file ends inside a continued line"

    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            assert match, line
            stages.append(Stage(match[2] or str(len(stages)), match[1]))
        elif not stages:
            assert keyword == "ARG", f"only ARG may precede the first FROM: {line}"
            name, _, default = rest.partition("=")
            args[name] = default
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


ARGS, STAGES = parse(CONTAINERFILE)
BY_NAME = {s.name: s for s in STAGES}


def _chain(stage: Stage) -> list[Stage]:
    """The stage and the stages it is built FROM, nearest first."""
    chain = [stage]
    while chain[-1].base in BY_NAME:
        chain.append(BY_NAME[chain[-1].base])
    return chain


def _effective(stage: Stage, keyword: str) -> str | None:
    for s in _chain(stage):
        found = s.all(keyword)
        if found:
            return found[-1]
    return None


def test_the_base_image_is_an_exact_python_3_11_slim_release():
    bases = {s.base for s in STAGES if s.base not in BY_NAME}
    assert bases == {"${PYTHON_IMAGE}"}, "every stage starts from the one pinned base"
    assert PINNED_PYTHON.match(ARGS["PYTHON_IMAGE"]), ARGS["PYTHON_IMAGE"]


def test_dependencies_are_installed_from_the_lock_in_a_build_stage_only():
    build = BY_NAME["build"]
    runs = " ".join(build.all("RUN"))
    assert "uv sync --locked --no-dev --no-install-project" in runs
    assert "--no-editable" in runs
    assert re.search(r"uv==\$\{UV_VERSION\}", runs) and re.fullmatch(r"UV_VERSION=\d+\.\d+\.\d+", build.all("ARG")[0])
    copied = [c.split()[:-1] for c in build.all("COPY")]
    assert ["pyproject.toml", "uv.lock"] in copied, "the lock is copied before the sources, for layer caching"
    runtime = BY_NAME["runtime"]
    assert not any("pip install" in r or "uv " in r for r in runtime.all("RUN"))
    # The runtime takes the virtualenv from the build stage and nothing from the build context.
    assert [c for c in runtime.all("COPY") if not c.startswith("--from=build ")] == []


def test_the_uv_version_matches_the_makefile():
    makefile = (ROOT / "Makefile").read_text()
    uv = re.search(r"^UV_VERSION\s*:=\s*(\S+)", makefile, re.MULTILINE)
    assert uv is not None
    assert BY_NAME["build"].all("ARG")[0] == f"UV_VERSION={uv[1]}"


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.target)
def test_each_service_target_runs_unprivileged_on_its_settings_port(service):
    stage = BY_NAME[service.target]
    assert "runtime" in [s.name for s in _chain(stage)], "targets build on the shared runtime stage"
    user = _effective(stage, "USER")
    assert user is not None
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "a numeric non-root user, so runAsNonRoot can verify it"

    entrypoint = json.loads(_effective(stage, "ENTRYPOINT") or "[]")
    assert entrypoint == ["/opt/rapport/bin/python", "-m", service.entry]

    # The port the service listens on by default (its settings with an empty environment).
    if not module_exists(service.entry):
        pytest.fail(f"{service.entry} does not exist")
    listener = service.listener(load_settings(service.entry, {}))
    assert [int(p.split("/")[0]) for p in stage.all("EXPOSE")] == [listener.port]


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.target)
def test_the_manifests_run_the_image_as_its_own_user(service):
    uid = int((_effective(BY_NAME[service.target], "USER") or "").split(":")[0])
    for overlay in overlays():
        deployment = render(f"overlays/{overlay}").get("Deployment", service.deployment)
        spec = pod_spec(deployment)
        assert spec["securityContext"]["runAsUser"] == uid
        assert spec["containers"][0]["image"].split("@")[0].rsplit(":", 1)[0].endswith(f"rapport/{service.target}")


def test_the_working_directory_is_the_volume_the_worker_writes_to():
    workdir = _effective(BY_NAME["runtime"], "WORKDIR")
    worker = next(s for s in SERVICES if not s.grpc)
    for overlay in overlays():
        container = pod_spec(render(f"overlays/{overlay}").get("Deployment", worker.deployment))["containers"][0]
        assert workdir in {m["mountPath"] for m in container["volumeMounts"]}


def test_the_build_context_excludes_everything_the_recipe_does_not_copy():
    text = (CONTAINERFILE.parent / "Containerfile.dockerignore").read_text()
    ignore = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert ignore[0] == "**", "everything is excluded first, then what the recipe copies is let back in"
    allowed = {line[1:] for line in ignore if line.startswith("!")}
    for stage in STAGES:
        for copy in stage.all("COPY"):
            if copy.startswith("--from="):
                continue
            for source in copy.split()[:-1]:
                assert source in allowed or f"{source.rstrip('/')}/**" in allowed, source
