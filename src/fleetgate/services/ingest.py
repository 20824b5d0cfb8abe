"""`Ingest`: land a drop (a folder, a tar file, or a tar stream uploaded over HTTP) in a region."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zlib
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
            self._check_unpacked_size(path, self.ws.config.web.max_upload_mb << 20)
            try:
                return ingest_drop(self.region(region), path, runner=self.runner(), home=self.ws.home)
            except tarfile.TarError as exc:  # a member shorter than its header says (read before anything lands)
                raise InvalidInputError(f"{path.name}: not a readable tar archive ({exc})") from None
        finally:
            shutil.rmtree(path.parent, ignore_errors=True)

    @staticmethod
    def _check_unpacked_size(path: Path, limit: int) -> None:
        """Refuse an upload whose members unpack to more than `limit` bytes, from the headers alone: a gzip
        or a sparse member of a few KiB can stand for terabytes of zeros that spooling would write to disk.
        The message names the upload, never the spool's path on this server."""
        total = 0
        try:
            with tarfile.open(path, "r:*") as tar:
                for member in tar:  # a header at a time: a gzip is inflated only up to the member refused
                    total += member.size
                    if total > limit:
                        raise InvalidInputError(f"{path.name}: unpacks to more than the upload limit of "
                                                f"{limit >> 20} MiB (web.max_upload_mb)")
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise InvalidInputError(f"{path.name}: not a readable tar archive ({type(exc).__name__})") from None

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
