"""The one place that turns a ``.tflite`` file into a ready interpreter.

Three packages provide the TFLite interpreter; which one a board has depends on its OS and
Python version (see README). They are tried in this order unless ``EDGEFACE_TFLITE_RUNTIME``
names one:

* ``ai_edge_litert`` (LiteRT, the maintained successor; numpy 2; aarch64 wheels to Python 3.13)
* ``tflite_runtime`` (2.14, numpy 1 only — the ``legacy`` extra)
* ``tensorflow.lite`` (a full TensorFlow install; handy on a workstation, never required)

Errors name the model file and the fix, because on a door controller the log is often the only
thing an installer sees.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeface.errors import ModelLoadError, RuntimeMissingError
from edgeface.native_stderr import native_stderr

#: Environment variable that forces one runtime (``ai_edge_litert``, ``tflite_runtime`` or
#: ``tensorflow``).
RUNTIME_ENV = "EDGEFACE_TFLITE_RUNTIME"

#: Import path of each runtime's ``Interpreter`` class, in order of preference.
RUNTIME_MODULES: dict[str, str] = {
    "ai_edge_litert": "ai_edge_litert.interpreter",
    "tflite_runtime": "tflite_runtime.interpreter",
    "tensorflow": "tensorflow.lite",
}

INSTALL_HINT = (
    "install one with `pip install ai-edge-litert` (recommended), or "
    "`pip install 'edgeface[legacy]'` for tflite-runtime 2.14 on numpy 1"
)

# The flatbuffer file identifier TFLite writes at bytes 4..8 of every model.
_TFLITE_IDENTIFIER = b"TFL3"


@dataclass(frozen=True)
class Runtime:
    """An importable TFLite runtime: its name and its ``Interpreter`` constructor."""

    name: str
    interpreter_class: Callable[..., Any]


_cached_runtime: Runtime | None = None


def available_runtime(preferred: str | None = None) -> Runtime:
    """Return the first TFLite runtime that imports.

    ``preferred`` (or ``$EDGEFACE_TFLITE_RUNTIME``) restricts the search to that one runtime, so
    a board that has two installed can be pinned to the one that was validated on it.
    """
    global _cached_runtime
    choice = preferred or os.environ.get(RUNTIME_ENV) or None
    if choice is None and _cached_runtime is not None:
        return _cached_runtime
    if choice is not None and choice not in RUNTIME_MODULES:
        raise RuntimeMissingError(
            f"unknown TFLite runtime {choice!r} (from {RUNTIME_ENV} or config); "
            f"choose one of: {', '.join(RUNTIME_MODULES)}"
        )
    names = [choice] if choice else list(RUNTIME_MODULES)
    failures: list[str] = []
    for name in names:
        try:
            module = importlib.import_module(RUNTIME_MODULES[name])
        except Exception as exc:  # ImportError, or numpy ABI errors raised as others
            failures.append(f"{name}: {exc.__class__.__name__}: {exc}")
            continue
        runtime = Runtime(name=name, interpreter_class=module.Interpreter)
        if choice is None:
            _cached_runtime = runtime
        return runtime
    raise RuntimeMissingError(
        "no TFLite runtime could be imported (" + "; ".join(failures) + "); " + INSTALL_HINT
    )


def check_model_file(path: Path) -> None:
    """Fail early, with the file's name, if ``path`` cannot be a TFLite model."""
    if not path.exists():
        raise ModelLoadError(
            f"model file {path} does not exist; reinstall edgeface or rebuild the models "
            "(see models/README.md)"
        )
    if not path.is_file():
        raise ModelLoadError(f"model path {path} is not a file")
    size = path.stat().st_size
    if size < 16:
        raise ModelLoadError(f"model file {path} is truncated ({size} bytes)")
    with path.open("rb") as handle:
        header = handle.read(8)
    if header[4:8] != _TFLITE_IDENTIFIER:
        raise ModelLoadError(
            f"model file {path} is not a TFLite flatbuffer (no 'TFL3' identifier); "
            "it is corrupt or the wrong file"
        )


#: Cap for the default thread count: beyond 4, XNNPACK gains little on these small models and
#: the camera and MQTT threads need a core too.
MAX_DEFAULT_THREADS = 4


def default_threads() -> int:
    """Cores this process may use (cgroup/affinity aware), capped at MAX_DEFAULT_THREADS."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_DEFAULT_THREADS))


def load_interpreter(
    path: str | os.PathLike[str],
    num_threads: int | None = None,
    runtime: str | None = None,
) -> Any:
    """Load ``path`` into an interpreter with tensors allocated, ready to ``invoke()``.

    ``num_threads`` is passed to the runtime (XNNPACK uses it). ``None`` means every core up
    to :data:`MAX_DEFAULT_THREADS`: the runtimes' own default is a single thread, which leaves
    most of a Pi 4/5 idle while a frame waits (on the 2-core build machine 2 threads made the
    whole pipeline 1.6× faster). Any failure becomes a :class:`ModelLoadError` (or
    :class:`RuntimeMissingError`) whose message names the file.
    """
    if num_threads is None:
        num_threads = default_threads()
    model_path = Path(path)
    check_model_file(model_path)
    rt = available_runtime(runtime)
    try:
        with _runtime_banner_dropped():
            interpreter = rt.interpreter_class(model_path=str(model_path), num_threads=num_threads)
            interpreter.allocate_tensors()
            _invoke_once(interpreter)
    except Exception as exc:
        raise ModelLoadError(
            f"model file {model_path} could not be loaded by {rt.name}: {exc}; "
            "the file is corrupt or was built for a newer runtime"
        ) from exc
    return interpreter


def _invoke_once(interpreter: Any) -> None:
    """Run the model once on zeros.

    A model whose ops this runtime lacks can load and allocate, then fail on the first frame;
    running it here turns that into a load error that names the file, at start-up rather than
    at the door. It also moves the delegate's one-off set-up out of the first frame's time.
    """
    import numpy as np

    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    interpreter.invoke()


#: What the TFLite C++ runtime prints on stderr, once per process, when XNNPACK takes a model.
_RUNTIME_BANNER = "INFO: Created TensorFlow Lite XNNPACK delegate"
_banner_dropped = False


@contextlib.contextmanager
def _runtime_banner_dropped() -> Iterator[None]:
    """Keep the runtime's one-off "INFO: Created ... delegate" line off stderr (it landed in
    the middle of every command's output and in the journal); until it has been seen, fd 2 is
    caught while a model loads (:mod:`edgeface.native_stderr`: anything else is kept)."""
    global _banner_dropped
    if _banner_dropped:
        yield
        return
    with native_stderr(lambda line: line.startswith(_RUNTIME_BANNER)) as banner:
        yield
    if banner:
        _banner_dropped = True


def pixels_as_input(pixels: Any, dtype: Any) -> Any:
    """uint8 RGB pixels in the form a model's input tensor takes.

    * int8 (the int8 models: input scale 1, zero point −128, so that the whole graph runs in
      XNNPACK with no uint8→int8 QUANTIZE op in front): ``pixel − 128``, computed by flipping
      the top bit and reinterpreting the bytes — exact, and one cheap pass, no float copy;
    * float32 (the fp32 models take 0..255): a float copy;
    * uint8: unchanged.
    """
    import numpy as np

    kind = np.dtype(dtype)
    if kind == np.int8:
        return np.bitwise_xor(pixels, np.uint8(0x80)).view(np.int8)
    if kind == pixels.dtype:
        return pixels
    return pixels.astype(kind)


def delegation_report(interpreter: Any) -> tuple[int, list[str]]:
    """(number of XNNPACK partitions, names of the ops that run outside them).

    After ``allocate_tensors`` the op list holds the model's own nodes plus one ``DELEGATE``
    node per partition the delegate took. A model node still runs on the plain TFLite kernels
    if it feeds a partition, consumes one's output, or produces a model output no partition
    produces. An int8 model that is not one partition with nothing outside pays for the
    conversions between the partitions (int8 PReLU made MTCNN 2–3× slower that way).
    """
    ops = interpreter._get_ops_details()
    delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
    into = {int(t) for op in delegates for t in op["inputs"]}
    out_of = {int(t) for op in delegates for t in op["outputs"]}
    outputs = {int(d["index"]) for d in interpreter.get_output_details()}
    outside = []
    for op in ops:
        if op["op_name"] == "DELEGATE":
            continue
        produced, consumed = set(map(int, op["outputs"])), set(map(int, op["inputs"]))
        if produced & into or consumed & out_of or (produced & outputs) - out_of:
            outside.append(str(op["op_name"]))
    return len(delegates), outside
