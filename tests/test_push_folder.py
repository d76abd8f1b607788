"""The watched push folder: each file content handed over once, never half-written, across
restarts (real files; the daemon-level path is in test_push.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from edgeface.door.push_folder import PushFile, PushFolder
from edgeface.recognition.gallery import Gallery


def _age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def take(watcher: PushFolder) -> list[PushFile]:
    """What the daemon takes at one look: each settled file, read just before it is applied."""
    return [item for candidate in watcher.ready() if (item := watcher.read(candidate))]


def test_settled_file_is_handed_over_once_even_across_restarts(tmp_path: Path) -> None:
    folder, record = tmp_path / "gallery.d", tmp_path / "state" / "push-files.json"
    folder.mkdir()
    (folder / "20-site.json").write_text('{"b": 1}')
    (folder / "10-base.json").write_text('{"a": 1}')
    (folder / "notes.txt").write_text("not a push")
    for path in folder.iterdir():
        _age(path, 5)
    watcher = PushFolder(folder, record)
    ready = take(watcher)
    assert [f.path.name for f in ready] == ["10-base.json", "20-site.json"]  # name order
    assert ready[0].payload == b'{"a": 1}'
    for item in ready:
        watcher.handled(item)
    assert watcher.ready() == []
    assert take(PushFolder(folder, record)) == []  # a restart remembers
    (folder / "20-site.json").write_text('{"b": 2}')  # the next Ansible run changes one
    _age(folder / "20-site.json", 5)
    again = take(PushFolder(folder, record))
    assert [(f.path.name, f.payload) for f in again] == [("20-site.json", b'{"b": 2}')]


def test_file_still_being_written_waits_until_it_settles(tmp_path: Path) -> None:
    watcher = PushFolder(tmp_path, tmp_path / "state" / "record.json", settle_seconds=60)
    push = tmp_path / "push.json"
    push.write_text('{"half": ')  # cp is still writing
    assert watcher.ready() == []  # first look: just appeared
    with open(push, "a") as handle:
        handle.write("true}")
    assert watcher.ready() == []  # changed since the last look: still settling
    assert [f.payload for f in take(watcher)] == [b'{"half": true}']  # unchanged: settled


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
    first, second = take(watcher)
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


def obama_and_push_folder(tmp_path: Path, photo_dir: Path) -> tuple[Gallery, Path]:
    """What the daemon tests push: a gallery with Obama enrolled, and an empty push folder."""
    from edgeface.door.demo import enrol
    from edgeface.recognition.gallery import GalleryStore

    people = tmp_path / "people.json"
    enrol(people, photo_dir / "obama.jpg", "obama")
    folder = tmp_path / "gallery.d"
    folder.mkdir()
    return GalleryStore(people).load(), folder


def test_daemon_applies_signed_files_once_and_rejects_bad_ones(
    tmp_path: Path, photo_dir: Path
) -> None:
    """The real daemon (no broker: file pushes work without MQTT) picks up a signed push file,
    rejects a wrongly signed one with the reason, applies a later file on SIGHUP without waiting
    for the poll, and after a restart handles none of them again."""
    import asyncio
    import json
    import signal

    from gpiozero.pins.mock import MockFactory

    from edgeface.config import CameraConfig, Config, PushConfig, RecognitionConfig
    from edgeface.door.service import DoorService
    from edgeface.recognition.gallery import GalleryStore
    from edgeface.recognition.push import full_push, generate_key, sign

    key = generate_key()
    gallery, folder = obama_and_push_folder(tmp_path, photo_dir)
    gallery_file = tmp_path / "state" / "gallery.json"

    def door(poll: float) -> tuple[DoorService, list[dict[str, object]]]:
        config = Config(
            device_id="front",
            state_dir=str(tmp_path / "state"),
            camera=CameraConfig(source="/dev/video97", reconnect_min_seconds=5),
            recognition=RecognitionConfig(gallery=str(gallery_file)),
            push=PushConfig(
                enabled=True, keys={"k1": key}, folder=str(folder), folder_poll_seconds=poll
            ),
        )
        events: list[dict[str, object]] = []
        return DoorService(config, pin_factory=MockFactory(), on_event=events.append), events

    def push_file(name: str, version: int, signing_key: str) -> None:
        document = full_push(gallery, version, {"device": "front"}, time.time())
        (folder / name).write_text(json.dumps(sign(document, signing_key, "k1")))
        _age(folder / name, 5)

    def gallery_events(events: list[dict[str, object]]) -> list[tuple[object, ...]]:
        return [
            (e["event_type"], e["origin"], e.get("gallery_version"), e.get("reason"))
            for e in events
            if str(e["event_type"]).startswith("gallery_")
        ]

    async def until(condition, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition():
            assert asyncio.get_running_loop().time() < deadline, "timed out"
            await asyncio.sleep(0.05)

    push_file("10-people.json", 5, key)
    push_file("20-forged.json", 6, generate_key())
    service, events = door(poll=0.1)

    async def first_run() -> int:
        runner = asyncio.create_task(service.run())
        await until(lambda: len(gallery_events(events)) == 2)
        service.stop_requested.set()
        return await runner

    assert asyncio.run(first_run()) == 0
    assert gallery_events(events) == [
        ("gallery_updated", "file:10-people.json", 5, None),
        ("gallery_rejected", "file:20-forged.json", 5, "bad signature"),
    ]
    assert GalleryStore(gallery_file).load().version == 5
    assert service.matcher.names == ["obama"]
    assert all(s.state is False for s in service.relay.device.pin_factory.pin(17).states)

    service, events = door(poll=3600)  # restart; the poll alone would not look again for an hour

    async def second_run() -> int:
        runner = asyncio.create_task(service.run())
        await asyncio.sleep(0.5)
        assert gallery_events(events) == []  # nothing handled twice after the restart
        push_file("30-update.json", 7, key)
        os.kill(os.getpid(), signal.SIGHUP)
        await until(lambda: len(gallery_events(events)) == 1)
        service.stop_requested.set()
        return await runner

    assert asyncio.run(second_run()) == 0
    assert gallery_events(events) == [("gallery_updated", "file:30-update.json", 7, None)]
    assert GalleryStore(gallery_file).load().version == 7


def test_handled_files_are_not_read_again_at_every_poll(tmp_path: Path) -> None:
    """The daemon polls every few seconds: a handled file that stays as it is (same size and
    modification time) is only looked at, not read and hashed again; a real change is read."""
    folder = tmp_path / "gallery.d"
    folder.mkdir()
    push = folder / "10-people.json"
    push.write_text('{"a": 1}')
    _age(push, 5)
    watcher = PushFolder(folder, tmp_path / "state" / "record.json")
    (item,) = take(watcher)
    watcher.handled(item)
    assert watcher.ready() == []  # not even read once more: handled as it is
    # Same size, same mtime, other bytes: only a re-read would notice, and none happens.
    stat = push.stat()
    push.write_text('{"a": 9}')
    os.utime(push, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert watcher.ready() == []
    push.write_text('{"a": 22}')  # an edit changes size/mtime: read again
    _age(push, 4)
    assert [f.payload for f in take(watcher)] == [b'{"a": 22}']


def test_daemon_refuses_a_push_older_than_max_age_while_its_clock_is_trusted(
    tmp_path: Path, photo_dir: Path, caplog: object
) -> None:
    """push.max_age_days on a real door fed through its push folder (the way an offline door
    gets pushes): a push signed 40 days ago is refused with the reason while the clock is
    synchronised, a fresh one applies; with the clock not synchronised (a Pi after a power
    cut) the age cannot be judged, so it is not checked — and the log says so."""
    import asyncio
    import json
    import logging

    import pytest
    from gpiozero.pins.mock import MockFactory

    from edgeface.config import CameraConfig, Config, PushConfig, RecognitionConfig
    from edgeface.door.clock_sync import ScheduleClock
    from edgeface.door.service import DoorService
    from edgeface.recognition.push import full_push, generate_key, sign

    assert isinstance(caplog, pytest.LogCaptureFixture)
    key = generate_key()
    gallery, folder = obama_and_push_folder(tmp_path, photo_dir)
    config = Config(
        device_id="front",
        state_dir=str(tmp_path / "state"),
        camera=CameraConfig(source="/dev/video97", reconnect_min_seconds=5),
        recognition=RecognitionConfig(gallery=str(tmp_path / "state" / "gallery.json")),
        push=PushConfig(
            enabled=True,
            keys={"k1": key},
            folder=str(folder),
            folder_poll_seconds=0.1,
            max_age_days=30,
        ),
    )
    synchronised = True
    events: list[dict[str, object]] = []
    service = DoorService(config, pin_factory=MockFactory(), on_event=events.append)
    service.schedule_clock = ScheduleClock("synchronised", probe=lambda: synchronised)

    def push_file(name: str, version: int, days_ago: float) -> None:
        document = full_push(gallery, version, {"device": "front"}, time.time() - days_ago * 86400)
        (folder / name).write_text(json.dumps(sign(document, key, "k1")))
        _age(folder / name, 5)

    def outcomes() -> list[tuple[object, ...]]:
        return [
            (e["event_type"], e.get("gallery_version"), str(e.get("reason"))[:40])
            for e in events
            if str(e["event_type"]).startswith("gallery_")
        ]

    async def scenario() -> int:
        nonlocal synchronised
        loop = asyncio.get_running_loop()

        async def until(count: int) -> None:
            deadline = loop.time() + 20
            while len(outcomes()) < count:
                assert loop.time() < deadline, outcomes()
                await asyncio.sleep(0.05)

        runner = asyncio.create_task(service.run())
        push_file("10-old.json", 5, days_ago=40)
        push_file("20-fresh.json", 6, days_ago=1)
        await until(2)
        synchronised = False
        push_file("30-old-unsynchronised.json", 7, days_ago=40)
        await until(3)
        service.stop_requested.set()
        return await runner

    with caplog.at_level(logging.WARNING, logger="edgeface.door.service"):
        assert asyncio.run(scenario()) == 0
    assert outcomes() == [
        ("gallery_rejected", 0, "push was signed 40.0 days ago, more than"),
        ("gallery_updated", 6, "None"),
        ("gallery_updated", 7, "None"),
    ]
    assert "its age is not checked (push.max_age_days)" in caplog.text


def test_files_are_read_one_at_a_time_not_all_at_each_look(tmp_path: Path) -> None:
    """Each look read every new file (up to push.max_bytes each) into one list before the
    first was applied — on the event loop: eight files held eight times the limit at once. A
    look now reads nothing; each file is read (in a worker thread) just before it is applied."""
    import tracemalloc

    folder = tmp_path / "gallery.d"
    folder.mkdir()
    limit = 1024 * 1024
    for index in range(8):
        (folder / f"{index}.json").write_bytes(b" " * limit)
        _age(folder / f"{index}.json", 5)
    watcher = PushFolder(folder, tmp_path / "record.json", max_bytes=limit)
    tracemalloc.start()
    try:
        candidates = watcher.ready()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(candidates) == 8 and peak < limit
    item = watcher.read(candidates[0])
    assert item is not None and len(item.payload) == limit
    # Changed after the look: not taken half-written; looked at again next time.
    (folder / "1.json").write_bytes(b"{}")
    assert watcher.read(candidates[1]) is None


def test_a_person_removed_by_a_push_does_not_stay_beside_the_gallery(
    tmp_path: Path, photo_dir: Path
) -> None:
    """A push that removes somebody left their templates in the door's gallery.json.prev —
    where `gallery remove` clears them — so their face stayed on the door's disk, and a
    `gallery rollback` let them in again. And a delta's removal that named nobody on the door
    (a typo: "carol" for "Carol") was applied without a word: gallery_updated now lists it
    as not_found."""
    import asyncio
    import json

    from embeddings import unit
    from gpiozero.pins.mock import MockFactory

    from edgeface.config import CameraConfig, Config, PushConfig, RecognitionConfig
    from edgeface.door.service import DoorService
    from edgeface.recognition.gallery import GalleryStore, encode_embedding
    from edgeface.recognition.push import full_push, generate_key, sign

    key = generate_key()
    gallery, folder = obama_and_push_folder(tmp_path, photo_dir)
    gallery_file = tmp_path / "state" / "gallery.json"
    gallery_file.parent.mkdir()
    running = GalleryStore(gallery_file).load()
    running.identities.update(gallery.identities)
    running.embedder = gallery.embedder
    running.add("bob", unit(7))
    running.version = 4
    GalleryStore(gallery_file).save(running, bump=False)
    bob = encode_embedding(unit(7))
    delta = {
        "format": "edgeface-gallery-push",
        "kind": "delta",
        "version": 5,
        "base_version": 4,
        "target": {"device": "front"},
        "issued_at": time.time(),
        "add": {},
        "remove": ["carol"],
    }
    (folder / "10-without-carol.json").write_text(json.dumps(sign(delta, key, "k1")))
    document = full_push(gallery, 6, {"device": "front"}, time.time())  # bob is removed
    (folder / "20-without-bob.json").write_text(json.dumps(sign(document, key, "k1")))
    for path in folder.iterdir():
        _age(path, 5)
    config = Config(
        device_id="front",
        state_dir=str(tmp_path / "state"),
        camera=CameraConfig(source="/dev/video97", reconnect_min_seconds=5),
        recognition=RecognitionConfig(gallery=str(gallery_file)),
        push=PushConfig(
            enabled=True, keys={"k1": key}, folder=str(folder), folder_poll_seconds=0.1
        ),
    )
    events: list[dict[str, object]] = []
    service = DoorService(config, pin_factory=MockFactory(), on_event=events.append)

    def updates() -> list[tuple[object, object]]:
        return [
            (e["gallery_version"], e["not_found"])
            for e in events
            if e["event_type"] == "gallery_updated"
        ]

    async def run() -> int:
        runner = asyncio.create_task(service.run())
        deadline = time.monotonic() + 20
        while len(updates()) < 2:
            assert time.monotonic() < deadline, events
            await asyncio.sleep(0.05)
        service.stop_requested.set()
        return await runner

    assert asyncio.run(run()) == 0
    assert updates() == [(5, ["carol"]), (6, [])]
    assert sorted(GalleryStore(gallery_file).load().identities) == ["obama"]
    holding_bob = [p.name for p in gallery_file.parent.iterdir() if bob in p.read_text("latin-1")]
    assert holding_bob == []
