"""Where the systemd service may write, as its unit file says (for ``edgeface doctor``).

``systemd/edgeface.service`` sandboxes the daemon: ``ProtectSystem=strict`` makes the whole file
system read-only to it but for ``StateDirectory=`` (``/var/lib/edgeface``), the other
``*Directory=`` settings and ``ReadWritePaths=``; ``ProtectHome=yes`` hides ``/home``, ``/root``
and ``/run/user``; ``PrivateTmp=yes`` gives it a ``/tmp`` of its own, emptied at each start.
``doctor`` runs outside that sandbox, as the installer, so it found ``audit.path:
/var/log/edgeface/audit.log`` or a snapshots folder on a USB stick writable — and the daemon then
ran without its audit trail or its snapshots (every entry "not recorded: Read-only file
system"), or did not start at all for a ``state_dir`` elsewhere.

The unit is read as systemd would: the installed one (``/etc/systemd/system/edgeface.service``)
if there is one, else the one shipped with edgeface, then its drop-ins
(``/etc/systemd/system/edgeface.service.d/*.conf``, in name order, as ``systemctl edit`` writes
them). Only the settings that decide where the service may write are read; one given again
replaces (a list setting: adds to, and an empty one clears) what came before, as in systemd.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from edgeface.errors import clip_text
from edgeface.files import PATH_CHARS

#: The unit install.sh installs, and the folder ``systemctl edit edgeface`` writes drop-ins to.
INSTALLED_UNIT = Path("/etc/systemd/system/edgeface.service")
DROP_INS = Path("/etc/systemd/system/edgeface.service.d")
#: The unit shipped with edgeface (in a source checkout or /opt/edgeface, as install.sh uses).
PACKAGED_UNIT = Path(__file__).resolve().parents[2] / "systemd" / "edgeface.service"

#: ``<Kind>Directory=`` → the folder its names are made under (writable with any ProtectSystem=).
DIRECTORY_ROOTS = {
    "StateDirectory": Path("/var/lib"),
    "CacheDirectory": Path("/var/cache"),
    "LogsDirectory": Path("/var/log"),
    "RuntimeDirectory": Path("/run"),
}

#: Read-only under ``ProtectSystem=`` yes and full (strict: everything outside the writable).
PROTECTED_SYSTEM = {
    "yes": ("/usr", "/boot", "/efi"),
    "full": ("/usr", "/boot", "/efi", "/etc"),
}
#: Hidden (yes, tmpfs) or read-only (read-only) under ``ProtectHome=``.
HOMES = ("/home", "/root", "/run/user")
#: Private to the service under ``PrivateTmp=yes``.
TEMPORARY = ("/tmp", "/var/tmp")

_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}


@dataclass
class ServiceSandbox:
    """What the unit lets the service see and write."""

    #: The files read, for messages ("/etc/systemd/system/edgeface.service + 1 drop-in(s)").
    source: str
    protect_system: str = "no"
    protect_home: str = "no"
    private_tmp: bool = False
    #: (setting, folder) of StateDirectory= & co. and ReadWritePaths=, in the order given.
    granted: list[tuple[str, Path]] = field(default_factory=list)
    #: EnvironmentFile= (where ``env:`` secrets come from), without the leading "-".
    environment_files: list[str] = field(default_factory=list)

    @property
    def writable(self) -> list[Path]:
        """The folders the service may write in whatever ProtectSystem= says."""
        return [folder for _, folder in self.granted]

    def problem(self, path: str | Path, *, writes: bool) -> SandboxProblem | None:
        """Why the service cannot write (``writes``) or read ``path``, or None. Links are
        followed (the sandbox is made of mounts of real folders), as far as they exist."""
        real = Path(os.path.realpath(path))
        if self.private_tmp and _under(real, TEMPORARY):
            return SandboxProblem(
                "the service has a /tmp and /var/tmp of its own (PrivateTmp=yes): nothing else "
                "sees what it keeps there, and it is emptied at every start"
            )
        if self.protect_home in ("yes", "tmpfs") and _under(real, HOMES):
            return SandboxProblem(
                "the service cannot see /home, /root or /run/user "
                f"(ProtectHome={self.protect_home})"
            )
        if not writes or _under(real, tuple(str(p) for p in self.writable)):
            return None
        if self.protect_home == "read-only" and _under(real, HOMES):
            return SandboxProblem(
                "/home, /root and /run/user are read-only to the service (ProtectHome=read-only)"
            )
        if self.protect_system == "strict":
            allowed = ", ".join(str(p) for p in self.writable) or "no folder"
            return SandboxProblem(
                f"the service may write only in {allowed} (ProtectSystem=strict)", granted=True
            )
        protected = PROTECTED_SYSTEM.get(self.protect_system, ())
        if _under(real, protected):
            return SandboxProblem(
                f"{', '.join(protected)} are read-only to the service "
                f"(ProtectSystem={self.protect_system})",
                granted=True,
            )
        return None


@dataclass(frozen=True)
class SandboxProblem:
    """Why the service cannot use a path."""

    reason: str
    #: Whether ``ReadWritePaths=`` lets it (ProtectSystem=); not for a hidden /home or /tmp.
    granted: bool = False


def _under(path: Path, folders: tuple[str, ...]) -> bool:
    return any(path == Path(f) or Path(f) in path.parents for f in folders)


def read_service_sandbox(
    installed: Path = INSTALLED_UNIT, drop_ins: Path = DROP_INS, packaged: Path = PACKAGED_UNIT
) -> ServiceSandbox | None:
    """The sandbox of the service as its unit files say, or None where there is no unit."""
    unit = installed if installed.is_file() else packaged
    files = [unit] if unit.is_file() else []
    with contextlib.suppress(OSError):  # a drop-in folder we may not read: the unit alone
        files += sorted(p for p in drop_ins.glob("*.conf") if p.is_file())
    if not files:
        return None
    extra = f" + {len(files) - 1} drop-in(s) in {drop_ins}" if len(files) > 1 else ""
    sandbox = ServiceSandbox(source=f"{files[0]}{extra}" if unit.is_file() else str(drop_ins))
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for key, value in _service_settings(text):
            _apply(sandbox, key, value)
    return sandbox


def _service_settings(text: str) -> list[tuple[str, str]]:
    """The ``[Service]`` section's ``Key=value`` lines, continuation lines joined."""
    settings, section, pending = [], "", ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif section == "Service" and "=" in line:
            key, _, value = line.partition("=")
            settings.append((key.strip(), value.strip()))
    return settings


def _apply(sandbox: ServiceSandbox, key: str, value: str) -> None:
    """One setting, as systemd applies it after those before it."""
    if key == "ProtectSystem":
        sandbox.protect_system = _mode(value, "yes")
    elif key == "ProtectHome":
        sandbox.protect_home = _mode(value, "yes")
    elif key == "PrivateTmp":
        sandbox.private_tmp = value.lower() in _TRUE or value == "disconnected"
    elif key in DIRECTORY_ROOTS or key == "ReadWritePaths":
        if not value:  # an empty assignment clears what that setting said so far
            sandbox.granted = [(kind, folder) for kind, folder in sandbox.granted if kind != key]
        sandbox.granted += [(key, _folder(key, word)) for word in _words(value)]
    elif key == "EnvironmentFile":
        if not value:
            sandbox.environment_files.clear()
        else:
            sandbox.environment_files.append(value.removeprefix("-"))


def _mode(value: str, true: str) -> str:
    """A boolean-or-mode setting as one word: ``true`` for yes/1/on, "no" for no/0/off."""
    low = value.lower()
    if low in _TRUE:
        return true
    return "no" if low in _FALSE else low


def _words(value: str) -> list[str]:
    try:
        return shlex.split(value)
    except ValueError:
        return value.split()


def _folder(key: str, word: str) -> Path:
    """The folder one word of ``key`` names: ``edgeface`` → /var/lib/edgeface for
    StateDirectory (``name:alias`` names the first), ``-/srv/x`` → /srv/x."""
    if key == "ReadWritePaths":
        return Path(word.lstrip("-+"))
    return DIRECTORY_ROOTS[key] / word.split(":", 1)[0]


def remedy(problem: SandboxProblem, folder: Path, sandbox: ServiceSandbox) -> str:
    """What the installer does about ``folder``: grant it in a drop-in, or move it."""
    home = str(sandbox.writable[0]) if sandbox.writable else "/var/lib/edgeface"
    if not problem.granted:
        return f"use a folder under {home}"
    shown = clip_text(str(folder), PATH_CHARS)
    return (
        f"add ReadWritePaths={shown} under [Service] in a drop-in (sudo systemctl edit "
        "edgeface), making the folder first (a missing one stops the service from starting), "
        f"or use a folder under {home}"
    )
