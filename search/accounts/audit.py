"""The audit log: one JSON line per login, failed login, token use and account change, on the
`spyglass.audit` logger. Never a password or a token (tokens by id); folders as a count unless
SPYGLASS_EXPOSE_PATHS=1."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Sequence

log = logging.getLogger("spyglass.audit")


def event(kind: str, **fields) -> None:
    """Log one event as a JSON object: its kind, when, and the fields given."""
    record = {"event": kind, "at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **fields}
    log.info(json.dumps(record, ensure_ascii=True, default=str))


def folders(grants: Sequence[str], expose_paths: bool) -> list[str] | int:
    """Granted folders as the log may show them: the folders themselves only with SPYGLASS_EXPOSE_PATHS."""
    return list(grants) if expose_paths else len(grants)
