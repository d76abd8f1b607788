"""sd_notify over a real Unix datagram socket, filesystem and abstract namespace."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from edgeface.door.systemd import SystemdNotifier, watchdog_interval


def test_messages_arrive_on_the_notify_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        notifier = SystemdNotifier(str(path))
        assert notifier.ready("door locked, camera ok")
        assert server.recv(4096) == b"READY=1\nSTATUS=door locked, camera ok"
        assert notifier.watchdog() and server.recv(4096) == b"WATCHDOG=1"
        assert notifier.stopping() and server.recv(4096) == b"STOPPING=1"


def test_abstract_namespace_address() -> None:
    name = f"edgeface-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        assert SystemdNotifier("@" + name).status("hello")
        assert server.recv(4096) == b"STATUS=hello"


def test_outside_systemd_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = SystemdNotifier()
    assert not notifier.enabled and not notifier.ready()


def test_dead_socket_does_not_raise(tmp_path: Path) -> None:
    assert SystemdNotifier(str(tmp_path / "gone.sock")).watchdog() is False


def test_watchdog_interval_is_half_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 10.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert watchdog_interval() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    assert watchdog_interval() is None
