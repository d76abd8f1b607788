"""Fixtures shared by the test modules: real photos, and the shared-data gate."""

from __future__ import annotations

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
