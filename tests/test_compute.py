"""Compute planner: the worked examples of shared/reference/export-control.md."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from cli_helpers import run_cli
from fleetgate.compute import MODEL_PRESETS, chip_status, classify_3a090, load_chips, parse_model_spec, plan_training
from fleetgate.compute.chips import find_chip
from fleetgate.errors import UsageError

CHIPS = load_chips()


def test_h100_tpp_and_class() -> None:
    h100 = CHIPS["H100"]
    assert round(h100.tpp) == 15_832
    assert round(h100.pd, 2) == 19.45
    assert classify_3a090(h100) == "3A090.a.1"


def test_h20_is_not_3a090_but_needs_a_licence_after_april_2025() -> None:
    h20 = CHIPS["H20"]
    assert round(h20.tpp) == 2_368
    assert classify_3a090(h20) == "not 3A090"
    assert chip_status(h20, "CN", date(2025, 3, 1)).us_licence.startswith("no licence")
    assert "is-informed" in chip_status(h20, "CN", date(2025, 5, 1)).us_licence
    assert "15% levy" in chip_status(h20, "CN", date(2025, 9, 1)).us_licence
    assert not chip_status(h20, "DE", date(2025, 9, 1)).needs_licence


def test_l20_pd_just_under_b2() -> None:
    l20 = CHIPS["L20"]
    assert round(l20.pd, 2) == 3.14
    assert classify_3a090(l20) == "not 3A090"


@pytest.mark.parametrize(("name", "expected"), [
    ("A100", "3A090.a.1"), ("L40S", "3A090.a.1"), ("B200", "3A090.a.1"),
    ("RTX 4090D", "not 3A090 (Note 2, consumer)"), ("RTX 4090", "3A090.a.1 (non-datacenter, NAC-eligible)"),
    ("MLU370-X8", "not 3A090"), ("Ascend 910B", "3A090.a.1"),
])
def test_classes_of_the_reference_table(name: str, expected: str) -> None:
    assert classify_3a090(find_chip(CHIPS, name)) == expected


def test_jan_2026_envelope_is_case_by_case_but_b200_is_not() -> None:
    when = date(2026, 11, 21)
    assert "case-by-case" in chip_status(CHIPS["H200"], "CN", when).us_licence
    assert "presumption of denial" in chip_status(CHIPS["B200"], "CN", when).us_licence
    assert "presumption of denial" in chip_status(CHIPS["H200"], "CN", date(2025, 12, 1)).us_licence
    assert any("customs" in n for n in chip_status(CHIPS["H200"], "CN", when).overlays)


def test_llama3_70b_takes_about_11_days_on_16k_h100() -> None:
    # The reference's check counts 6·N·D with no goodput loss, so goodput is set to 1.
    row = plan_training(MODEL_PRESETS["llama3-70b"], 15e12, CHIPS["H100"], count=16_384, mfu=0.40, goodput=1.0)
    assert row.days == pytest.approx(11.25, rel=0.02)


def test_video_vit_worked_example() -> None:
    model = MODEL_PRESETS["fleet-vit-1.2b"]
    assert model.tokens_per_camera == 4_480 and model.tokens_per_clip == 35_840
    assert model.flops_per_token == pytest.approx(9.9e9, rel=0.01)
    assert model.total_flops(100e6) == pytest.approx(7.1e22, rel=0.01)
    days = {c: plan_training(model, 100e6, CHIPS[c] if c in CHIPS else find_chip(CHIPS, c), count=1024,
                             goodput=1.0).days for c in ("H100", "H20", "Ascend 910B")}
    assert days["H100"] == pytest.approx(2.0, rel=0.03)
    assert days["Ascend 910B"] == pytest.approx(8.4, rel=0.03)
    assert days["H20"] == pytest.approx(12.0, rel=0.03)
    # 1,024 H20 × 12 d / 2 d ≈ 6,144; the note's "6,840 H20 for 2 d" does not follow from its own 12 d.
    sized = plan_training(model, 100e6, CHIPS["H20"], days=2, goodput=1.0)
    assert sized.chips == pytest.approx(1024 * days["H20"] / 2, rel=0.01)


def test_days_mode_respects_the_memory_floor() -> None:
    row = plan_training(MODEL_PRESETS["llama3-70b"], 1e6, CHIPS["H20"], days=365)
    assert row.chips == row.memory_floor_chips == 15  # 16 B × 70e9 / (0.8 × 96 GB)


def test_model_spec_parsing_and_errors(tmp_path: Path) -> None:
    spec = parse_model_spec("fleet-vit-1.2b,cameras=1,frames=20")
    assert spec.cameras == 1 and spec.tokens_per_clip == 4_480
    custom = parse_model_spec("params=3e8,layers=12,d_model=1024,cameras=2,frames=16,height=224,width=224,"
                              "tubelet=2x16x16")
    assert custom.tokens_per_clip == 2 * 8 * 14 * 14
    with pytest.raises(UsageError, match="unknown model field"):
        parse_model_spec("params=1,layers=1,d_model=1,colour=red")
    with pytest.raises(UsageError, match="unknown preset"):
        parse_model_spec("gpt-9")
    with pytest.raises(UsageError, match="exactly one"):
        plan_training(spec, 1e6, CHIPS["H100"])


def test_user_chips_file_adds_a_chip(tmp_path: Path) -> None:
    extra = tmp_path / "chips.yaml"
    extra.write_text("chips:\n  - {name: X1, vendor: Acme, origin: US, datacenter: true, bf16_tflops: 100,"
                     " memory_gb: 32, memory_bw_tbs: 1, tdp_w: 300, die_mm2: 500}\n")
    chips = load_chips(extra)
    # TPP 1,600 and PD 3.2 sit exactly on the lower edges of 3A090.b.2
    assert chips["X1"].tpp == 1600 and classify_3a090(chips["X1"]) == "3A090.b.2"


def test_cli_chips_and_plan_json(tmp_path: Path) -> None:
    chips = json.loads(run_cli("compute", "chips", "--format", "json", "--as-of", "2026-11-21", check=True).stdout)
    h20 = next(c for c in chips["chips"] if c["name"] == "H20")
    assert h20["tpp"] == 2368 and h20["sources"]["figures"]
    plot = tmp_path / "plan.png"
    out = run_cli("compute", "plan", "--clips", "1e9", "--chips", "H20,H100,Ascend 910B", "--count", "1024",
                  "--plot", str(plot), "--format", "json", check=True).stdout
    rows = json.loads(out)["rows"]
    assert [r["chip"] for r in rows] == ["H20", "H100", "Ascend 910B"]
    assert rows[0]["days"] > rows[2]["days"] > rows[1]["days"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = run_cli("compute", "plan", "--clips", "1e9", "--days", "30", check=True).stdout
    assert "H100" in table and "days" in table
    bad = run_cli("compute", "plan", "--clips", "1e9", "--chips", "Z9", "--count", "1")
    assert bad.returncode == 2 and "unknown chip" in bad.stderr
