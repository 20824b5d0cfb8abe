"""A region: one blob store plus one catalog, both kept inside the region's borders."""

from __future__ import annotations

from dataclasses import dataclass

from fleetgate.store.blobs import BlobStore
from fleetgate.store.catalog import Catalog


@dataclass
class Region:
    """A named region with its blob store and catalog."""

    name: str
    country: str
    blobs: BlobStore
    catalog: Catalog

    def close(self) -> None:
        """Release the catalog's connections."""
        self.catalog.close()
