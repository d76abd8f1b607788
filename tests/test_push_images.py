"""Pushes that carry photos instead of embeddings: the door enrols each with the enrolment gate
(real models, real portraits) and reports every image; a person is never half-enrolled."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from broker import Broker, Listener
from embeddings import unit
from photos import face_free_photos

from edgeface.pipeline import FacePipeline
from edgeface.recognition.enrolment import ImageEnroller
from edgeface.recognition.gallery import Gallery, GalleryStore, encode_embedding
from edgeface.recognition.matcher import Matcher
from edgeface.recognition.push import (
    PushRejected,
    apply_push,
    generate_key,
    sign,
    verify_push,
)
from edgeface.vision.image_io import read_rgb

KEY = generate_key()


def jpeg(rgb: np.ndarray) -> str:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return base64.b64encode(data.tobytes()).decode("ascii")


def photo(photo_dir: Path, name: str) -> str:
    return base64.b64encode((photo_dir / name).read_bytes()).decode("ascii")


def two_faces(photo_dir: Path) -> str:
    left = cv2.resize(read_rgb(photo_dir / "obama.jpg"), (400, 500))
    right = cv2.resize(read_rgb(photo_dir / "biden.jpg"), (400, 500))
    return jpeg(np.hstack([left, right]))


def delta(add: dict[str, object], version: int = 2, base_version: int | None = None) -> bytes:
    """A signed photo/embedding delta; by default for a door one version behind."""
    document = {
        "format": "edgeface-gallery-push",
        "kind": "delta",
        "version": version,
        "base_version": version - 1 if base_version is None else base_version,
        "target": {"device": "front"},
        "issued_at": time.time(),
        "add": add,
        "remove": [],
    }
    return json.dumps(sign(document, KEY, "k1")).encode()


@pytest.fixture(scope="module")
def pipeline() -> FacePipeline:
    return FacePipeline()


def apply(raw: bytes, enroller: ImageEnroller | None, current: Gallery | None = None) -> Gallery:
    document = verify_push(raw, {"k1": KEY}, "front", (), 1)
    return apply_push(current or Gallery(version=1), document, enrol_images=enroller)


def test_good_photos_enrol_bad_ones_are_reported(photo_dir: Path, pipeline: FacePipeline) -> None:
    enroller = ImageEnroller(lambda: pipeline)
    images = [
        photo(photo_dir, "obama.jpg"),
        "not base64!",
        jpeg(face_free_photos()["coffee"]),
        two_faces(photo_dir),
        base64.b64encode(b"\xff\xd8\xff\xe0 truncated jpeg").decode(),
    ]
    gallery = apply(delta({"obama": {"images": images}}), enroller)
    statuses = [(r["index"], r["status"]) for r in enroller.results]
    assert statuses == [
        (0, "enrolled"),
        (1, "rejected"),
        (2, "rejected"),
        (3, "rejected"),
        (4, "rejected"),
    ]
    reasons = [r["reason"] for r in enroller.results]
    assert "not valid base64" in reasons[1]
    assert "no face found" in reasons[2]
    assert "2 faces found, need exactly one" in reasons[3]
    assert "the JPEG is truncated" in reasons[4]
    identity = gallery.identities["obama"]
    assert len(identity.embeddings) == 1
    assert identity.enrolments[0]["source"] == "push image 0"
    # The pushed photo really enrolled him: another photo of him is recognised, biden is not.
    matcher = Matcher(gallery, threshold=0.35)
    probe = [
        pipeline.analyse(read_rgb(photo_dir / n))[0].embedding for n in ("obama2.jpg", "biden.jpg")
    ]
    him, stranger = matcher.identify(np.stack(probe))  # type: ignore[arg-type]
    assert him.identity == "obama" and stranger.identity is None


def test_no_good_photo_rejects_the_whole_push(photo_dir: Path, pipeline: FacePipeline) -> None:
    enroller = ImageEnroller(lambda: pipeline)
    raw = delta(
        {
            "biden": {"images": [photo(photo_dir, "biden.jpg")]},
            "nobody": {"images": [jpeg(face_free_photos()["rocket"])]},
        }
    )
    current = Gallery(version=1)
    current.add("alice", unit(1))
    before = json.dumps(current.to_dict(), sort_keys=True)
    with pytest.raises(PushRejected, match="no image of 'nobody' could be enrolled"):
        apply(raw, enroller, current)
    assert [r["status"] for r in enroller.results] == ["enrolled", "rejected"]
    assert "no face found" in enroller.results[1]["reason"]
    assert json.dumps(current.to_dict(), sort_keys=True) == before  # nothing changed


def test_embeddings_sent_besides_images_are_kept(photo_dir: Path, pipeline: FacePipeline) -> None:
    """An identity may carry both: its embeddings and its enrolled photos end up together, and
    the embeddings alone keep it (and the push) valid when none of its photos is usable."""
    enroller = ImageEnroller(lambda: pipeline)
    sent = encode_embedding(unit(2))
    gallery = apply(
        delta(
            {
                "obama": {"embeddings": [sent], "images": [photo(photo_dir, "obama.jpg")]},
                "carol": {"embeddings": [sent], "images": [jpeg(face_free_photos()["coffee"])]},
            }
        ),
        enroller,
    )
    assert len(gallery.identities["obama"].embeddings) == 2
    assert np.allclose(gallery.identities["obama"].embeddings[0], unit(2))
    assert len(gallery.identities["carol"].embeddings) == 1
    assert [(r["identity"], r["status"]) for r in enroller.results] == [
        ("obama", "enrolled"),
        ("carol", "rejected"),
    ]
    # A bad embedding beside the photos refuses the push before any photo is looked at.
    enroller = ImageEnroller(lambda: pipeline)
    with pytest.raises(PushRejected, match="embedding"):
        apply(delta({"x": {"embeddings": ["AAAA"], "images": ["AAAA"]}}), enroller)
    assert enroller.results == []


def test_image_push_limits_and_a_door_without_an_enroller(pipeline: FacePipeline) -> None:
    with pytest.raises(PushRejected, match="cannot enrol images"):
        apply(delta({"x": {"images": ["AAAA"]}}), None)
    with pytest.raises(PushRejected, match="non-empty list"):
        apply(delta({"x": {"images": []}}), ImageEnroller(lambda: pipeline))
    with pytest.raises(PushRejected, match="at most 10"):
        apply(delta({"x": {"images": ["AAAA"] * 11}}), ImageEnroller(lambda: pipeline))


def test_daemon_enrols_pushed_photos_and_reports_each_on_gallery_state(
    tmp_path: Path, photo_dir: Path, broker: Broker
) -> None:
    """Over the real broker, while the daemon runs its camera loop: the push is enrolled off the
    event loop and the per-image results are on the retained gallery/state — with a warning
    for a photo that looks like somebody the door has under another name."""
    from gpiozero.pins.mock import MockFactory

    from edgeface.config import CameraConfig, Config, MqttConfig, PushConfig, RecognitionConfig
    from edgeface.door.service import DoorService

    listener = Listener(broker.port, "edgeface/front/gallery/state")
    config = Config(
        device_id="front",
        state_dir=str(tmp_path / "state"),
        camera=CameraConfig(source="/dev/video97", reconnect_min_seconds=5),
        recognition=RecognitionConfig(gallery=str(tmp_path / "gallery.json")),
        mqtt=MqttConfig(enabled=True, host="127.0.0.1", port=broker.port),
        push=PushConfig(enabled=True, keys={"k1": KEY}),
    )
    service = DoorService(config, pin_factory=MockFactory())
    images = [photo(photo_dir, "obama.jpg"), photo(photo_dir, "obama2.jpg"), two_faces(photo_dir)]

    def state() -> dict[str, object]:
        payloads = listener.payloads("edgeface/front/gallery/state")
        return json.loads(payloads[-1]) if payloads else {}

    async def scenario() -> int:
        runner = asyncio.create_task(service.run())
        assert service.mqtt is not None
        await asyncio.to_thread(service.mqtt.connected.wait, 10)
        await asyncio.to_thread(listener.wait, lambda: state().get("status") == "ready")
        first = delta({"obama": {"images": images}}, 2, base_version=0)  # the door starts empty
        listener.client.publish("edgeface/front/gallery/set", first)
        await asyncio.to_thread(listener.wait, lambda: state().get("status") == "applied", 60)
        reports.append(state())
        # Then a push whose only person has no usable photo: rejected, nothing changes.
        bad = [two_faces(photo_dir), jpeg(face_free_photos()["rocket"])]
        listener.client.publish("edgeface/front/gallery/set", delta({"eve": {"images": bad}}, 3))
        await asyncio.to_thread(listener.wait, lambda: state().get("push_version") == 3, 60)
        reports.append(state())
        # Then obama's face as somebody else: applied (signed), with a warning naming him.
        again = delta({"michelle": {"images": [photo(photo_dir, "obama3.jpg")]}}, 3)
        listener.client.publish("edgeface/front/gallery/set", again)
        await asyncio.to_thread(listener.wait, lambda: state().get("version") == 3, 60)
        reports.append(state())
        service.stop_requested.set()
        return await runner

    reports: list[dict[str, object]] = []
    try:
        assert asyncio.run(asyncio.wait_for(scenario(), timeout=120)) == 0
    finally:
        listener.close()
    applied, rejected, warned = reports
    assert applied["version"] == 2
    assert [(i["index"], i["status"]) for i in applied["images"]] == [  # type: ignore[union-attr]
        (0, "enrolled"),
        (1, "enrolled"),
        (2, "rejected"),
    ]
    assert rejected["status"] == "rejected" and rejected["version"] == 2
    assert "no image of 'eve'" in str(rejected["reason"])
    assert [(i["identity"], i["status"]) for i in rejected["images"]] == [  # type: ignore[union-attr]
        ("eve", "rejected"),
        ("eve", "rejected"),
    ]
    reasons = [i["reason"] for i in rejected["images"]]  # type: ignore[union-attr]
    assert "2 faces found" in reasons[0] and "no face found" in reasons[1]
    # The door compared the photo with its gallery, at its threshold (0.34 by default).
    (image,) = warned["images"]  # type: ignore[misc]
    assert image["status"] == "enrolled" and "looks like 'obama'" in image["warnings"][0]
    assert "threshold 0.340" in image["warnings"][0]
    assert len(service.gallery.identities["obama"].embeddings) == 2
    assert "eve" not in service.gallery.identities and service.gallery.version == 3
    stored = GalleryStore(tmp_path / "gallery.json").load()
    assert stored.version == 3 and sorted(stored.identities) == ["michelle", "obama"]
    assert all(s.state is False for s in service.relay.device.pin_factory.pin(17).states)
