"""Runners: map a stage's `Work` over batches of rows and give the batches back in input order."""

from __future__ import annotations

import atexit
import os
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from fleetgate.errors import UsageError
from fleetgate.store.residency import ACTING_ENV, ResidencyError, acting_for
from fleetgate.workspace.config import EngineConfig

Row = dict[str, Any]
Batch = Callable[[list[Row]], list[Row]]


@dataclass(frozen=True)
class Work:
    """A stage's work: `cls(home=..., region=..., **params)` is built where rows are processed and called
    on each batch. `local`, when given, builds it in this process from objects already open."""

    cls: type
    home: str
    region: str
    params: dict[str, Any] = field(default_factory=dict)
    local: Callable[[], Batch] | None = field(default=None, compare=False)

    def build(self) -> Batch:
        return self.cls(home=self.home, region=self.region, **self.params)


class Runner(Protocol):
    name: str

    def map(self, work: Work, rows: list[Row], batch_size: int) -> Iterator[list[Row]]:
        """The rows, `batch_size` at a time, after the work, in input order."""


class LocalRunner:
    """The work in this process, batch after batch."""

    name = "local"

    def map(self, work: Work, rows: list[Row], batch_size: int) -> Iterator[list[Row]]:
        fn = work.local() if work.local is not None else work.build()
        with acting_for(work.region) if work.local is None else _nothing():
            for start in range(0, len(rows), batch_size):
                yield fn(rows[start:start + batch_size])


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class RegionActor:
    """A Ray actor that works for one region only: it says so to the store (FLEETGATE_ACTING_REGION and
    acting_for, which the region's access log records with the actor's pid) and refuses rows of any other."""

    def __init__(self, work: Work) -> None:
        os.environ[ACTING_ENV] = work.region  # everything this actor process reads, it reads for this region
        self.region = work.region
        self.fn = work.build()  # models and packs load here, once per actor

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        rows = [pickle.loads(b) for b in batch["row"]]
        for row in rows:
            if row.get("region", self.region) != self.region:
                raise ResidencyError(f"an actor working for region {self.region} was given a row of region "
                                     f"{row['region']}; each actor works for one region only")
        with acting_for(self.region):
            out = self.fn(rows)
        return {"row": np.array([pickle.dumps(r) for r in out], dtype=object)}


class RayRunner:
    """The work as a Ray Data stage: `map_batches` with a callable class on an actor pool.

    Ray Data streams the dataset with backpressure (a bounded number of tasks in flight per actor,
    blocks held within the object store's budget) and, with `preserve_order`, gives the batches back
    in input order, re-batched to `batch_size` for the caller's commits."""

    name = "ray"

    def __init__(self, config: EngineConfig) -> None:
        self.config = config

    def _start(self) -> None:
        import ray

        if not ray.is_initialized():
            # the stages run on CPUs: let Ray leave CUDA_VISIBLE_DEVICES as it is (and not warn about it)
            os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                       "configure_logging": False}
            if self.config.address:
                ray.init(address=self.config.address, **options)
            else:
                ray.init(num_cpus=self.config.workers or os.cpu_count(), **options)
                atexit.register(ray.shutdown)

    def workers(self) -> int:
        import ray

        return self.config.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))

    def map(self, work: Work, rows: list[Row], batch_size: int) -> Iterator[list[Row]]:
        if not rows:
            return
        self._start()
        import ray
        from ray.data import ActorPoolStrategy, DataContext

        context = DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        remote = Work(work.cls, work.home, work.region, work.params)  # without the in-process builder
        blocks = max(1, min(len(rows) // batch_size + 1, 4 * self.workers()))
        ds = ray.data.from_items([{"row": pickle.dumps(r)} for r in rows], override_num_blocks=blocks)
        ds = ds.map_batches(RegionActor, fn_constructor_kwargs={"work": remote}, batch_size=batch_size,
                            batch_format="numpy", num_cpus=1,
                            compute=ActorPoolStrategy(min_size=1, max_size=self.workers(),
                                                      max_tasks_in_flight_per_actor=2))
        for batch in ds.iter_batches(batch_size=batch_size, batch_format="numpy", prefetch_batches=1):
            yield [pickle.loads(b) for b in batch["row"]]


def runner_for(config: EngineConfig) -> Runner:
    """The runner the workspace's `[engine]` asks for."""
    if config.kind == "local":
        return LocalRunner()
    if config.kind == "ray":
        try:
            import ray  # noqa: F401
            import ray.data  # noqa: F401
        except ImportError as exc:
            raise UsageError("engine.kind = \"ray\" needs Ray Data: pip install 'fleetgate[ray]'") from exc
        return RayRunner(config)
    raise UsageError(f"engine.kind: {config.kind!r} is not local or ray")


def home_of(path: Path) -> str:
    return str(Path(path).resolve())
