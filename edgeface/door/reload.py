"""What a SIGHUP may change while the door runs, and what needs a restart.

A reload must never leave the door in an unsafe or half-configured state. Settings fall in two
kinds:

* **live** — the camera (the capture thread reopens it), the detector (a new pipeline is built
  off the event loop and swapped in), recognition thresholds, schedules and gallery path, relay
  timings, the relay, door-contact and exit-button pins (the old output is driven locked and
  released before the new one is claimed; a moved input is released before anything is claimed,
  so pins may be swapped), push keys (so a leaked key can be revoked with a reload) and the
  push folder, snapshots, two-factor entry (who needs it, its window and its secret) and the
  log level;
* **restart-only** — everything that names the daemon or its connections: ``device_id``,
  ``state_dir``, the whole ``mqtt`` section, push groups and on/off (they decide which topics
  are subscribed), the GPIO pin factory, and any section not listed below. Those keep their
  running values and the reload reports them, so an installer is told to restart instead of
  believing the change took effect.

:func:`plan_reload` is pure (two configs in, a plan out) so the rules are tested without a door.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeface.config import Config, check_consistency, load_config

#: Dotted key prefixes a running door applies on reload (anything else needs a restart).
LIVE_PREFIXES = (
    "camera.",
    "detector.",
    "recognition.",
    "relay.pin",
    "relay.active_high",
    "relay.unlock_seconds",
    "relay.max_unlock_seconds",
    "relay.cooldown_seconds",
    "relay.door_contact_pin",
    "relay.exit_button_pin",
    "push.keys",
    "push.public_keys",
    "push.max_bytes",
    "push.folder",
    "snapshots.",
    "second_factor.",
    "log_level",
)


@dataclass(frozen=True)
class ReloadPlan:
    """The configuration to run with, and which changed keys it applies or keeps as they were."""

    config: Config
    applied: tuple[str, ...]
    restart_required: tuple[str, ...]

    def touches(self, prefix: str) -> bool:
        """Whether any applied change lies under ``prefix`` (e.g. ``"camera."``)."""
        return any(key == prefix.rstrip(".") or key.startswith(prefix) for key in self.applied)


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the leaves that differ between two configs (dataclasses nest)."""
    if dataclasses.is_dataclass(old) and type(old) is type(new):
        keys: list[str] = []
        for f in dataclasses.fields(old):
            keys += changed_keys(getattr(old, f.name), getattr(new, f.name), f"{prefix}{f.name}.")
        return keys
    return [] if old == new else [prefix.rstrip(".")]


def is_live(key: str) -> bool:
    # "relay.pin" must not also match "relay.pin_factory": compare whole path components.
    for live in LIVE_PREFIXES:
        if live.endswith("."):
            if key.startswith(live):
                return True
        elif key == live or key.startswith(live + "."):
            return True
    return False


def plan_reload(running: Config, fresh: Config) -> ReloadPlan:
    """``fresh`` with every restart-only change put back to its ``running`` value."""
    changes = changed_keys(running, fresh)
    applied = tuple(k for k in changes if is_live(k))
    kept = tuple(k for k in changes if not is_live(k))
    merged = copy.deepcopy(fresh)
    for key in kept:
        *parents, leaf = key.split(".")
        target_new: Any = merged
        source_old: Any = running
        for part in parents:
            target_new, source_old = getattr(target_new, part), getattr(source_old, part)
        setattr(target_new, leaf, copy.deepcopy(getattr(source_old, leaf)))
    return ReloadPlan(merged, applied, kept)


async def prepare_reload(running: Config, path: Path | None) -> ReloadPlan:
    """The plan for a reload of ``path`` (None: the running configuration again), made in a
    worker thread. Reading the file is pure-Python YAML and takes about two seconds for the
    largest file accepted (:data:`edgeface.config.MAX_CONFIG_NODES`), and planning copies the
    result; on the event loop that stalled the door (exit button, door contact, relay timing,
    MQTT commands) for as long. Raises :class:`~edgeface.config.ConfigError` as
    :func:`~edgeface.config.load_config` does, so a bad file is still refused as a whole.
    ``running`` is only read: the daemon replaces its configuration, never changes it."""
    return await asyncio.to_thread(_plan_from_file, running, path)


def _plan_from_file(running: Config, path: Path | None) -> ReloadPlan:
    fresh = load_config(path) if path is not None else running
    plan = plan_reload(running, fresh)
    if plan.restart_required:
        # The file is consistent, but what would run mixes its live settings with running
        # values (e.g. two-factor entry on, MQTT still off until a restart).
        check_consistency(plan.config, f"{path} (until a restart)")
    return plan
