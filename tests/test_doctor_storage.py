"""doctor's storage check: the free space where the door writes, measured on the real file
systems (this machine's disk and, where there is one, a tmpfs at /dev/shm). A full card does
not stop the door, so little space is a warning, never a failure."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_doctor import base_config, doctor

from edgeface.config import load_config
from edgeface.door import doctor as doctor_module
from edgeface.door.doctor import check_storage


def test_doctor_reports_the_free_space_of_the_state_folder(tmp_path: Path, photo_dir: Path) -> None:
    code, checks = doctor(base_config(tmp_path, photo_dir))
    assert code == 0
    ok, detail = checks["storage"]
    assert ok and detail.endswith(" MB free (state_dir)"), detail
    free = shutil.disk_usage(tmp_path).free / 1e6
    shown = float(detail.split()[0].replace(",", ""))
    assert abs(shown - free) < 0.05 * free + 50  # the folder's own file system (created later)


def test_little_free_space_is_a_warning_naming_each_file_system(
    tmp_path: Path, photo_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second file system (tmpfs at /dev/shm) on this machine")
    snapshots = shm / f"edgeface-test-{tmp_path.name}"
    config = load_config(
        base_config(
            tmp_path, photo_dir, f"snapshots:\n  enabled: true\n  folder: {snapshots}/snaps\n"
        )
    )
    ok = check_storage(config)
    assert ok.ok and not ok.warning and "(state_dir)" in ok.detail
    assert "(snapshots folder)" in ok.detail  # another file system: its own figure
    monkeypatch.setattr(doctor_module, "LOW_SPACE_BYTES", 2**62)  # more than any disk has
    low = check_storage(config)
    assert low.ok and low.warning, low
    assert low.detail.startswith("warning: ") and "free for the state_dir" in low.detail
    assert "free for the snapshots folder" in low.detail
    assert "a full card keeps events in memory only" in low.detail
    assert not snapshots.exists()  # nothing created
