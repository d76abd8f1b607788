"""The peak memory a benchmark reports: its own process's, not its parent's.

``getrusage().ru_maxrss`` looks like the obvious figure, but Linux carries the parent's peak
over into a child started with fork + exec: a worker started by ``edgeface bench`` after the
per-model table (parent peak ~130 MB) could never report less than that, whatever it used
itself, which biases every memory ratio towards 1. ``VmHWM`` in ``/proc/self/status`` is the
same high-water mark, reset at exec, so it is what each pipeline really needed.
"""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (``VmHWM``; ``ru_maxrss`` off Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
