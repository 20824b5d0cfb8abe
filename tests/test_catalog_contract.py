"""The Catalog contract: one class of tests, subclassed per backend (SQLite, and a real PostgreSQL server).

Schema from migrations only, safe when processes open a catalog at once, an old workspace migrated
with a message, concurrent ingests, an ingest during an export, concurrent log appends without gaps
or duplicates, and database errors as one line without SQL.
"""

from __future__ import annotations

import importlib
import multiprocessing
import random
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from cli_helpers import run_cli
from fleetgate.audit import open_log
from fleetgate.audit.merkle import consistency_proof, inclusion_proof, root_from_leaf_hashes
from fleetgate.classify import classify_region
from fleetgate.errors import StoreError
from fleetgate.gate import make_plan, verify_region
from fleetgate.gate.plan import write_plan
from fleetgate.ingest import ingest_drop
from fleetgate.sample import SampleSpec, generate_sample
from fleetgate.store import Catalog, LogRepository
from fleetgate.store.catalog import ConflictError
from fleetgate.store.changes import ChangeFeed
from fleetgate.store.migrate import head_revision
from fleetgate.store.schema import assets, log_entries, metadata
from fleetgate.workspace import Workspace, init_workspace
from fleetgate.workspace.config import load_config, save_config
from people import AS_OF, CLOCK, make_team

ROOT = Path(__file__).resolve().parents[1]


def workspace_on(home: Path, catalog_url: str | None) -> Path:
    """A workspace whose cn-shanghai catalog is at `catalog_url` (the default SQLite file when None)."""
    init_workspace(home, "cn-shanghai")
    if catalog_url is not None:
        config = load_config(home)
        config.regions["cn-shanghai"].catalog = catalog_url
        save_config(config)
    return home


def _open_and_append(url: str, n: int, tag: int, keys: str) -> None:
    """In a child process: open the catalog (maybe migrating it) and append n log entries, one per transaction."""
    from fleetgate.audit.log import TransparencyLog
    from fleetgate.keys import KeyStore

    catalog = Catalog(url)
    log = TransparencyLog(catalog, KeyStore(Path(keys), "cn-shanghai"), "fleetgate/test")
    for i in range(n):
        with catalog.transaction() as conn:
            log.append_many(conn, [("model_update", {"writer": tag, "i": i})])
    catalog.close()


class CatalogContract:
    """What every catalog backend promises; subclasses provide `catalog_url` (None: the workspace's SQLite)."""

    @pytest.fixture
    def catalog_url(self, tmp_path: Path) -> str | None:
        raise NotImplementedError

    @pytest.fixture
    def fresh_url(self, tmp_path: Path) -> str:
        raise NotImplementedError

    # -- schema ------------------------------------------------------------------------------------
    def test_the_migrations_make_exactly_the_schema_of_schema_py(self, fresh_url: str) -> None:
        catalog = Catalog(fresh_url)
        with catalog.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
            revision = MigrationContext.configure(conn).get_current_revision()
        catalog.close()
        assert diff == [], f"store/schema.py and the migrations differ; add a migration: {diff}"
        assert revision == head_revision()

    def test_processes_opening_a_new_catalog_at_once_all_succeed(self, fresh_url: str, tmp_path: Path) -> None:
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_open_and_append, args=(fresh_url, 5, k, str(tmp_path / "keys"))) for k in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        assert [p.exitcode for p in procs] == [0, 0, 0, 0]
        catalog = Catalog(fresh_url)
        with catalog.connect() as conn:
            indexes = [i for (i,) in conn.execute(sa.select(log_entries.c.idx).order_by(log_entries.c.idx))]
        assert indexes == list(range(21)), "no gaps, no duplicate indexes (entry 0 opens the log)"
        catalog.close()

    def test_two_ingests_started_at_once_into_a_new_region(self, catalog_url: str | None, tmp_path: Path,
                                                          sample_drop_master: Path) -> None:
        home = workspace_on(tmp_path / "ws", catalog_url)
        other = tmp_path / "drop2"
        generate_sample(other, SampleSpec(vehicles=1, clips=1, seed=23, video_seconds=0.5, drive_seconds=4.0))
        procs = [_cli_popen(home, "ingest", str(drop)) for drop in (sample_drop_master, other, sample_drop_master)]
        outs = [p.communicate(timeout=600) for p in procs]
        for p, (_, err) in zip(procs, outs, strict=True):
            assert p.returncode == 0, err
            assert "CREATE" not in err and "Traceback" not in err
        with Workspace.open(home) as ws:
            assert not verify_region(ws).findings
            landed = {a["source_drop"] for a in ws.region().catalog.list_assets()}
            assert len(landed) == 2

    def test_an_ingest_during_an_export(self, catalog_url: str | None, tmp_path: Path,
                                        sample_drop_master: Path) -> None:
        home = workspace_on(tmp_path / "ws", catalog_url)
        with Workspace.open(home) as ws:
            team = make_team(ws, tmp_path / "people")
            ingest_drop(ws.region(), sample_drop_master)
            classify_region(ws)
            plan = make_plan(ws, "overseas", team.engineer, None, "train models", as_of=AS_OF, clock=CLOCK)
        write_plan(plan, tmp_path / "plan.json")
        other = tmp_path / "drop2"
        generate_sample(other, SampleSpec(vehicles=1, clips=1, seed=29, video_seconds=0.5, drive_seconds=4.0))
        export = _cli_popen(home, "export", "run", str(tmp_path / "plan.json"), env=team.env(team.engineer))
        ingest = _cli_popen(home, "ingest", str(other))
        for p in (export, ingest):
            _, err = p.communicate(timeout=600)
            assert p.returncode == 0, err
        with Workspace.open(home) as ws:
            assert not verify_region(ws).findings
            assert [e["package_id"] for e in open_log(ws).entries("export")] == ["pkg-" + plan.plan_id[5:]]

    def test_concurrent_log_appends_have_no_gaps_and_no_duplicates(self, fresh_url: str, tmp_path: Path) -> None:
        _open_and_append(fresh_url, 0, 9, str(tmp_path / "keys"))  # created first: this test is about appends
        ctx = multiprocessing.get_context("spawn")
        keys = str(tmp_path / "keys")
        procs = [ctx.Process(target=_open_and_append, args=(fresh_url, 40, k, keys)) for k in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(300)
        assert [p.exitcode for p in procs] == [0, 0, 0]
        catalog = Catalog(fresh_url)
        with catalog.connect() as conn:
            rows = conn.execute(sa.select(log_entries.c.idx, log_entries.c.entry).order_by(log_entries.c.idx)).all()
        assert [r.idx for r in rows] == list(range(121))
        per_writer = {k: sorted(int(t.split('"i":')[1].split(",")[0].rstrip("}")) for _, t in rows
                                if f'"writer":{k}' in t) for k in range(3)}
        assert per_writer == {k: list(range(40)) for k in range(3)}
        catalog.close()

    # -- following commits (the server's kept views) -----------------------------------------------
    def test_a_change_feed_sees_the_commits_of_other_processes(self, fresh_url: str, tmp_path: Path) -> None:
        keys = str(tmp_path / "keys")
        _open_and_append(fresh_url, 1, 0, keys)  # log_open, one model_update
        catalog = Catalog(fresh_url)
        feed = ChangeFeed(catalog)
        first = feed.poll()
        assert (first.size, first.last) == (2, {"log_open": 0, "model_update": 1})
        assert first.version() == 1 and first.version(frozenset({"model_update"})) == 0
        assert first.last_of(frozenset({"log_open", "credential"})) == 0
        ctx = multiprocessing.get_context("spawn")
        child = ctx.Process(target=_open_and_append, args=(fresh_url, 3, 1, keys))
        child.start()
        child.join(120)
        assert child.exitcode == 0
        after = feed.poll()  # the first look after another process's commits sees them all
        assert (after.size, after.last["model_update"], after.version()) == (5, 4, 4)
        assert after.commits > first.commits
        # a commit that appends no entry (a stored checkpoint) still counts as a commit
        other = Catalog(fresh_url)
        LogRepository(other).add_checkpoint(5, "00" * 32, "a note")
        other.close()
        assert feed.poll().commits > after.commits and feed.poll().size == 5
        assert after.checkpoint == (-1, 0) and feed.poll().checkpoint == (5, len("a note"))
        feed.close()
        catalog.close()

    # -- the tree's interior ----------------------------------------------------------------------
    def test_checkpoints_and_proofs_from_tiles_equal_those_from_every_leaf(self, catalog_url: str | None,
                                                                           tmp_path: Path) -> None:
        home = workspace_on(tmp_path / "ws", catalog_url)
        rng = random.Random(18)
        with Workspace.open(home) as ws:
            log, catalog = open_log(ws), ws.region().catalog
            for _ in range(12):  # chunks that end inside, at and across tile boundaries
                with catalog.transaction() as conn:
                    log.append_many(conn, [("model_update", {"n": i}) for i in range(rng.choice([1, 7, 255, 256,
                                                                                                  300, 700]))])
            with catalog.connect() as conn:
                leaves = [bytes.fromhex(h) for h in conn.execute(sa.select(log_entries.c.leaf_hash)
                                                                  .order_by(log_entries.c.idx)).scalars()]
            size, root = log.root()
            assert size == len(leaves) > 512 and root == root_from_leaf_hashes(leaves)
            for index in rng.sample(range(size), 20):
                old = rng.randrange(1, size + 1)
                assert log.prove(index, size)["proof"] == [p.hex() for p in inclusion_proof(index, leaves)]
                assert log.consistency(old, size) == consistency_proof(old, leaves[:size])
            assert log.checkpoint().root == root
            log.verify()

    # -- an old workspace --------------------------------------------------------------------------
    def test_an_old_workspace_is_migrated_with_a_message(self, catalog_url: str | None, tmp_path: Path,
                                                         sample_drop_master: Path) -> None:
        home = workspace_on(tmp_path / "ws", catalog_url)
        with Workspace.open(home) as ws:
            ingest_drop(ws.region(), sample_drop_master)
            url = ws.region().catalog.url
            before = open_log(ws).checkpoint()
        _make_it_old(url)
        proc = run_cli("catalog", "stats", home=home)
        assert proc.returncode == 0, proc.stderr
        assert "migrated a catalog made before schema migrations" in proc.stderr
        assert proc.stderr.count("\n") == 1, proc.stderr  # one line
        with Workspace.open(home) as ws:
            assert ws.region().catalog.migration is None  # only once
            assert not verify_region(ws).findings
            log = open_log(ws)
            assert log.root(before.size) == (before.size, before.root)
            assert {e["type"] for e in log.entries("ingest")} == {"ingest"}

    # -- errors --------------------------------------------------------------------------------------
    def test_database_errors_are_one_line_without_sql(self, catalog_url: str | None, tmp_path: Path,
                                                      sample_drop_master: Path) -> None:
        home = workspace_on(tmp_path / "ws", catalog_url)
        with Workspace.open(home) as ws:
            ingest_drop(ws.region(), sample_drop_master)
            catalog = ws.region().catalog
            row = catalog.list_assets(limit=1)[0]
            with pytest.raises(ConflictError) as info:
                with catalog.transaction() as conn:
                    catalog.insert_assets(conn, [row])
            assert "\n" not in info.value.message and "INSERT" not in info.value.message.upper()
            url = catalog.url
        _break_the_catalog(url)
        proc = run_cli("catalog", "stats", home=home)
        assert proc.returncode == 5, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: catalog "), proc.stderr
        assert "SELECT" not in proc.stderr and "[SQL" not in proc.stderr


def _cli_popen(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    import os

    full = {k: v for k, v in os.environ.items() if not k.startswith("FLEETGATE_")} | {"COLUMNS": "200"} | (env or {})
    return subprocess.Popen([sys.executable, "-m", "fleetgate", "--home", str(home), *args], env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _make_it_old(url: str) -> None:
    """Turn a catalog back into one made before migrations: no alembic_version, no tiles, no kind column."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE alembic_version"))
        conn.execute(sa.text("DROP TABLE log_tiles"))
        conn.execute(sa.text("DROP INDEX ix_log_entries_kind"))
        conn.execute(sa.text("ALTER TABLE log_entries DROP COLUMN kind"))
    baseline = importlib.import_module("fleetgate.store.migrations.versions.0001_baseline").baseline
    assert set(baseline.tables) <= set(sa.inspect(engine).get_table_names())
    engine.dispose()


def _break_the_catalog(url: str) -> None:
    """A table the catalog reads is gone: every read of it now fails in the database."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"ALTER TABLE {assets.name} RENAME TO assets_gone"))
    engine.dispose()


class TestSqliteCatalog(CatalogContract):
    @pytest.fixture
    def catalog_url(self, tmp_path: Path) -> str | None:
        return None

    @pytest.fixture
    def fresh_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'fresh.db'}"

    def test_a_change_feed_stays_put_until_someone_commits(self, fresh_url: str, tmp_path: Path) -> None:
        _open_and_append(fresh_url, 2, 0, str(tmp_path / "keys"))
        catalog = Catalog(fresh_url)
        feed = ChangeFeed(catalog)
        looks = [feed.poll() for _ in range(3)]
        assert looks[0] is looks[1] is looks[2]  # PRAGMA data_version did not move: nothing was read again
        with catalog.snapshot() as conn:  # a read is no commit
            conn.execute(sa.select(sa.func.count()).select_from(log_entries))
        assert feed.poll() is looks[0]
        _open_and_append(fresh_url, 1, 1, str(tmp_path / "keys"))
        assert feed.poll().size == 4
        feed.close()
        catalog.close()


@pytest.mark.postgres
class TestPostgresCatalog(CatalogContract):
    @pytest.fixture
    def catalog_url(self, postgres_url: str) -> str | None:
        return postgres_url

    @pytest.fixture
    def fresh_url(self, postgres_url: str) -> str:
        return postgres_url


@pytest.mark.postgres
def test_a_catalog_that_cannot_be_reached_is_one_line(postgres_server) -> None:
    with pytest.raises(StoreError) as info:
        Catalog(f"postgresql+psycopg://postgres:secret@127.0.0.1:{postgres_server.port}/no_such_database")
    message = info.value.message
    assert "\n" not in message and "secret" not in message and "no_such_database" in message
