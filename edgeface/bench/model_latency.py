"""Per-model latency of the fp32 and int8 exports, side by side.

The int8 models exist to be faster on a Pi's CPU, not only smaller; this benchmark is what makes
that claim checkable on any board: each network runs at the input size it sees in the pipeline
(P-Net on one 640×480-frame pyramid level, R-Net/O-Net on a batch of candidates, the embedder on
one face) with the thread counts asked for, and the table shows the int8 / fp32 speed-up.
Input content does not change a CNN's arithmetic, so inputs are random pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgeface.model_files import PRECISIONS, model_name, model_path
from edgeface.model_timing import median_ms, prepare
from edgeface.runtime import load_interpreter

#: (logical model, input shape it is timed at, why that shape)
BENCH_SHAPES: tuple[tuple[str, tuple[int, ...], str], ...] = (
    ("pnet", (1, 288, 384, 3), "P-Net, first pyramid level of a 640x480 frame at min face 20"),
    ("rnet", (32, 24, 24, 3), "R-Net, batch of 32 candidates"),
    ("onet", (8, 48, 48, 3), "O-Net, batch of 8 candidates"),
    ("embedder", (1, 150, 150, 3), "embedder, one aligned face"),
)


@dataclass(frozen=True)
class LatencyRow:
    model: str
    shape: tuple[int, ...]
    threads: int
    fp32_ms: float
    int8_ms: float

    @property
    def speedup(self) -> float:
        return self.fp32_ms / self.int8_ms if self.int8_ms > 0 else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "shape": list(self.shape),
            "threads": self.threads,
            "fp32_ms": round(self.fp32_ms, 3),
            "int8_ms": round(self.int8_ms, 3),
            "int8_speedup": round(self.speedup, 2),
        }


def measure(
    threads: Sequence[int] = (1, 2), repeats: int = 30, models: Sequence[str] | None = None
) -> list[LatencyRow]:
    """Time every model's fp32 and int8 export at each thread count."""
    rows: list[LatencyRow] = []
    for name, shape, _why in BENCH_SHAPES:
        if models and name not in models:
            continue
        for count in threads:
            timings: dict[str, float] = {}
            for precision in PRECISIONS:
                interpreter = load_interpreter(
                    model_path(model_name(name, precision)), num_threads=count
                )
                prepare(interpreter, shape)
                timings[precision] = median_ms(interpreter, repeats)
            rows.append(LatencyRow(name, shape, count, timings["fp32"], timings["int8"]))
    return rows


def format_table(rows: Sequence[LatencyRow]) -> str:
    header = f"{'model':<9} {'input':<16} {'thr':>3} {'fp32 ms':>9} {'int8 ms':>9} {'int8 x':>7}"
    lines = [header, "-" * len(header)]
    for row in rows:
        shape = "x".join(str(s) for s in row.shape)
        lines.append(
            f"{row.model:<9} {shape:<16} {row.threads:>3} {row.fp32_ms:>9.2f} "
            f"{row.int8_ms:>9.2f} {row.speedup:>6.2f}x"
        )
    return "\n".join(lines)
