"""The committed generated code must match protos/: a stale copy is caught."""

import importlib.util
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("protogen", ROOT / "protos" / "generate.py")
assert spec and spec.loader
protogen = importlib.util.module_from_spec(spec)
spec.loader.exec_module(protogen)


def test_committed_code_matches_the_protos():
    assert protogen.stale_files() == []


def test_a_proto_change_without_regeneration_is_detected(tmp_path: Path):
    protos = tmp_path / "protos"
    shutil.copytree(ROOT / "protos" / "rapport", protos / "rapport")
    events = protos / "rapport" / "v1" / "events.proto"
    events.write_text(events.read_text().replace("string source = 22;", "string source = 22;\n  string extra = 99;"))
    assert "events_pb2.py" in protogen.stale_files(proto_root=protos)


def test_generated_code_is_an_importable_package_with_stubs():
    from rapport.v1 import events_pb2

    assert events_pb2.InteractionEvent.DESCRIPTOR.full_name == "rapport.v1.InteractionEvent"
    assert (ROOT / "lib" / "rapport" / "v1" / "events_pb2.pyi").exists()
