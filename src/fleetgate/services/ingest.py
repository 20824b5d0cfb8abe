"""`Ingest`: land a drop (a folder, a tar file, or a tar uploaded over HTTP: `ingest_jobs`) in a region."""

from __future__ import annotations

import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path

from fleetgate.errors import InvalidInputError
from fleetgate.ingest import ingest_drop
from fleetgate.ingest.pipeline import IngestReport
from fleetgate.services.base import Service


class Ingest(Service):
    """Validation, quarantine and cataloguing of drops: the same pipeline whichever way a drop arrives."""

    def drop(self, path: Path, region: str | None = None, on_start: Callable[[int], None] | None = None,
             on_progress: Callable[[int, str], None] | None = None) -> IngestReport:
        """`fleetgate ingest DROP`: a folder or a .tar on this machine."""
        return ingest_drop(self.region(region), Path(path), on_start=on_start, on_progress=on_progress,
                           runner=self.runner(), home=self.ws.home)

    def check_upload(self, path: Path, name: str, limit: int) -> None:
        """Refuse an uploaded drop that is empty, not a readable tar, or unpacks to more than `limit` bytes:
        from its headers alone, before it is accepted. The message names the upload (`name`), never the
        spool's path on this server."""
        if not path.is_file() or path.stat().st_size == 0:
            raise InvalidInputError(f"{name}: the upload is empty")
        self._check_unpacked_size(path, name, limit)

    def uploaded(self, path: Path, region: str | None = None, run_id: str | None = None) -> IngestReport:
        """Ingest an accepted upload exactly as `fleetgate ingest drop.tar` would, as run `run_id` (a run of
        that id interrupted before goes on where it stopped)."""
        try:
            return ingest_drop(self.region(region), path, runner=self.runner(), home=self.ws.home, run_id=run_id)
        except tarfile.TarError as exc:  # a member shorter than its header says (read before anything lands)
            raise InvalidInputError(f"{path.name}: not a readable tar archive ({exc})") from None
        except InvalidInputError as exc:  # the uploader is told the name they gave, never the spool's path
            raise InvalidInputError(exc.message.replace(str(path), path.name)) from None

    @staticmethod
    def _check_unpacked_size(path: Path, name: str, limit: int) -> None:
        """Refuse an upload whose members unpack to more than `limit` bytes, from the headers alone: a gzip
        or a sparse member of a few KiB can stand for terabytes of zeros that unpacking would write to disk."""
        total = 0
        try:
            with tarfile.open(path, "r:*") as tar:
                for member in tar:  # a header at a time: a gzip is inflated only up to the member refused
                    total += member.size
                    if total > limit:
                        raise InvalidInputError(f"{name}: unpacks to more than the upload limit of "
                                                f"{limit >> 20} MiB (web.max_upload_mb)")
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise InvalidInputError(f"{name}: not a readable tar archive ({type(exc).__name__})") from None
