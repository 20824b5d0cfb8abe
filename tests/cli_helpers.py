"""Run the command line as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(*args: str, home: Path | None = None, check: bool = False,
            env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `python -m fleetgate` as a user would and capture its output."""
    cmd = [sys.executable, "-m", "fleetgate"]
    if home is not None:
        cmd += ["--home", str(home)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETGATE_")}
    env["COLUMNS"] = "200"
    env.update(env_extra or {})
    proc = subprocess.run(cmd + list(args), capture_output=True, text=True, env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc
