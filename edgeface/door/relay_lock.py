"""``edgeface relay lock``: drive the strike relay locked once the daemon has gone.

Why it exists: on Raspberry Pi kernels a GPIO output that its process releases *without*
closing it — the process was killed (SIGKILL, out of memory, the watchdog's SIGABRT, the SIGKILL
after ``TimeoutStopSec``) — keeps the level it was last driven to
(``pinctrl_bcm2835.persist_gpio_outputs``, on by default). A daemon that dies during an unlock
pulse therefore leaves the strike energised, and nothing in the dead process can end the pulse.
The unit runs this command from ``ExecStopPost=``, after every stop, also when a start failed
before the relay was claimed (a broken configuration).

Which pin: the one the daemon last claimed. :class:`~edgeface.door.door_hardware.DoorHardware`
records it (pin, polarity, pin library) in ``<state_dir>/relay-pin.json`` whenever it claims
the relay, so the right pin is locked even when the configuration has since been edited to
name another pin, or broken. Without a record (the daemon never claimed one) the
configuration's ``relay`` section is used.

How: the pin is claimed through gpiozero at its locked level (RPi.GPIO sets the level with the
claim; gpiozero 2.0's lgpio pins claim the line low, then write the level, so an active-low
relay sees microseconds at its energise level — far too short to move a relay, and the same as
at every daemon start) and the process then ends holding it (:func:`exit_holding_the_pin`).
gpiozero's own close would turn the pin into an input with its pull switched off — floating —
whereas a line still held at exit is handed back by the kernel as it is: driven locked on a
Raspberry Pi kernel, or, with ``dtparam=strict_gpiod`` in config.txt, returned to an input (the
relay input's pull-down resistor then holds the relay off). Nothing is forced: a pin another
process holds (the daemon still running; lgpio's claim is exclusive, and the recorded daemon's
process is looked for) is left alone and reported.

Quick: the unit runs it as ``python -m edgeface.door.relay_lock``, which loads gpiozero, YAML
and the configuration loader only — not the command line's OpenCV and numpy — since the strike
may be energised until it has run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from edgeface.door.state_files import write_json_atomic

log = logging.getLogger("edgeface.relay_lock")

#: What the daemon drives, kept in its state directory (:func:`record_relay`).
RECORD_NAME = "relay-pin.json"

#: gpiozero's pin libraries by the names its GPIOZERO_PIN_FACTORY takes.
FACTORIES = {
    "lgpio": ("gpiozero.pins.lgpio", "LGPIOFactory"),
    "rpigpio": ("gpiozero.pins.rpigpio", "RPiGPIOFactory"),
    "pigpio": ("gpiozero.pins.pigpio", "PiGPIOFactory"),
    "native": ("gpiozero.pins.native", "NativeFactory"),
    "mock": ("gpiozero.pins.mock", "MockFactory"),
}


class RelayLockError(Exception):
    """Nothing was driven: the message says why and what to do."""


@dataclass(frozen=True)
class RelayPin:
    """A relay output: its pin, polarity and gpiozero pin library (None: gpiozero's choice)."""

    pin: int | str
    active_high: bool
    pin_factory: str | None

    @property
    def locked_level(self) -> str:
        """The pin's level while the relay is not energised."""
        return "low" if self.active_high else "high"


# ----- the record the daemon keeps ---------------------------------------------------------------
def factory_name(factory: Any) -> str | None:
    """gpiozero's name for a pin factory object (None for one it has no name for)."""
    for name, (_, class_name) in FACTORIES.items():
        if type(factory).__name__ == class_name:
            return name
    return None


def record_relay(state_dir: Path, relay: RelayPin) -> None:
    """Record the relay the daemon has just claimed, with this process's identity (so that a
    later ``relay lock`` leaves a daemon that still runs alone). Atomic: a power cut leaves
    the old record or the new one. Raises OSError."""
    write_json_atomic(
        state_dir / RECORD_NAME,
        {
            "pin": relay.pin,
            "active_high": relay.active_high,
            "pin_factory": relay.pin_factory,
            "pid": os.getpid(),
            "process_start": _process_start(os.getpid()),
            "claimed_at": time.time(),
        },
    )


def read_record(state_dir: Path) -> tuple[RelayPin, int | None, str | None] | None:
    """The relay recorded in ``state_dir`` and the pid and start time of the process that
    claimed it; None when there is no record. Raises ValueError for one that cannot be used
    (torn, hand-edited) and OSError for one that cannot be read."""
    try:
        text = (state_dir / RECORD_NAME).read_text()
    except FileNotFoundError:
        return None
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    pin, active_high, factory = data.get("pin"), data.get("active_high"), data.get("pin_factory")
    if isinstance(pin, bool) or not isinstance(pin, (int, str)) or pin == "":
        raise ValueError(f"pin {pin!r} is not a GPIO pin")
    if not isinstance(active_high, bool):
        raise ValueError(f"active_high {active_high!r} is not true or false")
    if factory is not None and factory not in FACTORIES:
        raise ValueError(f"pin_factory {factory!r} is not one of {', '.join(FACTORIES)}")
    pid = data.get("pid")
    start = data.get("process_start")
    return (
        RelayPin(pin, active_high, factory),
        pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        start if isinstance(start, str) else None,
    )


def _process_start(pid: int) -> str | None:
    """The boot and the tick at which process ``pid`` started: the same pid with the same
    start is the same process (a pid alone may since have been handed to another one)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # the name in parentheses may hold spaces
    return f"{boot}/{fields[19]}" if len(fields) > 19 else None


def daemon_still_running(pid: int | None, start: str | None) -> bool:
    """Whether the process that claimed the relay still runs (never this process itself: in
    one process gpiozero's own reservation refuses a second claim)."""
    if pid is None or start is None or pid == os.getpid():
        return False
    return _process_start(pid) == start


# ----- finding the pin ---------------------------------------------------------------------------
def _load_config(config_path: Path | None) -> tuple[Any, str | None]:
    """The configuration and, when it cannot be used, why (it may be broken now: the record
    is read first)."""
    if config_path is None:
        return None, "no --config given"
    from edgeface.config import load_config
    from edgeface.errors import EdgefaceError

    try:
        # A shell without the service's EnvironmentFile (an admin running it by hand) lacks
        # the env: secrets, which say nothing about the relay: read as doctor reads them.
        return load_config(config_path, unset_env=[]), None
    except (EdgefaceError, OSError, ValueError) as exc:
        return None, str(exc)


def _raw_state_dir(config_path: Path | None) -> str | None:
    """``state_dir`` as written in a configuration the loader refuses (a typo elsewhere in the
    file must not hide where the record is); None when even that cannot be read."""
    if config_path is None or not config_path.is_file():  # never wait on a FIFO
        return None
    try:
        import yaml

        data = yaml.safe_load(config_path.read_text())
    except Exception:  # any YAML or file error: the other places are still looked at
        return None
    value = data.get("state_dir") if isinstance(data, dict) else None
    if not (isinstance(value, str) and value):
        return None
    # Relative: from the configuration's folder, as load_config (and so the daemon) reads it.
    return str(config_path.absolute().parent / value)


def _state_dirs(state_dir: Path | None, config: Any, config_path: Path | None) -> list[Path]:
    """Where the record may be, most specific first: ``--state-dir``, the configuration's
    ``state_dir`` (as loaded, else as written), systemd's ``$STATE_DIRECTORY``, the default."""
    from edgeface.config import Config

    candidates: list[str | None] = [
        str(state_dir) if state_dir is not None else None,
        config.state_dir if config is not None else _raw_state_dir(config_path),
        *os.environ.get("STATE_DIRECTORY", "").split(":"),
        Config.state_dir,
    ]
    found: list[Path] = []
    for candidate in candidates:
        if candidate and Path(candidate) not in found:
            found.append(Path(candidate))
    return found


@dataclass(frozen=True)
class Target:
    """The relay to lock, where that was read, and the daemon that recorded it."""

    relay: RelayPin
    source: str
    state_dir: Path | None
    pid: int | None = None
    process_start: str | None = None


def find_target(config_path: Path | None, state_dir: Path | None = None) -> Target:
    """The relay the daemon last claimed (its record), else the configuration's. Raises
    RelayLockError when neither can be read."""
    config, config_problem = _load_config(config_path)
    for folder in _state_dirs(state_dir, config, config_path):
        try:
            found = read_record(folder)
        except (OSError, ValueError) as exc:
            log.warning("relay lock: %s cannot be used (%s)", folder / RECORD_NAME, exc)
            continue
        if found is not None:
            relay, pid, start = found
            source = f"{folder / RECORD_NAME} (the pin the daemon last claimed)"
            return Target(relay, source, folder, pid, start)
    if config is None:
        raise RelayLockError(
            f"cannot tell which pin drives the strike: no {RECORD_NAME} in "
            f"{', '.join(str(d) for d in _state_dirs(state_dir, None, config_path))} and the "
            f"configuration cannot be used ({config_problem}); nothing was driven. Fix the "
            "file, then run: edgeface relay lock --config FILE"
        )
    r = config.relay
    return Target(
        RelayPin(r.pin, r.active_high, r.pin_factory),
        f"{config_path} (relay.pin; the daemon has recorded no claimed pin)",
        Path(config.state_dir),
    )


# ----- locking -----------------------------------------------------------------------------------
def make_factory(name: str | None) -> Any:
    """The pin library the daemon used (None: gpiozero's own choice, which also honours
    $GPIOZERO_PIN_FACTORY)."""
    if name is None:
        return None
    module, class_name = FACTORIES[name]
    return getattr(importlib.import_module(module), class_name)()


def claim_locked(relay: RelayPin, pin_factory: Any = None) -> Any:
    """Claim ``relay``'s pin as an output at its locked level and return the device, still
    claimed (see :func:`exit_holding_the_pin`). Raises what gpiozero raises."""
    from gpiozero import DigitalOutputDevice

    device = DigitalOutputDevice(
        relay.pin,
        active_high=relay.active_high,
        initial_value=False,  # the level is set with the claim: never a glitch to "unlocked"
        pin_factory=pin_factory,
    )
    device.off()
    return device


def _claim_problem(relay: RelayPin, exc: Exception) -> str:
    """What a refused claim means for the door, and what to do."""
    text = f"{exc.__class__.__name__}: {exc}"
    if "in use" in text or "busy" in text.lower():
        return (
            f"GPIO {relay.pin} is held by another program (is the daemon still running?): "
            "left to it, nothing changed"
        )
    hint = ""
    if ".lgd-nfy" in text:
        hint = (
            " (lgpio creates a pipe in the current folder: run this from a folder you can "
            "write, or set LG_WD to one)"
        )
    return (
        f"GPIO {relay.pin} could not be claimed ({text}){hint}: the strike may still be energised"
    )


def lock_relay(
    config_path: Path | None, state_dir: Path | None = None, pin_factory: Any = None
) -> tuple[int, Any]:
    """Drive the relay locked; returns the exit status (0 driven locked, 1 not) and the
    device still holding the pin (None when nothing was claimed). Logs what it did.

    ``pin_factory``: a gpiozero factory object to use instead of the recorded library (tests
    hand it gpiozero's MockFactory)."""
    try:
        target = find_target(config_path, state_dir)
    except RelayLockError as exc:
        log.error("relay lock: %s", exc)
        return 1, None
    relay = target.relay
    if daemon_still_running(target.pid, target.process_start):
        log.error(
            "relay lock: the daemon that claimed GPIO %s (pid %s) is still running: left to it, "
            "nothing changed",
            relay.pin,
            target.pid,
        )
        return 1, None
    try:
        factory = pin_factory if pin_factory is not None else make_factory(relay.pin_factory)
        device = claim_locked(relay, factory)
    except Exception as exc:  # gpiozero and the pin libraries raise many kinds
        log.error("relay lock: %s; pin from %s", _claim_problem(relay, exc), target.source)
        return 1, None
    library = factory_name(device.pin_factory) or type(device.pin_factory).__name__
    log.info(
        "relay lock: GPIO %s driven locked (%s, %s relay) through %s%s; pin from %s",
        relay.pin,
        relay.locked_level,
        "active-high" if relay.active_high else "active-low",
        library,
        " (mock pins: nothing real was driven)" if library == "mock" else "",
        target.source,
    )
    _report_interrupted_unlock(target.state_dir)
    return 0, device


def _report_interrupted_unlock(state_dir: Path | None) -> None:
    """Say so when the daemon ended during an unlock (its marker is left for the next start
    to report as ``unlock_interrupted``)."""
    from edgeface.door.relay import MARKER_NAME

    if state_dir is not None and (state_dir / MARKER_NAME).exists():
        log.warning(
            "relay lock: the daemon ended during an unlock pulse (%s): the strike was "
            "energised until now",
            state_dir / MARKER_NAME,
        )


def exit_holding_the_pin(status: int) -> NoReturn:
    """End the process without closing the pin: gpiozero's close (also run at exit) would make
    it a floating input, while the kernel hands back a line still held as it is — driven
    locked (or, with ``dtparam=strict_gpiod``, an input held by its pull resistor)."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken stream
            stream.flush()
    os._exit(status)


# ----- the command -------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``edgeface relay lock`` (and of ``python -m edgeface.door.relay_lock``)."""
    parser.add_argument(
        "--config",
        type=Path,
        help="daemon configuration (read for state_dir, and for the pin when the daemon has "
        "recorded none)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="where the daemon records its relay pin (default: the configuration's state_dir)",
    )


def cmd_relay_lock(args: argparse.Namespace) -> NoReturn:
    """Drive the relay locked and end holding it (exit 0), or say why not (exit 1)."""
    from edgeface.logs import configure_logging

    configure_logging("info")
    status, _device = lock_relay(args.config, args.state_dir)
    exit_holding_the_pin(status)


def main(argv: list[str] | None = None) -> NoReturn:
    parser = argparse.ArgumentParser(
        prog="python -m edgeface.door.relay_lock",
        description="Drive the door relay locked (what systemd runs after every stop).",
    )
    add_arguments(parser)
    cmd_relay_lock(parser.parse_args(argv))


if __name__ == "__main__":
    main()
