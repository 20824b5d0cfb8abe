"""Exports to an S3-compatible bucket (a real SeaweedFS on loopback): published by a conditional put of the
marker, verifiable by the recipient, refused when the workspace asks for object lock the bucket lacks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cli_helpers import run_cli
from fleetgate.audit import open_log
from fleetgate.classify import classify_region
from fleetgate.gate import ExportRefused, make_plan, run_export, verify_region
from fleetgate.gate.package import verify_package_at
from fleetgate.gate.trust import sign_config
from fleetgate.ingest import ingest_drop
from fleetgate.workspace import Workspace, init_workspace
from fleetgate.workspace.config import DestinationConfig, load_config, save_config
from people import AS_OF, CLOCK, load_team, make_team

pytestmark = pytest.mark.s3


@pytest.fixture(scope="module")
def classified(sample_drop_master: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bucket")
    home = root / "ws"
    init_workspace(home, "cn-shanghai")
    with Workspace.open(home) as ws:
        make_team(ws, root / "people")
        ingest_drop(ws.region(), sample_drop_master)
        classify_region(ws)
    return home


def _to_bucket(classified: Path, tmp_path: Path, url: str, object_lock: bool) -> Path:
    home = tmp_path / "ws"
    shutil.copytree(classified, home)
    config = load_config(home)
    config.destinations["abroad"] = DestinationConfig("abroad", "US", url, object_lock=object_lock)
    save_config(config)
    with Workspace.open(home) as ws:
        sign_config(ws, "cn-shanghai", load_team(classified.parent / "people").admin, CLOCK)
    return home


def test_export_to_an_object_locked_bucket_is_published_once_and_verifies(s3_env, classified: Path,
                                                                          tmp_path: Path) -> None:
    bucket = s3_env.bucket(object_lock=True)
    home = _to_bucket(classified, tmp_path, f"s3://{bucket}/packages", object_lock=True)
    team = load_team(classified.parent / "people")
    with Workspace.open(home) as ws:
        signed = make_plan(ws, "abroad", team.engineer, None, "train models", as_of=AS_OF, clock=CLOCK)
        result = run_export(ws, signed, team.engineer, clock=CLOCK)
        assert result.status == "published" and result.path == f"s3://{bucket}/packages/{result.package_id}"
        report = verify_package_at(result.path, ws.region().keys.public_key().hex())
        assert report.files == len(result.exported) > 0
        again = run_export(ws, signed, team.engineer, clock=CLOCK)
        assert again.status == "already published"
        assert not verify_region(ws).findings
    client = s3_env.client()
    marker = f"packages/{result.package_id}/PUBLISHED"
    versions = client.list_object_versions(Bucket=bucket, Prefix=marker).get("Versions", [])
    assert len(versions) == 1, "the marker is written once, never over"
    proc = run_cli("verify-package", result.path, home=home, env_extra=s3_env.environ())
    assert proc.returncode == 0 and result.package_id in proc.stdout, proc.stderr


def test_a_bucket_without_object_lock_is_refused_when_the_workspace_asks(s3_env, classified: Path,
                                                                        tmp_path: Path) -> None:
    bucket = s3_env.bucket(object_lock=False)
    home = _to_bucket(classified, tmp_path, f"s3://{bucket}/packages", object_lock=True)
    team = load_team(classified.parent / "people")
    with Workspace.open(home) as ws:
        signed = make_plan(ws, "abroad", team.engineer, None, "train models", as_of=AS_OF, clock=CLOCK)
        with pytest.raises(ExportRefused, match=f"bucket {bucket} has no object lock"):
            run_export(ws, signed, team.engineer, clock=CLOCK)
        assert open_log(ws).entries("export") == []
    assert s3_env.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0, "nothing was written"


def test_a_published_marker_is_never_overwritten(s3_env, classified: Path, tmp_path: Path) -> None:
    bucket = s3_env.bucket(object_lock=False)
    home = _to_bucket(classified, tmp_path, f"s3://{bucket}/p", object_lock=False)
    team = load_team(classified.parent / "people")
    with Workspace.open(home) as ws:
        signed = make_plan(ws, "abroad", team.engineer, None, "train models", as_of=AS_OF, clock=CLOCK)
        from fleetgate.gate.run import open_destination, package_id_of

        dest = open_destination(ws, "abroad")
        package = package_id_of(signed.plan_id)
        dest.publish(package, {"PUBLISHED": b"first\n"})
        dest.publish(package, {"PUBLISHED": b"second\n"})  # a concurrent run losing the race: no overwrite
    body = s3_env.client().get_object(Bucket=bucket, Key=f"p/{package}/PUBLISHED")["Body"].read()
    assert body == b"first\n"


def test_region_store_and_destination_endpoints_come_from_the_settings(s3_env, sample_drop_master: Path,
                                                                       tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The S3 endpoints in fleetgate.toml, not the environment: blobs land in the region's bucket and the
    package in the destination's; only the credentials come from the AWS variables."""
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    store, target = s3_env.bucket(), s3_env.bucket()
    home = tmp_path / "ws"
    init_workspace(home, "cn-shanghai")
    config = load_config(home)
    region = config.regions["cn-shanghai"]
    region.blob_store, region.s3_endpoint_url = f"s3://{store}/blobs", s3_env.endpoint
    config.destinations["abroad"] = DestinationConfig("abroad", "US", f"s3://{target}/packages",
                                                      s3_endpoint_url=s3_env.endpoint)
    save_config(config)
    assert f's3_endpoint_url = "{s3_env.endpoint}"' in (home / "fleetgate.toml").read_text()
    with Workspace.open(home) as ws:
        team = make_team(ws, tmp_path / "people")
        report = ingest_drop(ws.region(), sample_drop_master)
        classify_region(ws)
        signed = make_plan(ws, "abroad", team.engineer, None, "train models", as_of=AS_OF, clock=CLOCK)
        result = run_export(ws, signed, team.engineer, clock=CLOCK)
        assert result.status == "published" and result.exported
        assert not verify_region(ws).findings
    client = s3_env.client()
    assert report.landed > 0 and client.list_objects_v2(Bucket=store, Prefix="blobs/")["KeyCount"] > 0
    marker = client.get_object(Bucket=target, Key=f"packages/{result.package_id}/PUBLISHED")["Body"].read()
    assert marker
