"""Shared fixtures: a small generated drop, a fresh workspace, and a CLI runner."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import settings

from fleetgate.sample import SampleSpec, generate_sample
from fleetgate.workspace import Workspace, init_workspace

# CI runs a fixed, reproducible sample of examples (`HYPOTHESIS_PROFILE=ci` in .ci/run); developers'
# runs stay random so new counterexamples keep turning up.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep FLEETGATE_* settings of the developer's shell out of the tests."""
    for key in list(os.environ):
        if key.startswith("FLEETGATE_") and key != "FLEETGATE_CJK_FONT":
            monkeypatch.delenv(key, raising=False)


@pytest.fixture(scope="session")
def sample_drop_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small sample drop, generated once per session."""
    out = tmp_path_factory.mktemp("master") / "drop"
    generate_sample(out, SampleSpec(vehicles=2, clips=2, seed=11, video_seconds=1.0, drive_seconds=8.0))
    return out


@pytest.fixture
def sample_drop(sample_drop_master: Path, tmp_path: Path) -> Path:
    """A private copy of the sample drop that a test may damage."""
    dest = tmp_path / "drop"
    shutil.copytree(sample_drop_master, dest, symlinks=True)
    return dest


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """A fresh workspace with the cn-shanghai region."""
    init_workspace(tmp_path / "ws", "cn-shanghai")
    ws = Workspace.open(tmp_path / "ws")
    yield ws
    ws.close()


# -- real servers, started once per session on loopback (tests/servers.py) ---------------------------
@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL 15 server of Debian's package, in a temporary folder, for the whole session."""
    from servers import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """The URL of a fresh, empty database on the session's server."""
    return postgres_server.database()


@pytest.fixture(scope="session")
def s3_server():
    """SeaweedFS `weed mini` serving S3 (versioning, object lock) on loopback, for the whole session."""
    from servers import S3Server

    server = S3Server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch: pytest.MonkeyPatch):
    """The session's S3 server as the standard AWS variables of this process (and of processes it starts)."""
    for key, value in s3_server.environ().items():
        monkeypatch.setenv(key, value)
    return s3_server


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster of two worker CPUs for a module of `ray` tests, shut down after it so its
    daemons do not share the CPUs with the rest of the suite."""
    import ray

    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # CPU stages: leave the GPU variables alone
    tests = str(Path(__file__).resolve().parent)  # workers import the tests' own stage classes too
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [tests, os.environ.get(
                 "PYTHONPATH")]))}})
    yield ray
    ray.shutdown()


# The HTTP API's tests (test_api.py, test_subjects_api.py) share one home: the team of tests/people.py, the
# sample drop ingested and classified, a token per person; each test works on its own copy.
@pytest.fixture(scope="session")
def api_master(sample_drop_master: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from web_helpers import build_home

    root = tmp_path_factory.mktemp("api")
    build_home(root, sample_drop_master)
    return root


@pytest.fixture
def served(api_master: Path, tmp_path: Path):  # noqa: ANN201 - a web_helpers.Served
    from web_helpers import copy_home

    return copy_home(api_master, tmp_path / "copy")


@pytest.fixture
def client(served):  # noqa: ANN001, ANN201 - a TestClient with the services it serves as .services
    from fastapi.testclient import TestClient

    from fleetgate.services import Services
    from fleetgate.web import create_app

    services = Services(Workspace.open(served.home))
    with TestClient(create_app(services)) as c:
        c.services = services
        yield c
    services.close()
