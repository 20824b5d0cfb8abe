"""`Ingest`: land a drop (a folder, a tar file, or a tar stream uploaded over HTTP) in a region."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from fleetgate.errors import InvalidInputError
from fleetgate.formats.drop_layout import SAFE_SEGMENT
from fleetgate.ingest import ingest_drop
from fleetgate.ingest.pipeline import IngestReport
from fleetgate.services.base import Service

CHUNK = 1 << 20


class Ingest(Service):
    """Validation, quarantine and cataloguing of drops: the same pipeline whichever way a drop arrives."""

    def drop(self, path: Path, region: str | None = None, on_start: Callable[[int], None] | None = None,
             on_progress: Callable[[int, str], None] | None = None) -> IngestReport:
        """`fleetgate ingest DROP`: a folder or a .tar on this machine."""
        return ingest_drop(self.region(region), Path(path), on_start=on_start, on_progress=on_progress,
                           runner=self.runner(), home=self.ws.home)

    def spool(self, name: str) -> Path:
        """A new, private place to write an uploaded drop called `name` (a .tar) before it is ingested."""
        if not SAFE_SEGMENT.match(name) or not name.endswith((".tar", ".tar.gz", ".tgz")):
            raise InvalidInputError(f"drop name {ascii(name)[1:-1]!r}: letters, digits, '.', '_' or '-', "
                                    "ending in .tar, .tar.gz or .tgz")
        spool_root = self.ws.home / "uploads"
        spool_root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="drop-", dir=spool_root)) / name

    def discard(self, path: Path) -> None:
        """Remove a spooled upload that will not be ingested (too large, the client went away)."""
        shutil.rmtree(path.parent, ignore_errors=True)

    def ingest_spooled(self, path: Path, region: str | None = None) -> IngestReport:
        """Ingest a spooled upload exactly as `fleetgate ingest drop.tar` would; the spool is removed after."""
        try:
            if not path.is_file() or path.stat().st_size == 0:
                raise InvalidInputError(f"{path.name}: the upload is empty")
            return ingest_drop(self.region(region), path, runner=self.runner(), home=self.ws.home)
        finally:
            shutil.rmtree(path.parent, ignore_errors=True)

    def upload(self, stream: BinaryIO, name: str, region: str | None = None, max_bytes: int | None = None
               ) -> IngestReport:
        """A drop uploaded as a tar stream: spooled to the workspace (never held whole in memory), then ingested."""
        target = self.spool(name)
        try:
            written = 0
            with open(target, "wb") as out:
                while chunk := stream.read(CHUNK):
                    written += len(chunk)
                    if max_bytes is not None and written > max_bytes:
                        raise InvalidInputError(f"{name}: larger than the upload limit of {max_bytes >> 20} MiB "
                                                "(web.max_upload_mb)")
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            shutil.rmtree(target.parent, ignore_errors=True)
            raise
        return self.ingest_spooled(target, region)
