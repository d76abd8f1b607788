"""``edgeface demo``: the real daemon on a short clip, on a machine with no camera, Pi or broker.

The clip is built from public-domain portraits (US government photographs) that ship in the
``face_recognition`` 1.3.0 source package on PyPI: a stranger (Joe Biden) walks up first, then
the enrolled person (Barack Obama, enrolled from a *different* photo than the one in the clip).
The door is gpiozero's MockFactory pin; events are printed live and published to an MQTT broker
when one is given. ``edgeface run --config`` on a Pi runs the same DoorService with a real
camera, pin factory and broker.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeface.bench.frames import letterbox
from edgeface.config import CameraConfig, Config, MqttConfig, RecognitionConfig, RelayConfig
from edgeface.errors import EdgefaceError
from edgeface.sample_photos import fetch_portraits
from edgeface.vision.image_io import read_rgb

MEMBERS = {"obama.jpg", "obama2.jpg", "biden.jpg"}
DEMO_PIN = 17


def demo_photos(cache: Path) -> Path:
    """The three portraits, fetched once with pip (from PyPI, like edgeface itself)."""
    return fetch_portraits(cache, cache / "portraits", MEMBERS)


def build_clip(
    path: Path, photos: Path, plan: list[tuple[str | None, float]], fps: int = 10
) -> None:
    """An MJPEG clip: each (photo, seconds) shown with a slow zoom, None = an empty doorway."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (640, 480))
    if not writer.isOpened():
        raise EdgefaceError(f"cannot write the demo clip {path}")
    try:
        for name, seconds in plan:
            count = max(1, round(seconds * fps))
            base = (
                letterbox(read_rgb(photos / name), (640, 480))
                if name
                else np.full((480, 640, 3), 90, np.uint8)
            )
            for i in range(count):
                zoom = 1.0 + 0.08 * i / count  # walking towards the camera
                frame = cv2.resize(base, None, fx=zoom, fy=zoom)
                top, left = (frame.shape[0] - 480) // 2, (frame.shape[1] - 640) // 2
                crop = np.ascontiguousarray(frame[top : top + 480, left : left + 640])
                writer.write(cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def enrol(gallery_path: Path, photo: Path, name: str) -> None:
    from edgeface.model_files import embedder_fingerprint
    from edgeface.pipeline import FacePipeline
    from edgeface.recognition.gallery import Gallery, GalleryStore
    from edgeface.vision.quality import ENROLMENT

    faces = FacePipeline().analyse(read_rgb(photo), limits=ENROLMENT)
    if len(faces) != 1 or faces[0].embedding is None:
        raise EdgefaceError(f"demo enrolment photo {photo} did not give exactly one good face")
    gallery = Gallery()
    gallery.add(name, faces[0].embedding, source=photo.name, quality=faces[0].quality.metrics)
    GalleryStore(gallery_path, embedder=embedder_fingerprint("int8")).save(gallery)


def clear_retained(host: str, port: int, prefix: str, quiet_seconds: float = 0.5) -> int:
    """Delete every retained message under ``prefix/#``; returns how many there were.

    The daemon keeps its lock state, last person, availability and audit head retained, as a
    door must; after a demo they would stay on the user's broker for good, a door called
    "demo" that is offline forever. Retained messages arrive right after the subscription;
    the broker sends no end marker, so a short quiet spell ends the collection.
    """
    import paho.mqtt.client as mqtt

    topics: set[str] = set()
    last_message = [time.monotonic()]
    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"edgeface-demo-{os.getpid()}")

    def on_message(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        if message.retain and message.payload:
            topics.add(message.topic)
        last_message[0] = time.monotonic()

    def on_subscribe(*_args: Any) -> None:
        last_message[0] = time.monotonic()
        subscribed.set()

    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.on_connect = lambda c, *_: c.subscribe(f"{prefix}/#", qos=1)
    try:
        client.connect(host, port)
    except (OSError, ValueError) as exc:  # gone since the demo started
        raise EdgefaceError(
            f"cannot reach the MQTT broker at {host}:{port} ({exc}); the demo's retained topics "
            f"under {prefix} were not cleared"
        ) from None
    client.loop_start()
    try:
        if not subscribed.wait(10.0):
            raise EdgefaceError(f"broker {host}:{port} did not answer; retained demo topics kept")
        while time.monotonic() - last_message[0] < quiet_seconds:
            time.sleep(0.05)
        client.unsubscribe(f"{prefix}/#")
        for topic in sorted(topics):
            client.publish(topic, b"", qos=1, retain=True).wait_for_publish(10.0)
    finally:
        client.disconnect()
        client.loop_stop()
    return len(topics)


def reachable(host: str, port: int) -> None:
    """Raise EdgefaceError unless something accepts TCP connections at ``host:port``."""
    try:
        socket.create_connection((host, port), timeout=5.0).close()
    except OSError as exc:
        raise EdgefaceError(
            f"cannot reach the MQTT broker at {host}:{port} ({exc}): start it, or run the demo "
            "without --broker"
        ) from None


def run_demo(broker: str | None = None, workdir: Path | None = None) -> int:
    """Build the clip, enrol, run the daemon on it, print events and the relay's history."""
    from gpiozero.pins.mock import MockFactory

    from edgeface.door.service import DoorService
    from edgeface.recognition.push_client import parse_broker

    # Checked before the photos are fetched and the clip is built: a typo, or a broker that is
    # not there, is one line (the daemon would only retry, and the clean-up at the end fail).
    address = parse_broker(broker) if broker else None
    if address:
        reachable(*address)
    cache = Path(
        os.environ.get("EDGEFACE_DEMO_CACHE", Path.home() / ".cache" / "edgeface" / "demo")
    )
    photos = demo_photos(cache)
    with tempfile.TemporaryDirectory(prefix="edgeface-demo-") as tmp:
        root = Path(workdir) if workdir else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        clip = root / "doorway.avi"
        build_clip(
            clip, photos, [(None, 0.5), ("biden.jpg", 2.0), (None, 0.5), ("obama2.jpg", 2.5)]
        )
        gallery = root / "gallery.json"
        enrol(gallery, photos / "obama.jpg", "Barack Obama")
        mqtt = MqttConfig()
        if address:
            # No Home Assistant discovery: its retained entity configs would leave a phantom
            # "demo" door in Home Assistant after the demo has ended.
            mqtt = MqttConfig(enabled=True, host=address[0], port=address[1], discovery=False)
        config = Config(
            device_id="demo",
            state_dir=str(root / "state"),
            camera=CameraConfig(source=str(clip), loop=False, max_fps=10),
            recognition=RecognitionConfig(gallery=str(gallery)),
            relay=RelayConfig(pin=DEMO_PIN, unlock_seconds=1.0, cooldown_seconds=1.0),
            mqtt=mqtt,
        )
        factory = MockFactory()
        print(
            f"edgeface demo: {clip.name}, 5.5 s at 10 fps — a stranger, then the enrolled "
            f"person (Barack Obama, enrolled from a different photo); relay = mock GPIO{DEMO_PIN}"
            + (f"; publishing to {broker}" if broker else "")
        )

        def show(event: dict[str, Any]) -> None:
            fields = {k: v for k, v in event.items() if k not in ("event_type", "timestamp")}
            print(f"  {event['event_type']:<18} {json.dumps(fields, default=str)}", flush=True)

        service = DoorService(config, pin_factory=factory, on_event=show)
        status = asyncio.run(service.run())
        pin = factory.pin(DEMO_PIN)
        pulses = [s.state for s in pin.states].count(True)
        print(f"relay: energised {pulses} time(s); now {'LOCKED' if not pin.state else 'UNLOCKED'}")
        factory.reset()
    if address:
        cleared = clear_retained(*address, f"{mqtt.base_topic}/{config.device_id}")
        print(f"broker: cleared the demo's {cleared} retained topic(s)")
    return status
