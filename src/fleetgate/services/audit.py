"""`Audit`: verify a region's log and catalog, prove entries, checkpoint, witness, and record requests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fleetgate.audit import Checkpoint, Witness
from fleetgate.audit.log import region_log
from fleetgate.audit.merkle import verify_inclusion
from fleetgate.errors import UsageError
from fleetgate.gate import verify_region
from fleetgate.gate.trust import Verified
from fleetgate.services.base import Service
from fleetgate.services.models import CheckpointView, LogEntryView, ProofView
from fleetgate.store import Browse

MAX_ENTRIES = 100_000  # the API pages by at most 200
REQUEST_ENTRY = "web_request"


def _view(index: int, text: str) -> LogEntryView:
    entry = json.loads(text)
    return LogEntryView(index=index, type=entry.get("type", ""), at=entry.get("at", ""), entry=entry)


def checkpoint_view(cp: Checkpoint) -> CheckpointView:
    return CheckpointView(origin=cp.origin, size=cp.size, root=cp.root.hex(), text=cp.text())


class Audit(Service):
    def verify(self, region: str | None = None, content: bool = True) -> Verified:
        """`fleetgate audit verify`: the log recomputed and replayed, every catalog row checked against it."""
        return verify_region(self.ws, region, content)

    def checkpoint(self, region: str | None = None) -> Checkpoint:
        """Sign (and store) a checkpoint of the current tree."""
        return region_log(self.region(region)).checkpoint()

    def latest_checkpoint(self, region: str | None = None) -> Checkpoint:
        log = region_log(self.region(region))
        return log.latest_checkpoint() or log.checkpoint()

    def prove(self, index: int, region: str | None = None, size: int | None = None) -> ProofView:
        """The inclusion proof of entry `index` under the latest checkpoint, checked here before it is shown."""
        log = region_log(self.region(region))
        cp = log.latest_checkpoint()
        if size is None and (cp is None or cp.size <= index):
            cp = log.checkpoint()
        proof = log.prove(index, size if size is not None else cp.size)
        leaf = bytes.fromhex(proof["leaf_hash"])
        ok = verify_inclusion(leaf, index, proof["size"], [bytes.fromhex(p) for p in proof["proof"]],
                              bytes.fromhex(proof["root"]))
        note = log.repo.checkpoint_note(proof["size"]) or ""
        return ProofView(**proof, entry=log.entry(index), checkpoint=note, verified=ok)

    def entries(self, region: str | None = None, *, start: int | None = None, limit: int = 50,
                kind: str | None = None) -> tuple[int, list[LogEntryView]]:
        """(log size, a page of entries): from `start` on, or the newest first when `start` is None."""
        if not 1 <= limit <= MAX_ENTRIES:
            raise UsageError(f"limit: between 1 and {MAX_ENTRIES}")
        browse = Browse(self.region(region).catalog)
        size = browse.log_size()
        if kind:
            return size, [_view(i, t) for i, t in browse.log_of_type(kind, limit=limit)]
        first = max(0, size - limit) if start is None else max(0, start)
        rows = browse.log_page(start=first, limit=limit)
        return size, [_view(i, t) for i, t in (reversed(rows) if start is None else rows)]

    def witness(self, region: str | None = None, folder: Path | None = None,
                name: str = "fleetgate-witness") -> Checkpoint:
        """Cosign the latest checkpoint after checking that it extends the last one this witness cosigned."""
        log = region_log(self.region(region))
        cp = log.latest_checkpoint() or log.checkpoint()
        w = Witness(folder or self.ws.home / "witness", name)
        last = w.state(cp.origin)
        proof = log.consistency(int(last["size"]), cp.size) if last and 0 < int(last["size"]) < cp.size else []
        cosigned = w.cosign(cp, log.key_name, log.public_key(), proof)
        log.store_cosigned(cosigned)
        return cosigned

    def record_request(self, region: str, entry: dict[str, Any]) -> int:
        """Log a state-changing HTTP request (who, which route, a digest of the body) before it runs, so that
        every change made over HTTP is attributable even if the process dies half-way."""
        reg = self.region(region)
        with reg.catalog.transaction() as conn:
            index, _ = region_log(reg).append(conn, REQUEST_ENTRY, entry, at=self.clock.now())
        return index
