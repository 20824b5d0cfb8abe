"""What the gate may rely on: the log, replayed and checked, and a catalog that matches it row for row.

Before it plans, approves or copies, the gate verifies the region's log (leaves, chain, signed
checkpoints), replays it into its state (principals, signed plans and approvals, facts, exports) and
compares every catalog row it reads with that state. One difference anywhere and nothing leaves:
a catalog edited outside fleetgate is a matter for an investigation, not for a best guess.

The settings that can change a decision (the region's facts in fleetgate.toml, the destinations,
the packs and their hashes, the sensitive-area file, the approver counts) are part of that check:
an admin signs them (`fleetgate config sign`), and the gate refuses while the files differ from
the last signed statement.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fleetgate.audit.check import CatalogCheck, Finding
from fleetgate.audit.log import VerifyReport, region_log
from fleetgate.audit.state import LogState, replay
from fleetgate.domain import ConfigStatement, Role
from fleetgate.domain.clock import Clock
from fleetgate.errors import IntegrityError
from fleetgate.keys import envelope as env
from fleetgate.keys.personal import Actor
from fleetgate.people import bootstrap_admin, current_state, require
from fleetgate.policy.service import packs_for
from fleetgate.workspace import Workspace

SHOWN_FINDINGS = 3
STORAGE_SETTINGS = {"name", "blob_store", "catalog", "s3_endpoint_url"}  # where data lives, not how it is decided


class CatalogMismatch(IntegrityError):
    """The catalog or log differs from what the log vouches for; the gate refuses."""

    def __init__(self, region: str, findings: list[Finding]) -> None:
        self.findings = findings
        shown = "; ".join(f.line() for f in findings[:SHOWN_FINDINGS])
        more = f" (and {len(findings) - SHOWN_FINDINGS} more)" if len(findings) > SHOWN_FINDINGS else ""
        super().__init__(f"region {region}: the catalog does not match its transparency log: {shown}{more}; "
                         "nothing was exported; run `fleetgate audit verify` for every finding")


@dataclass
class Verified:
    """A verified log, its replayed state and what the catalog check found."""

    report: VerifyReport
    state: LogState
    findings: list[Finding]


def decision_settings(ws: Workspace, region: str) -> dict[str, Any]:
    """The settings that can change a decision in `region`, flattened to dotted keys."""
    cfg = ws.config.region(region)
    body = {k: v for k, v in asdict(cfg).items() if k not in STORAGE_SETTINGS}
    if cfg.sensitive_areas:
        path = Path(ws.config.resolve(cfg.sensitive_areas))
        body["sensitive_areas"] = ("sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
                                   if path.is_file() else f"missing: {cfg.sensitive_areas}")
    settings = {
        "region": body,
        "packs": {p.id: p.hash_ref for p in packs_for(ws, region)},
        # object_lock only where asked, so the settings signed before it existed still match
        # the endpoint only where set: with it, the url names another place
        "destinations": {name: {"country": d.country, "url": d.url} | ({"object_lock": True} if d.object_lock else {})
                         | ({"s3_endpoint_url": d.s3_endpoint_url} if d.s3_endpoint_url else {})
                         for name, d in ws.config.destinations.items()},
        "gate": {"approvers": dict(ws.config.gate.approvers)},
        "policy": {"switches": dict(ws.config.switches)},
    }
    return _flatten(settings)


def _flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and prefix.count(".") < 1:
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def verify_region(ws: Workspace, region: str | None = None, content: bool = True) -> Verified:
    """`fleetgate audit verify`: the log recomputed, and every catalog row checked against it."""
    name = ws.config.region(region).name
    reg = ws.region(name)
    with reg.catalog.snapshot() as conn:  # the log and the rows as of one moment, while others write
        state, report = replay(region_log(reg), name, conn)
        findings = CatalogCheck(reg, state, content, conn).run(decision_settings(ws, name))
    return Verified(report, state, findings)


def trusted_state(ws: Workspace, region: str, need_config: bool = True) -> LogState:
    """The replayed state, if the catalog and keys match the log and an admin signed the current settings."""
    verified = verify_region(ws, region, content=False)  # the gate checks content deeply itself
    # A statement the replay rejected (a forged approval, an unregistered signer) is already left out
    # of the state, so the gate ignores it and verify reports it; it cannot block the region forever.
    blocking = [f for f in verified.findings if f.table != "log"]
    if blocking:
        raise CatalogMismatch(region, blocking)
    if need_config and verified.state.config is None:
        raise IntegrityError(f"region {region}: no signed configuration in the log; an admin signs the settings "
                             "that decide exports with `fleetgate config sign --as ADMIN --key FILE`")
    return verified.state


def sign_config(ws: Workspace, region: str, admin: Actor, clock: Clock | None = None) -> int:
    """An admin signs the current settings; returns the log index of the `config` entry."""
    reg = ws.region(region)
    state = current_state(reg)
    require(state, admin, {Role.admin}, "signing the configuration")
    settings = decision_settings(ws, region)
    statement = ConfigStatement(region=region, settings=settings, settings_digest=_settings_digest(settings),
                                by=admin.name, at=(clock or Clock()).now())
    envelope = env.sign_statement(statement.model_dump(mode="json"), env.CONFIG, admin.signer)
    with reg.catalog.transaction() as conn:
        index, _ = region_log(reg).append(conn, "config", {"statement": envelope}, at=statement.at)
    return index


def _settings_digest(settings: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(env.canonical_json(settings)).hexdigest()


def bootstrap_region(ws: Workspace, region: str, admin: Actor, clock: Clock | None = None) -> int:
    """Register the first admin of a region (self-signed) and have them sign its settings."""
    bootstrap_admin(ws.region(region), admin, clock)
    return sign_config(ws, region, admin, clock)
