"""The reference model (PyTorch, an optional extra): an MLP from 2 s of past path to 3 s of future.

torch is imported here only; `fleetgate[train]` installs it (torch==2.13.0, CPU build; CUDA when the
machine has it).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from fleetgate.errors import UsageError
from fleetgate.train.dataset import FUTURE, PAST, VELOCITY_WINDOW, Samples

SCALE_M = 20.0  # positions are divided by this before the network sees them
WEIGHT_DECAY = 0.05  # fleets are a handful of vehicles: keep the correction small where data is thin


def torch_module():
    try:
        import torch
    except ImportError as exc:
        raise UsageError("training needs PyTorch: pip install 'fleetgate[train]'") from exc
    return torch


def device(preference: str = "auto") -> str:
    torch = torch_module()
    if preference == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if preference == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")
    return preference


def new_model(seed: int = 0):
    """The MLP predicts a correction to the constant-velocity extrapolation of the past path.

    Starting from the classic baseline means the network spends its capacity on what depends on the
    roads (curves, braking, the turns a region's drivers take) rather than on relearning kinematics.
    """
    torch = torch_module()
    torch.manual_seed(seed)

    class EgoTrajectoryMLP(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mlp = torch.nn.Sequential(
                torch.nn.Linear(PAST * 2 + 1, 256), torch.nn.ReLU(),
                torch.nn.Linear(256, 256), torch.nn.ReLU(),
                torch.nn.Linear(256, FUTURE * 2),
            )
            # zero-initialized output: training starts from the baseline and moves away only where it helps
            torch.nn.init.zeros_(self.mlp[-1].weight)
            torch.nn.init.zeros_(self.mlp[-1].bias)
            self.register_buffer("horizon", torch.arange(1, FUTURE + 1, dtype=torch.float32).view(1, FUTURE, 1),
                                 persistent=False)

        def forward(self, x):
            past = x[:, : PAST * 2].view(-1, PAST, 2)
            step = (past[:, -1] - past[:, -1 - VELOCITY_WINDOW]) / VELOCITY_WINDOW
            baseline = past[:, -1:, :] + step[:, None, :] * self.horizon
            return baseline.reshape(-1, FUTURE * 2) + self.mlp(x)

    return EgoTrajectoryMLP()


def _tensors(samples: Samples, dev: str):
    torch = torch_module()
    x = torch.from_numpy(samples.inputs / SCALE_M).to(dev)
    y = torch.from_numpy(samples.targets / SCALE_M).to(dev)
    return x, y


def displacement_loss(pred, target):
    """Mean Euclidean distance per predicted point: ADE itself (squared error lets the few sharp
    junction turns dominate and trades away the typical case)."""
    diff = (pred - target).view(-1, FUTURE, 2)
    return ((diff**2).sum(dim=2) + 1e-8).sqrt().mean()


@dataclass
class FitResult:
    samples: int
    epochs: int
    final_loss: float
    samples_per_s: float


def fit(model, samples: Samples, epochs: int = 30, lr: float = 2e-3, batch: int = 256, seed: int = 0,
        dev: str = "cpu", proximal_mu: float = 0.0) -> FitResult:
    """Train in place (AdamW on the mean displacement).

    With `proximal_mu` > 0 the loss adds FedProx's proximal term mu/2·||w − w_start||², which keeps a
    region's local steps near the global model it started from when regions' data differ.
    """
    import time

    torch = torch_module()
    model.to(dev).train()
    x, y = _tensors(samples, dev)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=WEIGHT_DECAY)
    anchor = [p.detach().clone() for p in model.parameters()] if proximal_mu > 0 else []
    loss_value = float("nan")
    started = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator).to(dev)
        for start in range(0, len(x), batch):
            idx = order[start : start + batch]
            loss = displacement_loss(model(x[idx]), y[idx])
            if anchor:
                drift = sum(((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor, strict=True))
                loss = loss + proximal_mu / 2 * drift
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_value = float(loss.detach())
    elapsed = time.perf_counter() - started
    return FitResult(len(x), epochs, loss_value, len(x) * epochs / elapsed if elapsed > 0 else 0.0)


def evaluate(model, samples: Samples, dev: str = "cpu") -> dict[str, float]:
    """Average and final displacement errors in metres (ADE over the 3 s, FDE at 3 s)."""
    torch = torch_module()
    model.to(dev).eval()
    x, y = _tensors(samples, dev)
    with torch.no_grad():
        pred = model(x).cpu().numpy() * SCALE_M
    truth = y.cpu().numpy() * SCALE_M
    err = np.linalg.norm((pred - truth).reshape(len(pred), FUTURE, 2), axis=2)
    return {"ade_m": round(float(err.mean()), 3), "fde_m": round(float(err[:, -1].mean()), 3),
            "samples": len(pred)}


def state_bytes(model) -> bytes:
    torch = torch_module()
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    return buf.getvalue()


def load_state(model, data: bytes) -> None:
    torch = torch_module()
    model.load_state_dict(torch.load(io.BytesIO(data), weights_only=True))


def state_arrays(model) -> dict[str, np.ndarray]:
    """The model's parameters as NumPy arrays (what a federated update carries)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def load_arrays(model, arrays: dict[str, np.ndarray]) -> None:
    torch = torch_module()
    model.load_state_dict({k: torch.from_numpy(np.asarray(v).copy()) for k, v in arrays.items()})
