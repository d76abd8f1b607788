"""The watched push folder: each file content handed over once, never half-written, across
restarts (real files; the daemon-level path is in test_push.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from edgeface.door.push_folder import PushFolder


def _age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_settled_file_is_handed_over_once_even_across_restarts(tmp_path: Path) -> None:
    folder, record = tmp_path / "gallery.d", tmp_path / "state" / "push-files.json"
    folder.mkdir()
    (folder / "20-site.json").write_text('{"b": 1}')
    (folder / "10-base.json").write_text('{"a": 1}')
    (folder / "notes.txt").write_text("not a push")
    for path in folder.iterdir():
        _age(path, 5)
    watcher = PushFolder(folder, record)
    ready = watcher.ready()
    assert [f.path.name for f in ready] == ["10-base.json", "20-site.json"]  # name order
    assert ready[0].payload == b'{"a": 1}'
    for item in ready:
        watcher.handled(item)
    assert watcher.ready() == []
    assert PushFolder(folder, record).ready() == []  # a restart remembers
    (folder / "20-site.json").write_text('{"b": 2}')  # the next Ansible run changes one
    _age(folder / "20-site.json", 5)
    again = PushFolder(folder, record).ready()
    assert [(f.path.name, f.payload) for f in again] == [("20-site.json", b'{"b": 2}')]


def test_file_still_being_written_waits_until_it_settles(tmp_path: Path) -> None:
    watcher = PushFolder(tmp_path, tmp_path / "state" / "record.json", settle_seconds=60)
    push = tmp_path / "push.json"
    push.write_text('{"half": ')  # cp is still writing
    assert watcher.ready() == []  # first look: just appeared
    with open(push, "a") as handle:
        handle.write("true}")
    assert watcher.ready() == []  # changed since the last look: still settling
    assert [f.payload for f in watcher.ready()] == [b'{"half": true}']  # unchanged: settled


def test_removed_files_are_forgotten_and_a_missing_folder_is_empty(tmp_path: Path) -> None:
    folder = tmp_path / "gallery.d"
    record = tmp_path / "record.json"
    assert PushFolder(folder, record).ready() == []  # not created yet
    folder.mkdir()
    (folder / "a.json").write_text("{}")
    (folder / "b.json").write_text("[]")
    for path in folder.iterdir():
        _age(path, 5)
    watcher = PushFolder(folder, record)
    first, second = watcher.ready()
    watcher.handled(first)
    (folder / "a.json").unlink()
    assert [f.path.name for f in watcher.ready()] == ["b.json"]
    watcher.handled(second)
    assert '"a.json"' not in record.read_text()
    (folder / "a.json").write_text("{}")  # put back: handled again (it will be re-verified)
    _age(folder / "a.json", 5)
    assert [f.path.name for f in watcher.ready()] == ["a.json"]


def test_unreadable_record_means_starting_afresh(tmp_path: Path) -> None:
    record = tmp_path / "state" / "record.json"
    record.parent.mkdir()
    record.write_text("{torn")
    folder = tmp_path / "gallery.d"
    folder.mkdir()
    (folder / "p.json").write_text("{}")
    _age(folder / "p.json", 5)
    assert [f.path.name for f in PushFolder(folder, record).ready()] == ["p.json"]
