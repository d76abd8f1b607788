"""Which export of each MTCNN network to run: int8, fp32, or the faster of the two here.

int8 is not faster everywhere. XNNPACK's int8 kernels pay off only where the CPU has int8 dot
products (x86 VNNI, Armv8.2 dot-product); without them (a 2-core AVX2 box) every int8 network
ran at 0.5–0.8× the speed of its fp32 export, and even with VNNI the P-Net, whose convolutions
have only 3–32 channels, was not faster (``models/README.md``, "Speed"). Both exports pass the
same parity tests against the float reference, so the detector may use either; ``auto`` times
both on this very CPU at start-up (a fraction of a second) instead of asking the installer to.

The embedder is never chosen this way: its embeddings are stored in the gallery, which is
fingerprinted by the model that made them, so its precision is configured, not measured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edgeface.model_files import PRECISIONS, Precision
from edgeface.model_timing import median_ms, prepare
from edgeface.runtime import load_interpreter

#: ``int8`` / ``fp32`` for all three networks, or ``auto``: per network, whichever is faster.
DetectorPrecision = Literal["int8", "fp32", "auto"]
DETECTOR_PRECISIONS: tuple[DetectorPrecision, ...] = ("int8", "fp32", "auto")

#: The work each network stands for on a 640×480 camera: P-Net on the first pyramid level at a
#: minimum face of 40 px (the largest level, most of P-Net's time), a typical batch of R-Net and
#: of O-Net candidates.
PROBE_SHAPES: dict[str, tuple[int, ...]] = {
    "pnet": (1, 144, 192, 3),
    "rnet": (16, 24, 24, 3),
    "onet": (4, 48, 48, 3),
}
#: fp32 is chosen only when int8 takes at least this much longer: int8 is the default (and the
#: smaller file), and a coin-flip between near-equal timings would make detection differ from
#: one start to the next for no gain.
FP32_MIN_GAIN = 1.10
#: Timed invocations per export (after a warm-up); P-Net at the probe size takes 1–5 ms.
PROBE_REPEATS = 9


@dataclass(frozen=True)
class PrecisionChoice:
    """One network's measured exports and the one the detector runs."""

    network: str
    precision: Precision
    int8_ms: float | None = None  # None: not measured (a fixed precision was configured)
    fp32_ms: float | None = None

    def describe(self) -> str:
        if self.int8_ms is None or self.fp32_ms is None:
            return f"{self.network} {self.precision}"
        return (
            f"{self.network} {self.precision} "
            f"(int8 {self.int8_ms:.2f} ms, fp32 {self.fp32_ms:.2f} ms)"
        )


def faster_precision(int8_ms: float, fp32_ms: float) -> Precision:
    """int8 unless fp32 is clearly (``FP32_MIN_GAIN``) faster."""
    return "fp32" if int8_ms >= FP32_MIN_GAIN * fp32_ms else "int8"


def choose_precisions(
    requested: str,
    path_of: Callable[[str, Precision], Path],
    num_threads: int | None = None,
    repeats: int = PROBE_REPEATS,
) -> dict[str, PrecisionChoice]:
    """The export of each of ``pnet``, ``rnet`` and ``onet`` to run.

    ``path_of(network, precision)`` gives a (verified) model file. A fixed ``requested``
    precision measures nothing; ``auto`` times both exports of each network with the detector's
    thread count at ``PROBE_SHAPES`` and keeps the faster.
    """
    if requested not in DETECTOR_PRECISIONS:
        raise ValueError(f"precision must be one of {DETECTOR_PRECISIONS}, not {requested!r}")
    if requested != "auto":
        fixed: Precision = "int8" if requested == "int8" else "fp32"
        return {net: PrecisionChoice(net, fixed) for net in PROBE_SHAPES}
    choices = {}
    for net, shape in PROBE_SHAPES.items():
        timings: dict[str, float] = {}
        for precision in PRECISIONS:
            interpreter = load_interpreter(path_of(net, precision), num_threads=num_threads)
            prepare(interpreter, shape)
            timings[precision] = median_ms(interpreter, repeats)
        chosen = faster_precision(timings["int8"], timings["fp32"])
        choices[net] = PrecisionChoice(net, chosen, timings["int8"], timings["fp32"])
    return choices
