"""Timing a loaded TFLite interpreter: the one measurement behind ``edgeface bench``'s model
table and the detector's start-up choice between int8 and fp32 (``precision: auto``).

A CNN's arithmetic does not depend on its input's content, so inputs are random pixels; the
median of several runs after a warm-up is what a steady camera loop would see.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from edgeface.runtime import pixels_as_input


def prepare(interpreter: Any, shape: tuple[int, ...]) -> None:
    """Resize the input to ``shape`` (batch or spatial) and fill it with random pixels."""
    detail = interpreter.get_input_details()[0]
    if tuple(detail["shape"]) != shape:
        interpreter.resize_tensor_input(detail["index"], list(shape))
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
    interpreter.set_tensor(detail["index"], pixels_as_input(pixels, detail["dtype"]))


def median_ms(interpreter: Any, repeats: int, warmup: int = 3) -> float:
    """Median milliseconds of ``repeats`` invocations, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        interpreter.invoke()
    samples = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        interpreter.invoke()
        samples.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(samples)
