"""The broker ACLs the README tells installers to use, in a real mosquitto, with the real daemon:
the door still works (its events, state, Home Assistant discovery, remote unlock from Home
Assistant, a fleet push from the admin — to a nested group too, with the real ``edgeface gallery
push``), and what the security review showed anyone on an open broker could do — forge a door's
state, replace the retained fleet push, send commands from a door taken apart — is refused by
the broker, for the admin too where it has no business (a door's state, its lock)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from broker import Broker, Listener
from gpiozero.pins.mock import MockFactory
from test_push_replay import KEY, signed_full, unit
from test_service import door_without_camera

from edgeface.config import MqttConfig, PushConfig
from edgeface.door.service import DoorService
from edgeface.recognition.gallery import Gallery, GalleryStore
from edgeface.recognition.push import full_push, sign

README = Path(__file__).resolve().parents[1] / "README.md"
PASSWORDS = {"front": "pw-front", "back": "pw-back", "homeassistant": "pw-ha", "admin": "pw-admin"}
SECRET = "open-sesame-4711"
#: A nested fleet group (two topic levels): the README's admin line must reach it.
NESTED = "building-a/floor-2"


def readme_broker_settings() -> tuple[list[str], str]:
    """(mosquitto.conf lines, ACL file) as the README shows them."""
    block = README.read_text().split("# /etc/mosquitto/conf.d/edgeface.conf\n", 1)[1]
    block = block.split("```", 1)[0]
    conf, acl = block.split("# /etc/mosquitto/edgeface.acl", 1)
    kept = [
        line
        for line in conf.splitlines()
        if line.strip() and not line.startswith(("password_file", "acl_file", "allow_anonymous"))
    ]
    return kept, acl.split("\n", 1)[1]


def publisher(port: int, user: str) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{user}")
    client.username_pw_set(user, PASSWORDS[user])
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def group_push(version: int, group: str = "office") -> bytes:
    gallery = Gallery()
    gallery.add("alice", unit(0))
    document = full_push(gallery, version, {"group": group}, time.time())
    return json.dumps(sign(document, KEY, "k1")).encode()


def cli_push_as_admin(tmp_path: Path, port: int, group: str) -> subprocess.CompletedProcess[str]:
    """``edgeface gallery push --group GROUP`` as the README's admin user, as an installer
    runs it (a separate process): it surveys the doors' retained state, picks a version and
    waits for their answers, all through the ACL."""
    gallery = Gallery()
    gallery.add("bob", unit(1))
    people = tmp_path / "people.json"
    GalleryStore(people).save(gallery)
    key, password = tmp_path / "k1.key", tmp_path / "admin.password"
    key.write_text(KEY + "\n")
    password.write_text(PASSWORDS["admin"] + "\n")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "edgeface",
            "gallery",
            "push",
            "--group",
            group,
            "--gallery",
            str(people),
            "--key",
            str(key),
            "--key-id",
            "k1",
            "--broker",
            f"127.0.0.1:{port}",
            "--username",
            "admin",
            "--password-file",
            str(password),
            "--survey-seconds",
            "1",
            "--timeout",
            "30",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_the_readme_acl_keeps_the_door_working_and_strangers_off_its_topics(
    tmp_path: Path,
) -> None:
    conf, acl = readme_broker_settings()
    assert "allow_anonymous false" in README.read_text()
    acl_file = tmp_path / "edgeface.acl"
    acl_file.write_text(acl)
    broker = Broker(tmp_path, users=PASSWORDS, extra=[*conf, f"acl_file {acl_file}"]).start()
    factory = MockFactory()
    ha = Listener(broker.port, "#", client_id="ha", username="homeassistant", password="pw-ha")
    try:
        config = door_without_camera(
            tmp_path,
            MqttConfig(
                enabled=True,
                host="127.0.0.1",
                port=broker.port,
                username="front",
                password="pw-front",
                remote_unlock=True,
                remote_unlock_secret=SECRET,
            ),
            push=PushConfig(enabled=True, keys={"k1": KEY}, groups=("office", NESTED)),
        )
        events: list[dict[str, Any]] = []
        service = DoorService(config, pin_factory=factory, on_event=events.append)

        def seen(topic: str) -> bool:
            return bool(ha.payloads(topic))

        async def scenario() -> int:
            runner = asyncio.create_task(service.run())
            ready = await asyncio.to_thread(
                ha.wait, lambda: seen("edgeface/front/gallery/state"), 30
            )
            assert ready
            admin, back = publisher(broker.port, "admin"), publisher(broker.port, "back")
            # What the door taken apart ("back") tries, and Home Assistant may not do either:
            forged = {"status": "applied", "version": 99, "device": "front", "groups": ["office"]}
            back.publish("edgeface/front/gallery/state", json.dumps(forged), qos=1, retain=True)
            back.publish("edgeface/fleet/office/gallery/set", group_push(3), qos=1, retain=True)
            nested = f"edgeface/fleet/{NESTED}/gallery/set"
            back.publish(nested, group_push(6, NESTED), qos=1, retain=True)
            command = json.dumps({"action": "UNLOCK", "code": SECRET})
            back.publish("edgeface/front/command/lock", command, qos=1)
            ha.client.publish("edgeface/front/gallery/set", signed_full(4, "alice"), qos=1)
            ha.client.publish(nested, group_push(7, NESTED), qos=1, retain=True)
            # The admin's wider fleet line opens nothing else: not a door's state, not its lock.
            forged["version"] = 98
            admin.publish("edgeface/front/gallery/state", json.dumps(forged), qos=1, retain=True)
            admin.publish("edgeface/front/command/lock", command, qos=1)
            await asyncio.sleep(1.0)
            # What the ACL lets through: Home Assistant's command, the admin's fleet push.
            ha.client.publish("edgeface/front/command/lock", command, qos=1)
            admin.publish("edgeface/fleet/office/gallery/set", group_push(5), qos=1, retain=True)
            await asyncio.to_thread(
                ha.wait, lambda: any(e["event_type"] == "gallery_updated" for e in events), 30
            )
            # The admin pushes to the nested group with the real CLI: it finds the door by
            # the group it announces and reports it applied.
            pushed = await asyncio.to_thread(cli_push_as_admin, tmp_path, broker.port, NESTED)
            assert pushed.returncode == 0, pushed.stdout + pushed.stderr
            summary = json.loads(pushed.stdout)
            assert summary["topic"] == f"edgeface/fleet/{NESTED}/gallery/set"
            assert summary["version"] == 6  # above the 5 the door runs; the refused 6 and 7 unseen
            assert [(d["device"], d["status"]) for d in summary["doors"]] == [("front", "applied")]
            await asyncio.sleep(0.5)
            for client in (admin, back):
                client.disconnect()
                client.loop_stop()
            service.stop_requested.set()
            return await runner

        assert asyncio.run(asyncio.wait_for(scenario(), 90)) == 0
        kinds = [e["event_type"] for e in events]
        # Home Assistant's, not the other door's or the admin's (which, sent first, would have
        # opened the door and left HA's refused as "cooling down").
        assert kinds.count("unlocked") == 1 and "remote_unlock_refused" not in kinds, kinds
        gallery = [
            (e["event_type"], e.get("gallery_version"))
            for e in events
            if "gallery" in e["event_type"]
        ]
        # Neither the other door's pushes (to office and the nested group) nor HA's arrived.
        assert gallery == [("gallery_updated", 5), ("gallery_updated", 6)]
        stored = GalleryStore(config.recognition.gallery).load()
        assert (stored.version, list(stored.identities)) == (6, ["bob"])  # the CLI's push
        states = [json.loads(p) for p in ha.payloads("edgeface/front/gallery/state")]
        assert all(s.get("version") not in (98, 99) for s in states)
        assert any(
            t.startswith("homeassistant/") and "edgeface_front" in t for t, _, _ in ha.messages
        )
        anonymous = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        assert anonymous.connect("127.0.0.1", broker.port) == 0
        anonymous.loop_start()
        time.sleep(0.5)
        assert not anonymous.is_connected()  # CONNACK: not authorised
        anonymous.loop_stop()
    finally:
        ha.close()
        broker.kill()
        factory.reset()
