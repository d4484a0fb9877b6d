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
# Publishing a rebuilt approximate index: its file is in place, before the SQL commit; after it.
ANN_NAMES = ("ann-publish", "ann-published")


def failpoint(name: str) -> None:
    """Hold here forever when SPYGLASS_FAILPOINT names this point."""
    if os.environ.get(ENV) != name:
        return
    print(f"spyglass failpoint {name}", file=sys.stderr, flush=True)
    while True:
        time.sleep(3600)
