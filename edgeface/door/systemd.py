"""systemd's notify protocol: READY, WATCHDOG, STATUS, STOPPING — one datagram each.

With ``Type=notify`` systemd waits for ``READY=1`` before calling the service started, and with
``WatchdogSec`` it kills and restarts a service that stops sending ``WATCHDOG=1`` (the daemon
sends it only while recognition works, and the unit's ``ExecStopPost=`` drives the relay locked
after the kill: a killed process leaves a Raspberry Pi's output at its last level). The protocol
is a datagram to the Unix socket named in ``$NOTIFY_SOCKET`` (a leading ``@`` means the abstract
namespace); outside systemd the variable is unset and every call does nothing, so the daemon
runs the same way in a terminal.
"""

from __future__ import annotations

import os
import socket


class SystemdNotifier:
    """Sends notifications to systemd when run under it; a no-op otherwise."""

    def __init__(self, address: str | None = None) -> None:
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        if self.address and self.address.startswith("@"):
            self.address = "\0" + self.address[1:]

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` fields in one datagram; False if not under systemd or it failed."""
        if not self.address:
            return False
        message = "\n".join(fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self.address)
                sock.sendall(message)
        except OSError:
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings: half of ``$WATCHDOG_USEC``, as systemd recommends;
    None when no watchdog is configured (or it is meant for another process)."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    try:
        return max(int(usec) / 2_000_000, 0.1)
    except ValueError:
        return None
