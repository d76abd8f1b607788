"""``edgeface doctor``: check everything the daemon needs and say exactly what is wrong.

Each check returns a line an installer can act on. Nothing here moves the door: the relay is
only ever driven to its locked level, then released.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgeface.config import Config, load_config
from edgeface.errors import EdgefaceError


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def check_config(path: Path) -> tuple[Check, Config | None]:
    try:
        config = load_config(path)
    except EdgefaceError as exc:
        return Check("config", False, str(exc)), None
    return Check("config", True, f"{path} is valid"), config


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
    from edgeface.door.service import gallery_store

    try:
        gallery = gallery_store(config.recognition).load()
    except EdgefaceError as exc:
        return Check("gallery", False, str(exc))
    if not gallery.identities:
        return Check(
            "gallery",
            False,
            f"{config.recognition.gallery} is empty: nobody can enter "
            "(edgeface enroll NAME photo.jpg --gallery ...)",
        )
    from edgeface.door.rule_names import rules_naming_strangers

    strangers = rules_naming_strangers(config, gallery)
    if strangers:
        return Check("gallery", False, "; ".join(strangers))
    return Check("gallery", True, f"{len(gallery.identities)} people, version {gallery.version}")


def check_camera(config: Config) -> Check:
    from edgeface.door.sources import open_source

    c = config.camera
    try:
        source = open_source(c.source, c.width, c.height, loop=False)
    except EdgefaceError as exc:
        return Check("camera", False, str(exc))
    try:
        frame = source.read()
    finally:
        source.close()
    if frame is None:
        return Check("camera", False, f"{c.source} opened but gave no frame")
    return Check("camera", True, f"{c.source}: {frame.shape[1]}x{frame.shape[0]} frames")


def check_gpio(config: Config) -> Check:
    from edgeface.door.relay import DoorRelay
    from edgeface.door.service import make_pin_factory

    r = config.relay
    try:
        relay = DoorRelay(
            r.pin, active_high=r.active_high, pin_factory=make_pin_factory(r.pin_factory)
        )
    except Exception as exc:  # gpiozero raises many kinds (BadPinFactory, PinInvalidPin, ...)
        return Check("gpio", False, f"relay pin {r.pin}: {exc.__class__.__name__}: {exc}")
    relay.close()
    wiring = (
        ""
        if r.active_high and r.pin >= 9
        else (" (fail-secure wiring wants an active-high relay on GPIO 9-27, pulled down at boot)")
    )
    return Check("gpio", True, f"relay on GPIO {r.pin} driven locked{wiring}")


def check_broker(config: Config) -> Check:
    m = config.mqtt
    if not m.enabled:
        return Check("mqtt", True, "disabled")
    try:
        with socket.create_connection((m.host, m.port), timeout=3):
            pass
    except OSError as exc:
        return Check("mqtt", False, f"cannot reach broker {m.host}:{m.port}: {exc.strerror or exc}")
    return Check("mqtt", True, f"broker {m.host}:{m.port} reachable")


def check_audit(config: Config) -> Check:
    from edgeface.door.audit import log_files, verify

    if not config.audit.enabled:
        return Check("audit", True, "disabled")
    path = config.audit_path
    if not log_files(path):
        return Check("audit", True, f"{path}: no entries yet")
    try:
        report = verify(path)
    except OSError as exc:
        return Check("audit", False, f"{path}: cannot be read: {exc.strerror}")
    if not report.ok:
        return Check("audit", False, f"TAMPERED: {report.problem}")
    return Check("audit", True, f"{path}: {report.entries} entries, chain intact")


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


def run_checks(path: Path) -> list[Check]:
    config_check, config = check_config(path)
    checks = [config_check, check_runtime()]
    if config is None:
        return checks
    steps: list[Callable[[Config], Check]] = [
        check_models,
        check_gallery,
        check_clock,
        check_camera,
        check_gpio,
        check_broker,
        check_audit,
    ]
    checks += [step(config) for step in steps]
    return checks
