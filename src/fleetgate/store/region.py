"""A region: one blob store, one catalog and its key folder, all kept inside the region's borders."""

from __future__ import annotations

from dataclasses import dataclass

from fleetgate.keys import KeyStore
from fleetgate.store.blobs import BlobStore
from fleetgate.store.catalog import Catalog


@dataclass
class Region:
    """A named region with its blob store, catalog and keys."""

    name: str
    country: str
    blobs: BlobStore
    catalog: Catalog
    keys: KeyStore

    def close(self) -> None:
        """Release the catalog's connections."""
        self.catalog.close()
