"""128-d face embeddings from aligned 150×150 chips (dlib's metric ResNet, run by TFLite).

The network is dlib's ``dlib_face_recognition_resnet_model_v1`` rebuilt and exported by
``models/build/build_embedder.py``: ``int8`` (full-integer, what the daemon runs: about a quarter
of the size) or ``fp32`` (the float reference, identical to dlib to ~1e-6). Callers pass uint8
RGB chips, 0..255, as cut by dlib's ``get_face_chip`` (or :mod:`edgeface.vision.align`); the fp32
model gets them as float32, the int8 model as int8 ``pixel - 128`` (its input is quantized with
scale 1 / zero point -128, so the whole graph runs in XNNPACK with no QUANTIZE op in front; the
conversion is a top-bit flip, see :func:`edgeface.runtime.pixels_as_input`). Neither needs
TensorFlow or dlib at run time.

The model outputs dlib's raw descriptor, whose length varies from face to face (about 1.3-1.5);
:class:`FaceEmbedder` scales it to unit length so that distances mean the same everywhere
(Euclidean distance of unit vectors, FaceNet-style, in 0..2) and thresholds carry over between
the int8 and fp32 models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeface.errors import ImageError, ModelLoadError
from edgeface.model_files import Precision, model_name, verify_model_file
from edgeface.runtime import load_interpreter, pixels_as_input

#: Side of the square RGB chip the embedder takes (dlib's ``get_face_chip`` size).
CHIP_SIZE = 150
#: Length of an embedding.
EMBEDDING_SIZE = 128

#: Same-person decision threshold on the Euclidean distance between two unit embeddings: the
#: counterpart of dlib's 0.6 on its raw descriptors. Measured on LFW View 2 (6,000 pairs, dlib
#: HOG + 5-point chips; the 40 of 7,701 images HOG misses left out): each of the ten folds'
#: threshold chosen for best accuracy on the other nine; their mean is 0.434 for int8 (98.9 %
#: accuracy) and 0.433 for fp32 (99.0 %). dlib's 0.6 over the typical raw descriptor length
#: (about 1.38) lands in the same place. It suits a balanced same/different decision; a door,
#: which must rarely admit a stranger, wants a stricter one (see edgeface.recognition.matcher).
SAME_PERSON_THRESHOLD = 0.43


class FaceEmbedder:
    """Turns aligned face chips into unit-length 128-d embeddings.

    Usage::

        embedder = FaceEmbedder()              # int8; the runtime picks the thread count
        vectors = embedder.embed(chips)        # (N, 150, 150, 3) uint8 RGB → (N, 128) float32
        same = np.linalg.norm(vectors[0] - vectors[1]) <= SAME_PERSON_THRESHOLD

    All faces of a frame go through one ``invoke`` (the model has a dynamic batch dimension),
    which is cheaper than one call per face; the interpreter is re-sized only when the number of
    faces changes. Not thread-safe: give each thread its own instance.
    """

    def __init__(
        self,
        precision: Precision = "int8",
        num_threads: int | None = None,
        model: str | Path | None = None,
    ) -> None:
        """Load the ``int8`` or ``fp32`` embedder (or the ``.tflite`` file ``model``)."""
        name = model_name("embedder", precision)  # refuses an unknown precision
        self.precision = precision
        self.path = Path(model) if model is not None else verify_model_file(name)
        self._interpreter: Any = load_interpreter(self.path, num_threads=num_threads)
        inp = self._interpreter.get_input_details()[0]
        out = self._interpreter.get_output_details()[0]
        self._input_index: int = inp["index"]
        self._output_index: int = out["index"]
        self._input_dtype = np.dtype(inp["dtype"])
        self._dynamic_batch = bool(inp["shape_signature"][0] == -1)
        self._batch = int(inp["shape"][0])
        self._check_tensors(inp, out)

    def _check_tensors(self, inp: dict[str, Any], out: dict[str, Any]) -> None:
        """Refuse a model whose tensors do not fit what :meth:`embed` feeds and reads."""
        if tuple(inp["shape"][1:]) != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ModelLoadError(
                f"embedder {self.path} takes input shape {list(inp['shape'])}, "
                f"expected [N, {CHIP_SIZE}, {CHIP_SIZE}, 3]"
            )
        if int(out["shape"][-1]) != EMBEDDING_SIZE:
            raise ModelLoadError(
                f"embedder {self.path} gives {list(out['shape'])}, expected [N, {EMBEDDING_SIZE}]"
            )
        expected_quantization = {np.dtype(np.uint8): (1.0, 0), np.dtype(np.int8): (1.0, -128)}
        if self._input_dtype in expected_quantization:
            # Quantized models are fed raw pixels (int8: pixel - 128), which is only right when
            # the input quantization is exactly that identity mapping.
            scale, zero_point = inp["quantization"]
            want = expected_quantization[self._input_dtype]
            if (scale, zero_point) != want:
                raise ModelLoadError(
                    f"embedder {self.path} has input quantization scale {scale} / zero point "
                    f"{zero_point}; expected {want[0]:g} / {want[1]} "
                    "(rebuild with models/build/build_embedder.py)"
                )
        elif self._input_dtype != np.float32:
            raise ModelLoadError(f"embedder {self.path} has unsupported input {self._input_dtype}")

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """Embed (N, 150, 150, 3) or (150, 150, 3) uint8 RGB chips → (N, 128) float32, unit rows.

        Raises :class:`~edgeface.errors.ImageError` for anything else: a wrong size means the
        chip was not cut for this model, and float or BGR data would give plausible-looking but
        wrong embeddings, so it is refused rather than converted.
        """
        batch = self._validate(chips)
        if len(batch) == 0:
            return np.zeros((0, EMBEDDING_SIZE), dtype=np.float32)
        if self._dynamic_batch:
            raw = self._invoke(batch)
        else:
            raw = np.concatenate([self._invoke(batch[i : i + 1]) for i in range(len(batch))])
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        return (raw / np.maximum(norms, 1e-12)).astype(np.float32)

    def _validate(self, chips: np.ndarray) -> np.ndarray:
        if not isinstance(chips, np.ndarray):
            raise ImageError(f"face chips must be a numpy array, got {type(chips).__name__}")
        if chips.dtype != np.uint8:
            raise ImageError(
                f"face chips must be uint8 RGB (0..255), got dtype {chips.dtype}; "
                "pass the output of the aligner unchanged"
            )
        if chips.ndim == 3:
            chips = chips[None]
        if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ImageError(
                f"face chips must have shape (N, {CHIP_SIZE}, {CHIP_SIZE}, 3) or "
                f"({CHIP_SIZE}, {CHIP_SIZE}, 3), got {chips.shape}"
            )
        return chips

    def _invoke(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) != self._batch:
            self._interpreter.resize_tensor_input(
                self._input_index, [len(batch), CHIP_SIZE, CHIP_SIZE, 3]
            )
            self._interpreter.allocate_tensors()
            self._batch = len(batch)
        self._interpreter.set_tensor(
            self._input_index, pixels_as_input(np.ascontiguousarray(batch), self._input_dtype)
        )
        self._interpreter.invoke()
        return np.array(self._interpreter.get_tensor(self._output_index), dtype=np.float32)
