"""Generate the Python contracts in lib/rapport/v1 from protos/rapport/v1, or check they match.

python protos/generate.py          # regenerate
python protos/generate.py --check  # exit 1 when the committed code is stale
"""

from __future__ import annotations

import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent
LIB_ROOT = PROTO_ROOT.parent / "lib"
PACKAGE = Path("rapport") / "v1"
# mypy-protobuf's plugins sit beside the interpreter in the virtualenv.
BIN = Path(sys.executable).parent
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def generate(out: Path, proto_root: Path = PROTO_ROOT) -> list[Path]:
    protos = sorted((proto_root / PACKAGE).glob("*.proto"))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    (out / PACKAGE).mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{proto_root}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        f"--plugin=protoc-gen-mypy={BIN / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={BIN / 'protoc-gen-mypy_grpc'}",
        *(str(p.relative_to(proto_root)) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    (out / PACKAGE / "__init__.py").write_text('"""Generated from protos/rapport/v1. Do not edit."""\n')
    return sorted(p for p in (out / PACKAGE).iterdir() if p.name.endswith(GENERATED_SUFFIXES))


def stale_files(proto_root: Path = PROTO_ROOT, lib_root: Path = LIB_ROOT) -> list[str]:
    """Names of generated files that differ from, or are missing in, lib_root."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.name: p for p in generate(Path(tmp), proto_root)}
        committed = {p.name: p for p in (lib_root / PACKAGE).glob("*") if p.name.endswith(GENERATED_SUFFIXES)}
        names = sorted(set(fresh) | set(committed))
        return [
            n
            for n in names
            if n not in fresh or n not in committed or not filecmp.cmp(fresh[n], committed[n], shallow=False)
        ]


def main(argv: list[str]) -> int:
    if "--check" in argv:
        stale = stale_files()
        if stale:
            print("generated contracts are stale, run `make protos`: " + ", ".join(stale), file=sys.stderr)
            return 1
        return 0
    target = LIB_ROOT / PACKAGE
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))  # raises before anything committed is touched
        for old in target.glob("*"):
            if old.name.endswith(GENERATED_SUFFIXES):
                old.unlink()
        for path in fresh:
            shutil.copy(path, target / path.name)
    (target / "__init__.py").write_text('"""Generated from protos/rapport/v1. Do not edit."""\n')
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
