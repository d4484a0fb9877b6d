"""`spyglass index` as a user runs it, into a fresh data folder, timed whole: the benchmarks' one way to run it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def timed_index(folder: Path, home: Path, checkpoint: Path, **settings: str) -> tuple[float, str]:
    """(whole-job seconds, stdout + stderr) of `spyglass index` with ViT-B-32 on the CPU; settings are
    more SPYGLASS_* variables (PRECISION="fp32" is SPYGLASS_PRECISION=fp32). Exits on a failed run."""
    shutil.rmtree(home, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPYGLASS_")}
    env.update(SPYGLASS_HOME=str(home), SPYGLASS_MODEL="ViT-B-32", SPYGLASS_PRETRAINED=str(checkpoint),
               SPYGLASS_DEVICE="cpu", **{f"SPYGLASS_{name}": value for name, value in settings.items()})
    started = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).with_name("spyglass")), "index", "--no-progress", str(folder)],
                          capture_output=True, text=True, env=env, timeout=3600)
    elapsed = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"spyglass index failed:\n{done.stderr[-2000:]}")
    return elapsed, done.stdout + done.stderr
