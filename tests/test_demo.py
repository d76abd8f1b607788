"""`edgeface demo` as a new user runs it: the real daemon on the public-domain clip."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from broker import Broker, Listener
from photos import cache_dir, sdist_photo_dir


def test_demo_unlocks_for_the_enrolled_person_only_and_publishes(broker: Broker) -> None:
    sdist_photo_dir()  # the sdist tarball the demo uses is already in the test cache
    listener = Listener(broker.port)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "edgeface", "demo", "--broker", f"127.0.0.1:{broker.port}"],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "EDGEFACE_DEMO_CACHE": str(cache_dir())},
        )
        assert result.returncode == 0, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        kinds = [line.split()[0] for line in lines if line.startswith("  ")]
        assert kinds.count("unknown") == 1 and kinds.count("unlocked") == 1
        assert kinds.index("unknown") < kinds.index("recognised") < kinds.index("unlocked")
        assert "Barack Obama" in next(line for line in lines if "unlocked" in line)
        assert lines[-1] == "relay: energised 1 time(s); now LOCKED"

        def events() -> set[str]:
            return {json.loads(p)["event_type"] for p in listener.payloads("edgeface/demo/event")}

        assert listener.wait(
            lambda: {"unknown", "recognised", "unlocked", "locked"} <= set(events())
        )
        # A demo leaves no Home Assistant device behind (retained discovery configs would).
        assert not [t for t, _, _ in listener.messages if t.startswith("homeassistant/")]
    finally:
        listener.close()


def test_bench_door_reports_unlock_latency_and_load() -> None:
    sdist_photo_dir()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgeface",
            "bench",
            "--door",
            "--door-trials",
            "2",
            "--door-seconds",
            "3",
            "--skip-models",
            "--frames",
            "0",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "EDGEFACE_DEMO_CACHE": str(cache_dir())},
    )
    assert result.returncode == 0, result.stderr
    door = json.loads(result.stdout)["door"]
    assert door["unlock_latency_ms"]["unlocked"] == 2
    assert door["unlock_latency_ms"]["median"] > 0
    assert door["steady_10fps"]["frames_per_second"] > 0 and door["steady_10fps"]["peak_rss_mb"] > 0
