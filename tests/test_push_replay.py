"""Replay protection and robustness of the daemon's push handling (real daemon, real files,
real broker): an old signed push stays refused when the gallery file is lost, the retained push
the broker re-sends at every reconnect is not reported as a rejection, a payload that breaks the
parser does not end push handling, and two scans of the push folder never take one file twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from broker import Broker, Listener
from embeddings import unit
from gpiozero.pins.mock import MockFactory

from edgeface.config import CameraConfig, Config, MqttConfig, PushConfig, RecognitionConfig
from edgeface.door.accepted_push import REMEMBERED_PUSHES, payload_digest
from edgeface.door.service import DoorService
from edgeface.recognition.gallery import Gallery, GalleryStore, encode_embedding
from edgeface.recognition.push import full_push, generate_key, sign

KEY = generate_key()


def signed_full(version: int, *names: str) -> bytes:
    gallery = Gallery()
    for seed, name in enumerate(names):
        gallery.add(name, unit(seed))
    document = full_push(gallery, version, {"device": "front"}, time.time())
    return json.dumps(sign(document, KEY, "k1")).encode()


def signed_delta(version: int, base_version: int, name: str, seed: int = 7) -> bytes:
    """A delta adding ``name``: published without the retain flag, as `gallery push` does."""
    document = {
        "format": "edgeface-gallery-push",
        "kind": "delta",
        "version": version,
        "base_version": base_version,
        "target": {"device": "front"},
        "issued_at": time.time(),
        "add": {name: {"embeddings": [encode_embedding(unit(seed))]}},
        "remove": [],
    }
    return json.dumps(sign(document, KEY, "k1")).encode()


def door(
    tmp_path: Path, events: list[dict[str, Any]], broker_port: int | None = None, **push: Any
) -> DoorService:
    config = Config(
        device_id="front",
        state_dir=str(tmp_path / "state"),
        camera=CameraConfig(source="/dev/video97", reconnect_min_seconds=5),
        recognition=RecognitionConfig(gallery=str(tmp_path / "gallery.json")),
        mqtt=MqttConfig(enabled=broker_port is not None, host="127.0.0.1", port=broker_port or 1),
        push=PushConfig(enabled=True, keys={"k1": KEY}, **push),
    )
    return DoorService(config, pin_factory=MockFactory(), on_event=events.append)


def outcomes(events: list[dict[str, Any]]) -> list[tuple[str, Any, Any]]:
    return [
        (e["event_type"], e.get("gallery_version"), e.get("reason"))
        for e in events
        if str(e["event_type"]).startswith("gallery_")
    ]


def test_an_old_push_stays_refused_after_the_gallery_file_is_lost(tmp_path: Path) -> None:
    """The door accepted versions 3 (which admits mallory) and 10 (which no longer does). Its
    gallery file is then torn or deleted: a replay of version 3 must still be refused, while
    the very push it applied last may come again and restore the gallery."""
    old, current = signed_full(3, "alice", "mallory"), signed_full(10, "alice")
    events: list[dict[str, Any]] = []
    service = door(tmp_path, events)
    asyncio.run(service.apply_gallery_push(old))
    asyncio.run(service.apply_gallery_push(current))
    assert service.gallery.version == 10

    gallery_file = tmp_path / "gallery.json"
    for loss in ("torn", "deleted"):
        if loss == "torn":
            gallery_file.write_text('{"format": "edgeface-gall')
        else:
            gallery_file.unlink()
        events.clear()
        restarted = door(tmp_path, events)
        assert restarted.gallery.version == 0  # what the file says: nothing
        asyncio.run(restarted.apply_gallery_push(old))
        assert outcomes(events) == [
            ("gallery_rejected", 0, "stale or replayed push: version 3 is not newer than 10")
        ]
        assert "mallory" not in restarted.matcher.names
        asyncio.run(restarted.apply_gallery_push(current))  # the last accepted push restores
        assert restarted.gallery.version == 10 and restarted.matcher.names == ["alice"]
        assert GalleryStore(gallery_file).load().version == 10


def test_a_payload_that_breaks_the_parser_does_not_end_push_handling(tmp_path: Path) -> None:
    """Unsigned junk in the push folder (JSON nested past the parser's recursion limit, text
    no UTF-8 can hold) is rejected with a reason, and a good push dropped after it is applied:
    the folder watcher lives on. A SIGHUP-triggered scan racing the poll takes each file once."""
    folder = tmp_path / "gallery.d"
    folder.mkdir()
    deep = b'{"format": "edgeface-gallery-push", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    (folder / "10-deep.json").write_bytes(deep)
    surrogate = json.loads(signed_full(4, "alice"))
    surrogate["note"] = "\ud800"
    (folder / "20-surrogate.json").write_text(json.dumps(surrogate))
    (folder / "30-good.json").write_bytes(signed_full(5, "alice"))
    past = time.time() - 5
    for path in folder.iterdir():
        os.utime(path, (past, past))
    events: list[dict[str, Any]] = []
    service = door(tmp_path, events, folder=str(folder), folder_poll_seconds=3600)

    async def two_scans_at_once() -> None:
        await asyncio.gather(service.apply_push_files(), service.apply_push_files())

    asyncio.run(two_scans_at_once())
    assert outcomes(events) == [
        ("gallery_rejected", 0, "payload is nested too deeply"),
        ("gallery_rejected", 0, "payload holds text that is not valid Unicode"),
        ("gallery_updated", 5, None),
    ]
    assert service.gallery.version == 5


def test_the_retained_push_resent_at_reconnect_is_not_a_rejection(
    tmp_path: Path, broker: Broker
) -> None:
    """A full push is published retained, so the broker sends it again every time the door
    subscribes. The door recognises the push it applied last and leaves its answer as it was
    ("applied", then "ready" after a restart) instead of reporting it as a stale rejection."""
    listener = Listener(broker.port, "edgeface/front/gallery/state")

    def state() -> dict[str, Any]:
        payloads = listener.payloads("edgeface/front/gallery/state")
        return json.loads(payloads[-1]) if payloads else {}

    async def run_door(events: list[dict[str, Any]], until: Callable[[], bool]) -> None:
        service = door(tmp_path, events, broker_port=broker.port)
        runner = asyncio.create_task(service.run())
        assert await asyncio.to_thread(listener.wait, until, 30)
        await asyncio.sleep(1.0)  # time for a re-sent retained push to be (mis)handled
        service.stop_requested.set()
        assert await runner == 0

    first: list[dict[str, Any]] = []
    second: list[dict[str, Any]] = []
    try:
        listener.client.publish(
            "edgeface/front/gallery/set", signed_full(6, "alice"), qos=1, retain=True
        )
        asyncio.run(run_door(first, lambda: state().get("status") == "applied"))
        asyncio.run(run_door(second, lambda: state().get("status") == "ready"))
        statuses = [
            json.loads(p)["status"] for p in listener.payloads("edgeface/front/gallery/state")
        ]
    finally:
        listener.close()
    assert outcomes(first) == [("gallery_updated", 6, None)]
    assert outcomes(second) == []  # the re-sent push is neither applied again nor rejected
    assert "rejected" not in statuses
    assert state()["version"] == 6 and state()["accepted_version"] == 6


def test_the_retained_full_push_resent_after_a_delta_is_not_a_rejection(
    tmp_path: Path, broker: Broker
) -> None:
    """Seen in a soak: `gallery push` (full, retained, v6), then `gallery push --photos` (a
    delta, not retained, v7). From then on, at every reconnect and every start, the broker
    re-sent the retained v6 and the door reported ``gallery_rejected`` "stale or replayed push:
    version 6 is not newer than 7" — an alert in Home Assistant, an audit entry and a retained
    gallery/state of "rejected" each time — because it remembered only the push it applied
    last. It now remembers the pushes it applied recently, and the re-sent v6 is old news."""
    listener = Listener(broker.port, "edgeface/front/gallery/state")

    def state() -> dict[str, Any]:
        payloads = listener.payloads("edgeface/front/gallery/state")
        return json.loads(payloads[-1]) if payloads else {}

    async def run_door(
        events: list[dict[str, Any]],
        until: Callable[[], bool],
        then: Callable[[], object] | None = None,
    ) -> None:
        service = door(tmp_path, events, broker_port=broker.port)
        runner = asyncio.create_task(service.run())
        assert await asyncio.to_thread(listener.wait, until, 30)
        if then is not None:
            then()
            assert await asyncio.to_thread(listener.wait, lambda: state().get("version") == 7, 30)
        await asyncio.sleep(1.0)  # time for a re-sent retained push to be (mis)handled
        service.stop_requested.set()
        assert await runner == 0

    def push_delta() -> None:
        listener.client.publish("edgeface/front/gallery/set", signed_delta(7, 6, "bob"), qos=1)

    first: list[dict[str, Any]] = []
    second: list[dict[str, Any]] = []
    try:
        listener.client.publish(
            "edgeface/front/gallery/set", signed_full(6, "alice"), qos=1, retain=True
        )
        asyncio.run(run_door(first, lambda: state().get("status") == "applied", push_delta))
        mark = len(listener.payloads("edgeface/front/gallery/state"))
        asyncio.run(run_door(second, lambda: state().get("status") in ("ready", "rejected")))
        statuses = [
            json.loads(p)["status"]
            for p in listener.payloads("edgeface/front/gallery/state")[mark:]
        ]
    finally:
        listener.close()
    assert outcomes(first) == [("gallery_updated", 6, None), ("gallery_updated", 7, None)]
    assert outcomes(second) == []  # the re-sent v6: neither applied again nor rejected
    assert "rejected" not in statuses
    assert state()["version"] == 7 and state()["accepted_version"] == 7
    assert '"gallery_rejected"' not in (tmp_path / "state" / "audit.log").read_text()


def test_a_push_record_from_before_the_history_loads_and_the_history_stays_short(
    tmp_path: Path,
) -> None:
    """A door upgraded with an ``accepted-push.json`` that names only its last push must keep
    its replay protection and recognise that push when it is re-sent; the pushes remembered
    after it are bounded (the file is rewritten, fsynced, at every push). A delta dropped from
    the history, delivered again, is refused as stale: forgetting never lets one in. The newest
    full push — the one the broker retains and re-sends at every reconnect — is remembered
    apart, however many deltas follow it (after 16 it was "stale or replayed" again)."""
    events: list[dict[str, Any]] = []
    pushes = [signed_full(5, "alice")]
    state = tmp_path / "state"
    state.mkdir()
    record = state / "accepted-push.json"
    record.write_text(json.dumps({"version": 5, "digest": payload_digest(pushes[0])}))
    service = door(tmp_path, events)

    async def apply_all() -> None:
        await service.apply_gallery_push(pushes[0])  # the gallery file was lost: restored
        await service.apply_gallery_push(pushes[0])  # re-sent: already applied
        for version in range(6, 7 + REMEMBERED_PUSHES):
            pushes.append(signed_delta(version, version - 1, f"p{version}", seed=version))
            await service.apply_gallery_push(pushes[-1])
        await service.apply_gallery_push(pushes[2])  # v7, still remembered: old news
        await service.apply_gallery_push(pushes[0])  # v5, the full push: old news
        await service.apply_gallery_push(pushes[1])  # v6, forgotten: stale

    asyncio.run(apply_all())
    newest = 6 + REMEMBERED_PUSHES
    assert outcomes(events) == [
        *[("gallery_updated", version, None) for version in range(5, newest + 1)],
        (
            "gallery_rejected",
            newest,
            f"stale or replayed push: version 6 is not newer than {newest}",
        ),
    ]
    written = json.loads(record.read_text())
    assert written["version"] == newest and written["digest"] == payload_digest(pushes[-1])
    assert [e["version"] for e in written["earlier"]] == list(range(newest - 1, 6, -1))
    assert written["full"] == {"version": 5, "digest": payload_digest(pushes[0])}
