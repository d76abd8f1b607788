"""What a SIGHUP may change while the door runs, and what needs a restart.

A reload must never leave the door in an unsafe or half-configured state. Settings fall in two
kinds:

* **live** — the camera (the capture thread reopens it), the detector (a new pipeline is built
  off the event loop and swapped in), recognition thresholds, schedules and gallery path, relay
  timings, the relay, door-contact and exit-button pins (the old output is driven locked and
  released before the new one is claimed; a moved input is released before anything is claimed,
  so pins may be swapped), the door alarms, push keys (so a leaked key can be revoked with a
  reload — the door's only one too: see below), the push folder, its polling and the largest and
  oldest push accepted, snapshots, two-factor entry (who needs it, its window and its secret),
  remote unlock (see below) and the log level;
* **restart-only** — everything that names the daemon or its connections: ``device_id``,
  ``state_dir``, the ``mqtt`` section (but remote unlock), push groups and on/off (they decide
  which topics are subscribed), the GPIO pin factory, the audit trail, and any section not listed
  below. Those keep their running values and the reload reports them, so an installer is told to
  restart instead of believing the change took effect.

Revoking must never wait for a restart. ``push.enabled: false`` on a door that takes pushes
keeps the push topics subscribed until a restart, but from the reload on no key is accepted:
every push is refused, saying why. ``mqtt.remote_unlock: false`` and a new
``mqtt.remote_unlock_secret`` apply at once; turning remote unlock on applies at once too where
the command topic is subscribed already (MQTT on), else it waits for the restart that connects.

``edgeface run --source/--pin-factory`` replace settings of the file: they are applied to each
reloaded file as well (:class:`CommandLineOverrides`), so a reload neither switches the camera
back to the file's nor reports an unchanged pin factory as waiting for a restart.

:func:`plan_reload` is pure (two configs in, a plan out) so the rules are tested without a door.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeface.config import Config, check_consistency, config_warnings, load_config

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
    "relay.held_open_seconds",
    "relay.door_forced_alarm",
    "push.keys",
    "push.public_keys",
    "push.max_bytes",
    "push.max_age_days",
    "push.folder",
    "push.folder_poll_seconds",
    "snapshots.",
    "second_factor.",
    "log_level",
)


#: Remote unlock: live when it is turned off (or its secret changed) — a leaked secret must stop
#: opening the door at once — and when the command topic is subscribed already (MQTT on).
REMOTE_UNLOCK_KEYS = ("mqtt.remote_unlock", "mqtt.remote_unlock_secret")

#: The push keys a door stops accepting when a reload turns push.enabled off.
PUSH_KEY_KEYS = ("push.keys", "push.public_keys")


@dataclass(frozen=True)
class ReloadPlan:
    """The configuration to run with, and which changed keys it applies or keeps as they were."""

    config: Config
    applied: tuple[str, ...]
    restart_required: tuple[str, ...]
    #: What the installer should know: how the reload applies, and what the file should
    #: change (:func:`edgeface.config.config_warnings`); logged as warnings.
    notes: tuple[str, ...] = ()

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


def is_live_now(key: str, running: Config, fresh: Config) -> bool:
    """:func:`is_live`, and the settings whose liveness depends on the door: remote unlock
    (:data:`REMOTE_UNLOCK_KEYS`) is live while MQTT runs — the command topic is subscribed
    whether or not remote unlock is on — and whenever the new file turns it off."""
    if key in REMOTE_UNLOCK_KEYS:
        return running.mqtt.enabled or not fresh.mqtt.remote_unlock
    return is_live(key)


def plan_reload(running: Config, fresh: Config) -> ReloadPlan:
    """``fresh`` with every restart-only change put back to its ``running`` value; a door that
    takes pushes and is told to stop accepts no push key from now on (:func:`_revoke_push`)."""
    changes = changed_keys(running, fresh)
    applied = [k for k in changes if is_live_now(k, running, fresh)]
    kept = tuple(k for k in changes if not is_live_now(k, running, fresh))
    merged = copy.deepcopy(fresh)
    for key in kept:
        *parents, leaf = key.split(".")
        target_new: Any = merged
        source_old: Any = running
        for part in parents:
            target_new, source_old = getattr(target_new, part), getattr(source_old, part)
        setattr(target_new, leaf, copy.deepcopy(getattr(source_old, leaf)))
    notes = _revoke_push(running, fresh, merged, applied)
    return ReloadPlan(merged, tuple(applied), kept, notes)


def _revoke_push(
    running: Config, fresh: Config, merged: Config, applied: list[str]
) -> tuple[str, ...]:
    """``push.enabled: false`` on a door that takes pushes: the topics stay subscribed until a
    restart (push.enabled is restart-only), but ``merged`` accepts no key from now on, so a
    leaked key — usually the door's only one — is revoked by the reload, not by a restart."""
    if not (running.push.enabled and not fresh.push.enabled):
        return ()
    for key in PUSH_KEY_KEYS:
        leaf = key.split(".")[1]
        setattr(merged.push, leaf, {})
        revoked = bool(getattr(running.push, leaf))  # a change only where there were keys
        if revoked and key not in applied:
            applied.append(key)
        elif not revoked and key in applied:
            applied.remove(key)
    return (
        "push.enabled: false: no push key is accepted from now on (every push is refused); "
        "the push topics are unsubscribed at the next restart",
    )


@dataclass(frozen=True)
class CommandLineOverrides:
    """``edgeface run --source`` and ``--pin-factory``: settings the command line gives in
    place of the file's, at start and at every reload (a reload re-reads the file; without
    them it switched the camera back to the file's source, reported as "applied", and the
    pin factory as changed, "takes effect only after a restart", though nobody changed it)."""

    source: str | None = None
    pin_factory: str | None = None

    def apply(self, config: Config) -> Config:
        """``config`` with the command line's settings in place of the file's."""
        if self.source is not None:
            config = dataclasses.replace(
                config, camera=dataclasses.replace(config.camera, source=self.source)
            )
        if self.pin_factory is not None:
            config = dataclasses.replace(
                config, relay=dataclasses.replace(config.relay, pin_factory=self.pin_factory)
            )
        return config


async def prepare_reload(
    running: Config, path: Path | None, overrides: CommandLineOverrides | None = None
) -> ReloadPlan:
    """The plan for a reload of ``path`` (None: the running configuration again), made in a
    worker thread. Reading the file is pure-Python YAML and takes about two seconds for the
    largest file accepted (:data:`edgeface.config.MAX_CONFIG_NODES`), and planning copies the
    result; on the event loop that stalled the door (exit button, door contact, relay timing,
    MQTT commands) for as long. Raises :class:`~edgeface.config.ConfigError` as
    :func:`~edgeface.config.load_config` does, so a bad file is still refused as a whole.
    ``running`` is only read: the daemon replaces its configuration, never changes it.
    ``overrides``: the command line's settings, applied to the file as at start."""
    return await asyncio.to_thread(
        _plan_from_file, running, path, overrides or CommandLineOverrides()
    )


def _plan_from_file(
    running: Config, path: Path | None, overrides: CommandLineOverrides
) -> ReloadPlan:
    fresh = overrides.apply(load_config(path)) if path is not None else running
    plan = plan_reload(running, fresh)
    # What the file as written should change (a short remote-unlock secret ...), logged by
    # the reload as at start: an installer who just edited it reads the journal now.
    plan = dataclasses.replace(plan, notes=(*plan.notes, *config_warnings(fresh)))
    if plan.restart_required:
        # The file is consistent, but what would run mixes its live settings with running
        # values (e.g. two-factor entry on, MQTT still off until a restart).
        check_consistency(plan.config, f"{path} (until a restart)")
    return plan
