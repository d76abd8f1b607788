#!/bin/sh
# Install edgeface as a service on Raspberry Pi OS (Bookworm) or Debian 12. Run as root from
# the repository checkout:  sudo sh systemd/install.sh
# Creates the 'edgeface' user (groups video, gpio), its state folder /var/lib/edgeface, a venv
# in /opt/edgeface, the config in /etc/edgeface (kept if present) and, on the first install,
# enables the service without starting it. Re-running upgrades in place and leaves the door as
# the admin left it: restarted onto the new version only if it was running, never enabled or
# started otherwise.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)

apt-get update -qq || true
apt-get install -y python3-venv python3-lgpio 2>/dev/null || apt-get install -y python3-venv
getent group gpio >/dev/null || groupadd --system gpio
id edgeface >/dev/null 2>&1 || useradd --system --home-dir /var/lib/edgeface --shell /usr/sbin/nologin \
    --groups video,gpio edgeface
# The state folder before the first start (StateDirectory= creates it only then): README's enrol
# step writes the gallery there as the edgeface user, who cannot create folders in /var/lib.
install -d -m 0750 -o edgeface -g edgeface /var/lib/edgeface

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

# The first install is the one that finds no unit: only then is it enabled. An admin who has
# since disabled or stopped the door (to run doctor, which needs the camera and the relay pin)
# keeps it that way through upgrades.
new_unit=no
[ -e /etc/systemd/system/edgeface.service ] || new_unit=yes
install -m 0644 "$here/systemd/edgeface.service" /etc/systemd/system/edgeface.service
systemctl daemon-reload
if [ "$new_unit" = yes ]; then
    # Enabled, not started: the untouched example (camera 0, nobody enrolled) is no door yet.
    systemctl enable edgeface
else
    # Onto the new version only if it runs now; a stopped door stays stopped.
    systemctl try-restart edgeface
fi
if systemctl is-active --quiet edgeface; then
    echo "edgeface upgraded and restarted: journalctl -u edgeface -f"
elif [ "$first_install" = yes ]; then
    echo "wrote /etc/edgeface/edgeface.yaml: edit it, enrol people, run doctor, then"
    echo "  sudo systemctl start edgeface && journalctl -u edgeface -f"
else
    echo "edgeface installed; the service is not running (left as it was). When configured:"
    echo "  sudo systemctl start edgeface && journalctl -u edgeface -f"
fi
