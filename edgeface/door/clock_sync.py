"""Whether the system clock may be trusted for access schedules.

A Raspberry Pi has no battery-backed clock (on a Pi 5 it is an option). After a power cut it
starts with the time ``fake-hwclock`` saved at the last shutdown — hours or days wrong — and keeps
it until an NTP client sets the clock, which needs the network. A schedule ("cleaner: Monday to
Friday, 09:00–17:00") read against that clock lets people in at the wrong hours and keeps them
out at the right ones.

The kernel knows whether an NTP client (systemd-timesyncd, chrony, ntpd) keeps the clock in step:
``adjtimex(2)``, asked without changing anything, returns ``TIME_ERROR`` while nobody does. This
is what ``timedatectl`` shows as "System clock synchronized"; asking needs no privilege and costs
one system call, so it is asked at every decision rather than cached. systemd's
``ProtectClock=yes`` forbids even this read (EPERM, systemd 252 of Debian 12), which is why the
shipped unit leaves it out — its empty capability set already keeps the daemon from setting the
clock. Where the kernel cannot be asked, systemd-timesyncd's flag file
(:data:`TIMESYNCD_FLAG`, created at its first synchronisation after boot) is the answer.

Under ``recognition.schedule_clock: synchronised`` (the default) a person *with* a schedule is
refused while the clock is not synchronised; everyone else is unaffected (their access does not
depend on the time). ``any`` trusts the clock as it is — for a board with a battery-backed clock
and no network.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Literal

#: adjtimex(2)'s return value while the clock is not synchronised (STA_UNSYNC or STA_CLOCKERR).
TIME_ERROR = 5
#: Larger than ``struct timex`` on every Linux ABI (208 bytes on 64-bit); zeroed, so its
#: ``modes`` field is 0 and the call only reads.
_TIMEX_BYTES = 512
#: Created by systemd-timesyncd (the NTP client of Debian and Raspberry Pi OS) once it has set
#: the clock in this boot; /run is emptied at every boot.
TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library, loaded once: finding it runs ``ldconfig -p`` (about 2 ms), too slow for
    every decision, while the adjtimex call itself is a few microseconds."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    except OSError:
        return None


def kernel_clock_synchronised() -> bool | None:
    """The kernel's view: True while an NTP client keeps the clock in step, False while not,
    None where it cannot be asked (not Linux, no C library, a sandbox that forbids the call)."""
    libc = _libc()
    if libc is None:
        return None
    try:
        state = libc.adjtimex(ctypes.create_string_buffer(_TIMEX_BYTES))
    except AttributeError:  # a C library without adjtimex
        return None
    if state < 0:
        return None
    return state != TIME_ERROR


def clock_synchronised(
    flag: Path = TIMESYNCD_FLAG,
    kernel: Callable[[], bool | None] = kernel_clock_synchronised,
) -> bool | None:
    """The kernel's answer where it can be asked, else whether systemd-timesyncd has
    synchronised the clock in this boot (None: nobody can tell)."""
    state = kernel()
    if state is not None:
        return state
    return True if flag.exists() else None


class ScheduleClock:
    """Answers "may a schedule be checked against the clock now?" for the door."""

    def __init__(
        self,
        policy: Literal["synchronised", "any"],
        probe: Callable[[], bool | None] = clock_synchronised,
    ) -> None:
        self.policy = policy
        self._probe = probe

    def trusted(self) -> bool:
        """True under ``any``; under ``synchronised`` only while the kernel says so (a clock
        whose state cannot be read is not trusted: the door fails secure)."""
        return self.policy == "any" or self._probe() is True

    def problem(self) -> str:
        """Why the clock is not trusted, in words an installer can act on."""
        state = self._probe()
        what = (
            "the system clock's synchronisation cannot be read on this system"
            if state is None
            else "the system clock is not synchronised (no NTP time yet)"
        )
        return (
            f"{what}: people with a schedule are refused until it is "
            "(check `timedatectl`; a board with a battery-backed clock and no network can set "
            "recognition.schedule_clock: any)"
        )
