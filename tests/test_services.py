"""The service layer over injected parts: a blob store in memory, a catalog, a key store and a fixed clock;
credentials and plans made over HTTP checked by `audit verify` like every table the gate reads."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import sqlite3
from pathlib import Path
from typing import BinaryIO

import pytest

from cli_helpers import run_cli
from fleetgate.domain import Role
from fleetgate.domain.clock import FixedClock
from fleetgate.errors import NotFoundError, StoreError
from fleetgate.keys import KeyStore
from fleetgate.services import Services
from fleetgate.store import BlobStore, Catalog, PutResult, Region
from fleetgate.workspace import Workspace, init_workspace, load_config
from people import make_team
from web_helpers import sign

NOON = FixedClock(dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC))


class MemoryBlobStore(BlobStore):
    """Blobs in a dict: what the services need from a blob store, and nothing on disk."""

    url = "memory://"

    def __init__(self) -> None:
        self.blobs: dict[tuple[str, str], bytes] = {}

    def put_file(self, path: Path, namespace: str = "blobs") -> PutResult:
        return self.put_bytes(Path(path).read_bytes(), namespace)

    def put_stream(self, stream: BinaryIO, namespace: str = "blobs") -> PutResult:
        data = stream.read()
        sha = hashlib.sha256(data).hexdigest()
        created = (namespace, sha) not in self.blobs
        self.blobs.setdefault((namespace, sha), data)
        return PutResult(sha, len(data), created)

    def exists(self, sha256: str, namespace: str = "blobs") -> bool:
        return (namespace, sha256) in self.blobs

    def open(self, sha256: str, namespace: str = "blobs") -> BinaryIO:
        if (namespace, sha256) not in self.blobs:
            raise StoreError(f"blob {sha256} is missing")
        return io.BytesIO(self.blobs[(namespace, sha256)])


@pytest.fixture
def faked(tmp_path: Path) -> tuple[Services, MemoryBlobStore]:
    init_workspace(tmp_path / "ws", "cn-shanghai")
    config = load_config(tmp_path / "ws")
    blobs = MemoryBlobStore()
    region = Region("cn-shanghai", "CN", blobs, Catalog(f"sqlite:///{tmp_path / 'catalog.db'}"),
                    KeyStore(tmp_path / "keys", "cn-shanghai"))
    services = Services(Workspace(config, regions={"cn-shanghai": region}), NOON)
    yield services, blobs
    services.close()


def test_services_run_over_injected_parts(faked, sample_drop: Path, tmp_path: Path) -> None:  # noqa: ANN001
    services, blobs = faked
    team = make_team(services.ws, tmp_path / "people")
    report = services.ingest.drop(sample_drop)
    assert report.landed > 0 and len(blobs.blobs) >= report.landed  # the bytes went to the injected store
    assert not (tmp_path / "ws" / "regions").exists() or not any((tmp_path / "ws" / "regions").rglob("blobs/*"))
    page = services.inventory.assets(outcome="unclassified", limit=5)
    assert page.total == report.landed and len(page.items) == 5
    services.classifier.classify()
    assert services.inventory.assets(outcome="unclassified").total < report.landed
    issued = services.principals.issue_token(team.auditor.name, team.admin)
    entry = services.audit.entries(start=issued.log_index, limit=1)[1][0]
    assert entry.type == "credential" and entry.at == NOON.now().isoformat()  # the injected clock
    detail = services.inventory.asset(page.items[0].id)
    assert detail.asset.id == page.items[0].id
    with pytest.raises(NotFoundError):
        services.inventory.asset("as_0000000000")
    assert services.audit.verify(content=False).findings == []


def test_tokens_authenticate_until_revoked_or_the_principal_is_removed(faked, tmp_path: Path) -> None:  # noqa: ANN001
    services, _ = faked
    team = make_team(services.ws, tmp_path / "people")
    principals = services.principals
    token = principals.issue_token(team.engineer.name, team.admin).secret
    who = principals.authenticate_token(token)
    assert (who.name, who.role, who.via) == (team.engineer.name, Role.engineer, "token")
    assert principals.authenticate_token(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert principals.authenticate_token("fgt_cn-shanghai_0000000000000000_" + "x" * 43) is None
    # a person may issue their own token, signing with their own key; nobody else but an admin may
    own = principals.issue_token(team.auditor.name, team.auditor)
    with pytest.raises(Exception, match="not admin"):
        principals.issue_token(team.auditor.name, team.engineer)
    principals.revoke(own.credential_id, team.admin)
    assert principals.authenticate_token(own.secret) is None
    services.principals.remove(team.engineer.name, team.admin)
    principals._verified.clear()  # past the cache's few seconds
    assert principals.authenticate_token(token) is None
    # passwords: argon2, at least 12 characters, the last one set wins
    principals.set_password(team.compliance[0].name, "first password!", team.admin)
    principals.set_password(team.compliance[0].name, "second password!", team.admin)
    assert principals.authenticate_password(team.compliance[0].name, "first password!") is None
    assert principals.authenticate_password(team.compliance[0].name, "second password!").role is Role.compliance
    with pytest.raises(Exception, match="at least 12"):
        principals.set_password(team.compliance[0].name, "short", team.admin)
    assert services.audit.verify(content=False).findings == []


def _db(home: Path) -> sqlite3.Connection:
    return sqlite3.connect(home / "regions" / "cn-shanghai" / "catalog.db", isolation_level=None)


def _tables_with_rows(tmp_path: Path) -> tuple[Path, str, str]:
    """A workspace with a token, a password and a plan signed over HTTP; (home, token id, plan id)."""
    home = tmp_path / "ws"
    init_workspace(home, "cn-shanghai")
    with Workspace.open(home) as ws:
        team = make_team(ws, tmp_path / "people")
        services = Services(ws)
        token = services.principals.issue_token(team.engineer.name, team.admin)
        services.principals.set_password(team.compliance[0].name, "a long password", team.admin)
        from fleetgate.sample import SampleSpec, generate_sample

        generate_sample(tmp_path / "drop", SampleSpec(vehicles=1, clips=1, seed=3, video_seconds=1.0,
                                                      drive_seconds=6.0))
        services.ingest.drop(tmp_path / "drop")
        services.classifier.classify()
        draft = services.gate.draft("overseas", team.engineer.name, purpose="p")
        services.gate.sign_plan(draft.plan_id, sign(draft.sign.model_dump(), team.engineer), team.engineer.name)
        assert services.audit.verify(content=False).findings == []
    return home, token.credential_id, draft.plan_id


@pytest.mark.parametrize("sql, table, field", [
    ("UPDATE credentials SET hash = hash || 'x' WHERE id = :token", "credentials", "hash_digest"),
    ("UPDATE credentials SET name = 'Li Na' WHERE id = :token", "credentials", "name"),
    ("UPDATE credentials SET revoked_index = 3, revoked_by = 'Ada Admin' WHERE id = :token", "credentials",
     "revoked_index"),
    ("INSERT INTO credentials SELECT 'tok-00000000000000ff', kind, keyid, name, hash, issued_by, issued_index, NULL, "
     "NULL FROM credentials WHERE id = :token", "credentials", "*"),
    ("DELETE FROM credentials WHERE id = :token", "credentials", "*"),
    ("UPDATE plans SET body = replace(body, 'overseas', 'elsewhere') WHERE plan_id = :plan", "plans", "body"),
    ("UPDATE plans SET statement = replace(statement, '\"p\"', '\"q\"') WHERE plan_id = :plan", "plans",
     "statement"),
    ("UPDATE plans SET log_index = log_index + 1 WHERE plan_id = :plan", "plans", "log_index"),
    ("UPDATE plans SET status = 'draft', log_index = NULL WHERE plan_id = :plan", None, None),
    ("INSERT INTO plans SELECT 'plan-00000000000000000000', 'signed', author, destination, body, statement, "
     "log_index, created_at FROM plans WHERE plan_id = :plan", "plans", "status"),
])
def test_edits_to_credentials_and_plans_are_found_by_verify(tmp_path: Path, sql: str, table: str | None,
                                                            field: str | None) -> None:
    home, token, plan = _tables_with_rows(tmp_path)
    with _db(home) as conn:
        conn.execute(sql, {"token": token, "plan": plan})
    proc = run_cli("audit", "verify", "--format", "json", home=home)
    import json

    findings = json.loads(proc.stdout)["findings"]
    if table is None:  # a signed plan turned back into a draft: the decision stays logged, a draft is never
        assert proc.returncode == 0  # trusted (signing it again re-decides), so there is nothing to find
        return
    assert proc.returncode == 4
    assert any(f["table"] == table and f["field"] == field for f in findings), findings


def test_the_cli_prints_a_token_on_its_last_line_and_signs_offline(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    init_workspace(home, "cn-shanghai")
    with Workspace.open(home) as ws:
        team = make_team(ws, tmp_path / "people")
    proc = run_cli("principals", "token", team.auditor.name, home=home, env_extra=team.env(team.admin), check=True)
    token = proc.stdout.strip().splitlines()[-1]
    assert token.startswith("fgt_cn-shanghai_") and token not in (home / "regions" / "cn-shanghai" /
                                                                   "catalog.db").read_bytes().decode("latin-1")
    with Workspace.open(home) as ws:
        assert Services(ws).principals.authenticate_token(token).name == team.auditor.name
    listed = run_cli("principals", "credentials", "--format", "json", home=home, check=True).stdout
    assert "hash" not in listed and token not in listed
    statement = tmp_path / "statement.json"
    statement.write_text('{"type": "fleetgate/approval/v1", "plan_id": "plan-x"}')
    signed = run_cli("sign", str(statement), "--key", str(team.key_file(team.compliance[0])), check=True).stdout
    from fleetgate.keys import envelope as env

    envelope = __import__("json").loads(signed)
    assert env.verifies(envelope, team.compliance[0].signer.public_key)
    assert env.read_statement(envelope, env.APPROVAL)["plan_id"] == "plan-x"
    bad = run_cli("sign", str(statement), "--key", str(tmp_path / "nope.key"))
    assert bad.returncode == 2 and "nope.key" in bad.stderr
