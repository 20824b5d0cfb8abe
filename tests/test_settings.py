"""The settings model: flag → FLEETGATE_* env → fleetgate.toml → default; unknown keys named; all documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomli_w

from fleetgate.errors import ConfigError
from fleetgate.workspace import init_workspace, load_config
from fleetgate.workspace.config import file_document, setting_names

DOCS = Path(__file__).resolve().parent.parent / "docs" / "operations.md"

# the fleetgate.toml a workspace made before the settings model held (keys and [gate] approvers as then)
OLD_FILE = """version = 1
default_region = "cn-shanghai"

[policy]
packs = ["cn-auto-2021", "cn-xborder-2024"]

[keys]
dir = "keys"

[gate.approvers]
STANDARD_CONTRACT_OR_CERT = 1
SECURITY_ASSESSMENT = 3

[regions.cn-shanghai]
country = "CN"
blob_store = "regions/cn-shanghai/blobs"
catalog = "sqlite:///regions/cn-shanghai/catalog.db"
zone = "lingang"
ciio = false
surveying_approval = true

[destinations.overseas]
country = "US"
url = "destinations/overseas"
"""


def _write(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    (home / "fleetgate.toml").write_text(text, encoding="utf-8")
    return home


def test_an_existing_fleetgate_toml_reads_as_before(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, OLD_FILE))
    assert cfg.packs == ["cn-auto-2021", "cn-xborder-2024"]
    assert cfg.gate.approvers == {"STANDARD_CONTRACT_OR_CERT": 1, "SECURITY_ASSESSMENT": 3}
    region = cfg.region(None)
    assert (region.zone, region.surveying_approval, region.exporter_id) == ("lingang", True, "cn-shanghai")
    assert cfg.destinations["overseas"].country == "US" and cfg.keys.dir == "keys"
    assert cfg.web.port == 8787 and cfg.web.host == "127.0.0.1"
    # and it is written back the same, with no [web] table while nothing differs from the defaults
    assert file_document(cfg) == {**__import__("tomllib").loads(OLD_FILE)}


def test_flag_beats_environment_beats_file_beats_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = _write(tmp_path, OLD_FILE + "\n[web]\nport = 9001\nsession_minutes = 60\n")
    assert load_config(home).web.port == 9001  # file over default
    assert load_config(home).web.login_attempts_per_minute == 5  # default
    monkeypatch.setenv("FLEETGATE_WEB__PORT", "9002")
    monkeypatch.setenv("FLEETGATE_WEB__OIDC__ISSUER", "http://localhost:1")
    cfg = load_config(home)
    assert (cfg.web.port, cfg.web.session_minutes, cfg.web.oidc.issuer) == (9002, 60, "http://localhost:1")
    assert load_config(home, {"web": {"port": 9003}}).web.port == 9003  # flag over environment
    assert load_config(home, {"web": {"port": 9003}}).web.session_minutes == 60  # the rest of [web] stays


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(colour="red"), "fleetgate.toml: colour: unknown key"),
    (lambda d: d["regions"]["cn-shanghai"].update(zonee="x"), "regions.cn-shanghai.zonee: unknown key"),
    (lambda d: d.update(web={"prot": 1}), "web.prot: unknown key"),
    (lambda d: d.update(web={"oidc": {"issuuer": "x"}}), "web.oidc.issuuer: unknown key"),
    (lambda d: d["gate"]["approvers"].update(LOCAL_ONLY=1), "gate.approvers.LOCAL_ONLY: not an approval-bound"),
    (lambda d: d["gate"]["approvers"].update(SECURITY_ASSESSMENT=0), "gate.approvers.SECURITY_ASSESSMENT: a whole "
                                                                      "number of at least 1"),
    (lambda d: d["regions"]["cn-shanghai"].pop("catalog"), "regions.cn-shanghai.catalog: required text value"),
    (lambda d: d["regions"]["cn-shanghai"].update(ciio="yes"), "regions.cn-shanghai.ciio: must be true or false"),
    (lambda d: d["destinations"]["overseas"].pop("country"), "destinations.overseas.country: required text"),
    (lambda d: d.update(default_region="mars"), "default_region: 'mars' is not one of the regions"),
    (lambda d: d.update(web={"port": "many"}), "web.port: a whole number"),
])
def test_a_bad_setting_is_one_line_naming_the_file_and_key(tmp_path: Path, edit, message: str) -> None:  # noqa: ANN001
    import tomllib

    doc = tomllib.loads(OLD_FILE)
    edit(doc)
    home = _write(tmp_path, tomli_w.dumps(doc))
    with pytest.raises(ConfigError) as err:
        load_config(home)
    assert str(home / "fleetgate.toml") in err.value.message and message in err.value.message
    assert "\n" not in err.value.message


def test_a_bad_environment_value_is_refused_naming_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = _write(tmp_path, OLD_FILE)
    monkeypatch.setenv("FLEETGATE_WEB__PORT", "99999")
    with pytest.raises(ConfigError, match="web.port: too large"):
        load_config(home)


def test_init_writes_a_file_the_model_reads_back(tmp_path: Path) -> None:
    cfg, changed = init_workspace(tmp_path / "ws", "cn-shanghai")
    assert changed and load_config(tmp_path / "ws").model_dump() == cfg.model_dump()


def test_the_docs_list_every_setting() -> None:
    text = DOCS.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z0-9_.<>]+)` \|", text, re.M))
    names = set(setting_names())
    assert names - documented == set(), "settings missing from docs/operations.md"
    assert documented - names == set(), "docs/operations.md lists settings that do not exist"
