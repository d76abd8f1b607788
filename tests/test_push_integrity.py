"""What a push may overwrite and what its pusher is told (real daemon, real files, real
mosquitto): a push never undoes a change made to the gallery file on the door; the accepted-push
record is written before the gallery, and a push whose record cannot be written is refused;
of two pushers who signed the same version, only the one whose push the door applied is told
"applied"; clearing the retained push on the broker is not a rejected push."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from broker import Broker, Listener, run_connected
from embeddings import unit
from gpiozero.pins.mock import MockFactory

from edgeface.cli import main
from edgeface.config import CameraConfig, Config, MqttConfig, PushConfig, RecognitionConfig
from edgeface.door.accepted_push import payload_digest
from edgeface.door.service import DoorService
from edgeface.recognition.gallery import Gallery, GalleryStore, encode_embedding
from edgeface.recognition.push import full_push, generate_key, sign
from edgeface.recognition.push_client import PushClient

KEY = generate_key()
SET, STATE = "edgeface/front/gallery/set", "edgeface/front/gallery/state"


def gallery_of(*names: str) -> Gallery:
    gallery = Gallery()
    for seed, name in enumerate(names):
        gallery.add(name, unit(seed))
    return gallery


def signed_full(version: int, *names: str, target: dict[str, str] | None = None) -> bytes:
    document = full_push(gallery_of(*names), version, target or {"device": "front"}, time.time())
    return json.dumps(sign(document, KEY, "k1")).encode()


def push_door_config(tmp_path: Path, broker_port: int | None = None, **push: Any) -> Config:
    """Door "front" without a camera, taking pushes signed with ``KEY`` (over MQTT when given a
    broker), its gallery in its state folder; ``push`` adds push settings."""
    return Config(
        device_id="front",
        state_dir=str(tmp_path / "state"),
        camera=CameraConfig(source="/dev/video97", reconnect_min_seconds=5),
        recognition=RecognitionConfig(gallery=str(tmp_path / "state" / "gallery.json")),
        mqtt=MqttConfig(enabled=broker_port is not None, host="127.0.0.1", port=broker_port or 1),
        push=PushConfig(enabled=True, keys={"k1": KEY}, **push),
    )


def door(
    tmp_path: Path, events: list[dict[str, Any]], broker_port: int | None = None
) -> DoorService:
    config = push_door_config(tmp_path, broker_port, groups=["office"])
    return DoorService(config, pin_factory=MockFactory(), on_event=events.append)


def outcomes(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (e["event_type"], e.get("gallery_version"), e.get("reason") or e.get("detail"))
        for e in events
        if e["event_type"] in ("gallery_updated", "gallery_rejected", "error")
    ]


def test_a_push_does_not_undo_a_change_made_on_the_door(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`gallery remove mallory` on the door's file, then — before the reload — a delta built on
    the version the door still announces: saved, it wrote mallory back. It is refused, saying
    why; after the reload (the hint `gallery remove` prints) the next push goes in."""
    gallery_file = tmp_path / "state" / "gallery.json"
    start = gallery_of("obama", "mallory")
    start.version = 0
    GalleryStore(gallery_file).save(start)  # version 1
    events: list[dict[str, Any]] = []
    service = door(tmp_path, events)
    assert main(["gallery", "remove", "mallory", "--gallery", str(gallery_file)]) == 0
    assert "send SIGHUP to a running daemon" in capsys.readouterr().out

    def add_carol(version: int) -> bytes:
        document = {
            "format": "edgeface-gallery-push",
            "kind": "delta",
            "version": version,
            "base_version": version - 1,
            "target": {"device": "front"},
            "issued_at": time.time(),
            "add": {"carol": {"embeddings": [encode_embedding(unit(7))]}},
            "remove": [],
        }
        return json.dumps(sign(document, KEY, "k1")).encode()

    asyncio.run(service.apply_gallery_push(add_carol(2)))
    assert outcomes(events) == [
        (
            "gallery_rejected",
            1,
            "gallery file changed on disk (version 2) since the daemon loaded version 1; "
            "reload it (SIGHUP: systemctl reload edgeface) first, then push again",
        )
    ]
    assert sorted(GalleryStore(gallery_file).load().identities) == ["obama"]
    assert "mallory" in service.gallery.identities  # (until the reload)

    async def reload_then_push() -> None:
        await service.apply_reload()
        await service.apply_gallery_push(add_carol(3))

    asyncio.run(reload_then_push())
    assert sorted(GalleryStore(gallery_file).load().identities) == ["carol", "obama"]
    assert sorted(service.gallery.identities) == ["carol", "obama"]


def test_a_push_whose_record_cannot_be_written_is_refused(tmp_path: Path) -> None:
    """Applied with only a logged error, the push was later refused as "stale or replayed"
    when the broker re-sent it (the record did not know it). Refused instead, nothing written;
    once the record can be written the same push goes in and is then known as applied. The
    refusal of a signed push is audited (gallery_rejected), as the error alone was not."""
    events: list[dict[str, Any]] = []
    service = door(tmp_path, events)
    record = tmp_path / "state" / "accepted-push.json"
    record.mkdir()  # a damaged state directory: the record cannot be replaced
    push = signed_full(5, "alice")
    asyncio.run(service.apply_gallery_push(push))
    (kind, version, detail), rejected = outcomes(events)
    assert (kind, version) == ("error", None)
    assert "cannot record the accepted push in" in detail and "not applied" in detail
    assert rejected[:2] == ("gallery_rejected", 0)
    assert rejected[2].startswith("could not be stored: cannot record the accepted push")
    audit = (tmp_path / "state" / "audit.log").read_text()
    assert '"event":"gallery_rejected"' in audit and "could not be stored" in audit
    assert not (tmp_path / "state" / "gallery.json").exists()
    assert service.gallery.version == 0

    record.rmdir()
    events.clear()

    async def twice() -> None:
        await service.apply_gallery_push(push)
        await service.apply_gallery_push(push)  # the retained push, re-sent at a reconnect

    asyncio.run(twice())
    assert outcomes(events) == [("gallery_updated", 5, None)]


def test_the_record_is_written_first_and_restores_or_goes_back(tmp_path: Path) -> None:
    """A power cut between the two writes now leaves the record ahead of the gallery: the same
    push, delivered again, restores the gallery (reported). A gallery that cannot be written
    puts the record back, so another push of that version is not refused as stale."""
    events: list[dict[str, Any]] = []
    push = signed_full(5, "alice")
    state = tmp_path / "state"
    state.mkdir()
    (state / "accepted-push.json").write_text(
        json.dumps({"version": 5, "digest": payload_digest(push)})
    )
    service = door(tmp_path, events)  # restarted after the power cut: no gallery file yet
    asyncio.run(service.apply_gallery_push(push))
    assert outcomes(events) == [("gallery_updated", 5, None)]
    assert GalleryStore(state / "gallery.json").load().version == 5

    blocked = state / "gallery.json.prev"  # where the save keeps the version before
    (blocked / "in-the-way").mkdir(parents=True)
    events.clear()
    asyncio.run(service.apply_gallery_push(signed_full(6, "bob")))
    assert [kind for kind, *_ in outcomes(events)] == ["error", "gallery_rejected"]
    assert json.loads((state / "accepted-push.json").read_text())["version"] == 5
    (blocked / "in-the-way").rmdir()
    blocked.rmdir()
    events.clear()
    asyncio.run(service.apply_gallery_push(signed_full(6, "carol")))  # another v6: not stale
    assert outcomes(events) == [("gallery_updated", 6, None)]


def test_of_two_pushers_of_one_version_only_the_applied_one_is_told_applied(
    tmp_path: Path, broker: Broker
) -> None:
    """Both survey the door at version 1 and sign version 2; the door applies A's and refuses
    B's as stale. B's wait matched the door's "applied" state by version alone and said
    "applied". After a restart, the door's "ready" names the push its gallery came from."""
    events: list[dict[str, Any]] = []
    service = door(tmp_path, events, broker.port)
    asyncio.run(service.apply_gallery_push(signed_full(1, "obama", "bob")))
    told: dict[str, str] = {}

    def admins() -> None:
        a = PushClient("127.0.0.1", broker.port)
        b = PushClient("127.0.0.1", broker.port)
        try:
            a.survey(0.3)
            b.survey(0.3)
            assert a.highest_version() + 1 == b.highest_version() + 1 == 2
            doc_a = json.loads(signed_full(2, "obama", "bob"))
            doc_b = json.loads(signed_full(2, "bob"))  # B removes obama
            told["digest_a"] = a.publish(SET, doc_a)
            told["a"] = a.wait_for({"front"}, 2, 15, digest=told["digest_a"])["front"].status
            digest_b = b.publish(SET, doc_b, retain=False)
            told["b"] = b.wait_for({"front"}, 2, 15, digest=digest_b)["front"].status
        finally:
            a.close()
            b.close()

    async def scenario() -> int:
        runner = await run_connected(service)
        await asyncio.to_thread(admins)
        service.stop_requested.set()
        return await runner

    assert asyncio.run(scenario()) == 0
    assert (told["a"], told["b"]) == ("applied", "rejected")
    assert sorted(service.gallery.identities) == ["bob", "obama"]

    def after_a_restart() -> tuple[str, str]:
        """What pushers of A's and of another version-2 push are told by the door's "ready"."""
        client = PushClient("127.0.0.1", broker.port)
        try:
            deadline = time.monotonic() + 10
            while client.states.get("front", {}).get("status") != "ready":
                assert time.monotonic() < deadline, client.states
                time.sleep(0.05)
            ours = client.wait_for({"front"}, 2, 0.2, digest=told["digest_a"])
            other = client.wait_for({"front"}, 2, 0.2, digest="0" * 64)
            return ours["front"].status, other["front"].status
        finally:
            client.close()

    restarted = door(tmp_path, [], broker.port)

    async def second() -> tuple[str, str]:
        runner = await run_connected(restarted)
        seen = await asyncio.to_thread(after_a_restart)
        restarted.stop_requested.set()
        assert await runner == 0
        return seen

    assert asyncio.run(second()) == ("applied", "silent")


def test_clearing_the_retained_push_is_not_a_rejected_push(tmp_path: Path, broker: Broker) -> None:
    """An empty retained message deletes the retained push on the broker, which forwards it to
    the doors: it was reported as a rejected push ("not valid JSON") and replaced the door's
    retained "applied" state."""
    events: list[dict[str, Any]] = []
    service = door(tmp_path, events, broker.port)
    listener = Listener(broker.port, STATE)
    topic = "edgeface/fleet/office/gallery/set"

    def last_state() -> dict[str, Any]:
        states = listener.payloads(STATE)
        return json.loads(states[-1]) if states else {}

    async def scenario() -> int:
        runner = await run_connected(service)
        push = signed_full(1, "alice", target={"group": "office"})
        listener.client.publish(topic, push, qos=1, retain=True)
        await asyncio.to_thread(listener.wait, lambda: last_state().get("status") == "applied")
        listener.client.publish(topic, b"", qos=1, retain=True)
        listener.client.publish(SET, b"", qos=1)  # and on the door's own topic
        await asyncio.sleep(0.5)
        service.stop_requested.set()
        return await runner

    try:
        assert asyncio.run(scenario()) == 0
    finally:
        listener.close()
    assert outcomes(events) == [("gallery_updated", 1, None)]
    assert last_state()["status"] == "applied"
