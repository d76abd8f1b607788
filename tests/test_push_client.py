"""The pushing side of gallery pushes (``PushClient`` and ``edgeface gallery push``) against a real
mosquitto, with stand-in doors: small MQTT clients that keep the same retained availability and
gallery/state a daemon keeps and answer pushes the way it does. They make the cases a fleet of
real daemons cannot show cheaply — a door that rejects, one that is online but silent, one that
is offline, one nobody listed — each in a fraction of a second."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from broker import Broker, Listener

from edgeface.cli import main
from edgeface.config import push_group_problem
from edgeface.errors import EdgefaceError, shown_value
from edgeface.recognition.gallery import Gallery, GalleryStore
from edgeface.recognition.push_client import PushClient, PushOutcome, parse_broker


class FakeDoor:
    """A door's MQTT side only: retained ``availability`` (with the same last will) and
    ``gallery/state``; answers a push on its own or its groups' topic with ``answer``."""

    def __init__(
        self,
        port: int,
        device: str,
        version: int = 0,
        groups: tuple[str, ...] = ("office",),
        answer: str = "applied",  # applied | rejected | silent
    ) -> None:
        self.device, self.version, self.groups, self.answer = device, version, groups, answer
        self.connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"fake-{device}")
        self.client.will_set(self.topic("availability"), "offline", qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.connected.wait(10)

    def topic(self, *parts: str) -> str:
        return "/".join(["edgeface", self.device, *parts])

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.publish(self.topic("availability"), "online", qos=1, retain=True)
        self._state("ready")
        client.subscribe(self.topic("gallery", "set"), qos=1)
        for group in self.groups:
            client.subscribe(f"edgeface/fleet/{group}/gallery/set", qos=1)
        self.connected.set()

    def _state(self, status: str, reason: str = "", push_version: int | None = None) -> None:
        state: dict[str, Any] = {
            "status": status,
            "version": self.version,
            "reason": reason,
            "device": self.device,
            "groups": list(self.groups),
        }
        if push_version is not None:
            state["push_version"] = push_version
        # Called on paho's network thread: publish and return (waiting here would block it).
        self.client.publish(self.topic("gallery", "state"), json.dumps(state), 1, True)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        pushed = json.loads(message.payload)["version"]
        if self.answer == "applied":
            self.version = pushed
            self._state("applied", push_version=pushed)
        elif self.answer == "rejected":
            self._state("rejected", "bad signature", push_version=pushed)

    def go_offline(self) -> None:
        """Drop the connection without a clean disconnect, so the broker sends the will."""
        self.client.loop_stop()
        self.client.socket().close()  # type: ignore[union-attr]

    def close(self) -> None:
        self.client.disconnect()  # first: it wakes the network loop, loop_stop is then quick
        self.client.loop_stop()


@pytest.fixture
def doors(broker: Broker) -> Iterator[list[FakeDoor]]:
    started: list[FakeDoor] = []
    yield started
    for door in started:
        door.close()


def write_gallery(path: Path, version: int = 1) -> Path:
    gallery = Gallery()
    gallery.add("ana", np.random.default_rng(0).normal(size=128).astype(np.float32))
    gallery.version = version - 1
    GalleryStore(path).save(gallery)
    return path


def push_args(tmp_path: Path, broker: Broker, *extra: str) -> list[str]:
    key = tmp_path / "k.key"
    if not key.exists():
        key.write_text(secrets.token_hex(32) + "\n")  # what `edgeface keys generate` writes
    people = tmp_path / "people.json"
    if not people.exists():
        write_gallery(people)
    return [
        "gallery",
        "push",
        "--gallery",
        str(people),
        "--key",
        str(key),
        "--key-id",
        "k1",
        "--broker",
        f"127.0.0.1:{broker.port}",
        "--survey-seconds",
        "0.3",
        *extra,
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mqtt.lan", ("mqtt.lan", 1883)),
        ("mqtt.lan:8883", ("mqtt.lan", 8883)),
        ("[::1]:1884", ("::1", 1884)),
        ("fe80::1", ("fe80::1", 1883)),
    ],
)
def test_broker_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_broker(text) == expected


@pytest.mark.parametrize("text", ["", ":1883", "host:", "host:abc", "host:0", "host:65536", "[::1"])
def test_bad_broker_addresses_are_one_message(text: str) -> None:
    with pytest.raises(EdgefaceError, match="--broker"):
        parse_broker(text)


def test_survey_reads_groups_and_versions_and_a_count_includes_doors_nobody_listed(
    broker: Broker, doors: list[FakeDoor]
) -> None:
    doors += [FakeDoor(broker.port, "a", 3), FakeDoor(broker.port, "b", 1)]
    doors.append(FakeDoor(broker.port, "x", 9, groups=("lab",)))
    client = PushClient("127.0.0.1", broker.port)
    try:
        client.survey(0.3)
        assert client.group_members("office") == {"a", "b"}
        assert client.highest_version() == 9  # the next push is newer than any door's
        assert client.versions({"a", "b", "ghost"}) == {"a": 3, "b": 1}
        client.publish("edgeface/fleet/office/gallery/set", {"version": 10})
        # A door that was not there for the survey gets the retained push when it connects, and
        # a count of 3 is met by it: doors announcing the group while we wait are counted.
        doors.append(FakeDoor(broker.port, "new", 0))
        seen: list[str] = []
        reports = client.wait_for(
            {"a", "b"},
            10,
            timeout=10,
            on_progress=lambda r: seen.append(",".join(sorted(r))),
            at_least=3,
            group="office",
        )
        assert {d: r.status for d, r in reports.items()} == dict.fromkeys(
            ("a", "b", "new"), "applied"
        )
        assert seen[-1] == "a,b,new"
        assert "x" not in reports  # another group's door is neither waited for nor counted
    finally:
        client.close()


def test_forged_door_states_cannot_steer_the_pusher(broker: Broker, doors: list[FakeDoor]) -> None:
    """Doors' retained states are not authenticated (the broker's ACLs are what protects them):
    a forged one must not make the pusher sign a version no door can take (one with thousands
    of digits made every later push and gallery write fail), nor crash it, nor enrol it in a
    group by substring ("office" in "backoffice")."""
    doors.append(FakeDoor(broker.port, "a", 3))
    forger = Listener(broker.port, "none", client_id="forger")
    forged = {
        "huge": {"status": "ready", "version": 10**100, "groups": ["office"]},
        "negative": {"status": "ready", "accepted_version": -5, "groups": ["office"]},
        "number": {"status": "ready", "version": 2, "groups": 5},
        "substring": {"status": "ready", "version": 2, "groups": "backoffice"},
    }
    for device, state in forged.items():
        forger.client.publish(
            f"edgeface/{device}/gallery/state", json.dumps(state), qos=1, retain=True
        ).wait_for_publish(5)
    client = PushClient("127.0.0.1", broker.port)
    try:
        client.survey(0.3)
        assert client.group_members("office") == {"a", "huge", "negative"}
        assert client.highest_version() == 3
        assert client.versions({"a", "huge", "negative"}) == {"a": 3}
    finally:
        client.close()
        for device in forged:
            forger.client.publish(f"edgeface/{device}/gallery/state", b"", qos=1, retain=True)
        forger.close()


def test_cli_says_for_each_door_what_happened(
    tmp_path: Path, broker: Broker, doors: list[FakeDoor], capsys: pytest.CaptureFixture[str]
) -> None:
    doors += [
        FakeDoor(broker.port, "a", 4),
        FakeDoor(broker.port, "r", answer="rejected"),
        FakeDoor(broker.port, "s", answer="silent"),
        FakeDoor(broker.port, "o"),
    ]
    doors[-1].go_offline()
    listener = Listener(broker.port, "edgeface/o/availability")
    assert listener.wait(lambda: b"offline" in listener.payloads("edgeface/o/availability"))
    listener.close()
    args = push_args(tmp_path, broker, "--group", "office", "--expect", "a,r,s,o,ghost")
    started = time.monotonic()
    assert main([*args, "--timeout", "1.5"]) == 1
    assert time.monotonic() - started < 10
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "a: applied version 5",  # newer than every door (4) and the gallery file (1)
        "ghost: no answer within 1.5 s (never seen on this broker)",
        "o: offline; will catch up from the retained push",
        "r: REJECTED: bad signature",
        "s: online but no answer within 1.5 s (check its push keys and groups, and its log)",
    ]
    assert "version 5: 2/5 doors answered; waiting for ghost, o, s" in err

    # --json: the same, machine-readable; the discovered group (a, o, r, s) is waited for.
    assert main([*args[: args.index("--expect")], "--timeout", "1", "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["version"] == 6 and summary["ok"] is False
    assert summary["expected"] == 4 and summary["applied"] == 1
    answers = {d["device"]: (d["status"], d["online"]) for d in summary["doors"]}
    assert answers == {
        "a": ("applied", True),
        "o": ("silent", False),
        "r": ("rejected", True),
        "s": ("silent", True),
    }


def test_expect_count(
    tmp_path: Path, broker: Broker, doors: list[FakeDoor], capsys: pytest.CaptureFixture[str]
) -> None:
    doors += [FakeDoor(broker.port, "a"), FakeDoor(broker.port, "s", answer="silent")]
    started = time.monotonic()
    args = push_args(tmp_path, broker, "--group", "office", "--timeout", "20")
    assert main([*args, "--expect-count", "1"]) == 0
    assert time.monotonic() - started < 10  # it does not wait for the silent door
    capsys.readouterr()
    assert main([*args[:-2], "--timeout", "1", "--expect-count", "3"]) == 1
    assert "1 of the 3 doors asked for applied it" in capsys.readouterr().out


def test_refusals_before_anything_is_sent(
    tmp_path: Path, broker: Broker, doors: list[FakeDoor], capsys: pytest.CaptureFixture[str]
) -> None:
    doors.append(FakeDoor(broker.port, "a", 5))
    listener = Listener(broker.port, "edgeface/+/gallery/set")
    try:
        # An explicit version the door already has (or passed) would be rejected as stale.
        assert main(push_args(tmp_path, broker, "--device", "a", "--version", "5")) == 2
        assert "--version 5 is not newer than what the doors run (a has 5)" in (
            capsys.readouterr().err
        )
        assert main(push_args(tmp_path, broker, "--group", "nobody")) == 2
        assert "no door has announced group 'nobody'" in capsys.readouterr().err
        empty = tmp_path / "empty.json"
        GalleryStore(empty).save(Gallery())
        args = push_args(tmp_path, broker, "--device", "a")
        args[args.index("--gallery") + 1] = str(empty)
        assert main(args) == 2
        assert "the gallery is empty" in capsys.readouterr().err
        args[args.index("--gallery") + 1] = str(tmp_path / "missing.json")
        assert main(args) == 2
        assert "no gallery file at" in capsys.readouterr().err
        password = push_args(tmp_path, broker, "--device", "a", "--username", "u")
        assert main([*password, "--password-file", str(tmp_path / "nope")]) == 2
        assert "cannot read password file" in capsys.readouterr().err
        secret = tmp_path / "password"
        secret.write_text("hunter2-admin\n")
        alone = push_args(tmp_path, broker, "--device", "a", "--password-file", str(secret))
        assert main(alone) == 2
        assert "--password-file needs --username" in capsys.readouterr().err
        time.sleep(0.3)
        assert listener.payloads("edgeface/a/gallery/set") == []
    finally:
        listener.close()


def test_outcome_without_doors_is_not_a_success() -> None:
    assert PushOutcome(1, "t").ok is False
    assert PushOutcome(1, "t", at_least=1).ok is False


# ----- nested groups (push.groups: [building-a/floor-2]) ---------------------------------------

NESTED = "building-a/floor-2"


def test_a_nested_group_push_reaches_the_doors_of_that_group_only(
    tmp_path: Path, broker: Broker, doors: list[FakeDoor], capsys: pytest.CaptureFixture[str]
) -> None:
    """A door may be in ``building-a/floor-2`` (the configuration accepts it); ``--group`` with
    the same text finds the doors announcing it, publishes on the nested topic and reports
    their answers — and neither the group above it, one below it, one that ends the same, nor
    a door whose other group it is not, takes it or is waited for."""
    doors += [
        FakeDoor(broker.port, "a", 2, groups=(NESTED,)),
        FakeDoor(broker.port, "b", 3, groups=("office", NESTED)),
        FakeDoor(broker.port, "above", 7, groups=("building-a",)),
        FakeDoor(broker.port, "below", 1, groups=(f"{NESTED}/east",)),
        FakeDoor(broker.port, "tail", 1, groups=("floor-2",)),
    ]
    client = PushClient("127.0.0.1", broker.port)
    try:
        client.survey(0.3)
        assert client.group_members(NESTED) == {"a", "b"}
        assert client.group_members("building-a") == {"above"}
    finally:
        client.close()
    args = push_args(tmp_path, broker, "--group", NESTED, "--timeout", "10", "--json")
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["topic"] == f"edgeface/fleet/{NESTED}/gallery/set"
    assert summary["version"] == 8  # newer than every door's, the other groups' too (7)
    assert {d["device"]: d["status"] for d in summary["doors"]} == {
        "a": "applied",
        "b": "applied",
    }
    time.sleep(0.3)  # a push wrongly delivered to the others would have arrived by now
    assert {d.device: d.version for d in doors} == {
        "a": 8,
        "b": 8,
        "above": 7,
        "below": 1,
        "tail": 1,
    }


@pytest.mark.parametrize(
    "group",
    ["lobby+", "building/#", "/floor-2", "floor-2/", "a//b", "", " ", "office ", "a\tb", "g" * 65],
)
def test_group_option_refuses_exactly_what_push_groups_refuses(
    group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--group`` is checked by the configuration's own rule for ``push.groups``: what no door
    can be in is refused before anything is signed or sent, in the words a door's
    configuration would use."""
    problem = push_group_problem(group)
    assert problem is not None
    args = ["gallery", "push", "--key", "k", "--key-id", "k1", "--broker", "127.0.0.1:1"]
    assert main([*args, "--group", group]) == 2
    assert capsys.readouterr().err.strip().endswith(f"--group: {shown_value(group)} {problem}")


@pytest.mark.parametrize("group", [NESTED, "office", "Büro", "site/b/f2/east", "g" * 64])
def test_group_option_accepts_what_push_groups_accepts(
    tmp_path: Path, group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """... and takes every group a door can be in: the run gets past the check to the key."""
    assert push_group_problem(group) is None
    args = ["gallery", "push", "--gallery", str(tmp_path / "none.json"), "--key", "k"]
    assert main([*args, "--key-id", "k1", "--broker", "127.0.0.1:1", "--group", group]) == 2
    err = capsys.readouterr().err
    assert "--group" not in err and "no gallery file at" in err
