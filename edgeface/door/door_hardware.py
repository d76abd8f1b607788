"""The door's pins: the strike relay, the exit button and the door contact.

Claiming a pin can fail (a wrong number, a pin another process holds), and a reload can move any
of them while the door runs. What must hold whatever happens lives here, apart from the daemon's
life cycle: the relay is claimed before anything else and, when a reload moves it, the old
output is driven locked and released before the new one is claimed (gpiozero releases it as an
input, pull off: the relay input's pull-down resistor keeps the relay off, README "Wiring"), so
the door is never left unlocked; an input that cannot be claimed is reported and left off, and
the door runs on without it. A reload tells the door which settings the pins really run with,
so that its configuration never names a pin nobody watches or drives. Each relay pin claimed is
recorded in the state directory (:mod:`edgeface.door.relay_lock`), for ``edgeface relay lock``
to drive locked after a daemon that died mid-pulse.

gpiozero calls the inputs' callbacks on its own thread. They are only handed over to the event
loop (``call_soon_threadsafe``) and what a press or a door opening *means* — a pulse, an event,
an alarm — is left to the door, through the two callables it gives; errors are said through
its ``emit`` (:class:`edgeface.door.events.Emit`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgeface.config import ConfigError, RelayConfig
from edgeface.door.events import Emit
from edgeface.door.relay import DoorRelay
from edgeface.door.relay_lock import RECORD_NAME, RelayPin, factory_name, record_relay
from edgeface.door.reload import ReloadPlan

log = logging.getLogger(__name__)


def make_pin_factory(name: str | None) -> Any:
    """gpiozero's pin factory for ``relay.pin_factory``: None lets gpiozero choose."""
    if name in (None, ""):
        return None
    if name == "mock":
        from gpiozero.pins.mock import MockFactory

        return MockFactory()
    raise ConfigError(f"relay.pin_factory {name!r}: use null (gpiozero's choice) or 'mock'")


class DoorHardware:
    """The relay (claimed, and driven locked, on construction) and the optional inputs."""

    def __init__(
        self,
        settings: RelayConfig,
        state_dir: Path,
        pin_factory: Any,
        emit: Emit,
        loop: Callable[[], asyncio.AbstractEventLoop | None],
        on_exit_pressed: Callable[[], None],
        on_door_state: Callable[[bool, bool], None],
    ) -> None:
        """``on_exit_pressed()`` and ``on_door_state(closed, report)`` are called on the event
        loop: ``report`` is False for the state read when the contact is (re)claimed, which is
        no change. ``loop`` is read when the inputs are watched: None before the daemon runs."""
        self.state_dir = state_dir
        self.pin_factory = pin_factory
        self._emit = emit
        self._loop = loop
        self._on_exit_pressed = on_exit_pressed
        self._on_door_state = on_door_state
        # The relay first: whatever fails after it, the door is already driven locked.
        self.relay = self._make_relay(settings)
        self.contact: Any = None
        self.exit_button: Any = None

    def claim_inputs(self, settings: RelayConfig) -> None:
        """Claim the door contact and the exit button. Apart from the relay, which is claimed
        before anything else: the door claims these with the rest of its set-up, and a pin
        that cannot be claimed raises here, so the door does not start (its relay locked)."""
        self.contact = self._make_input(settings.door_contact_pin)
        self.exit_button = self._make_input(settings.exit_button_pin)

    def _make_relay(self, r: RelayConfig, cooldown_until: float = 0.0) -> DoorRelay:
        relay = DoorRelay(
            r.pin,
            active_high=r.active_high,
            unlock_seconds=r.unlock_seconds,
            max_unlock_seconds=r.max_unlock_seconds,
            cooldown_seconds=r.cooldown_seconds,
            state_dir=self.state_dir,
            pin_factory=self.pin_factory,
            cooldown_until=cooldown_until,
        )
        self._record(r, relay)
        return relay

    def _record(self, r: RelayConfig, relay: DoorRelay) -> None:
        """Record the pin now claimed for ``edgeface relay lock`` (the unit's ExecStopPost),
        which drives it locked after the daemon dies mid-pulse, when the configuration may
        name another pin or be broken. A record that cannot be written never stops the relay;
        the old record is then removed (unlinking needs no free space), since ``relay lock``
        trusts a record first: a stale one named the pin the relay was moved away from, and
        the strike on the new pin stayed energised. Without a record it reads the
        configuration."""
        factory = relay.device.pin_factory
        path = self.state_dir / RECORD_NAME
        try:
            record_relay(
                self.state_dir,
                RelayPin(r.pin, r.active_high, factory_name(factory) or r.pin_factory),
            )
        except OSError as exc:
            try:
                path.unlink(missing_ok=True)
                after = "`edgeface relay lock` will use the pin in the configuration file"
            except OSError as gone:
                after = (
                    f"the old record cannot be removed either ({gone.strerror or gone}) and "
                    f"names a pin that may no longer drive the strike: delete {path}"
                )
            log.error(
                "relay: cannot record the relay pin in %s (%s): after a crash, %s",
                path,
                exc.strerror or exc,
                after,
            )

    def _make_input(self, pin: int | None) -> Any:
        """An optional switch to ground (pin low while closed): the door contact (a reed switch,
        closed while the door is shut) or the exit button (closed while pressed)."""
        if pin is None:
            return None
        from gpiozero import Button

        return Button(pin, pull_up=True, bounce_time=0.05, pin_factory=self.pin_factory)

    # ----- reload ----------------------------------------------------------------------------
    def reconfigure(self, old: RelayConfig, plan: ReloadPlan) -> RelayConfig:
        """New relay pin/polarity, timings, door contact or exit button, never leaving the door
        unlocked. Returns the relay settings the pins now run with: ``plan``'s, except what
        could not be claimed — each reported here — so that the door's configuration (and its
        ``config_reloaded`` event) says what the hardware does.

        Inputs that move are released first: the new relay pin may be one of theirs (a file
        that swaps the relay's and the contact's pins is valid). The old output is then driven
        locked and released before the new pin is claimed; if the new pin cannot be claimed,
        only the relay's pin and polarity keep their running values (timings still change) and
        the old pin is claimed again; if even that fails the door stays locked (the old
        output was driven locked before its release) and it is reported. A new relay goes on with
        the old one's cooldown. The moved inputs are claimed last; one that cannot be claimed
        is off (None in the settings returned, so the next reload tries again). A new door
        contact is read at once and watched, like the one claimed at start.
        """
        new = plan.config.relay
        running = new
        move_contact = plan.touches("relay.door_contact_pin")
        move_exit = plan.touches("relay.exit_button_pin")
        if move_contact and self.contact is not None:
            self.contact.close()
            self.contact = None
        if move_exit and self.exit_button is not None:
            self.exit_button.close()
            self.exit_button = None
        if plan.touches("relay.pin") or plan.touches("relay.active_high"):
            running = self._move_relay(old, new)
        elif plan.touches("relay."):
            self.relay.set_timing(new.unlock_seconds, new.max_unlock_seconds, new.cooldown_seconds)
        if move_contact:
            self.contact = self._claim_input(new.door_contact_pin, "door contact")
            if self.contact is None:
                running = replace(running, door_contact_pin=None)
            self.watch_contact()
        if move_exit:
            self.exit_button = self._claim_input(new.exit_button_pin, "exit button")
            if self.exit_button is None:
                running = replace(running, exit_button_pin=None)
            self.watch_exit_button()
        return running

    def _move_relay(self, old: RelayConfig, new: RelayConfig) -> RelayConfig:
        """The relay on ``new``'s pin and polarity; the settings it runs with."""
        cooldown_until = self.relay.cooldown_until
        self.relay.close()
        try:
            self.relay = self._make_relay(new, cooldown_until)
            return new
        except Exception as exc:  # gpiozero raises many kinds (PinInvalidPin, GPIOPinInUse…)
            kept = replace(new, pin=old.pin, active_high=old.active_high)
            detail = f"relay pin {new.pin} could not be claimed ({exc}); kept pin {old.pin}"
            try:
                self.relay = self._make_relay(kept, cooldown_until)
            except Exception as again:
                detail = f"{detail}, which failed too ({again}): the door stays locked"
            self._emit("error", detail=detail)
            return kept

    def _claim_input(self, pin: int | None, what: str) -> Any:
        """The input on ``pin`` (None: none); a pin that cannot be claimed is reported and
        leaves the input off — the door itself stays as it is."""
        try:
            return self._make_input(pin)
        except Exception as exc:  # gpiozero raises many kinds (PinInvalidPin, GPIOPinInUse…)
            self._emit(
                "error", detail=f"{what} pin {pin} could not be claimed ({exc}): running without it"
            )
            return None

    # ----- the inputs' callbacks -------------------------------------------------------------
    def watch_exit_button(self) -> None:
        """A press of the exit button (gpiozero's thread → the event loop) goes to the door."""
        loop = self._loop()
        if self.exit_button is None or loop is None:
            return
        on_pressed = self._on_exit_pressed
        self.exit_button.when_pressed = lambda: loop.call_soon_threadsafe(on_pressed)

    def watch_contact(self) -> None:
        """Hand the door contact's changes (gpiozero's thread → the event loop) to the door,
        then read it now. In that order: a change between the two is then handed over by its
        callback, after the read, instead of being lost (read first, a door opened just then
        would be taken for shut until its next change)."""
        loop = self._loop()
        if self.contact is None or loop is None:
            return
        on_state = self._on_door_state
        self.contact.when_pressed = lambda: loop.call_soon_threadsafe(on_state, True, True)
        self.contact.when_released = lambda: loop.call_soon_threadsafe(on_state, False, True)
        on_state(bool(self.contact.is_pressed), False)

    def close_inputs(self) -> None:
        """Release the door contact and the exit button (at stop, after the relay)."""
        for switch in (self.contact, self.exit_button):
            if switch is not None:
                switch.close()
