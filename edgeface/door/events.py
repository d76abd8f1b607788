"""What the door's parts report through, and which of their events the audit trail keeps.

Every part of the daemon (the camera thread's reports, gallery pushes, remote commands) says
what happened by calling one ``emit`` that the service provides: it logs the event, stores it
for MQTT and appends the ones that matter afterwards to the audit trail. The parts get that
callable, not the service, so each depends only on what it uses (:class:`Emit`), and the list
of audited events sits in one place instead of in the service's body.
"""

from __future__ import annotations

from typing import Any, Protocol

#: Events recorded in the audit trail: decisions at the door and changes to who may enter.
AUDITED = frozenset(
    {
        "daemon_started",
        "daemon_stopped",
        "unlocked",
        "denied",
        "relay_busy",  # recognised while the relay was unlocked for someone else, or cooling
        "unknown",
        "remote_unlock_refused",
        "remote_lock",
        "code_lockout",
        "camera_lost",  # a door that cannot see lets nobody in: when and how long, afterwards
        "camera_restored",
        "camera_blind",
        "camera_view_restored",
        "clock_unsynchronised",
        "clock_synchronised",
        "second_factor_required",
        "second_factor_accepted",
        "second_factor_refused",
        "second_factor_expired",
        "door_forced",
        "door_held_open",
        "unlock_interrupted",
        "gallery_updated",
        "gallery_rejected",
        "config_reloaded",
    }
)


#: Audited reports that anyone can cause by showing faces to the camera (a sheet of printed
#: strangers moved about made 58 entries in 7 s, and rotated last night's unlocks out of the
#: trail within the hour). At most :data:`CAMERA_AUDIT_BURST` of them a minute are audited; the
#: next entry audited (of any kind) counts those left out (``not_audited_before``). Their
#: events are not bounded: the log and MQTT still get every one.
CAMERA_REPORTS = frozenset({"unknown", "denied", "second_factor_required", "relay_busy"})
CAMERA_AUDIT_BURST = 6


class Emit(Protocol):
    """The service's ``emit``: report one event (called on the event loop only)."""

    def __call__(self, event_type: str, **fields: Any) -> None: ...
