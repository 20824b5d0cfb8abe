"""Training time and cluster size from a model spec and a chip (export-control.md §3).

    F_token = 6·N + 12·L·d_model·T_ctx          (PaLM App. B; attention term optional)
    tokens  = clips × tokens_per_clip × epochs
    tokens_per_clip = cameras × ceil(frames / t_tube) × (H / p) × (W / p)     (ViViT tubelets)
    T_train = tokens × F_token / (N_gpu × peak × MFU × goodput)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from fleetgate.compute.chips import Chip, chip_status
from fleetgate.errors import UsageError

SECONDS_PER_DAY = 86_400.0
ADAM_MIXED_BYTES_PER_PARAM = 16  # bf16 weights+grads, fp32 master weights and two Adam moments
USABLE_MEMORY_FRACTION = 0.8


@dataclass(frozen=True)
class ModelSpec:
    """A model and how a clip becomes tokens."""

    name: str
    params: float
    layers: int
    d_model: int
    cameras: int = 1
    frames: int = 1
    height: int = 1
    width: int = 1
    tubelet_t: int = 1
    patch: int = 1
    epochs: float = 1.0
    tokens_per_clip_override: float | None = None
    context: int | None = None  # attention context; default: tokens per camera
    attention: bool = True

    @property
    def tokens_per_camera(self) -> int:
        """Tubelet tokens one camera contributes."""
        return math.ceil(self.frames / self.tubelet_t) * (self.height // self.patch) * (self.width // self.patch)

    @property
    def tokens_per_clip(self) -> float:
        """Tokens per clip over all cameras."""
        if self.tokens_per_clip_override is not None:
            return self.tokens_per_clip_override
        return float(self.cameras * self.tokens_per_camera)

    @property
    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6N plus the attention term over the context."""
        ctx = self.context if self.context is not None else self.tokens_per_camera
        return 6.0 * self.params + (12.0 * self.layers * self.d_model * ctx if self.attention else 0.0)

    def total_flops(self, clips: float) -> float:
        """Training FLOPs for `clips` clips over all epochs."""
        return clips * self.tokens_per_clip * self.epochs * self.flops_per_token


MODEL_PRESETS: dict[str, ModelSpec] = {
    # The reference video ViT of the worked example: 8 cameras × 2 s × 10 fps at 256×448, 2×16×16 tubelets.
    "fleet-vit-1.2b": ModelSpec("fleet-vit-1.2b", params=1.2e9, layers=24, d_model=2048, cameras=8, frames=20,
                                height=256, width=448, tubelet_t=2, patch=16, epochs=2),
    # A language-model check: one "clip" is one token, attention term left out as in C ≈ 6ND.
    "llama3-70b": ModelSpec("llama3-70b", params=70e9, layers=80, d_model=8192, epochs=1,
                            tokens_per_clip_override=1.0, attention=False),
}


def parse_model_spec(spec: str) -> ModelSpec:
    """A preset name, a YAML file, or `preset,key=value,...` / `key=value,...` overrides."""
    if Path(spec).suffix in (".yaml", ".yml", ".json") and Path(spec).is_file():
        doc = yaml.safe_load(Path(spec).read_text("utf-8"))
        return _spec_from_mapping(doc, spec)
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    base: dict[str, Any] = {}
    if parts and "=" not in parts[0]:
        name = parts.pop(0)
        if name not in MODEL_PRESETS:
            raise UsageError(f"--model: unknown preset {name!r}; presets: {', '.join(MODEL_PRESETS)}")
        base = asdict(MODEL_PRESETS[name])
    for part in parts:
        key, _, value = part.partition("=")
        base[key.strip()] = value.strip()
    base.setdefault("name", "custom")
    return _spec_from_mapping(base, "--model")


def _spec_from_mapping(doc: Any, where: str) -> ModelSpec:
    if not isinstance(doc, dict):
        raise UsageError(f"{where}: a model spec must be a mapping")
    fields = ModelSpec.__dataclass_fields__
    kwargs: dict[str, Any] = {}
    for key, value in doc.items():
        if key == "tubelet" and isinstance(value, str):  # "2x16x16"
            t, p, _ = (int(v) for v in value.lower().split("x"))
            kwargs.update(tubelet_t=t, patch=p)
            continue
        if key not in fields:
            raise UsageError(f"{where}: unknown model field {key!r}")
        kwargs[key] = _coerce(key, value, fields[key].type, where)
    for key in ("params", "layers", "d_model"):
        if key not in kwargs:
            raise UsageError(f"{where}: model field {key!r} is required")
    return ModelSpec(**kwargs)


def _coerce(key: str, value: Any, type_name: Any, where: str) -> Any:
    if value is None or not isinstance(value, str):
        return value
    text = str(type_name)
    try:
        if text.startswith("bool"):
            return value.lower() in ("1", "true", "yes")
        if text.startswith("int"):
            return int(float(value))
        if text.startswith("float"):
            return float(value)
    except ValueError as exc:
        raise UsageError(f"{where}: model field {key!r}: {value!r} is not a number") from exc
    return value


@dataclass
class PlanRow:
    """One chip's answer: chips, days, memory floor, communication and power."""

    chip: str
    eccn: str
    us_licence: str
    needs_licence: bool
    chips: int
    days: float
    total_flops: float
    peak_tflops: float
    mfu: float
    goodput: float
    memory_floor_chips: int
    step_compute_s: float
    step_comm_s: float
    gpu_power_mw: float
    facility_power_mw: float
    overlays: list[str] = field(default_factory=list)


def plan_training(model: ModelSpec, clips: float, chip: Chip, *, count: int | None = None,
                  days: float | None = None, precision: str = "bf16", mfu: float | None = None,
                  goodput: float | None = None, country: str = "CN", batch_clips: int = 512,
                  network_gbs: float = 50.0, pue: float = 1.3, as_of=None) -> PlanRow:  # noqa: ANN001
    """Answer either 'how long with `count` chips' or 'how many chips to finish in `days`'."""
    if (count is None) == (days is None):
        raise UsageError("give exactly one of --count or --days")
    if clips <= 0:
        raise UsageError("--clips must be positive")
    chip = replace(chip, mfu=mfu if mfu is not None else chip.mfu,
                   goodput=goodput if goodput is not None else chip.goodput)
    if not (0 < chip.mfu <= 1 and 0 < chip.goodput <= 1):
        raise UsageError("--mfu and --goodput must be in (0, 1]")
    peak = chip.peak_tflops(precision) * 1e12
    flops = model.total_flops(clips)
    effective = peak * chip.mfu * chip.goodput
    memory_floor = math.ceil(ADAM_MIXED_BYTES_PER_PARAM * model.params
                             / (USABLE_MEMORY_FRACTION * chip.memory_gb * 1e9))
    if count is not None:
        if count < 1:
            raise UsageError("--count must be at least 1")
        n = count
    else:
        if days is None or days <= 0:
            raise UsageError("--days must be positive")
        n = max(math.ceil(flops / (days * SECONDS_PER_DAY * effective)), memory_floor)
    seconds = flops / (n * effective)
    # One data-parallel step: compute on the batch vs a ring all-reduce of bf16 gradients over the
    # scale-out network (2 × 2N bytes per GPU at `network_gbs`).
    step_compute = batch_clips * model.tokens_per_clip * model.flops_per_token / (n * peak * chip.mfu)
    step_comm = 2 * 2 * model.params / (network_gbs * 1e9) if n > 1 else 0.0
    status = chip_status(chip, country, as_of)
    return PlanRow(
        chip=chip.name, eccn=status.eccn, us_licence=status.us_licence, needs_licence=status.needs_licence,
        chips=n, days=seconds / SECONDS_PER_DAY, total_flops=flops, peak_tflops=peak / 1e12, mfu=chip.mfu,
        goodput=chip.goodput, memory_floor_chips=memory_floor, step_compute_s=step_compute,
        step_comm_s=step_comm, gpu_power_mw=n * chip.tdp_w / 1e6, facility_power_mw=n * chip.tdp_w * pue / 1e6,
        overlays=status.overlays,
    )


def time_curve(model: ModelSpec, clips: float, chip: Chip, counts: list[int], **kwargs: Any) -> list[float]:
    """Training days for each chip count (for the time-versus-chips plot)."""
    return [plan_training(model, clips, chip, count=k, **kwargs).days for k in counts]
