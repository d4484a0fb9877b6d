"""Named points where a process can be held on purpose, so a crash test can kill -9 it exactly there.

Set SPYGLASS_FAILPOINT=<name> and the process, on reaching that point, prints
"spyglass failpoint <name>" to stderr and waits there until it is killed. Unset, a failpoint
costs one environment lookup.
"""

from __future__ import annotations

import os
import sys
import time

ENV = "SPYGLASS_FAILPOINT"
# Where they are: after the walk; after a batch is embedded, before it is staged; inside the
# staging transaction; after the index file is in place, before the SQL commit; after it.
NAMES = ("scan", "embed", "stage", "publish", "published")
# The Ray runner's: after a finished partition was committed.
RAY_NAMES = ("partition",)
# Publishing a rebuilt approximate index: its file is in place, before the SQL commit; after it.
ANN_NAMES = ("ann-publish", "ann-published")
# The words stage: after a chunk of items' texts was committed.
TEXT_NAMES = ("texts",)


def failpoint(name: str) -> None:
    """Hold here forever when SPYGLASS_FAILPOINT names this point."""
    if os.environ.get(ENV) != name:
        return
    print(f"spyglass failpoint {name}", file=sys.stderr, flush=True)
    while True:
        time.sleep(3600)


CRASH_ENV = "SPYGLASS_CRASHPOINT"
# Where a Ray encoder actor can be made to fail: "ray-actor" exits its process (as if killed),
# "ray-partition" raises inside the partition (as a CUDA out-of-memory would).
CRASH_NAMES = ("ray-actor", "ray-partition")


def crashpoint(name: str) -> None:
    """Fail here when SPYGLASS_CRASHPOINT is "<name>" or "<name>:<marker file>".

    With a marker file, only the first process to create it fails (and writes its pid there),
    so "killed once" can be arranged across processes; without one, every pass fails.
    """
    value = os.environ.get(CRASH_ENV, "")
    point, _, marker = value.partition(":")
    if point != name:
        return
    if marker:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
    if name == "ray-actor":
        os._exit(70)
    raise RuntimeError(f"crashpoint {name}")
