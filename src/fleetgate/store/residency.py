"""Data residency at the store: which region a process acts for, and who read which blob.

A process (or a block of code) declares the region it acts for with `acting_for(region)` or the
environment variable FLEETGATE_ACTING_REGION. A region's blob store, wrapped in `ResidentBlobStore`,
then refuses reads by code acting for another region (fail closed) and appends every read, allowed
or refused, to a JSON-lines access log next to the region's catalog. Training and federation use
this to prove that no process outside a region reads that region's raw assets: the proof test reads
the log back. Code that declares nothing (ingest, classify, the gate in the region's own data
center) is recorded as acting for no region.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import BinaryIO

from fleetgate.errors import FleetgateError
from fleetgate.store.blobs import BlobStore, PutResult

ACTING_ENV = "FLEETGATE_ACTING_REGION"
_acting: ContextVar[str | None] = ContextVar("fleetgate_acting_region", default=None)


class ResidencyError(FleetgateError):
    """Code acting for one region tried to read another region's data."""


def acting_region() -> str | None:
    return _acting.get() or os.environ.get(ACTING_ENV) or None


@contextmanager
def acting_for(region: str) -> Iterator[None]:
    """Act for `region` inside this block. A process pinned to a region (FLEETGATE_ACTING_REGION, as a
    SuperNode is from start-up) may not switch to another one: the pin wins."""
    pinned = os.environ.get(ACTING_ENV)
    if pinned and pinned != region:
        raise ResidencyError(f"this process is pinned to region {pinned}; it may not act for region {region}")
    token = _acting.set(region)
    try:
        yield
    finally:
        _acting.reset(token)


class ResidentBlobStore(BlobStore):
    """A region's blob store that checks and records who reads it."""

    def __init__(self, inner: BlobStore, region: str, access_log: Path) -> None:
        self.inner = inner
        self.region = region
        self.url = inner.url
        self.access_log = access_log
        self._lock = threading.Lock()
        self._made = False

    def _record(self, sha256: str, namespace: str, reader: str | None, allowed: bool) -> None:
        line = json.dumps({"region": self.region, "reader": reader, "pid": os.getpid(), "blob": sha256,
                           "namespace": namespace, "allowed": allowed}, sort_keys=True)
        if not self._made:
            self.access_log.parent.mkdir(parents=True, exist_ok=True)
            self._made = True
        with self._lock, open(self.access_log, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")  # one short append per read: whole lines, also across processes

    def open(self, sha256: str, namespace: str = "blobs") -> BinaryIO:
        reader = acting_region()
        allowed = reader is None or reader == self.region
        self._record(sha256, namespace, reader, allowed)
        if not allowed:
            raise ResidencyError(f"code acting for region {reader} may not read blob {sha256[:12]}… of region "
                                 f"{self.region}: raw data stays in its region")
        return self.inner.open(sha256, namespace)

    def put_file(self, path: Path, namespace: str = "blobs") -> PutResult:
        return self.inner.put_file(path, namespace)

    def put_stream(self, stream: BinaryIO, namespace: str = "blobs") -> PutResult:
        return self.inner.put_stream(stream, namespace)

    def exists(self, sha256: str, namespace: str = "blobs") -> bool:
        return self.inner.exists(sha256, namespace)

    def __getattr__(self, name: str):  # path_of and other store-specific helpers
        return getattr(self.inner, name)


def read_access_log(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
