"""An opened workspace: config plus lazily opened regions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fleetgate.keys import KeyStore
from fleetgate.store import Catalog, Region, open_blob_store
from fleetgate.store.keyring import Keyring
from fleetgate.store.residency import ResidentBlobStore
from fleetgate.store.sealed import SealedBlobStore
from fleetgate.workspace.config import WorkspaceConfig, load_config


class Workspace:
    """A workspace folder with its configuration and open regions."""

    def __init__(self, config: WorkspaceConfig, regions: dict[str, Region] | None = None) -> None:
        self.config = config
        # regions opened by the caller (a test's fake blob store or catalog) are used as they are
        self._regions: dict[str, Region] = dict(regions or {})

    @classmethod
    def open(cls, home: Path, overrides: dict[str, Any] | None = None) -> Workspace:
        """Open the workspace at `home`; `overrides` are settings given as flags."""
        return cls(load_config(home, overrides))

    @property
    def home(self) -> Path:
        """The workspace folder."""
        return self.config.home

    def region(self, name: str | None = None) -> Region:
        """Open (once) and return a region; the default region when `name` is None."""
        cfg = self.config.region(name)
        if cfg.name not in self._regions:
            blob_url = self.config.resolve(cfg.blob_store)
            catalog_url = self.config.resolve(cfg.catalog)
            if catalog_url.startswith("sqlite:///"):
                Path(catalog_url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
            keys = KeyStore(self.keys_root, cfg.name)
            # every blob is sealed under its own data key (docs/subject-rights.md), and every read is
            # checked against the region the code acts for, and recorded
            sealed = SealedBlobStore(open_blob_store(blob_url, s3_endpoint_url=cfg.s3_endpoint_url), Keyring.of(keys))
            self._regions[cfg.name] = Region(
                name=cfg.name,
                country=cfg.country,
                blobs=ResidentBlobStore(sealed, cfg.name, self.access_log(cfg.name)),
                catalog=Catalog(catalog_url),
                keys=keys,
            )
        return self._regions[cfg.name]

    def access_log(self, region: str) -> Path:
        """JSON lines of every read of the region's blobs (who acted for which region)."""
        return self.home / "access" / f"{region}.jsonl"

    @property
    def keys_root(self) -> Path:
        """The folder of every region's secrets; never inside a destination."""
        return Path(self.config.resolve(self.config.keys.dir))

    def keys(self, region: str | None = None) -> KeyStore:
        """The key store of a region (created on first use)."""
        return KeyStore(self.keys_root, self.config.region(region).name)

    def close(self) -> None:
        """Close every opened region."""
        for region in self._regions.values():
            region.close()
        self._regions.clear()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
