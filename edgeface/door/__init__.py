"""The door daemon: camera, decisions, relay, MQTT, systemd. The only asyncio code."""
