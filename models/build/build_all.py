"""Rebuild every model in models/ and its manifest entry, in dependency order.

    pip install -e '.[build,test]'
    python models/build/build_all.py

MTCNN first (the embedder's calibration chips and the alignment template need the detector),
then the embedder, then the alignment template measured with both. Needs ../shared/data/faces
for calibration (never LFW).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
STEPS = ("build_mtcnn.py", "build_embedder.py", "build_template.py")


def main() -> int:
    for step in STEPS:
        print(f"==> {step}", flush=True)
        result = subprocess.run([sys.executable, str(HERE / step), *sys.argv[1:2]], check=False)
        if result.returncode != 0:
            print(f"{step} failed with exit status {result.returncode}", file=sys.stderr)
            return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
