"""Public-domain portraits for the demo and the tests, fetched through pip.

The ``face_recognition`` 1.3.0 source package on PyPI (MIT) ships US government portraits
(obama.jpg, obama2.jpg, obama3.jpg, biden.jpg, partial faces, a 32-bit PNG) in
``tests/test_images``. Fetching the sdist with pip — the same registry edgeface installs from —
and caching it means no photo is copied into this repository and nothing is downloaded at run
time by the daemon itself.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

from edgeface.errors import EdgefaceError

SDIST = "face_recognition==1.3.0"
ARCHIVE = "face_recognition-1.3.0.tar.gz"
IMAGES = "face_recognition-1.3.0/tests/test_images/"


def fetch_portraits(cache: Path, target: Path, names: set[str] | None = None) -> Path:
    """Extract the sdist's test images (all, or ``names``) into ``target``; download the sdist
    into ``cache`` first if it is not there."""
    wanted = names or set()
    if target.is_dir() and (
        all((target / n).exists() for n in wanted) if wanted else (target / "obama.jpg").exists()
    ):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / ARCHIVE
    if not archive.exists():
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                SDIST,
                "-d",
                str(cache),
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0 or not archive.exists():
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise EdgefaceError(f"could not fetch {SDIST} from PyPI for its portraits: {last}")
    partial = target.with_name(target.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            name = member.name[len(IMAGES) :]
            if member.isfile() and member.name.startswith(IMAGES) and "/" not in name:
                if wanted and name not in wanted:
                    continue
                source = tar.extractfile(member)
                if source is not None:
                    (partial / name).write_bytes(source.read())
    if target.exists():
        for file in partial.iterdir():
            file.replace(target / file.name)
        partial.rmdir()
    else:
        partial.rename(target)
    return target
