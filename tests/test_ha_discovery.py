"""Home Assistant's view of the doors on a broker (real mosquitto): one device per door, also
for two sites sharing the broker; entities follow a reload that adds or removes the door
contact; turning discovery off withdraws them; Home Assistant's birth message is heard on its
default topic whatever the discovery prefix."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from broker import Broker, Listener, run_connected, wait_for
from gpiozero.pins.mock import MockFactory

from edgeface.config import MqttConfig, parse_config
from edgeface.door.mqtt import DoorMqtt, birth_topics, client_id, discovery_node
from edgeface.door.outbox import Outbox
from edgeface.door.service import DoorService


def door(broker: Broker, folder: Path, device_id: str = "front", **extra: object) -> DoorMqtt:
    folder.mkdir(exist_ok=True)
    config = MqttConfig(
        enabled=True, host="127.0.0.1", port=broker.port, keepalive_seconds=5, **extra
    )
    return DoorMqtt(config, device_id, Outbox(folder / "outbox.db"))


def retained(broker: Broker, topics: str = "homeassistant/#") -> dict[str, bytes]:
    """What the broker retains under ``topics`` (what a restarting Home Assistant reads):
    topic → payload, cleared topics left out."""
    reader = Listener(broker.port, topics, client_id="ha-restarting")
    try:
        # the retained messages follow the SUBACK at once; a moment for all of them to arrive
        wait_for(lambda: False, 0.5)
        return {t: p for t, p, kept in reader.messages if kept and p}
    finally:
        reader.close()


# ----- ids ----------------------------------------------------------------------------------


def test_a_door_under_the_default_base_topic_keeps_its_ids() -> None:
    """An upgraded door under the default base topic must keep its client id and Home
    Assistant ids: new unique ids would give Home Assistant every entity twice."""
    default = MqttConfig()
    assert client_id(default, "front") == "edgeface-front"
    assert discovery_node(default, "front") == "edgeface_front"
    nested = MqttConfig(base_topic="site/b 2")
    assert client_id(nested, "front") == "edgeface-site_b_2_front"
    assert discovery_node(nested, "front") == "edgeface_site_b_2_front"


def test_two_sites_with_their_own_base_topic_each_keep_their_door(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two installations share a broker, each under its own mqtt.base_topic (what the setting
    is for), and each calls its entrance door "front". The client id (edgeface-front) and the
    Home Assistant node id and unique ids (edgeface_front_*) ignored base_topic: the broker
    threw one door off each time the other connected, and both wrote the same retained
    discovery configs, so Home Assistant had one "front" lock whose state and command topics
    were those of whichever door connected last."""
    caplog.set_level(logging.INFO, logger="edgeface.door.mqtt")
    house = door(broker, tmp_path / "house", base_topic="house")
    garage = door(broker, tmp_path / "garage", base_topic="garage")
    try:
        house.start()
        assert house.connected.wait(10)
        garage.start()
        assert garage.connected.wait(10)
        # longer than paho's reconnect delay (1 s): a door thrown off would be back by now,
        # throwing the other off in turn
        wait_for(lambda: False, 1.5)
        assert house.connected.is_set() and garage.connected.is_set()
        drops = [r.getMessage() for r in caplog.records if "disconnected" in r.getMessage()]
        assert drops == [], "one door was thrown off the broker by the other (same client id)"
        configs = retained(broker)
    finally:
        house.stop()
        garage.stop()
    cameras = {t: json.loads(p) for t, p in configs.items() if t.endswith("/camera/config")}
    assert sorted(c["state_topic"] for c in cameras.values()) == [
        "garage/front/state/camera",
        "house/front/state/camera",
    ], f"Home Assistant gets one camera entity for two doors: {sorted(cameras)}"
    devices = {c["device"]["name"]: c["device"]["identifiers"] for c in cameras.values()}
    assert devices == {
        "edgeface garage/front": ["edgeface_garage_front"],
        "edgeface house/front": ["edgeface_house_front"],
    }
    assert len({c["unique_id"] for c in cameras.values()}) == 2


# ----- what Home Assistant is told to forget ------------------------------------------------


def test_discovery_turned_off_withdraws_the_door_s_entities(broker: Broker, tmp_path: Path) -> None:
    """The installer sets mqtt.discovery: false (they define the entities in Home Assistant's
    YAML themselves) and restarts. The retained discovery configs of the earlier runs stayed
    on the broker, so Home Assistant kept showing (and re-creating at every restart) the
    discovered entities beside the hand-made ones: every entity twice. The door's own topics
    (state, availability) are still published."""
    watch = Listener(broker.port, "homeassistant/#", client_id="watch")
    with_contact = DoorMqtt(
        MqttConfig(enabled=True, host="127.0.0.1", port=broker.port),
        "front",
        Outbox(tmp_path / "outbox.db"),
        door_contact=True,
    )
    with_contact.start()
    contact = "homeassistant/binary_sensor/edgeface_front/door/config"
    assert watch.wait(lambda: watch.payloads(contact)), "the door's entities are announced"
    with_contact.stop()
    announced = {t for t, p, _ in watch.messages if p}

    off = door(broker, tmp_path, discovery=False)
    off.state("lock", "LOCKED")
    off.start()
    try:
        assert watch.wait(lambda: all(watch.payloads(t)[-1] == b"" for t in announced))
    finally:
        off.stop()
        watch.close()
    assert retained(broker) == {}
    assert retained(broker, "edgeface/#") == {
        "edgeface/front/state/lock": b"LOCKED",
        "edgeface/front/availability": b"offline",
    }


def test_home_assistant_s_birth_message_is_heard_whatever_the_discovery_prefix(
    broker: Broker, tmp_path: Path
) -> None:
    """Home Assistant announces a restart on homeassistant/status whatever its discovery
    prefix (the birth message has its own setting in its MQTT options). A door with
    discovery_prefix: ha listened only on ha/status, and never republished its entities when
    Home Assistant restarted (after a broker that lost its retained configs, they stayed
    gone). Both topics are listened to, the default prefix's once."""
    assert birth_topics(MqttConfig()) == ["homeassistant/status"]
    client = door(broker, tmp_path, discovery_prefix="ha")
    watch = Listener(broker.port, "ha/#", client_id="watch")
    config = "ha/event/edgeface_front/recognition/config"
    client.start()
    try:
        assert watch.wait(lambda: len(watch.payloads(config)) == 1)
        wait_for(lambda: False, 0.3)  # the door's subscriptions are in place
        for topic, announced in (("homeassistant/status", 2), ("ha/status", 3)):
            watch.client.publish(topic, "online", qos=1)
            assert watch.wait(lambda n=announced: len(watch.payloads(config)) >= n, 5), topic
    finally:
        client.stop()
        watch.close()


# ----- a reload adds and removes the door contact ------------------------------------------

CONTACT = "homeassistant/binary_sensor/edgeface_front/door/config"
CONTACT_STATE = "edgeface/front/state/door"


def _door_text(tmp_path: Path, port: int, contact: int | None) -> str:
    pin = f"  door_contact_pin: {contact}\n" if contact is not None else ""
    return (
        f"device_id: front\nstate_dir: {tmp_path / 'state'}\n"
        "camera:\n  source: /dev/video97\n  reconnect_min_seconds: 0.2\n"
        f"recognition:\n  gallery: {tmp_path / 'none.json'}\n"
        f"relay:\n  pin: 17\n  unlock_seconds: 0.3\n  cooldown_seconds: 0\n{pin}"
        f"mqtt:\n  enabled: true\n  host: 127.0.0.1\n  port: {port}\n"
    )


def test_a_door_contact_added_or_removed_by_a_reload_follows_in_home_assistant(
    tmp_path: Path, factory: MockFactory, broker: Broker
) -> None:
    """README: the door contact changes live (the pin is claimed or released by a reload).
    Its Home Assistant entity did not: a contact added by a reload published its state with
    no entity to show it, and one removed stayed in Home Assistant with its last state
    retained, a door standing open (or shut) for ever. Now the entity is announced and
    withdrawn with the pin, and a removed contact's retained state is cleared."""
    config_file = tmp_path / "edgeface.yaml"
    text = _door_text(tmp_path, broker.port, None)
    config_file.write_text(text)
    service = DoorService(parse_config(text), config_file, factory, lambda e: None)
    watch = Listener(broker.port, client_id="watch")

    def last(topic: str) -> bytes | None:
        payloads = watch.payloads(topic)
        return payloads[-1] if payloads else None

    async def reload_to(contact: int | None) -> None:
        config_file.write_text(_door_text(tmp_path, broker.port, contact))
        await service.apply_reload()

    async def scenario() -> int:
        task = await run_connected(service)
        assert last(CONTACT) in (None, b""), "no contact, no entity"
        await reload_to(22)
        added = await asyncio.to_thread(watch.wait, lambda: last(CONTACT), 5)
        assert added, f"contact state {watch.payloads(CONTACT_STATE)}, but no entity for it"
        assert json.loads(last(CONTACT) or b"")["state_topic"] == CONTACT_STATE
        assert last(CONTACT_STATE) in (b"open", b"closed")  # read as the pin was claimed
        await reload_to(None)
        withdrawn = await asyncio.to_thread(watch.wait, lambda: last(CONTACT) == b"", 5)
        assert withdrawn, "the removed contact's entity stays in Home Assistant"
        cleared = await asyncio.to_thread(watch.wait, lambda: last(CONTACT_STATE) == b"", 5)
        assert cleared, f"the removed contact's state stays retained: {last(CONTACT_STATE)!r}"
        service.stop_requested.set()
        return await task

    try:
        assert asyncio.run(asyncio.wait_for(scenario(), timeout=60)) == 0
    finally:
        watch.close()
    left = retained(broker, "#")
    assert CONTACT not in left and CONTACT_STATE not in left, left
