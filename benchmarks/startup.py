"""Fixed costs of a short command, each in a fresh interpreter, the variants interleaved.

    python benchmarks/startup.py [--rounds 3]

With a ViT-B-32 checkpoint of random weights written here and its runtimes folder made once
(export and probe; SPYGLASS_RUNTIME=auto), each round runs, in new processes:

  exit, normal        import torch and open_clip, then let the interpreter tear itself down;
  exit, leave()       the same, leaving by spyglass.leave (what `spyglass` does);
  load, full          load_encoder with the graphs and probe cached but not encoder.json, so the
                      PyTorch model is built, then freed (what every load did before);
  load, from cache    the same load with encoder.json there: no PyTorch model built;
  import onnx         what a load that exports must import, and a cached load does not.

Prints best and median seconds of each (wall time of the whole process for the exits; the load
call alone for the loads, imports excluded).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXIT = "import torch, open_clip\n"
LOAD = """
import time, sys, torch, open_clip
from pathlib import Path
from spyglass.search.model import encoder as module
built = []
full_load = module.load_open_clip
module.load_open_clip = lambda *args, **kwargs: built.append(1) or full_load(*args, **kwargs)
started = time.perf_counter()
module.load_encoder("ViT-B-32", sys.argv[1], device="cpu", runtime="auto", runtime_dir=Path(sys.argv[2]))
print(time.perf_counter() - started)
assert bool(built) == (sys.argv[3] == "full"), built  # the PyTorch model built or not, as meant
"""
ONNX = "import time; started = time.perf_counter(); import onnx; print(time.perf_counter() - started)\n"


def wall(code: str, *args: str) -> tuple[float, str]:
    """(seconds the process took, what it printed)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600)
    if done.returncode:
        sys.exit(f"failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started, done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import torch

    from spyglass.search.model.encoder import load_encoder

    with tempfile.TemporaryDirectory(prefix="spyglass-startup-") as tmp:
        work = Path(tmp)
        checkpoint, runtimes = work / "vit-b-32.pt", work / "runtimes"
        torch.manual_seed(0)
        torch.save(load_encoder("ViT-B-32", None, device="cpu").model.state_dict(), checkpoint)
        load_encoder("ViT-B-32", str(checkpoint), device="cpu", runtime="auto", runtime_dir=runtimes)
        (facts,) = runtimes.glob("*/encoder.json")
        kept = work / "encoder.json"
        shutil.copy(facts, kept)
        times: dict[str, list[float]] = {k: [] for k in ("exit, normal", "exit, leave()", "load, full",
                                                          "load, from cache", "import onnx")}
        for round_no in range(args.rounds):
            times["exit, normal"].append(wall(EXIT)[0])
            times["exit, leave()"].append(wall(EXIT + "from spyglass.leave import leave\nleave(0)\n")[0])
            facts.unlink()  # the full load writes it again
            times["load, full"].append(float(wall(LOAD, str(checkpoint), str(runtimes), "full")[1]))
            shutil.copy(kept, facts)
            times["load, from cache"].append(float(wall(LOAD, str(checkpoint), str(runtimes), "cached")[1]))
            times["import onnx"].append(float(wall(ONNX)[1]))
            print(f"round {round_no + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
    print(f"\n{'':20}{'best':>8}{'median':>8}  seconds")
    for name, values in times.items():
        print(f"{name:20}{min(values):>8.2f}{statistics.median(values):>8.2f}")
    saved = statistics.median(times["exit, normal"]) - statistics.median(times["exit, leave()"])
    print(f"teardown skipped by leave(): {saved:.2f} s (medians)")


if __name__ == "__main__":
    main()
