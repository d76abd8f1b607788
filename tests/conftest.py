"""Fixtures shared by the test modules: real photos, and the shared-data gate."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from broker import Broker
from gpiozero import Device
from gpiozero.pins.mock import MockFactory
from photos import SHARED_DATA, sdist_photo_dir


@pytest.fixture(scope="session")
def photo_dir() -> Path:
    """The face_recognition sdist's public-domain test portraits (fetched via pip, cached)."""
    return sdist_photo_dir()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that use it are skipped, saying why, when it is absent."""
    if not (SHARED_DATA / "lfw" / "pairs.txt").exists():
        pytest.skip(f"shared face data not found at {SHARED_DATA} (set EDGEFACE_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A real mosquitto on a free loopback port, always stopped afterwards."""
    folder = tmp_path / "broker"
    folder.mkdir()
    server = Broker(folder).start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    """gpiozero's own mock pins, handed to the door explicitly; the process-wide default
    factory is restored afterwards (a module may override this, e.g. to install it as the
    default)."""
    previous = Device.pin_factory
    pins = MockFactory()
    yield pins
    pins.reset()
    Device.pin_factory = previous


# ----- things a path can name besides a file (tests of what refuses them) -----------------------


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    """A named pipe nobody writes to: opening it for reading the usual way waits for ever."""
    path = tmp_path / "named.fifo"
    os.mkfifo(path)
    return path


@pytest.fixture
def loop(tmp_path: Path) -> Path:
    """``loop-a`` → ``loop-b`` → ``loop-a``: looking either up fails with ELOOP."""
    (tmp_path / "loop-a").symlink_to(tmp_path / "loop-b")
    (tmp_path / "loop-b").symlink_to(tmp_path / "loop-a")
    return tmp_path / "loop-a"


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    """A listening Unix socket (it cannot be opened as a file at all)."""
    path = tmp_path / "s.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(path))
    except OSError as exc:  # a tmp_path too long for a socket's address
        server.close()
        pytest.skip(f"cannot create a socket at {path}: {exc}")
    try:
        yield path
    finally:
        server.close()
