"""An event stored under a topic no broker takes (left by an earlier run with a bad
`mqtt.base_topic`, e.g. 'a/#') stopped the daemon's MQTT sender thread — and with it every event
behind it, across restarts, since it stayed first in the outbox (bad-input sweep). The sender
now drops it into the journal and goes on. Real daemon, real mosquitto, real outbox file."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from broker import Broker, Listener, run_until_delivered
from gpiozero.pins.mock import MockFactory
from test_service import door_without_camera

from edgeface.config import MqttConfig
from edgeface.door.outbox import Outbox
from edgeface.door.service import DoorService


def test_an_unpublishable_stored_event_does_not_block_the_rest(
    tmp_path: Path, factory: MockFactory, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    stored = Outbox(state / "outbox.db")
    stored.add("a/#/front/event", {"event_type": "unknown", "track": 1})
    stored.add("edgeface/front/event", {"event_type": "unknown", "track": 2})
    del stored
    listener = Listener(broker.port, "edgeface/front/event")
    config = door_without_camera(
        tmp_path, MqttConfig(enabled=True, host="127.0.0.1", port=broker.port)
    )
    service = DoorService(config, pin_factory=factory)

    def both() -> bool:
        return len(listener.events("edgeface/front/event")) >= 2

    with caplog.at_level(logging.ERROR):
        assert run_until_delivered(service, listener, both, 20) == 0
    listener.close()
    kinds = [(e["event_type"], e.get("track")) for e in listener.events("edgeface/front/event")]
    assert kinds[:2] == [("unknown", 2), ("daemon_started", None)]
    assert "can never be published on 'a/#/front/event'" in caplog.text
    assert len(Outbox(state / "outbox.db")) == 0
