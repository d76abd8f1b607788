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
from collections.abc import Iterator
from pathlib import Path

import pytest
from broker import Broker, make_certificates
from test_cli import edgeface
from test_cli_errors import MODES_IGNORED, assert_one_line_error, write_gallery

from edgeface.door.doctor import Check

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
