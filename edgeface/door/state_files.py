"""Small JSON records in the daemon's state directory, written so a power cut cannot tear them.

The door keeps a few facts across restarts (which pushed files it has handled, the newest push
it accepted). Each is rewritten whole: to a temporary file in the same directory, flushed and
fsynced, renamed over the old one, and the directory fsynced, so after a crash the file holds
the old record or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, data: Any) -> None:
    """Replace ``path`` with ``data`` as JSON, atomically and durably (raises OSError)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w") as handle:
        json.dump(data, handle, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
