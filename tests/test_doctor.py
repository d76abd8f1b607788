"""``edgeface doctor`` against what ``edgeface run`` needs at start.

Each configuration here passed ``doctor`` and then failed in ``run`` (a traceback, a daemon
retrying for ever, or a door running without its audit trail): a state folder that is a file,
a snapshots folder nobody may write in, a push folder that is a file, a CA file that holds no
certificate, a broker whose certificate the daemon does not trust. Real ``edgeface doctor``
runs on real files, a real mosquitto (with TLS where it matters), gpiozero's mock pins; each
test checks the line an installer reads and the exit status.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from broker import Broker, make_certificates
from test_cli import edgeface
from test_cli_errors import MODES_IGNORED, assert_one_line_error, write_gallery

from edgeface.config import load_config, parse_config
from edgeface.door.doctor import Check
from edgeface.door.service_unit import ServiceSandbox, read_service_sandbox

#: A folder no process may create anything in, root included (procfs).
UNCREATABLE = "/proc/no-such-dir/edgeface"


def base_config(tmp_path: Path, photo_dir: Path, extra: str = "", state: str = "") -> Path:
    """A configuration on which every check passes (a still-image camera, a one-person
    gallery, mock pins, no MQTT), plus ``extra`` YAML at the top level."""
    gallery = write_gallery(tmp_path / "gallery.json")
    path = tmp_path / "edgeface.yaml"
    path.write_text(
        f"state_dir: {state or tmp_path / 'state'}\n"
        f"camera:\n  source: {photo_dir / 'obama.jpg'}\n"
        f"recognition:\n  gallery: {gallery}\n"
        "relay:\n  pin_factory: mock\n" + extra
    )
    return path


def doctor(config: Path) -> tuple[int, dict[str, tuple[bool, str]]]:
    """Run ``edgeface doctor``: its exit status and, per check, (ok, detail) as printed."""
    result = edgeface("doctor", "--config", str(config), timeout=180)
    assert "Traceback" not in result.stderr, result.stderr
    checks: dict[str, tuple[bool, str]] = {}
    for line in result.stdout.splitlines():
        status, name, detail = line.split(maxsplit=2)
        assert status in ("ok", "FAIL", "WARN"), line
        assert (status == "WARN") == detail.startswith("warning: "), line
        checks[name] = (status != "FAIL", detail)
    return result.returncode, checks


def failing(checks: dict[str, tuple[bool, str]]) -> dict[str, str]:
    return {name: detail for name, (ok, detail) in checks.items() if not ok}


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """An existing folder this user may not write in (skipped where modes are ignored)."""
    if MODES_IGNORED:
        pytest.skip("file modes are not enforced for this user")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    yield folder
    folder.chmod(0o755)


def test_the_base_configuration_passes(tmp_path: Path, photo_dir: Path) -> None:
    """The reference for the tests below: each adds one problem to a file that passes."""
    code, checks = doctor(base_config(tmp_path, photo_dir))
    assert code == 0 and not failing(checks), checks
    assert checks["state"] == (True, f"{tmp_path / 'state'} will be created at start")
    assert checks["snapshot"] == (True, "disabled") and checks["push"] == (True, "disabled")


# ----- state_dir -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "problem"),
    [
        ("{tmp}/a-file", "state_dir {tmp}/a-file exists but is not a folder"),
        ("{tmp}/a-file/state", "state_dir {tmp}/a-file/state cannot be created: {tmp}/a-file is"),
        (UNCREATABLE, f"state_dir {UNCREATABLE} cannot be created in /proc ("),
    ],
)
def test_a_state_dir_run_cannot_use_fails_doctor(
    tmp_path: Path, photo_dir: Path, where: str, problem: str
) -> None:
    """``run`` creates state_dir and writes in it at start: a file in its place stopped it
    with a FileExistsError traceback, after doctor had passed the file. The audit trail, in
    state_dir by default, is reported as lost too."""
    (tmp_path / "a-file").write_text("not a folder\n")
    state = where.format(tmp=tmp_path)
    code, checks = doctor(base_config(tmp_path, photo_dir, state=state))
    assert code == 1
    assert set(failing(checks)) == {"state", "audit"}, checks
    assert checks["state"][1].startswith(problem.format(tmp=tmp_path)), checks["state"]
    assert checks["audit"][1].endswith("the door would run without its audit trail")


def test_a_state_dir_without_write_permission_fails_doctor(
    tmp_path: Path, photo_dir: Path, read_only: Path
) -> None:
    code, checks = doctor(base_config(tmp_path, photo_dir, state=str(read_only)))
    assert code == 1 and set(failing(checks)) == {"state", "audit"}, checks
    assert checks["state"][1] == f"state_dir {read_only}: cannot write in it (Permission denied)"


def test_an_outbox_that_is_not_a_database_fails_doctor(
    tmp_path: Path, photo_dir: Path, broker: Broker
) -> None:
    """With MQTT on, ``run`` opens ``<state_dir>/outbox.db`` with SQLite at start; a file that
    is something else ("file is not a database") stopped it."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "outbox.db").write_text("events: none\n")
    mqtt = f"mqtt:\n  enabled: true\n  host: 127.0.0.1\n  port: {broker.port}\n"
    code, checks = doctor(base_config(tmp_path, photo_dir, mqtt))
    assert code == 1 and set(failing(checks)) == {"state"}, checks
    assert checks["state"][1] == (
        f"MQTT outbox {state / 'outbox.db'} is not an SQLite database: run keeps it as "
        "outbox.db.unreadable-<time> and starts a new one (its events are not sent)"
    )


@pytest.mark.parametrize("damaged", ["the counters page", "a page of events"])
def test_a_damaged_outbox_fails_doctor(
    tmp_path: Path, photo_dir: Path, broker: Broker, damaged: str
) -> None:
    """A real outbox with a page zeroed has a good header: doctor passed it. ``run`` sets it
    aside (carrying over what can be read); doctor now runs SQLite's quick_check on it,
    read-only: nothing is written beside it."""
    from test_outbox_salvage import page_holding, root_page, written, zero_page

    state = tmp_path / "state"
    outbox = written(state / "outbox.db")
    page = root_page(outbox, "counters") if damaged == "the counters page" else None
    zero_page(outbox, page or page_holding(outbox, 1000))
    mqtt = f"mqtt:\n  enabled: true\n  host: 127.0.0.1\n  port: {broker.port}\n"
    code, checks = doctor(base_config(tmp_path, photo_dir, mqtt))
    assert code == 1 and set(failing(checks)) == {"state"}, checks
    detail = checks["state"][1]
    assert detail.startswith(f"MQTT outbox {outbox} is damaged ("), detail
    assert detail.endswith(
        "): run keeps it as outbox.db.unreadable-<time> and starts a new one (the events that "
        "can still be read are carried over, the others are not sent)"
    ), detail
    assert sorted(p.name for p in state.iterdir()) == ["outbox.db"]


def test_a_sound_outbox_with_events_passes_doctor(
    tmp_path: Path, photo_dir: Path, broker: Broker
) -> None:
    from test_outbox_salvage import written

    state = tmp_path / "state"
    written(state / "outbox.db", count=50)
    mqtt = f"mqtt:\n  enabled: true\n  host: 127.0.0.1\n  port: {broker.port}\n"
    code, checks = doctor(base_config(tmp_path, photo_dir, mqtt))
    assert code == 0 and not failing(checks), checks
    assert checks["state"] == (True, f"{state} writable")
    assert sorted(p.name for p in state.iterdir()) == ["outbox.db"]


# ----- snapshots, push folder, audit trail ------------------------------------------------------


@pytest.mark.parametrize(
    ("folder", "problem"),
    [
        ("{tmp}/a-file", "snapshots.folder {tmp}/a-file exists but is not a folder"),
        (UNCREATABLE, f"snapshots.folder {UNCREATABLE} cannot be created in /proc ("),
    ],
)
def test_a_snapshots_folder_run_cannot_use_fails_doctor(
    tmp_path: Path, photo_dir: Path, folder: str, problem: str
) -> None:
    """A file in its place stopped ``run`` at start (FileExistsError traceback)."""
    (tmp_path / "a-file").write_text("not a folder\n")
    snapshots = f"snapshots:\n  enabled: true\n  folder: {folder.format(tmp=tmp_path)}\n"
    code, checks = doctor(base_config(tmp_path, photo_dir, snapshots))
    assert code == 1 and set(failing(checks)) == {"snapshot"}, checks
    assert checks["snapshot"][1].startswith(problem.format(tmp=tmp_path)), checks["snapshot"]


def test_a_snapshots_folder_without_write_permission_fails_doctor(
    tmp_path: Path, photo_dir: Path, read_only: Path
) -> None:
    """Every snapshot would be lost, each only a line in the journal."""
    snapshots = f"snapshots:\n  enabled: true\n  folder: {read_only}\n"
    code, checks = doctor(base_config(tmp_path, photo_dir, snapshots))
    assert code == 1 and set(failing(checks)) == {"snapshot"}, checks
    assert checks["snapshot"][1] == (
        f"snapshots.folder {read_only}: cannot write in it (Permission denied)"
    )


def test_the_default_snapshots_folder_under_a_bad_state_dir_is_named_as_such(
    tmp_path: Path, photo_dir: Path
) -> None:
    (tmp_path / "a-file").write_text("not a folder\n")
    config = base_config(
        tmp_path, photo_dir, "snapshots:\n  enabled: true\n", state=f"{tmp_path}/a-file"
    )
    code, checks = doctor(config)
    assert code == 1 and set(failing(checks)) == {"state", "snapshot", "audit"}, checks
    assert checks["snapshot"][1] == (
        f"snapshots folder (<state_dir>/snapshots) {tmp_path}/a-file/snapshots cannot be "
        f"created: {tmp_path}/a-file is not a folder"
    )


def test_a_push_folder_that_is_a_file_fails_doctor(tmp_path: Path, photo_dir: Path) -> None:
    """The daemon treats a push folder it cannot list as one that does not exist yet: pushes
    dropped "into" a file path would never be applied, without a word."""
    (tmp_path / "pushes").write_text("not a folder\n")
    push = (
        f"push:\n  enabled: true\n  folder: {tmp_path}/pushes\n"
        "  keys: {k1: 00112233445566778899aabbccddeeff}\n"
    )
    code, checks = doctor(base_config(tmp_path, photo_dir, push))
    assert code == 1 and set(failing(checks)) == {"push"}, checks
    assert checks["push"][1] == f"push.folder {tmp_path}/pushes exists but is not a folder"

    (tmp_path / "pushes").unlink()  # not there yet: fine, nothing is pushed until it is
    code, checks = doctor(base_config(tmp_path, photo_dir, push))
    assert code == 0 and "does not exist yet" in checks["push"][1], checks
    (tmp_path / "pushes").mkdir()
    code, checks = doctor(base_config(tmp_path, photo_dir, push))
    assert code == 0 and checks["push"] == (
        True,
        f"push.folder {tmp_path}/pushes watched every 2 s",
    )


def test_an_audit_trail_run_cannot_write_fails_doctor(tmp_path: Path, photo_dir: Path) -> None:
    """``run`` does not stop then: it runs without its audit trail, said once in the journal.
    That is a door whose unlocks are no longer recorded, so doctor fails on it."""
    audit = f"audit:\n  path: {UNCREATABLE}/audit.log\n"
    code, checks = doctor(base_config(tmp_path, photo_dir, audit))
    assert code == 1 and set(failing(checks)) == {"audit"}, checks
    assert checks["audit"][1].startswith(
        f"audit.path's folder {UNCREATABLE} cannot be created in /proc ("
    )
    assert checks["audit"][1].endswith("the door would run without its audit trail")


def test_an_audit_log_without_write_permission_fails_doctor(
    tmp_path: Path, photo_dir: Path
) -> None:
    if MODES_IGNORED:
        pytest.skip("file modes are not enforced for this user")
    log = tmp_path / "audit.log"
    log.write_text("")
    log.chmod(stat.S_IRUSR)
    code, checks = doctor(base_config(tmp_path, photo_dir, f"audit:\n  path: {log}\n"))
    assert code == 1 and set(failing(checks)) == {"audit"}, checks
    assert checks["audit"][1].startswith(f"{log} cannot be written (Permission denied)")


# ----- MQTT over TLS -----------------------------------------------------------------------------


def tls_config(
    tmp_path: Path, photo_dir: Path, port: int, ca: str, host: str = "127.0.0.1"
) -> Path:
    ca_line = f"  ca_file: {ca}\n" if ca else ""
    mqtt = f"mqtt:\n  enabled: true\n  host: {host}\n  port: {port}\n  tls: true\n{ca_line}"
    return base_config(tmp_path, photo_dir, mqtt)


def garbage(path: Path) -> str:
    path.write_text("this is not a certificate\n")
    return str(path)


def a_private_key(path: Path) -> str:
    """A PEM file, but a key, not a certificate (the usual mix-up of ca.key and ca.crt)."""
    subprocess.run(
        ["openssl", "genrsa", "-out", str(path), "2048"], check=True, capture_output=True
    )
    return str(path)


def a_fifo(path: Path) -> str:
    os.mkfifo(path)
    return str(path)


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        pytest.param(lambda d: str(d / "missing.crt"), "it does not exist", id="missing"),
        pytest.param(lambda d: garbage(d / "ca.crt"), "holds no PEM certificate", id="garbage"),
        pytest.param(lambda d: a_private_key(d / "ca.key"), "holds no PEM certificate", id="key"),
        pytest.param(lambda d: str(d), "it is a directory", id="folder"),
        pytest.param(lambda d: a_fifo(d / "ca.fifo"), "is not a regular file (a FIFO)", id="fifo"),
    ],
)
def test_a_ca_file_without_a_certificate_is_refused_by_doctor_and_run(
    tmp_path: Path,
    photo_dir: Path,
    make,
    problem: str,  # type: ignore[no-untyped-def]
) -> None:
    """``run`` died at start with an ssl.SSLError or FileNotFoundError traceback (paho's
    tls_set), while ``doctor``, which only opened a TCP connection, passed. Now the file is
    checked while the configuration is read, by building the daemon's own TLS context: both
    refuse at once, naming the key and line. Nothing needs to listen for this."""
    folder = tmp_path / "certs"
    folder.mkdir()
    config = tls_config(tmp_path, photo_dir, 1, make(folder))
    code, checks = doctor(config)
    assert code == 1 and list(checks) == ["config", "runtime"], checks
    detail = checks["config"][1]
    assert detail.startswith(f"{config}: mqtt.ca_file (line 13): ") and problem in detail, detail
    run = edgeface("run", "--config", str(config), timeout=60)
    assert_one_line_error(run, "mqtt.ca_file (line 13): ")
    assert problem in run.stderr


def test_doctor_completes_the_tls_handshake_the_daemon_would(
    tmp_path: Path, photo_dir: Path
) -> None:
    """A TCP connect said "reachable" for a broker whose certificate the daemon then refused
    (another CA, a host name the certificate does not name) and for a port without TLS; the
    daemon retried for ever. Now doctor does the handshake with the daemon's TLS context."""
    for name in ("tls-broker", "plain-broker", "other-ca"):
        (tmp_path / name).mkdir()
    broker = Broker(tmp_path / "tls-broker", tls=True)
    plain = Broker(tmp_path / "plain-broker")
    try:
        broker.start()
        plain.start()
        right_ca = str(broker.ca_file)
        code, checks = doctor(tls_config(tmp_path, photo_dir, broker.port, right_ca))
        assert code == 0, checks
        assert checks["mqtt"][1].startswith(
            f"broker 127.0.0.1:{broker.port} reachable, TLS certificate verified (TLSv1."
        )

        other_ca = str(make_certificates(tmp_path / "other-ca"))
        code, checks = doctor(tls_config(tmp_path, photo_dir, broker.port, other_ca))
        assert code == 1 and set(failing(checks)) == {"mqtt"}, checks
        # OpenSSL's words vary ("unable to get local issuer certificate", "self-signed
        # certificate in certificate chain" when the other CA has the same name).
        detail = checks["mqtt"][1]
        assert detail.startswith(f"broker 127.0.0.1:{broker.port}: TLS certificate not trusted (")
        assert detail.endswith(f"); checked against mqtt.ca_file {other_ca}"), detail

        code, checks = doctor(tls_config(tmp_path, photo_dir, broker.port, ""))
        assert code == 1 and set(failing(checks)) == {"mqtt"}, checks
        assert "TLS certificate not trusted" in checks["mqtt"][1]
        assert "the system's CAs (no ca_file)" in checks["mqtt"][1]

        # The certificate names 127.0.0.1, not localhost: the daemon checks the host name too.
        config = tls_config(tmp_path, photo_dir, broker.port, right_ca, host="localhost")
        code, checks = doctor(config)
        assert code == 1 and set(failing(checks)) == {"mqtt"}, checks
        assert "TLS certificate not trusted (Hostname mismatch" in checks["mqtt"][1]

        code, checks = doctor(tls_config(tmp_path, photo_dir, plain.port, right_ca))
        assert code == 1 and set(failing(checks)) == {"mqtt"}, checks
        assert checks["mqtt"][1].startswith(f"broker 127.0.0.1:{plain.port}: TLS handshake failed")
        assert checks["mqtt"][1].endswith(f"does it listen with TLS on port {plain.port}?")
    finally:
        broker.kill()
        plain.kill()


# ----- warnings: Home Assistant discovery, gallery names ------------------------------------------

#: Home Assistant's MQTT discovery topic after its prefix, as its documentation gives it:
#: ``<component>/[<node_id>/]<object_id>/config``, the two ids of [a-zA-Z0-9_-] only. A
#: discovery message on any other topic is ignored.
HA_DISCOVERY_TOPIC = re.compile(r"\w+/(?:[a-zA-Z0-9_-]+/)?[a-zA-Z0-9_-]+/config")


@pytest.mark.parametrize("device_id", ["front", "door_2-B", "tür-1", "Tür_Ost-2", "дверь", "門1"])
def test_doctor_warns_exactly_when_home_assistant_would_ignore_the_door(
    tmp_path: Path, device_id: str
) -> None:
    """The device ids the configuration accepts (letters of any script since an upgrade
    refused ``tür-1``) against the discovery topics the daemon really publishes
    (:meth:`DoorMqtt.discovery_messages`): doctor warns for an id that makes any of them one
    Home Assistant ignores, and for no other."""
    from edgeface.config import Config, MqttConfig
    from edgeface.door.doctor import check_discovery
    from edgeface.door.mqtt import DoorMqtt
    from edgeface.door.outbox import Outbox

    mqtt = MqttConfig(enabled=True)
    outbox = Outbox(tmp_path / "outbox.db")
    try:
        topics = DoorMqtt(mqtt, device_id, outbox, door_contact=True).discovery_messages()
    finally:
        outbox.close()
    assert topics and all(t.startswith("homeassistant/") for t in topics)
    ignored = [t for t in topics if not HA_DISCOVERY_TOPIC.fullmatch(t.split("/", 1)[1])]
    check = check_discovery(Config(device_id=device_id, mqtt=mqtt))
    assert check.ok and check.warning == bool(ignored), (check, ignored)
    assert check.detail.startswith("warning: ") == bool(ignored)
    assert len(ignored) in (0, len(topics))  # all of the door's entities, or none
    if not ignored:
        assert check.detail == f"Home Assistant device edgeface_{device_id}"
    off = MqttConfig(enabled=True, discovery=False)
    assert check_discovery(Config(device_id=device_id, mqtt=off)) == Check(
        "discovery", True, "disabled"
    )


def test_a_device_id_home_assistant_ignores_is_a_warning_not_a_failure(
    tmp_path: Path, photo_dir: Path, broker: Broker
) -> None:
    """``device_id: tür-1`` is a valid MQTT topic level and runs; Home Assistant silently
    ignores every discovery message of that door. doctor passes (exit 0: the door works) and
    says what to do."""
    mqtt = f"mqtt:\n  enabled: true\n  host: 127.0.0.1\n  port: {broker.port}\n"
    config = base_config(tmp_path, photo_dir, "device_id: tür-1\n" + mqtt)
    code, checks = doctor(config)
    assert code == 0 and not failing(checks), checks
    assert checks["discovery"] == (
        True,
        "warning: device_id 'tür-1' holds 'ü', which Home Assistant does not accept in "
        "discovery topics (only a-z, A-Z, 0-9, _ and -): it ignores this door's discovery "
        "messages and none of its entities appear. Give the door an ASCII device_id such as "
        "tur-1 (it also names the door's MQTT topics), or set mqtt.discovery: false if Home "
        "Assistant is not used",
    )
    result = edgeface("doctor", "--config", str(config), "--json", timeout=180)
    report = {c["name"]: c for c in json.loads(result.stdout)}
    assert result.returncode == 0 and report["discovery"]["warning"] is True
    assert report["mqtt"]["warning"] is False and report["mqtt"]["ok"] is True

    ascii_id = base_config(tmp_path, photo_dir, "device_id: tuer-1\n" + mqtt)
    code, checks = doctor(ascii_id)
    assert code == 0 and checks["discovery"] == (True, "Home Assistant device edgeface_tuer-1")


def test_doctor_lists_gallery_names_enrolment_now_refuses(tmp_path: Path, photo_dir: Path) -> None:
    """A gallery written before today's name rules may hold " obama" (a space in front: another
    person than "obama" to every rule) or a name with a right-to-left override (logs show it
    backwards). It still loads — refusing it locked everyone out — so doctor passes, but lists
    them, each as a shell word the installer can paste into the ``gallery remove`` it names;
    the test runs exactly that, in bash, and doctor is then quiet."""
    config = base_config(tmp_path, photo_dir)
    gallery = tmp_path / "gallery.json"
    document = json.loads(gallery.read_text())
    alice = document["identities"]["alice"]
    document["identities"].update({" obama": alice, "ev\u202eil": alice, "all": alice})
    gallery.write_text(json.dumps(document))
    code, checks = doctor(config)
    assert code == 0 and not failing(checks), checks
    assert checks["gallery"][0] is True
    detail = checks["gallery"][1]
    words = ["' obama'", "all", "$'ev\\xe2\\x80\\xaeil'"]  # sorted by name: " obama" first
    assert detail == (
        f"warning: 3 name(s) that enrolment now refuses: {words[0]} (has white space around "
        "it, which would make it another person than 'obama'), "
        f"{words[1]} (is reserved: second_factor.required_for uses 'all' to mean everybody), "
        f"{words[2]} (may not contain control characters, bidirectional overrides or "
        "zero-width spaces (U+202E at position 3)); they are still recognised but cannot be "
        f"enrolled again under that name — remove each with edgeface gallery remove --gallery "
        f"{gallery} NAME (NAME as written here) and enrol the person under a clean name "
        "(4 people, version 3)"
    )
    assert "\u202e" not in detail  # the terminal shows the escape, not a reversed line
    for word in words:
        command = f"{shlex.quote(sys.executable)} -m edgeface gallery remove --gallery {gallery}"
        removed = subprocess.run(
            ["bash", "-c", f"{command} {word}"], capture_output=True, text=True, timeout=60
        )
        assert removed.returncode == 0, removed.stderr
    assert list(json.loads(gallery.read_text())["identities"]) == ["alice"]
    code, checks = doctor(config)
    assert code == 0 and checks["gallery"] == (True, "1 people, version 6")


def test_a_door_named_fleet_is_warned_about_the_fleet_topics() -> None:
    """``device_id: fleet`` runs, but under the README's ACL (one broker user per door, named
    after it) its user could write every group's pushes: doctor says so and passes."""
    from edgeface.config import Config, MqttConfig
    from edgeface.door.doctor import check_topics

    on = MqttConfig(enabled=True)
    fleet = check_topics(Config(device_id="fleet", mqtt=on))
    assert fleet.ok and fleet.warning and "could write every group's gallery push" in fleet.detail
    assert check_topics(Config(device_id="front", mqtt=on)) == Check(
        "topics", True, "edgeface/front/#"
    )
    assert check_topics(Config(device_id="fleet")) == Check("topics", True, "disabled")


def test_a_broker_user_other_than_the_device_id_is_warned_about_the_readme_acl() -> None:
    """The README's ACL lets a door write under ``edgeface/<its user name>/`` only: a door
    logging in as ``front-door`` while its device_id is ``front`` had every event refused by
    the broker (and, over MQTT 3.1.1, deleted from the outbox unseen). doctor says so and
    passes (another ACL may allow it); the user named after the door is no warning."""
    from edgeface.config import Config, MqttConfig
    from edgeface.door.doctor import check_topics

    other = MqttConfig(enabled=True, username="front-door", password="pw")
    found = check_topics(Config(device_id="front", mqtt=other))
    assert found.ok and found.warning
    assert "mqtt.username 'front-door' is not the device_id 'front'" in found.detail
    assert "pattern readwrite edgeface/%u/#" in found.detail
    same = MqttConfig(enabled=True, username="front", password="pw")
    assert check_topics(Config(device_id="front", mqtt=same)) == Check(
        "topics", True, "edgeface/front/#"
    )


def test_the_camera_check_never_prints_the_camera_password(tmp_path: Path, photo_dir: Path) -> None:
    """doctor's output is what an installer pastes into a forum post: a network camera is named
    with its password masked, whether it answers or not."""
    from test_camera_capture import MjpegCamera

    secret = "Kx9-doctor-pass"
    with MjpegCamera(fps=10) as camera:
        config = base_config(tmp_path, photo_dir)
        text = config.read_text().replace(
            str(photo_dir / "obama.jpg"), camera.url(f"admin:{secret}@")
        )
        config.write_text(text)
        _, checks = doctor(config)
        assert checks["camera"] == (True, f"{camera.url('admin:***@')}: 320x240 frames")
    _, checks = doctor(config)  # the camera is gone now
    assert not checks["camera"][0] and "admin:***@" in checks["camera"][1]
    assert secret not in json.dumps(checks)


def test_a_password_without_a_user_name_is_a_warning_not_a_refusal(
    tmp_path: Path, photo_dir: Path, broker: Broker
) -> None:
    """MQTT sends a password only with a user name: one given alone was dropped without a word.
    doctor warns (and the daemon logs it) — an error would keep a door that ran with such a
    file before shut after an upgrade."""
    mqtt = (
        f"mqtt:\n  enabled: true\n  host: 127.0.0.1\n  port: {broker.port}\n"
        "  password: hunter2-door\n"
    )
    code, checks = doctor(base_config(tmp_path, photo_dir, mqtt))
    assert code == 0 and checks["mqtt"][0], checks
    assert checks["mqtt"][1] == (
        "warning: mqtt.password is set but mqtt.username is empty: the password is not sent "
        "(MQTT sends one only with a user name); set mqtt.username, or remove mqtt.password "
        f"(broker 127.0.0.1:{broker.port} reachable)"
    )


# ----- env: secrets doctor's shell does not have -------------------------------------------------


def test_env_secrets_missing_here_are_warned_and_everything_else_is_checked(
    tmp_path: Path, photo_dir: Path, broker: Broker
) -> None:
    """README runs ``sudo -u edgeface edgeface doctor``, whose environment lacks what the unit
    reads from /etc/edgeface/secrets.env. doctor called the configuration invalid ("environment
    variable ... is not set") and ran no other check: camera, relay, broker, state unchecked on
    a file the daemon accepts. Now each such setting is one warning, every check runs, and
    only what needs the missing value (here the camera's URL) says it was not checked."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFACE_DOCTOR_")}
    extra = (
        f"mqtt:\n  enabled: true\n  host: 127.0.0.1\n  port: {broker.port}\n"
        "  username: door\n  password: env:EDGEFACE_DOCTOR_PASSWORD\n"
    )
    config = base_config(tmp_path, photo_dir, extra)
    config.write_text(
        config.read_text().replace(
            f"  source: {photo_dir / 'obama.jpg'}\n", "  source: env:EDGEFACE_DOCTOR_CAMERA\n"
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "edgeface", "doctor", "--config", str(config), "--json"],
        capture_output=True,
        text=True,
        timeout=180,
        env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, (result.stdout, result.stderr)
    checks = [(c["name"], c["ok"], c["detail"]) for c in json.loads(result.stdout)]
    names = [name for name, _, _ in checks]
    assert {"gpio", "mqtt", "state", "audit", "gallery"} <= set(names), checks
    assert ("config", True, f"{config} is valid") in checks
    env_lines = [detail for name, _, detail in checks if name == "env"]
    assert env_lines == [
        f"warning: {key}: environment variable {variable} is not set in this shell; the "
        "service reads it from its EnvironmentFile (/etc/edgeface/secrets.env); what needs its "
        "value is not checked here"
        for key, variable in (
            ("camera.source", "EDGEFACE_DOCTOR_CAMERA"),
            ("mqtt.password", "EDGEFACE_DOCTOR_PASSWORD"),
        )
    ]
    camera = next(detail for name, _, detail in checks if name == "camera")
    assert camera == (
        "warning: not checked: camera.source (environment variable EDGEFACE_DOCTOR_CAMERA) "
        "is not set in this shell"
    )
    mqtt = next((ok, detail) for name, ok, detail in checks if name == "mqtt")
    assert mqtt == (True, f"broker 127.0.0.1:{broker.port} reachable")
    refused = edgeface("run", "--config", str(config), timeout=60)  # the daemon stays strict
    assert refused.returncode == 2 and "EDGEFACE_DOCTOR_CAMERA is not set" in refused.stderr


# ----- settings weaker than the shipped ones -----------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "warned_about"),
    [
        ("", []),
        ("  threshold: 0.39\n", []),  # looser than shipped, within the calibrated one
        ("  threshold: 0.9\n", ["recognition.threshold 0.9 is above 0.397"]),
        ("  confirm_votes: 1\n", ["recognition.confirm_votes is 1"]),
        ("  fusion_frames: 3\n", ["recognition.fusion_frames 3 at threshold 0.34"]),
        ("  fusion_frames: 3\n  threshold: 0.3\n", []),  # fused, with a lower threshold
    ],
)
def test_doctor_warns_about_matching_weaker_than_the_shipped_settings(
    tmp_path: Path, photo_dir: Path, settings: str, warned_about: list[str]
) -> None:
    """Any threshold below 2.0 is valid, and 0.9 lets nearly every stranger in: doctor passed
    it without a word. It now warns — saying what README measured — about a threshold above
    the calibrated per-comparison one (0.397: already 12.8 % of never-enrolled visitors let
    in), a single vote opening the door, and fused frames without a lower threshold; and
    about nothing that is only a measured choice within those."""
    from edgeface.door.doctor import check_recognition

    config = base_config(tmp_path, photo_dir, "")
    config.write_text(config.read_text().replace("recognition:\n", "recognition:\n" + settings))
    check = check_recognition(load_config(config))
    assert check.ok and check.warning == bool(warned_about), check
    for words in warned_about:
        assert words in check.detail
    if "0.9" in settings:
        assert "12.8 % of never-enrolled visitors" in check.detail


def test_doctor_warns_about_a_short_remote_unlock_secret(tmp_path: Path, photo_dir: Path) -> None:
    """``remote_unlock_secret: '7'`` opens the door without a face, and was passed by doctor;
    second_factor.secret needs 16 characters. A warning (run logs it too), not an error."""
    from edgeface.door.doctor import check_settings

    extra = "mqtt:\n  enabled: true\n  remote_unlock: true\n  remote_unlock_secret: '7'\n"
    check = check_settings(load_config(base_config(tmp_path, photo_dir, extra)))
    assert check.ok and check.warning
    assert check.detail.startswith("warning: mqtt.remote_unlock_secret has only 1 character(s)")


def test_doctor_claims_the_door_contact_and_exit_button_pins_too(
    tmp_path: Path, photo_dir: Path
) -> None:
    """Only the relay pin was claimed: a contact or button pin ``run`` cannot claim passed."""
    from edgeface.door.doctor import check_gpio

    extra = "  door_contact_pin: 22\n  exit_button_pin: 23\n"
    config = base_config(tmp_path, photo_dir, "")
    config.write_text(
        config.read_text().replace("pin_factory: mock\n", "pin_factory: mock\n" + extra)
    )
    check = check_gpio(load_config(config))
    assert check == Check(
        "gpio",
        True,
        "relay on GPIO 17 driven locked, door contact on GPIO 22, exit button on GPIO 23",
    )


# ----- the systemd sandbox ------------------------------------------------------------------------


def unit_files(tmp_path: Path, unit: str, *drop_ins: str) -> Callable[[], ServiceSandbox | None]:
    """The sandbox as read from an installed unit and its drop-ins written under tmp_path."""
    installed = tmp_path / "system" / "edgeface.service"
    installed.parent.mkdir(parents=True, exist_ok=True)
    installed.write_text(unit)
    folder = tmp_path / "system" / "edgeface.service.d"
    folder.mkdir(exist_ok=True)
    for i, text in enumerate(drop_ins):
        (folder / f"{i:02d}-override.conf").write_text(text)
    missing = tmp_path / "no-such-unit"
    return lambda: read_service_sandbox(installed, folder, packaged=missing)


SHIPPED_UNIT = (Path(__file__).resolve().parents[1] / "systemd" / "edgeface.service").read_text()


def test_doctor_warns_about_paths_the_sandboxed_service_cannot_write(tmp_path: Path) -> None:
    """The unit has ProtectSystem=strict, ProtectHome and PrivateTmp, writable only its own
    folders. doctor (run by the installer, outside that sandbox) found ``audit.path:
    /var/log/edgeface/audit.log`` writable and the daemon then lost every audit entry ("not
    recorded: Read-only file system"); a snapshots folder in a home folder, or a state_dir
    under /tmp (private to the service, emptied at each start) likewise. Read from the
    installed unit: a drop-in's ReadWritePaths= clears the warning."""
    from edgeface.door.doctor import check_sandbox

    config = parse_config(
        "audit:\n  path: /var/log/edgeface/audit.log\n"
        "snapshots:\n  enabled: true\n  folder: /home/pi/snapshots\n"
        "push:\n  enabled: true\n  folder: /etc/edgeface/gallery.d\n  keys: {}\n"
    )
    sandbox = unit_files(tmp_path, SHIPPED_UNIT)()
    check = check_sandbox(config, sandbox)
    assert check.ok and check.warning, check
    problems = check.detail.removeprefix("warning: ").split("; snapshots")
    assert problems[0].startswith(
        "audit.path's folder /var/log/edgeface: the service may write only in /var/lib/edgeface"
    )
    assert "(ProtectSystem=strict)" in problems[0]
    assert problems[0].endswith(
        "; add ReadWritePaths=/var/log/edgeface under [Service] in a drop-in (sudo systemctl "
        "edit edgeface), making the folder first (a missing one stops the service from "
        "starting), or use a folder under /var/lib/edgeface"
    )
    assert problems[1].startswith(
        ".folder /home/pi/snapshots: the service cannot see /home, /root or /run/user"
    )
    assert "push.folder" not in check.detail  # only read, and /etc is readable
    drop_in = "[Service]\nReadWritePaths=/var/log/edgeface\nProtectHome=read-only\n"
    sandbox = unit_files(tmp_path, SHIPPED_UNIT, drop_in)()
    granted = check_sandbox(config, sandbox)
    assert "/var/log/edgeface" not in granted.detail, granted
    assert "snapshots.folder /home/pi/snapshots: /home, /root and /run/user are read-only" in (
        granted.detail
    )
    fine = check_sandbox(parse_config(""), sandbox)
    assert fine.ok and not fine.warning, fine


def test_private_tmp_and_a_unit_without_a_sandbox(tmp_path: Path) -> None:
    from edgeface.door.doctor import check_sandbox

    in_tmp = parse_config("state_dir: /tmp/edgeface-state\n")
    check = check_sandbox(in_tmp, unit_files(tmp_path, SHIPPED_UNIT)())
    assert "state_dir /tmp/edgeface-state: the service has a /tmp and /var/tmp of its own" in (
        check.detail
    )
    plain = unit_files(tmp_path / "plain", "[Service]\nExecStart=/bin/true\n")()
    assert check_sandbox(in_tmp, plain) == Check(
        "sandbox",
        True,
        f"the service may use every path ({tmp_path}/plain/system/edgeface.service)",
    )
    assert check_sandbox(in_tmp, None).detail == "no edgeface.service unit found: not checked"
