"""Where ``--draw`` may write its annotated picture: not over the photo being analysed, and not
into something that is not a file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from test_cli import edgeface


@pytest.mark.parametrize("command", ["detect", "identify"])
def test_draw_does_not_overwrite_the_input_photo(
    tmp_path: Path, photo_dir: Path, command: str
) -> None:
    """`detect photo.jpg --draw photo.jpg` replaced the photo with the drawing, boxes burnt in,
    without a word (also through a link or another spelling of its path)."""
    photo = tmp_path / "photo.jpg"
    shutil.copy(photo_dir / "obama.jpg", photo)
    original = photo.read_bytes()
    (tmp_path / "link.jpg").symlink_to(photo)
    for target in (photo, tmp_path / "link.jpg", tmp_path / "." / "photo.jpg"):
        args = [command, str(photo), "--draw", str(target)]
        if command == "identify":
            args += ["--gallery", str(tmp_path / "gallery.json")]
        result = edgeface(*args)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "would overwrite the input photo" in result.stderr
    assert photo.read_bytes() == original


def test_draw_into_a_fifo_is_refused_without_waiting(tmp_path: Path, photo_dir: Path) -> None:
    """A FIFO named like a picture: writing the drawing blocked until somebody read it (for
    ever, under a script). It is refused before the models run."""
    fifo = tmp_path / "drawn.png"
    os.mkfifo(fifo)
    result = edgeface("detect", str(photo_dir / "obama.jpg"), "--draw", str(fifo))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not a regular file" in result.stderr
