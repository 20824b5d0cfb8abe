"""A region's storage: a content-addressed blob store and a catalog of assets."""

from fleetgate.store.blobs import BlobStore, FsspecBlobStore, LocalBlobStore, PutResult, open_blob_store
from fleetgate.store.catalog import Catalog, new_id
from fleetgate.store.ledger import Ledger
from fleetgate.store.region import Region

__all__ = [
    "BlobStore",
    "Catalog",
    "FsspecBlobStore",
    "Ledger",
    "LocalBlobStore",
    "PutResult",
    "Region",
    "new_id",
    "open_blob_store",
]
