"""Where the shipped models live, and what the manifest says about them.

In a checkout the models are in ``<repo>/models``; ``pip install .`` installs the same
directory as the data package ``edgeface.models``. ``EDGEFACE_MODELS_DIR`` overrides both (for
an installer who keeps models on a separate partition).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from edgeface.errors import ModelLoadError

MODELS_DIR_ENV = "EDGEFACE_MODELS_DIR"

#: Logical model names → file names (int8 is what the daemon runs; fp32 exists for comparison).
MODEL_FILES: dict[str, str] = {
    "pnet": "mtcnn_pnet_int8.tflite",
    "rnet": "mtcnn_rnet_int8.tflite",
    "onet": "mtcnn_onet_int8.tflite",
    "embedder": "embedder_int8.tflite",
    "pnet_fp32": "mtcnn_pnet_fp32.tflite",
    "rnet_fp32": "mtcnn_rnet_fp32.tflite",
    "onet_fp32": "mtcnn_onet_fp32.tflite",
    "embedder_fp32": "embedder_fp32.tflite",
}


#: The two exports of every network. Both pass the same parity tests against the reference.
Precision = Literal["int8", "fp32"]
PRECISIONS: tuple[Precision, ...] = ("int8", "fp32")


def model_name(network: str, precision: str) -> str:
    """Logical name of ``network``'s export at ``precision`` (``pnet`` → ``pnet_fp32`` …)."""
    if precision not in PRECISIONS:
        raise ModelLoadError(f"unknown model precision {precision!r}; choose 'int8' or 'fp32'")
    return network if precision == "int8" else f"{network}_fp32"


def models_dir() -> Path:
    """Return the directory that holds the ``.tflite`` files and ``manifest.json``."""
    override = os.environ.get(MODELS_DIR_ENV)
    if override:
        return Path(override)
    checkout = Path(__file__).resolve().parent.parent / "models"
    if (checkout / "manifest.json").exists():
        return checkout
    spec = importlib.util.find_spec("edgeface.models")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    raise ModelLoadError(
        "cannot find the edgeface models directory; set EDGEFACE_MODELS_DIR or reinstall edgeface"
    )


def model_path(name: str) -> Path:
    """Path of a logical model (``pnet``, ``embedder``, ``embedder_fp32`` …)."""
    try:
        file_name = MODEL_FILES[name]
    except KeyError:
        raise ModelLoadError(
            f"unknown model {name!r}; known models: {', '.join(MODEL_FILES)}"
        ) from None
    return models_dir() / file_name


@lru_cache(maxsize=4)
def _read_manifest(directory: str) -> dict[str, Any]:
    path = Path(directory) / "manifest.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelLoadError(f"model manifest {path} is missing") from None
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"model manifest {path} is not valid JSON: {exc}") from None
    return data


def manifest() -> dict[str, Any]:
    """The parsed ``models/manifest.json``."""
    return _read_manifest(str(models_dir()))


@lru_cache(maxsize=16)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    del mtime_ns, size  # part of the cache key only: a replaced file is hashed again
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_model_file(name: str) -> Path:
    """Path of ``name`` after checking its sha256 against the manifest.

    A flatbuffer with flipped bytes in its weights still loads and runs — it just recognises
    the wrong people. Hashing ~6 MB once at start-up costs milliseconds, so it is always done.
    """
    path = model_path(name)
    entry = manifest().get("models", {}).get(_manifest_key(name))
    if entry is None:
        raise ModelLoadError(f"models/manifest.json has no entry for {path.name}")
    if not path.exists():
        raise ModelLoadError(
            f"model file {path} does not exist; reinstall edgeface or rebuild the models "
            "(see models/README.md)"
        )
    stat = path.stat()
    actual = _sha256(str(path), stat.st_mtime_ns, stat.st_size)
    if actual != entry.get("sha256"):
        raise ModelLoadError(
            f"model file {path} is corrupt or was replaced: sha256 {actual[:12]}… does not match "
            f"the manifest's {str(entry.get('sha256'))[:12]}…; reinstall edgeface"
        )
    return path


def _manifest_key(name: str) -> str:
    """Manifest entries are named after their file (``mtcnn_pnet_int8.tflite`` → ``…_int8``)."""
    return MODEL_FILES[name].removesuffix(".tflite")


def embedder_fingerprint(precision: str) -> str:
    """The sha256 the manifest gives the embedder export at ``precision``.

    Galleries and pushes carry it: embeddings made by different models must never be compared
    (int8 and fp32 embeddings differ by ~0.03, enough to move a borderline match)."""
    name = model_name("embedder", precision)
    entry = manifest().get("models", {}).get(_manifest_key(name))
    if entry is None:
        raise ModelLoadError(f"models/manifest.json has no entry for {MODEL_FILES[name]}")
    return str(entry["sha256"])


def load_model(name: str, num_threads: int | None = None) -> Any:
    """Verify and load one of the shipped models into a ready interpreter."""
    from edgeface.runtime import load_interpreter

    return load_interpreter(verify_model_file(name), num_threads=num_threads)
