"""A region's storage: a content-addressed blob store, a catalog of assets and the repositories of its tables."""

from fleetgate.store.blobs import BlobStore, FsspecBlobStore, LocalBlobStore, PutResult, open_blob_store
from fleetgate.store.browse import Browse
from fleetgate.store.catalog import Catalog, new_id
from fleetgate.store.credentials_repo import CredentialRepository
from fleetgate.store.gate_repo import GateRecords
from fleetgate.store.ledger import Ledger
from fleetgate.store.log_repo import LogRepository
from fleetgate.store.plans_repo import PlanRepository
from fleetgate.store.principals_repo import PrincipalRepository
from fleetgate.store.region import Region

__all__ = [
    "BlobStore",
    "Browse",
    "Catalog",
    "CredentialRepository",
    "FsspecBlobStore",
    "GateRecords",
    "Ledger",
    "LocalBlobStore",
    "LogRepository",
    "PlanRepository",
    "PrincipalRepository",
    "PutResult",
    "Region",
    "new_id",
    "open_blob_store",
]
