"""Where a serving worker's memory goes: its resident and anonymous memory (Linux's /proc), and the
live index's share of it, so SPYGLASS_INDEX_MEMORY can be checked where it is spent."""

from __future__ import annotations

import os

# The lines of /proc/<pid>/status read, and the names they are reported under (kB in the file).
_FIELDS = {"VmRSS": "resident_bytes", "RssAnon": "anonymous_bytes", "RssFile": "file_bytes"}


def process_memory(pid: int | str = "self") -> dict[str, int]:
    """resident_bytes, anonymous_bytes (heap, the model's weights, a loaded approximate index) and
    file_bytes (mapped files' pages: the stored vectors); empty where /proc is not there."""
    found: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name in _FIELDS and value.strip().endswith("kB"):
                    found[_FIELDS[name]] = int(value.split()[0]) * 1024
    except (OSError, ValueError):
        return {}
    return found


def index_memory(generation) -> dict[str, int]:
    """The live index's share: the stored vectors are memory-mapped (file pages every worker shares,
    which the kernel may drop and read again); an approximate index is read into each worker."""
    manifest = generation.manifest()
    return {"index_mapped_bytes": int(generation.size_bytes + manifest.size),
            "index_loaded_bytes": int(generation.ann_size_bytes or 0)}


def worker_memory(generation=None) -> dict[str, int]:
    """This process's memory, with the index's share when a generation is loaded."""
    return {"pid": os.getpid(), **process_memory(), **(index_memory(generation) if generation is not None else {})}
