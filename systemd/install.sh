#!/bin/sh
# Install edgeface as a service on Raspberry Pi OS (Bookworm) or Debian 12. Run as root from
# the repository checkout:  sudo sh systemd/install.sh
# Creates the 'edgeface' user (groups video, gpio), a venv in /opt/edgeface, the config in
# /etc/edgeface (kept if present) and enables the service. Re-running upgrades in place.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)

apt-get install -y python3-venv python3-lgpio 2>/dev/null || apt-get install -y python3-venv
getent group gpio >/dev/null || groupadd --system gpio
id edgeface >/dev/null 2>&1 || useradd --system --home-dir /var/lib/edgeface --shell /usr/sbin/nologin \
    --groups video,gpio edgeface

install -d -m 0755 /opt/edgeface
# --system-site-packages lets gpiozero use Debian's lgpio on a Pi 5 / Bookworm.
[ -x /opt/edgeface/venv/bin/python ] || python3 -m venv --system-site-packages /opt/edgeface/venv
/opt/edgeface/venv/bin/pip install --upgrade "$here"
install -m 0644 "$here/README.md" /opt/edgeface/README.md

install -d -m 0750 -o root -g edgeface /etc/edgeface
if [ ! -f /etc/edgeface/edgeface.yaml ]; then
    install -m 0640 -o root -g edgeface "$here/config/edgeface.example.yaml" /etc/edgeface/edgeface.yaml
    echo "wrote /etc/edgeface/edgeface.yaml — edit camera, relay pin and MQTT, then restart"
fi
/opt/edgeface/venv/bin/edgeface doctor --config /etc/edgeface/edgeface.yaml || true

install -m 0644 "$here/systemd/edgeface.service" /etc/systemd/system/edgeface.service
systemctl daemon-reload
systemctl enable --now edgeface
echo "edgeface installed: journalctl -u edgeface -f"
