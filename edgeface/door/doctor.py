"""``edgeface doctor``: check everything the daemon needs and say exactly what is wrong.

Each check returns a line an installer can act on. Nothing here moves the door: the relay is
only ever driven to its locked level, then released.

Something that does not stop the door but that the installer should still act on is a
*warning*: the check passes (``doctor`` exits 0, as ``run`` would start), its detail begins
with ``warning:`` and says what to do, and ``--json`` marks it ``"warning": true``.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import ssl
import tempfile
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgeface.config import (
    Config,
    MqttConfig,
    NotInEnvironment,
    UnsetVariable,
    config_warnings,
    load_config,
    password_without_username,
)
from edgeface.door.service_unit import ServiceSandbox, read_service_sandbox, remedy
from edgeface.errors import EdgefaceError, clip_text, shown_value
from edgeface.files import PATH_CHARS, open_regular_file

if TYPE_CHECKING:
    from edgeface.recognition.gallery import Gallery


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    #: Passed, but with something the installer should act on (the detail says what).
    warning: bool = False


def warned(name: str, detail: str) -> Check:
    """A check that passes with a warning: ``run`` would start, so ``doctor`` must not fail,
    but the line must stand out from the ones that need nothing."""
    return Check(name, True, f"warning: {detail}", warning=True)


def check_config(path: Path, unset: list[UnsetVariable]) -> tuple[Check, Config | None]:
    """The file, read as ``run`` reads it, but for ``env:`` settings whose variable this shell
    does not have: added to ``unset`` (see :func:`unset_variable_checks`), not a failure."""
    try:
        config = load_config(path, unset_env=unset)
    except EdgefaceError as exc:
        return Check("config", False, str(exc)), None
    return Check("config", True, f"{path} is valid"), config


def unset_variable_checks(
    unset: list[UnsetVariable], sandbox: ServiceSandbox | None
) -> list[Check]:
    """One warning per ``env:`` setting whose variable is not set here. The service reads its
    secrets from the unit's EnvironmentFile (``/etc/edgeface/secrets.env``), which the shell
    doctor runs in (``sudo -u edgeface edgeface doctor``) does not have: that made the whole
    file "invalid" and skipped every other check. Now each is said, and everything else is
    checked; what depends on the value is said to be unchecked."""
    files = ", ".join(sandbox.environment_files) if sandbox else ""
    where = f"its EnvironmentFile ({files})" if files else "its environment"
    return [
        warned(
            "env",
            f"{u.key}: environment variable {clip_text(u.variable)} is not set in this shell; "
            f"the service reads it from {where}; what needs its value is not checked here",
        )
        for u in unset
    ]


def check_runtime() -> Check:
    from edgeface.runtime import available_runtime, default_threads

    try:
        runtime = available_runtime()
    except EdgefaceError as exc:
        return Check("runtime", False, str(exc))
    return Check("runtime", True, f"{runtime.name}, {default_threads()} thread(s)")


def check_models(config: Config) -> Check:
    from edgeface.model_files import PRECISIONS, load_model, model_name
    from edgeface.runtime import delegation_report

    detector = config.detector.precision
    embedder = config.recognition.embedder_precision
    wanted = [
        model_name(net, precision)
        for net in ("pnet", "rnet", "onet")
        for precision in (PRECISIONS if detector == "auto" else (detector,))
    ] + [model_name("embedder", embedder)]
    notes = []
    try:
        for name in wanted:
            partitions, outside = delegation_report(load_model(name, num_threads=1))
            if partitions != 1 or outside:
                notes.append(f"{name} not fully in XNNPACK ({partitions} partitions, {outside})")
    except EdgefaceError as exc:
        return Check("models", False, str(exc))
    summary = f"detector {detector}, embedder {embedder}: {len(wanted)} models verified"
    return Check("models", True, "; ".join(notes) or summary)


def check_gallery(config: Config) -> Check:
    from edgeface.door.gallery_file import gallery_store

    store = gallery_store(config.recognition)
    try:
        gallery = store.load()
        exists = store.exists()
    except EdgefaceError as exc:
        return Check("gallery", False, str(exc))
    if not gallery.identities:
        # A missing file is a wrong path or a gallery never made, not "empty": say which.
        state = "does not exist" if not exists else "is empty"
        return Check(
            "gallery",
            False,
            f"{config.recognition.gallery} {state}: nobody can enter "
            f"(edgeface enroll NAME photo.jpg --gallery {config.recognition.gallery})",
        )
    from edgeface.door.rule_names import rules_naming_strangers

    strangers = rules_naming_strangers(config, gallery)
    old_names = names_enrolment_refuses(gallery, config.recognition.gallery)
    if strangers:
        return Check("gallery", False, "; ".join([*strangers, *old_names]))
    summary = f"{len(gallery.identities)} people, version {gallery.version}"
    if old_names:
        return warned("gallery", f"{old_names[0]} ({summary})")
    return Check("gallery", True, summary)


def names_enrolment_refuses(gallery: Gallery, path: str) -> list[str]:
    """One sentence (or none) listing the gallery's names that today's enrolment rules refuse
    (:func:`~edgeface.recognition.gallery.validate_name`: spaces around a name, invisible
    characters, a reserved word). Such a gallery still loads — older versions enrolled them,
    and refusing the file would lock everyone out — and the people are still recognised, but
    nobody can enrol them again under that name, and " obama" beside "obama" or a name
    written backwards by a U+202E is a trap for whoever reads the logs. Each name is shown as
    a shell word (invisible characters as ``$'\\xe2\\x80\\xae'``), so the terminal shows
    what is there and the installer can paste it into ``edgeface gallery remove``."""
    from edgeface.recognition.gallery import GalleryError, validate_name

    refused = []
    for name in sorted(gallery.identities):
        try:
            validate_name(name)
        except GalleryError as exc:
            reason = str(exc).removeprefix(f"identity name {name!r} ").split("; ", 1)[0]
            refused.append(f"{shell_word(name)} ({reason})")
    if not refused:
        return []
    return [
        f"{len(refused)} name(s) that enrolment now refuses: {', '.join(refused)}; they are "
        "still recognised but cannot be enrolled again under that name — remove each with "
        f"edgeface gallery remove --gallery {shlex.quote(path)} NAME (NAME as written here) "
        "and enrol the person under a clean name"
    ]


def shell_word(text: str) -> str:
    """``text`` as one word for a POSIX shell that shows every character it holds: quoted as
    usual when all are printable, else bash's ``$'…'`` with the unprintable ones (controls,
    bidirectional overrides, zero-width characters) as the bytes of their UTF-8, which reach
    the program unchanged whatever the shell's locale."""
    if text.isprintable():
        return shlex.quote(text)
    parts = []
    for ch in text:
        if ch in "\\'":
            parts.append("\\" + ch)
        elif ch.isprintable():
            parts.append(ch)
        else:
            parts.extend(f"\\x{byte:02x}" for byte in ch.encode("utf-8", "surrogatepass"))
    return "$'" + "".join(parts) + "'"


def check_camera(config: Config) -> Check:
    from edgeface.door.sources import open_source, redact

    c = config.camera
    shown = redact(c.source)  # a camera URL's password is not printed (doctor output is shared)
    try:
        source = open_source(
            c.source, c.width, c.height, loop=False, stream_timeout=c.stream_timeout_seconds
        )
    except EdgefaceError as exc:
        return Check("camera", False, str(exc))
    try:
        frame = source.read()
    finally:
        source.close()
    if frame is None:
        return Check("camera", False, f"{shown} opened but gave no frame")
    return Check("camera", True, f"{shown}: {frame.shape[1]}x{frame.shape[0]} frames")


def check_gpio(config: Config) -> Check:
    """The relay pin, driven locked and released, and the door contact and exit button pins
    claimed as the daemon claims them (pulled up) and released: a pin another program holds,
    or one the board lacks, stopped ``run`` at start after doctor had passed the relay alone."""
    from gpiozero import Button

    from edgeface.door.relay import DoorRelay
    from edgeface.door.service import make_pin_factory

    r = config.relay
    try:
        factory = make_pin_factory(r.pin_factory)
        relay = DoorRelay(r.pin, active_high=r.active_high, pin_factory=factory)
    except Exception as exc:  # gpiozero raises many kinds (BadPinFactory, PinInvalidPin, ...)
        return Check("gpio", False, f"relay pin {r.pin}: {exc.__class__.__name__}: {exc}")
    try:
        inputs = {"door contact": r.door_contact_pin, "exit button": r.exit_button_pin}
        for name, pin in inputs.items():
            if pin is None:
                continue
            try:
                Button(pin, pull_up=True, pin_factory=factory).close()
            except Exception as exc:  # as above
                return Check("gpio", False, f"{name} pin {pin}: {exc.__class__.__name__}: {exc}")
    finally:
        relay.close()
    wiring = (
        ""
        if r.active_high and r.pin >= 9
        else (" (fail-secure wiring wants an active-high relay on GPIO 9-27, pulled down at boot)")
    )
    claimed = "".join(f", {name} on GPIO {pin}" for name, pin in inputs.items() if pin is not None)
    return Check("gpio", True, f"relay on GPIO {r.pin} driven locked{wiring}{claimed}")


#: The false-accept rates README ("Choosing a threshold") measured for the thresholds the
#: project ships: the LFW threshold at 1e-3 per comparison (matcher.DEFAULT_THRESHOLD, the
#: command line's default) let 12.8 % of never-enrolled visitors through on the open-set test
#: (60 people, 41 enrolled, grey low-resolution faces); the door's 0.34 held it near 0.5 %.
STRANGERS_PASSING_AT_DEFAULT = "12.8 %"
#: README: with recognition.fusion_frames 3 at 0.34, false accepts rose from 0.5 % to 3.3 %.
FUSED_STRANGERS_AT_SHIPPED = "3.3 %"


def check_recognition(config: Config) -> Check:
    """Matching settings weaker than those the project ships and measured (README, "Choosing
    a threshold"): any threshold below 2.0 is valid, and 0.9 lets nearly every stranger in
    without a word from doctor. Warned, not refused: measured on the installer's own camera
    (``edgeface eval identify``) a looser threshold may be right, and a door that ran must not
    stay shut after an upgrade. Only what is really weaker than the shipped settings:
    a threshold above the per-comparison calibrated one, a single vote deciding, and fusing
    frames without lowering the threshold."""
    from edgeface.config import RecognitionConfig
    from edgeface.recognition.matcher import DEFAULT_THRESHOLD

    r, shipped = config.recognition, RecognitionConfig()
    problems = []
    if r.threshold > DEFAULT_THRESHOLD:
        problems.append(
            f"recognition.threshold {r.threshold:g} is above {DEFAULT_THRESHOLD:g}, the LFW "
            "threshold at 1 false accept in 1,000 comparisons; a door compares each visitor "
            f"with everyone enrolled, and at {DEFAULT_THRESHOLD:g} already "
            f"{STRANGERS_PASSING_AT_DEFAULT} of never-enrolled visitors were let in on the "
            f"open-set test (the door ships {shipped.threshold:g}: about 0.5 %); higher lets "
            "in more"
        )
    if r.confirm_votes == 1:
        problems.append(
            "recognition.confirm_votes is 1: a single frame's match opens the door (shipped: "
            f"{shipped.confirm_votes} of {shipped.confirm_window}), so one false accept is "
            "enough"
        )
    if r.fusion_frames > 1 and r.threshold >= shipped.threshold:
        problems.append(
            f"recognition.fusion_frames {r.fusion_frames} at threshold {r.threshold:g}: fused "
            "frames bring strangers closer too (at 3 frames and 0.34, false accepts rose "
            f"from 0.5 % to {FUSED_STRANGERS_AT_SHIPPED}); lower the threshold with it"
        )
    if problems:
        return warned(
            "matching",
            "; ".join(problems)
            + " — README, Choosing a threshold; measure with edgeface eval identify",
        )
    return Check(
        "matching",
        True,
        f"threshold {r.threshold:g}, margin {r.margin:g}, "
        f"{r.confirm_votes} of {r.confirm_window} votes",
    )


def check_settings(config: Config) -> Check:
    """What ``run`` logs as a warning at start (and a reload again): settings that work but
    should be changed (:func:`edgeface.config.config_warnings`)."""
    warnings = config_warnings(config)
    if warnings:
        return warned("settings", "; ".join(warnings))
    return Check("settings", True, "nothing to warn about")


def check_broker(config: Config) -> Check:
    """The broker reached as the daemon reaches it. With ``mqtt.tls`` that includes the TLS
    handshake, with the very context the daemon builds (:func:`edgeface.door.mqtt.tls_context`):
    a TCP connect alone passed a broker whose certificate the daemon then refused, or a port
    without TLS, and the daemon retried for ever without a word in doctor. No MQTT session is
    opened: the daemon's client id would throw a running daemon off the broker."""
    m = config.mqtt
    if not m.enabled:
        return Check("mqtt", True, "disabled")
    reached = _reach_broker(m)
    unused = password_without_username(m)
    if reached.ok and unused:
        return warned("mqtt", f"{unused} ({reached.detail})")
    return reached


def _reach_broker(m: MqttConfig) -> Check:
    """:func:`check_broker`'s connection and TLS handshake."""
    address = f"{m.host}:{m.port}"
    context: ssl.SSLContext | None = None
    if m.tls:
        from edgeface.door.mqtt import tls_context

        try:  # the configuration check built it already; the file may have changed since
            context = tls_context(m)
        except ssl.SSLError as exc:
            problem = f"no PEM certificate ({exc.reason or exc})"
            return Check("mqtt", False, f"mqtt.ca_file {m.ca_file}: {problem}")
        except OSError as exc:
            return Check("mqtt", False, f"mqtt.ca_file {m.ca_file}: {exc.strerror or exc}")
    try:
        connection = socket.create_connection((m.host, m.port), timeout=3)
    except OSError as exc:
        return Check("mqtt", False, f"cannot reach broker {address}: {exc.strerror or exc}")
    with connection:
        if context is None:
            return Check("mqtt", True, f"broker {address} reachable")
        try:
            with context.wrap_socket(connection, server_hostname=m.host) as secured:
                version = secured.version()
        except ssl.SSLCertVerificationError as exc:
            trusted = f"mqtt.ca_file {m.ca_file}" if m.ca_file else "the system's CAs (no ca_file)"
            return Check(
                "mqtt",
                False,
                f"broker {address}: TLS certificate not trusted ({exc.verify_message}); "
                f"checked against {trusted}",
            )
        except (ssl.SSLError, OSError) as exc:  # refused, reset or silent mid-handshake
            why = exc.reason if isinstance(exc, ssl.SSLError) else exc.strerror
            return Check(
                "mqtt",
                False,
                f"broker {address}: TLS handshake failed ({why or exc}); does it listen with "
                f"TLS on port {m.port}?",
            )
    return Check("mqtt", True, f"broker {address} reachable, TLS certificate verified ({version})")


#: What Home Assistant accepts as the node id and object id of an MQTT discovery topic
#: (``<prefix>/<component>/<node_id>/<object_id>/config``); a topic with anything else is
#: ignored by its discovery, without a word on the broker.
HA_DISCOVERY_ID = re.compile(r"[a-zA-Z0-9_-]+")


def check_discovery(config: Config) -> Check:
    """Home Assistant discovery names this door's entities after its ``device_id`` (node id
    ``edgeface_<device_id>`` in every discovery topic, and the unique ids, with the base topic
    in it where that is not the default: :func:`edgeface.door.mqtt.discovery_node`). The
    configuration accepts letters
    of any script in a device id (``tür-1``: it is a valid MQTT topic level, and files with
    such ids ran before), but Home Assistant accepts only ASCII letters, digits, _ and - there:
    the door runs and publishes, and no entity ever appears in Home Assistant. A warning,
    not a failure: the door itself works, and its events still reach MQTT."""
    m = config.mqtt
    if not m.enabled or not m.discovery:
        return Check("discovery", True, "disabled")
    from edgeface.door.mqtt import discovery_node

    node = discovery_node(m, config.device_id)
    if HA_DISCOVERY_ID.fullmatch(node):
        return Check("discovery", True, f"Home Assistant device {node}")
    outside = dict.fromkeys(ch for ch in config.device_id if not HA_DISCOVERY_ID.fullmatch(ch))
    odd = ", ".join(shown_value(ch) for ch in outside)
    # A suggestion only where every character has an ASCII base letter (tür-1 → tur-1): what
    # is left of дверь or 門1 would be no name or another one.
    ascii_id = unicodedata.normalize("NFKD", config.device_id).encode("ascii", "ignore").decode()
    fits = len(ascii_id) == len(config.device_id) and HA_DISCOVERY_ID.fullmatch(ascii_id)
    example = f" such as {ascii_id}" if fits else ""
    return warned(
        "discovery",
        f"device_id {shown_value(config.device_id)} holds {odd}, which Home "
        "Assistant does not accept in discovery topics (only a-z, A-Z, 0-9, _ and -): it "
        "ignores this door's discovery messages and none of its entities appear. Give the "
        f"door an ASCII device_id{example} (it also names the door's MQTT topics), or set "
        "mqtt.discovery: false if Home Assistant is not used",
    )


def check_topics(config: Config) -> Check:
    """Where the door publishes and listens. A door named ``fleet`` shares its topics with the
    fleet's group pushes (``<base>/fleet/<group>/gallery/set``): under the README's broker
    ACL (``pattern readwrite edgeface/%u/#``, each door logging in as its device id) that
    door's user may replace every group's retained push — a stolen door of that name could
    hand the whole fleet an older gallery. A broker user name other than the device id does
    not fit that ACL either: every event is refused (over MQTT 3.1.1 unseen, events lost).
    The door itself works, hence a warning."""
    m = config.mqtt
    if not m.enabled:
        return Check("topics", True, "disabled")
    mine = f"{m.base_topic}/{config.device_id}/#"
    if config.device_id == "fleet":
        return warned(
            "topics",
            f"device_id 'fleet' names the fleet's push topics ({m.base_topic}/fleet/<group>/"
            "gallery/set): with one broker user per door, as the README's ACL has it, this "
            "door could write every group's gallery push; give the door another name",
        )
    if m.username and m.username != config.device_id:
        return warned(
            "topics",
            f"mqtt.username {shown_value(m.username)} is not the device_id "
            f"{shown_value(config.device_id)}: the README's broker ACL (pattern readwrite "
            f"{m.base_topic}/%u/#) lets a door write only under its user name, and the broker "
            "refuses its events and state (the daemon logs each refusal); log in as the "
            "device_id or write the ACL for this user",
        )
    return Check("topics", True, mine)


def folder_problem(folder: Path, named: str) -> str | None:
    """Why the daemon could not create ``folder`` (with its parents, as it does) or write in
    it, or None. Nothing is left behind: an existing folder is probed with a temporary file
    that is gone once closed; a missing one must have an existing ancestor that is a folder
    the daemon may write in (probed the same way), since that is where it will be created.
    ``named`` says in the message which setting the folder comes from ("state_dir")."""
    shown = f"{named} {clip_text(str(folder), PATH_CHARS)}"
    try:
        if os.path.lexists(folder):
            if not folder.is_dir():
                return f"{shown} exists but is not a folder"
            probe, problem = folder, f"{shown}: cannot write in it"
        else:
            probe = folder.parent
            while not os.path.lexists(probe) and probe != probe.parent:
                probe = probe.parent
            if not probe.is_dir():
                return f"{shown} cannot be created: {probe} is not a folder"
            problem = f"{shown} cannot be created in {probe}"
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte, a link loop
        return f"{shown}: {getattr(exc, 'strerror', None) or exc}"
    try:
        with tempfile.TemporaryFile(dir=probe, prefix=".edgeface-doctor-"):
            pass
    except OSError as exc:
        return f"{problem} ({exc.strerror or exc})"
    return None


#: What an SQLite database file starts with (an empty file is a new database to SQLite).
SQLITE_HEADER = b"SQLite format 3\x00"


def check_state(config: Config) -> Check:
    """``state_dir`` holds what the door keeps across restarts (an unlock in progress, the MQTT
    outbox, the newest accepted push, the push folder's record). ``run`` creates it and writes
    in it at start: a file in its place, or a folder it may not write in, stopped ``run`` with
    a traceback after doctor had passed it. An outbox file that is not a database, or a damaged
    one (``PRAGMA quick_check``, read-only, at most ``CHECK_SECONDS``), is set aside by
    ``run`` (tests/test_run_startup.py), and still a failure here: events are lost."""
    import sqlite3

    from edgeface.door.outbox_repair import CHECK_SECONDS, SQLITE_INTERRUPT, check_file

    state = Path(config.state_dir)
    problem = folder_problem(state, "state_dir")
    if problem:
        return Check("state", False, problem)
    unchecked = ""
    if config.mqtt.enabled and os.path.lexists(state / "outbox.db"):
        outbox = state / "outbox.db"
        try:
            with open_regular_file(outbox, "MQTT outbox") as handle:
                header = handle.read(len(SQLITE_HEADER))
        except (EdgefaceError, OSError) as exc:
            return Check("state", False, str(exc))
        if header and header != SQLITE_HEADER:
            return Check(
                "state",
                False,
                f"MQTT outbox {outbox} is not an SQLite database: run keeps it as "
                "outbox.db.unreadable-<time> and starts a new one (its events are not sent)",
            )
        try:
            damage = check_file(outbox) if header else None
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorcode", None) != SQLITE_INTERRUPT:
                return Check("state", False, f"MQTT outbox {outbox} cannot be checked: {exc}")
            damage, unchecked = None, f" (MQTT outbox not checked: over {CHECK_SECONDS:g} s)"
        if damage:
            return Check(
                "state",
                False,
                f"MQTT outbox {outbox} is damaged ({clip_text(damage)}): run keeps "
                "it as outbox.db.unreadable-<time> and starts a new one (the events that can "
                "still be read are carried over, the others are not sent)",
            )
    if not state.exists():
        return Check("state", True, f"{state} will be created at start")
    return Check("state", True, f"{state} writable{unchecked}")


#: Free space below which the storage check warns: at an event a second, the outbox and the
#: audit log write well under this in a day, but snapshots (tens of kB each) and the journal
#: can fill a small card within days of an outage.
LOW_SPACE_BYTES = 64 * 1024 * 1024


def check_storage(config: Config) -> Check:
    """Free space where the door writes (state_dir; the snapshot and audit folders where they
    are elsewhere). A full card does not stop the door, at start or while it runs — the outbox
    holds events in memory (lost if the daemon stops before the broker has them), an audit
    entry or a snapshot that cannot be written is reported — but what it cannot write is at
    risk, so it is a warning, said before the card fills up, not after."""
    import shutil

    places = {"state_dir": Path(config.state_dir)}
    if config.snapshots.enabled:
        places["snapshots folder"] = config.snapshot_folder
    if config.audit.enabled:
        places["audit folder"] = config.audit_path.parent
    seen: dict[int, tuple[str, int]] = {}  # one line per file system
    for named, folder in places.items():
        probe = folder
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent  # where the daemon will create it
        try:
            device = os.stat(probe).st_dev
            free = shutil.disk_usage(probe).free
        except OSError:
            continue  # said by the check of that folder
        if device not in seen:
            seen[device] = (named, free)
    low = [(named, free) for named, free in seen.values() if free < LOW_SPACE_BYTES]
    if low:
        return warned(
            "storage",
            "; ".join(f"{_megabytes(free)} free for the {named}" for named, free in low)
            + f" (under {_megabytes(LOW_SPACE_BYTES)}): free some space; a full card keeps "
            "events in memory only and loses snapshots and audit entries",
        )
    if not seen:
        return Check("storage", True, "free space unknown (see the folders' checks)")
    return Check(
        "storage",
        True,
        ", ".join(f"{_megabytes(free)} free ({named})" for named, free in seen.values()),
    )


def _megabytes(count: int) -> str:
    return f"{count / 1e6:,.0f} MB"


def check_snapshots(config: Config) -> Check:
    """With ``snapshots.enabled`` the daemon creates the folder at start (a file in its place
    stopped it with a traceback) and writes a JPEG per event (a folder it may not write in
    lost every one, each only a line in the journal)."""
    s = config.snapshots
    if not s.enabled:
        return Check("snapshot", True, "disabled")
    folder = config.snapshot_folder
    named = "snapshots.folder" if s.folder else "snapshots folder (<state_dir>/snapshots)"
    problem = folder_problem(folder, named)
    if problem:
        return Check("snapshot", False, problem)
    return Check("snapshot", True, f"{folder}: kept {s.retention_days:g} days")


def check_push_folder(config: Config) -> Check:
    """The daemon looks into ``push.folder`` for pushed files and treats a folder it cannot
    list as an empty one (it may not exist yet), so a file in its place or a folder it may not
    read would silently never deliver a push."""
    p = config.push
    if not p.enabled:
        return Check("push", True, "disabled")
    if not p.folder:
        return Check("push", True, "over MQTT only (no push.folder)")
    folder = Path(p.folder)
    shown = f"push.folder {clip_text(p.folder, PATH_CHARS)}"
    try:
        if not os.path.lexists(folder):
            return Check(
                "push", True, f"{shown} does not exist yet: nothing is pushed until it does"
            )
        if not folder.is_dir():
            return Check("push", False, f"{shown} exists but is not a folder")
        with os.scandir(folder) as entries:
            next(entries, None)
    except (OSError, ValueError) as exc:
        return Check(
            "push", False, f"{shown} cannot be read: {getattr(exc, 'strerror', None) or exc}"
        )
    return Check("push", True, f"{shown} watched every {p.folder_poll_seconds:g} s")


def check_audit(config: Config) -> Check:
    from edgeface.door.audit import log_files, verify

    if not config.audit.enabled:
        return Check("audit", True, "disabled")
    path = config.audit_path
    # The daemon runs on without its trail when it cannot write it: said here, not only in
    # the journal once the door is in service.
    named = "audit.path's folder" if config.audit.path else "state_dir"
    problem = folder_problem(path.parent, named) or _append_problem(path)
    if problem:
        return Check("audit", False, f"{problem}: the door would run without its audit trail")
    if not log_files(path):
        return Check("audit", True, f"{path}: no entries yet")
    try:
        report = verify(path)
    except OSError as exc:
        return Check("audit", False, f"{path}: cannot be read: {exc.strerror}")
    if not report.ok:
        return Check("audit", False, f"TAMPERED: {report.problem}")
    return Check("audit", True, f"{path}: {report.entries} entries, chain intact")


def _append_problem(path: Path) -> str | None:
    """Why an existing regular file cannot be appended to, or None. Opening for appending
    changes nothing; anything but a regular file is left to the reader's own message (a FIFO
    opened for writing would wait for a reader)."""
    try:
        if not path.is_file():
            return None
        with open(path, "ab"):
            pass
    except OSError as exc:
        return f"{clip_text(str(path), PATH_CHARS)} cannot be written ({exc.strerror or exc})"
    return None


def check_clock(config: Config) -> Check:
    """Schedules are read against the clock; one without NTP time would apply them at the
    wrong hours, so the daemon refuses scheduled people until it is synchronised."""
    from edgeface.door.clock_sync import ScheduleClock

    rec = config.recognition
    if not rec.schedules:
        return Check("clock", True, "no schedules: access does not depend on the clock")
    clock = ScheduleClock(rec.schedule_clock)
    if rec.schedule_clock == "any":
        return Check("clock", True, "schedules use the clock as it is (schedule_clock: any)")
    if not clock.trusted():
        return Check("clock", False, clock.problem())
    return Check("clock", True, "synchronised: schedules apply")


def daemon_paths(config: Config) -> list[tuple[str, str, bool]]:
    """(what the setting is called, the path, whether the daemon writes there) of every file
    and folder the daemon uses. It writes in state_dir, the audit log's folder (rotation
    renames there), the snapshots folder, and the gallery's folder when it takes pushes
    (a new gallery is written beside the old one and renamed); it only reads the gallery
    otherwise, the push folder (its record is in state_dir) and the CA file."""
    rec, p, m = config.recognition, config.push, config.mqtt
    paths = [("state_dir", config.state_dir, True)]
    if p.enabled:  # a push replaces what a link points to
        gallery = Path(os.path.realpath(rec.gallery))
        paths.append(("recognition.gallery's folder", str(gallery.parent), True))
    else:
        paths.append(("recognition.gallery", rec.gallery, False))
    if config.audit.enabled:
        named = "audit.path's folder" if config.audit.path else "the audit log's folder"
        paths.append((named, str(config.audit_path.parent), True))
    if config.snapshots.enabled:
        named = "snapshots.folder" if config.snapshots.folder else "the snapshots folder"
        paths.append((named, str(config.snapshot_folder), True))
    if p.enabled and p.folder:
        paths.append(("push.folder", p.folder, False))
    if m.enabled and m.tls and m.ca_file:
        paths.append(("mqtt.ca_file", m.ca_file, False))
    # A path made of a setting this shell lacks (env:) is not known here (said on its own line).
    return [entry for entry in paths if "env:" not in entry[1] or not _unknown(config)]


def _unknown(config: Config) -> bool:
    """Whether any path setting comes from an ``env:`` variable this shell does not have."""
    settings = (
        config.state_dir,
        config.recognition.gallery,
        config.audit.path,
        config.snapshots.folder,
        config.push.folder,
        config.mqtt.ca_file,
    )
    return any(isinstance(value, NotInEnvironment) for value in settings)


def check_sandbox(config: Config, sandbox: ServiceSandbox | None) -> Check:
    """Each path the daemon uses against the systemd unit's sandbox (see
    :mod:`edgeface.door.service_unit`): doctor, run as the installer, sees the file system
    without it, so ``audit.path: /var/log/edgeface/audit.log`` passed here and the daemon then
    ran without its audit trail. A warning: the unit may not be what starts the daemon."""
    if sandbox is None:
        return Check("sandbox", True, "no edgeface.service unit found: not checked")
    problems = []
    for named, path, writes in daemon_paths(config):
        problem = sandbox.problem(path, writes=writes)
        if problem:
            problems.append(
                f"{named} {clip_text(str(path), PATH_CHARS)}: {problem.reason}; "
                + remedy(problem, Path(path), sandbox)
            )
    if problems:
        return warned("sandbox", "; ".join(problems) + f" (the systemd unit: {sandbox.source})")
    return Check("sandbox", True, f"the service may use every path ({sandbox.source})")


def not_checked(name: str, needs: tuple[str, ...], unset: list[UnsetVariable]) -> Check | None:
    """A warning in place of check ``name`` where it needs a setting whose ``env:`` variable
    is not set here (the check would test the text ``env:NAME`` instead of the value)."""
    missing = [u for u in unset if u.key in needs]
    if not missing:
        return None
    said = ", ".join(f"{u.key} (environment variable {clip_text(u.variable)})" for u in missing)
    return warned(name, f"not checked: {said} is not set in this shell")


#: Each check after the configuration's: its name, what it does, the settings it needs.
STEPS: list[tuple[str, Callable[[Config], Check], tuple[str, ...]]] = [
    ("models", check_models, ()),
    ("gallery", check_gallery, ("recognition.gallery",)),
    ("clock", check_clock, ()),
    ("camera", check_camera, ("camera.source",)),
    ("gpio", check_gpio, ()),
    ("mqtt", check_broker, ("mqtt.host", "mqtt.ca_file")),
    ("discovery", check_discovery, ("device_id",)),
    ("topics", check_topics, ("device_id", "mqtt.base_topic")),
    ("state", check_state, ("state_dir",)),
    ("storage", check_storage, ("state_dir", "snapshots.folder", "audit.path")),
    ("snapshot", check_snapshots, ("state_dir", "snapshots.folder")),
    ("push", check_push_folder, ("push.folder",)),
    ("audit", check_audit, ("state_dir", "audit.path")),
    ("matching", check_recognition, ()),
    ("settings", check_settings, ()),
]


def run_checks(
    path: Path, read_sandbox: Callable[[], ServiceSandbox | None] = read_service_sandbox
) -> list[Check]:
    """Every check, in the order printed. ``read_sandbox``: the systemd unit's sandbox (the
    installed unit and its drop-ins, else the one shipped)."""
    unset: list[UnsetVariable] = []
    config_check, config = check_config(path, unset)
    sandbox = read_sandbox()
    checks = [config_check, *unset_variable_checks(unset, sandbox), check_runtime()]
    if config is None:
        return checks
    for name, step, needs in STEPS:
        checks.append(not_checked(name, needs, unset) or step(config))
    checks.append(check_sandbox(config, sandbox))
    return checks
