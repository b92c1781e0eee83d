"""Secret and certificate files that are re-read when they change on disk.

Kubernetes updates a mounted Secret by swapping a symlink, cert-manager and Vault agents by
rewriting the file: both change the (device, inode, mtime, size) signature `os.stat` sees
through symlinks. A file that fails to parse mid-rotation keeps the last good value.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
Signature = tuple[tuple[int, int, int, int], ...]


def signature(paths: Sequence[str]) -> Signature:
    """Changes whenever any of the files is replaced or rewritten; raises OSError if one is missing."""
    stats = [os.stat(p) for p in paths]
    return tuple((s.st_dev, s.st_ino, s.st_mtime_ns, s.st_size) for s in stats)


class WatchedFiles(Generic[T]):
    """The value parsed from one or more files, re-parsed when any of them changes.

    The first load raises (a service must not start with a broken secret); later failures are
    logged once per change and the previous value is kept.
    """

    def __init__(self, paths: Sequence[str], parse: Callable[[list[bytes]], T], what: str) -> None:
        self.paths = list(paths)
        self.what = what
        self._parse = parse
        self._lock = threading.Lock()
        self._signature = signature(self.paths)
        self._value = parse([self._read(p) for p in self.paths])
        # What the last failed reload looked like, so each failure is logged once.
        self._failed: object = None
        self.reloads = 0

    @staticmethod
    def _read(path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def current(self) -> T:
        """The value for the files as they are now; cheap (a stat per file) when nothing changed."""
        try:
            now = signature(self.paths)
        except OSError as exc:
            self._log_failure(("missing", exc.filename), f"cannot stat: {exc.strerror}")
            return self._value
        if now in (self._signature, self._failed):
            return self._value
        with self._lock:
            if now == self._signature:
                return self._value
            try:
                value = self._parse([self._read(p) for p in self.paths])
            except (OSError, ValueError) as exc:
                self._log_failure(now, str(exc))
                return self._value
            self._value, self._signature, self._failed = value, now, None
            self.reloads += 1
        log.info("reloaded after a change on disk", extra={"what": self.what, "files": self.paths})
        return value

    def _log_failure(self, now: object, reason: str) -> None:
        if now == self._failed:
            return
        self._failed = now
        log.error(
            "changed on disk but cannot be loaded; keeping the previous version",
            extra={"what": self.what, "files": self.paths, "reason": reason},
        )
