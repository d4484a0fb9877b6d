"""Leave the process the way `sys.exit` would, without the interpreter's teardown.

With PyTorch, torchvision and ONNX Runtime loaded, tearing the interpreter down (freeing every
module, tensor and session object one by one) takes over a second on a 2-core machine: one of the
largest fixed costs of a short `spyglass index` or `spyglass search`. The operating system frees
all of it at once. Everything the user can see is finished first: threads that are not daemons
(Python waits for them), the atexit functions (logging's flush among them), stdout and stderr.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading


def exit_code(code: object) -> int:
    """The status `sys.exit(code)` ends with; a message (not an int) is printed to stderr, as it does."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def leave(code: object = 0) -> None:
    """End the process with `code`, as `sys.exit` does, skipping only the interpreter's teardown."""
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if others:  # the normal exit waits for them: keep its order exactly
        sys.exit(code)
    status = exit_code(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`) or a closed stream: nothing more to say
            status = status or 120  # what Python exits with when it cannot flush stdout
    os._exit(status)
