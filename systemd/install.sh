#!/bin/sh
# Install edgeface as a service on Raspberry Pi OS (Bookworm) or Debian 12. Run as root from
# the repository checkout:  sudo sh systemd/install.sh
# Creates the 'edgeface' user (groups video, gpio), a venv in /opt/edgeface, the config in
# /etc/edgeface (kept if present) and enables the service. Re-running upgrades in place.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)

apt-get update -qq || true
apt-get install -y python3-venv python3-lgpio 2>/dev/null || apt-get install -y python3-venv
getent group gpio >/dev/null || groupadd --system gpio
id edgeface >/dev/null 2>&1 || useradd --system --home-dir /var/lib/edgeface --shell /usr/sbin/nologin \
    --groups video,gpio edgeface

install -d -m 0755 /opt/edgeface
# --system-site-packages lets gpiozero use Debian's lgpio on a Pi 5 / Bookworm.
[ -x /opt/edgeface/venv/bin/python ] || python3 -m venv --system-site-packages /opt/edgeface/venv
# Built from a copy: pip builds a local folder in place, which would leave root-owned build/
# and *.egg-info folders in the user's checkout (and a later `git clean` or build failing).
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
tar -C "$here" --exclude='./.*' --exclude=./build --exclude='*.egg-info' -cf - . \
    | tar -C "$src" -xf -
/opt/edgeface/venv/bin/pip install --upgrade "$src"
install -m 0644 "$here/README.md" /opt/edgeface/README.md

install -d -m 0750 -o root -g edgeface /etc/edgeface
first_install=no
if [ ! -f /etc/edgeface/edgeface.yaml ]; then
    install -m 0640 -o root -g edgeface "$here/config/edgeface.example.yaml" /etc/edgeface/edgeface.yaml
    first_install=yes
fi

install -m 0644 "$here/systemd/edgeface.service" /etc/systemd/system/edgeface.service
systemctl daemon-reload
if [ "$first_install" = yes ]; then
    # Not started on the untouched example (camera 0, nobody enrolled): configure, enrol and
    # run doctor first — doctor opens the camera and the relay pin, which a running daemon holds.
    systemctl enable edgeface
    echo "wrote /etc/edgeface/edgeface.yaml: edit it, enrol people, run doctor, then"
    echo "  sudo systemctl start edgeface && journalctl -u edgeface -f"
else
    systemctl enable edgeface
    systemctl restart edgeface
    echo "edgeface upgraded and restarted: journalctl -u edgeface -f"
fi
