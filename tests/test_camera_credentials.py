"""A network camera's password stays out of everything the door says: events (kept in the outbox
and published on MQTT to whoever may read the door's topics), logs and the state directory.

The camera URL, password included, was the ``detail`` of camera_lost (the open error) and of
camera_restored (the source's description) — also when the installer kept it out of the YAML
with ``env:``. Here a real network camera on loopback refuses the first logins (HTTP 401), then
streams; the door runs with a real mosquitto.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from broker import Broker, Listener, run_until_delivered
from gpiozero.pins.mock import MockFactory
from test_camera_capture import MjpegCamera

from edgeface.config import parse_config
from edgeface.door.service import DoorService
from edgeface.door.sources import redact, redact_text

SECRET = "Kx9-camera-pass"


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        (f"rtsp://admin:{SECRET}@10.0.0.5:554/stream1", "rtsp://admin:***@10.0.0.5:554/stream1"),
        # an unencoded @ in the password: everything up to the last @ is masked
        ("rtsp://admin:p@ss@10.0.0.5/s", "rtsp://admin:***@10.0.0.5/s"),
        # a user name alone may be a token
        ("rtsp://a1b2c3d4@cam.local/live", "rtsp://***@cam.local/live"),
        # cameras that take the login in the query, in parameters of any name: every value
        (
            f"http://cam/video.cgi?user=admin&pwd={SECRET}&res=1",
            "http://cam/video.cgi?user=***&pwd=***&res=***",
        ),
        (
            f"http://cam/videostream.cgi?loginuse=admin&loginpas={SECRET}",
            "http://cam/videostream.cgi?loginuse=***&loginpas=***",
        ),
        # an @ in the path is not a login
        ("http://cam.local/snap@2x.jpg", "http://cam.local/snap@2x.jpg"),
        ("http://cam/video.mjpg", "http://cam/video.mjpg"),
        ("/dev/video0", "/dev/video0"),
        ("0", "0"),
    ],
)
def test_a_source_is_shown_without_its_credentials(source: str, shown: str) -> None:
    assert redact(source) == shown


def test_credentials_are_masked_in_messages_naming_them() -> None:
    """A library's error may quote the URL, or the password percent-decoded."""
    source = "rtsp://admin:Kx9%40pass@10.0.0.5/s"
    message = f"open {source} failed; user admin password Kx9@pass"
    assert redact_text(message, source) == (
        "open rtsp://admin:***@10.0.0.5/s failed; user admin password ***"
    )


def test_the_camera_password_reaches_no_event_log_or_file(
    tmp_path: Path,
    factory: MockFactory,
    broker: Broker,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The camera refuses logins for its first second (camera_lost, naming a refused login as
    the likely cause), then streams (camera_restored): both name the camera with its password
    masked, on MQTT, in the events, the log and every file the door wrote."""
    caplog.set_level(logging.DEBUG)
    with MjpegCamera(fps=10, refuse_seconds=1.0) as camera:
        url = camera.url(f"admin:{SECRET}@")
        shown = camera.url("admin:***@")
        monkeypatch.setenv("EDGEFACE_TEST_CAMERA_URL", url)
        config = parse_config(
            f"device_id: front\nstate_dir: {tmp_path}/state\n"
            "camera:\n  source: env:EDGEFACE_TEST_CAMERA_URL\n"
            "  reconnect_min_seconds: 0.2\n  stream_timeout_seconds: 2\n"
            f"recognition:\n  gallery: {tmp_path}/none.json\n"
            "relay:\n  pin: 17\n"
            f"mqtt:\n  enabled: true\n  host: 127.0.0.1\n  port: {broker.port}\n"
        )
        events: list[dict[str, object]] = []
        listener = Listener(broker.port)
        service = DoorService(config, pin_factory=factory, on_event=events.append)

        def restored() -> bool:
            published = listener.events("edgeface/front/event")
            return any(e["event_type"] == "camera_restored" for e in published)

        try:
            assert run_until_delivered(service, listener, restored) == 0
        finally:
            listener.close()
    details = {e["event_type"]: e.get("detail") for e in events}
    assert details["camera_restored"] == shown
    lost = str(details["camera_lost"])
    assert lost.startswith(f"{shown}: cannot be opened (refused or wrong credentials"), lost
    published = b"".join(payload for _, payload, _ in listener.messages)
    assert SECRET.encode() not in published
    assert SECRET not in caplog.text
    written = [p for p in (tmp_path / "state").rglob("*") if p.is_file()]
    assert written and not [p for p in written if SECRET.encode() in p.read_bytes()]
