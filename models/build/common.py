"""Shared helpers for the model build scripts (build-time only; never installed).

The manifest is written by several scripts (MTCNN, embedder, LFW evaluation), possibly at the
same time, so every update is a locked read-modify-write of one key.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MODELS_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = MODELS_DIR.parent
MANIFEST = MODELS_DIR / "manifest.json"
#: Real face data used for calibration and checks (never LFW test images); see README.
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_facts(path: Path) -> dict[str, Any]:
    """The manifest fields every model file carries: name, sha256 and size."""
    return {"file": path.name, "sha256": sha256_of(path), "bytes": path.stat().st_size}


@contextmanager
def _locked_manifest() -> Iterator[dict[str, Any]]:
    lock_path = MODELS_DIR / ".manifest.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data: dict[str, Any] = (
            json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {"schema": 1, "models": {}}
        )
        yield data
        fd, tmp = tempfile.mkstemp(dir=MODELS_DIR, prefix=".manifest.", suffix=".json")
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=2, sort_keys=False)
            out.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the daemon's own user must read it
        os.replace(tmp, MANIFEST)


def update_model_entry(name: str, entry: dict[str, Any]) -> None:
    """Replace (or add) ``models[name]`` in the manifest."""
    with _locked_manifest() as data:
        data.setdefault("models", {})[name] = entry


def merge_model_entry(name: str, fields: dict[str, Any]) -> None:
    """Add or overwrite some fields of an existing ``models[name]`` entry."""
    with _locked_manifest() as data:
        data.setdefault("models", {}).setdefault(name, {}).update(fields)


def update_section(key: str, value: Any) -> None:
    """Replace a top-level manifest section other than ``models`` (e.g. ``evaluation``)."""
    with _locked_manifest() as data:
        data[key] = value


def write_model(path: Path, data: bytes) -> None:
    """Replace a model file atomically (temp file + rename): a process that has the old file
    memory-mapped (TFLite maps models) keeps a valid old copy instead of a truncated one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
