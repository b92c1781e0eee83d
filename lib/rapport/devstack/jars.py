"""Fetch a server's jars from Maven Central once, into a reusable cache folder."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rapport.devstack.errors import StackError

log = logging.getLogger("rapport.devstack")

MARKER = ".rapport-complete.json"
_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


@dataclass(frozen=True)
class JarSet:
    """One server's jar set, named by a pom under deploy/local/<name>/."""

    name: str
    pom: Path

    @property
    def version(self) -> str:
        root = ET.parse(self.pom).getroot()
        node = root.find("m:properties/m:component.version", _POM_NS)
        if node is None or not (node.text or "").strip():
            raise StackError(f"{self.pom} has no <properties><component.version>")
        return (node.text or "").strip()

    def pom_digest(self) -> str:
        return hashlib.sha256(self.pom.read_bytes()).hexdigest()

    def folder(self, cache_dir: Path) -> Path:
        return cache_dir / f"{self.name}-{self.version}"


def is_complete(folder: Path, pom_digest: str) -> bool:
    """True when a previous fetch of this exact pom finished and its jars are all still there."""
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict) or marker.get("pom_sha256") != pom_digest:
        return False
    jars = marker.get("jars")
    return isinstance(jars, list) and bool(jars) and all((folder / str(j)).is_file() for j in jars)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so parallel runs neither fetch twice nor start a server twice."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_jars(jar_set: JarSet, cache_dir: Path, mvn: str) -> Path:
    """Return the folder holding the jar set, running Maven only when the cache lacks it."""
    folder = jar_set.folder(cache_dir)
    digest = jar_set.pom_digest()
    if is_complete(folder, digest):
        return folder
    with file_lock(cache_dir / f".{folder.name}.lock"):
        if is_complete(folder, digest):  # another run fetched it while we waited
            return folder
        if shutil.which(mvn) is None:
            raise StackError(f"`{mvn}` (Maven) is needed once to fetch the {jar_set.name} jars; install Maven")
        staging = cache_dir / f".{folder.name}.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        log.info("%s: fetching %s jars with Maven into %s", jar_set.name, folder.name, folder)
        started = time.monotonic()
        cmd = [
            mvn, "-B", "-q", "-f", str(jar_set.pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
            # Group-prefixed names: two artifacts called e.g. annotations-1.0.jar cannot overwrite each other.
            "-Dmdep.prependGroupId=true",
        ]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
        jars = sorted(p.name for p in staging.glob("*.jar")) if staging.is_dir() else []
        if result.returncode != 0 or not jars:
            shutil.rmtree(staging, ignore_errors=True)
            output = (result.stdout + result.stderr).strip().splitlines()[-40:]
            raise StackError(
                f"Maven could not fetch the {jar_set.name} jars (exit {result.returncode}):\n" + "\n".join(output)
            )
        (staging / MARKER).write_text(
            json.dumps({"pom_sha256": digest, "jars": jars, "fetched_at": time.time()}, indent=1)
        )
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
        log.info("%s: fetched %d jars in %.1f s", jar_set.name, len(jars), time.monotonic() - started)
    return folder
