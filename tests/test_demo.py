"""`edgeface demo` as a new user runs it: the real daemon on the public-domain clip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from broker import Broker, Listener, free_port
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
        assert "relay: energised 1 time(s); now LOCKED" in lines

        def events() -> set[str]:
            return {json.loads(p)["event_type"] for p in listener.payloads("edgeface/demo/event")}

        assert listener.wait(
            lambda: {"unknown", "recognised", "unlocked", "locked"} <= set(events())
        )
        # A demo leaves no Home Assistant device behind (retained discovery configs would);
        # with discovery off it clears them (empty messages), which deletes nothing of others.
        assert not [t for t, p, _ in listener.messages if t.startswith("homeassistant/") and p]
        # Nor a retained "demo" door: lock state, availability, audit head were all cleared.
        published = {t for t, p, _ in listener.messages if p and t.startswith("edgeface/demo/")}
        assert {"edgeface/demo/state/lock", "edgeface/demo/availability"} <= published
        retained_before = {t for t in published if "/event" not in t and t != "edgeface/demo/audit"}
        assert lines[-1] == f"broker: cleared the demo's {len(retained_before)} retained topic(s)"
        late = Listener(broker.port, topics="edgeface/demo/#", client_id="late")
        try:
            # The broker sends retained messages at subscription, before anything published
            # after it: once a probe comes back, whatever was retained has arrived too.
            def probe_back() -> bool:
                late.client.publish("edgeface/demo/probe", b"probe", qos=1)
                time.sleep(0.2)
                return bool(late.payloads("edgeface/demo/probe"))

            assert late.wait(probe_back)
        finally:
            late.close()
        assert [t for t, _, _ in late.messages if t != "edgeface/demo/probe"] == []
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


def test_demo_with_no_broker_listening_says_so_in_one_line() -> None:
    """`edgeface demo --broker localhost` without a broker ran the whole clip and then ended
    in a ConnectionRefusedError traceback from the clean-up of the retained topics."""
    port = free_port()  # nothing listens on it
    result = subprocess.run(
        [sys.executable, "-m", "edgeface", "demo", "--broker", f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"cannot reach the MQTT broker at 127.0.0.1:{port}" in result.stderr
    assert "edgeface demo:" not in result.stdout  # refused before the clip was built
