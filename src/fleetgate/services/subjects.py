"""`Subjects`: a person's rights (find, copy, erase; PIPL Arts 44-47), legal holds and retention, from the
CLI (the officer's key on this machine) or over HTTP (the officer signs elsewhere; the server never holds
their key).

Over HTTP a request has two halves, like an approval. First the service builds the subject-request
statement the officer is to sign (the identifier pseudonymized and HMACed under a fresh random salt,
nothing logged) and returns it with the salt. The officer signs it with their own key (`fleetgate
sign`) and posts the envelope back with the identifier and the salt. Then the service checks that the
statement is theirs, fresh, of this action and ref, and that the identifier and salt give its digest,
and runs the very function the CLI runs with the signed instant as its clock and a signer that holds
only that signature: the request is logged only if the rebuilt statement is the signed one.
"""

from __future__ import annotations

import datetime as dt
import hmac
import os
import shutil
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fleetgate.domain import SubjectRequestStatement
from fleetgate.domain.clock import FixedClock
from fleetgate.keys import envelope as env
from fleetgate.keys.personal import Actor
from fleetgate.services.base import Service
from fleetgate.services.export_gate import CLOCK_SKEW, SignatureRefused
from fleetgate.services.models import (
    CopyResult,
    ErasureResult,
    FindResult,
    Footprint,
    Identifier,
    SubjectRequestView,
    SubjectSigningRequest,
)
from fleetgate.subjects import (
    all_requests,
    erase_subject,
    export_subject,
    find_subject,
    list_holds,
    open_requests,
    place_hold,
    release_hold,
    run_retention,
)
from fleetgate.subjects.removal import STALE_TMP_S
from fleetgate.subjects.requests import new_salt, ref_digest, request_statement

FOOTPRINT_FIELDS = set(Footprint.model_fields)
COPIES = "subject-copies"  # under <home>/tmp: copies the API builds, removed once sent (and by every erasure)


class Subjects(Service):
    # -- the CLI: the officer's key is on this machine -------------------------------------------------
    def find(self, who: Identifier, ref: str, officer: Actor, region: str | None = None) -> FindResult:
        return FindResult.model_validate(find_subject(self.ws, who.kind, who.value, ref, officer, region,
                                                      self.clock))

    def copy(self, who: Identifier, ref: str, out: Path, officer: Actor, region: str | None = None) -> CopyResult:
        return CopyResult.model_validate(export_subject(self.ws, who.kind, who.value, ref, out, officer, region,
                                                        self.clock))

    def erase(self, who: Identifier, ref: str, officer: Actor, region: str | None = None,
              dry_run: bool = False) -> ErasureResult:
        if not dry_run:
            self._drop_leftovers()
        return erasure_result(erase_subject(self.ws, who.kind, who.value, ref, officer, region, dry_run, self.clock))

    def requests(self, region: str | None = None, include_done: bool = False) -> list[SubjectRequestView]:
        reg = self.region(self.region_name(region))
        rows = all_requests(reg) if include_done else open_requests(reg, self.clock.today())
        return [SubjectRequestView.model_validate(r) for r in rows]

    def hold(self, asset_ids: list[str], ref: str, reason: str, officer: Actor,
             region: str | None = None) -> dict[str, Any]:
        return place_hold(self.ws, asset_ids, ref, reason, officer, region, self.clock)

    def release(self, hold_id: str, officer: Actor, region: str | None = None) -> dict[str, Any]:
        return release_hold(self.ws, hold_id, officer, region, self.clock)

    def holds(self, region: str | None = None) -> list[dict[str, Any]]:
        return list_holds(self.ws, region)

    def retention(self, officer: Actor, region: str | None = None, dry_run: bool = False) -> dict[str, Any]:
        return run_retention(self.ws, officer, region, dry_run, self.clock)

    def retention_settings(self) -> dict[str, dict[str, int]]:
        return self.ws.config.retention.as_dict()

    # -- HTTP: the officer signs elsewhere -------------------------------------------------------------
    def request_statement(self, action: str, who: Identifier, ref: str, officer: str, dry_run: bool = False,
                          region: str | None = None) -> SubjectSigningRequest:
        """The statement `officer` may sign to ask for `action` about the person `who` names; nothing is logged."""
        name = self.region_name(region)
        self.registered_key(officer, name)  # an unknown name is refused here, its role when the request runs
        salt = new_salt()
        statement = request_statement(self.region(name), officer, action, who.kind, who.value, ref,
                                      dry_run and action == "erase", self.clock.now(), salt)
        doc = statement.model_dump(mode="json")
        expires = statement.at + dt.timedelta(minutes=self.ws.config.web.signed_statement_minutes)
        return SubjectSigningRequest(statement=doc, **env.signing_request(doc, env.SUBJECT_REQUEST),
                                     expires_at=expires, salt=salt.hex())

    def submit_find(self, envelope: dict[str, Any], who: Identifier, salt: str, ref: str, officer: str,
                    region: str | None = None) -> FindResult:
        name, st, signer, raw = self._signed(envelope, "find", who, salt, ref, officer, region)
        return FindResult.model_validate(find_subject(self.ws, who.kind, who.value, ref, signer, name,
                                                      FixedClock(st.at), raw))

    def submit_copy(self, envelope: dict[str, Any], who: Identifier, salt: str, ref: str, out: Path, officer: str,
                    region: str | None = None) -> CopyResult:
        name, st, signer, raw = self._signed(envelope, "export", who, salt, ref, officer, region)
        return CopyResult.model_validate(export_subject(self.ws, who.kind, who.value, ref, out, signer, name,
                                                        FixedClock(st.at), raw))

    def submit_erase(self, envelope: dict[str, Any], who: Identifier, salt: str, ref: str, officer: str,
                     region: str | None = None) -> ErasureResult:
        name, st, signer, raw = self._signed(envelope, "erase", who, salt, ref, officer, region)
        if not st.dry_run:
            self._drop_leftovers()
        return erasure_result(erase_subject(self.ws, who.kind, who.value, ref, signer, name, st.dry_run,
                                            FixedClock(st.at), raw))

    def copy_archive(self, envelope: dict[str, Any], who: Identifier, salt: str, ref: str, officer: str,
                     region: str | None = None) -> tuple[CopyResult, Path]:
        """The copy as one tar file to send (`discard_copy` removes it once sent); built in the workspace's
        tmp folder (0700), never left behind by a failure."""
        root = self.ws.home / "tmp" / COPIES
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        work = Path(tempfile.mkdtemp(prefix="copy-", dir=root))
        try:
            result = self.submit_copy(envelope, who, salt, ref, work / "copy", officer, region)
            archive = work / f"subject-copy-{result.request_id}.tar"
            with tarfile.open(archive, "w") as tar:
                tar.add(work / "copy", arcname=archive.stem)
            shutil.rmtree(work / "copy")
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return result, archive

    def discard_copy(self, archive: Path) -> None:
        shutil.rmtree(archive.parent, ignore_errors=True)

    def _drop_leftovers(self) -> None:
        """What the service layer leaves in the workspace and may hold the person's data: copies the API
        built and has not finished sending, and uploads a crash left spooled (`Ingest.spool`; one still
        being received was written to in the last STALE_TMP_S seconds and is kept)."""
        shutil.rmtree(self.ws.home / "tmp" / COPIES, ignore_errors=True)
        cutoff = time.time() - STALE_TMP_S
        for spool in (self.ws.home / "uploads").glob("drop-*"):
            files = [spool, *spool.rglob("*")]
            try:
                newest = max(f.stat().st_mtime for f in files)
            except OSError:
                continue
            if newest < cutoff:
                shutil.rmtree(spool, ignore_errors=True)

    def _signed(self, envelope: dict[str, Any], action: str, who: Identifier, salt: str, ref: str, officer: str,
                region: str | None) -> tuple[str, SubjectRequestStatement, Actor, bytes]:
        """The region, the signed statement, a signer that holds only its signature, and the salt; refused
        unless the statement is `officer`'s, fresh, for this action and ref, and about this identifier."""
        name = self.region_name(region)
        try:
            st = SubjectRequestStatement.model_validate(env.read_statement(envelope, env.SUBJECT_REQUEST))
        except ValidationError as exc:
            first = exc.errors()[0]
            raise SignatureRefused(f"signed statement: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}") \
                from None
        if st.by != officer:
            raise SignatureRefused(f"the request is signed for {st.by}, and you are {officer}")
        now, window = self.clock.now(), dt.timedelta(minutes=self.ws.config.web.signed_statement_minutes)
        if st.at > now + CLOCK_SKEW or st.at < now - window:
            raise SignatureRefused(f"the request statement is dated {st.at.isoformat()}, outside the last {window}; "
                                   "prepare it again")
        if st.action != action or st.region != name:
            raise SignatureRefused(f"the signed statement asks to {st.action} in {st.region}, not to {action} in "
                                   f"{name}")
        if not hmac.compare_digest(st.ref_digest, ref_digest(ref.strip())):
            raise SignatureRefused("the signed statement is for another request reference")
        try:
            raw = bytes.fromhex(salt)
        except ValueError:
            raise SignatureRefused("salt: the hex the prepared statement gave") from None
        rebuilt = request_statement(self.region(name), officer, action, who.kind, who.value, ref, st.dry_run, st.at,
                                    raw)
        if not hmac.compare_digest(rebuilt.identifier_digest, st.identifier_digest):
            raise SignatureRefused("the signed statement is about another identifier (or another salt)")
        signer = Actor(officer, env.PresignedSigner(envelope, self.registered_key(officer, name), env.SUBJECT_REQUEST))
        return name, st, signer, raw


def erasure_result(result: dict[str, Any]) -> ErasureResult:
    """The core's erasure answer, typed: the person's footprint (a preview or an erasure run now) apart
    from the erasure's own fields; a resumed or finished erasure carries its record's summary instead."""
    known = set(ErasureResult.model_fields) - {"footprint", "summary"}
    fields = {k: v for k, v in result.items() if k in known}
    rest = {k: v for k, v in result.items() if k not in known}
    if FOOTPRINT_FIELDS <= set(rest):
        fields["footprint"] = Footprint.model_validate({k: rest.pop(k) for k in FOOTPRINT_FIELDS})
    return ErasureResult(**fields, summary=rest or None)
