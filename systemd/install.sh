#!/usr/bin/env bash
# Install or upgrade homepoll as a systemd service on Raspberry Pi OS (run as root from a checkout).
# Safe to run twice: it upgrades the code in place and never overwrites the user's config or data.
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX=/opt/homepoll
CONF_DIR=/etc/homepoll
STATE_DIR=/var/lib/homepoll
LOG_DIR=/var/log/homepoll
UNIT=/etc/systemd/system/homepoll.service

if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (sudo $0)" >&2
  exit 1
fi
command -v python3 >/dev/null || { echo "install.sh: python3 (3.11+) is required" >&2; exit 1; }
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "install.sh: Python 3.11 or newer is required" >&2; exit 1; }

# A system user with no login and no home of its own.
if ! id homepoll >/dev/null 2>&1; then
  useradd --system --no-create-home --home-dir "$STATE_DIR" --shell /usr/sbin/nologin homepoll
fi

install -d -m 0755 "$PREFIX"
install -d -m 0750 -o root -g homepoll "$CONF_DIR"
install -d -m 0700 -o homepoll -g homepoll "$STATE_DIR"
install -d -m 0750 -o homepoll -g homepoll "$LOG_DIR"

# The code: a fresh copy of the package and a virtual environment, upgraded in place.
rm -rf "$PREFIX/src.new"
mkdir -p "$PREFIX/src.new"
cp -a "$SRC/pyproject.toml" "$SRC/README.md" "$SRC/source" "$PREFIX/src.new/"
rm -rf "$PREFIX/src"
mv "$PREFIX/src.new" "$PREFIX/src"
cp "$SRC/README.md" "$PREFIX/README.md"
[ -x "$PREFIX/venv/bin/python" ] || python3 -m venv "$PREFIX/venv"
"$PREFIX/venv/bin/pip" install --quiet --upgrade "$PREFIX/src[web]"  # [web]: the dashboard

# The config: installed once, then it is the user's.
if [ ! -f "$CONF_DIR/config.yaml" ]; then
  sed -e "s|^data_dir: .*|data_dir: $STATE_DIR                 # database, alerts, status file|" \
      -e "s|^  file: null.*|  file: $LOG_DIR/homepoll.log|" \
      "$SRC/config.yaml" > "$CONF_DIR/config.yaml"
  chown root:homepoll "$CONF_DIR/config.yaml"
  chmod 0640 "$CONF_DIR/config.yaml"
  echo "installed $CONF_DIR/config.yaml: edit collectors.hue.bridge before starting"
else
  echo "kept your $CONF_DIR/config.yaml"
fi

install -m 0644 "$SRC/systemd/homepoll.service" "$UNIT"
systemctl daemon-reload
systemctl enable homepoll.service >/dev/null
if systemctl is-active --quiet homepoll.service; then
  systemctl restart homepoll.service
  echo "homepoll upgraded and restarted"
else
  echo "homepoll installed. Next:"
  echo "  sudo -u homepoll $PREFIX/venv/bin/homepoll hue-pair --bridge <bridge-ip> --config $CONF_DIR/config.yaml"
  echo "  sudo systemctl start homepoll && systemctl status homepoll"
fi
