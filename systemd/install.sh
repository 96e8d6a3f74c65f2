#!/usr/bin/env bash
# Install, upgrade or remove homepoll as a systemd service on Raspberry Pi OS (run as root
# from a checkout). Safe to run twice: it upgrades the code in place, recovers a half-made
# virtual environment and never overwrites the user's config or data.
#
#   sudo systemd/install.sh                      install or upgrade
#   sudo systemd/install.sh --time-sync          ... and enable systemd-time-wait-sync
#   sudo systemd/install.sh --uninstall          remove service, code and wrapper; keep config,
#                                                data and log
#   sudo systemd/install.sh --uninstall --purge  ... and delete config, data, log and the user
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
# Tests install into a scratch folder as another user; on a Pi both stay unset.
ROOT="${HOMEPOLL_INSTALL_ROOT:-}"
SERVICE_USER="${HOMEPOLL_INSTALL_USER:-homepoll}"
PREFIX=/opt/homepoll
CONF_DIR=/etc/homepoll
STATE_DIR=/var/lib/homepoll
LOG_DIR=/var/log/homepoll
UNIT=/etc/systemd/system/homepoll.service
WRAPPER=/usr/local/bin/homepoll
TIME_SYNC=systemd-time-wait-sync.service

usage() {
  sed -n '2,10s/^# \{0,1\}//p' "$0"
}

uninstall=no
purge=no
time_sync=ask
for arg in "$@"; do
  case "$arg" in
    --uninstall) uninstall=yes ;;
    --purge) purge=yes ;;
    --time-sync) time_sync=yes ;;
    --no-time-sync) time_sync=no ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $arg" >&2; usage >&2; exit 64 ;;
  esac
done
if [ "$purge" = yes ] && [ "$uninstall" = no ]; then
  echo "install.sh: --purge goes with --uninstall" >&2
  exit 64
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (sudo $0)" >&2
  exit 1
fi

# --------------------------------------------------------------------------- uninstall

if [ "$uninstall" = yes ]; then
  if [ -f "$ROOT$UNIT" ]; then
    systemctl disable --now homepoll.service >/dev/null 2>&1 || true
    rm -f "$ROOT$UNIT"
    systemctl daemon-reload
  fi
  rm -f "$ROOT$WRAPPER"
  rm -rf "$ROOT$PREFIX"
  if [ "$purge" = yes ]; then
    rm -rf "$ROOT$CONF_DIR" "$ROOT$STATE_DIR" "$ROOT$LOG_DIR"
    if [ "$SERVICE_USER" = homepoll ] && id homepoll >/dev/null 2>&1; then
      userdel homepoll
    fi
    echo "homepoll removed, with its config, data and log"
  else
    echo "homepoll removed; kept $CONF_DIR, $STATE_DIR and $LOG_DIR (--uninstall --purge deletes them)"
  fi
  exit 0
fi

# --------------------------------------------------------------------------- install

command -v python3 >/dev/null || {
  echo "install.sh: python3 (3.11+) is required: run sudo apt install python3 python3-venv" >&2
  exit 1
}
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "install.sh: Python 3.11 or newer is required" >&2; exit 1; }
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || {
  echo "install.sh: python3-venv is missing: run sudo apt install python3-venv" >&2
  exit 1
}

# A system user with no login and no home of its own.
if ! id "$SERVICE_USER" >/dev/null 2>&1; then
  useradd --system --no-create-home --home-dir "$STATE_DIR" --shell /usr/sbin/nologin \
    "$SERVICE_USER"
fi

install -d -m 0755 "$ROOT$PREFIX" "$ROOT$(dirname "$UNIT")" "$ROOT$(dirname "$WRAPPER")"
install -d -m 0750 -o root -g "$SERVICE_USER" "$ROOT$CONF_DIR"
install -d -m 0700 -o "$SERVICE_USER" -g "$SERVICE_USER" "$ROOT$STATE_DIR"
install -d -m 0750 -o "$SERVICE_USER" -g "$SERVICE_USER" "$ROOT$LOG_DIR"

# The code: a fresh copy of the package and a virtual environment, upgraded in place.
rm -rf "$ROOT$PREFIX/src.new"
mkdir -p "$ROOT$PREFIX/src.new"
cp -a "$SRC/pyproject.toml" "$SRC/README.md" "$SRC/source" "$ROOT$PREFIX/src.new/"
rm -rf "$ROOT$PREFIX/src"
mv "$ROOT$PREFIX/src.new" "$ROOT$PREFIX/src"
cp "$SRC/README.md" "$ROOT$PREFIX/README.md"

# A venv left half-made (power cut, full disk, Ctrl-C during a first install) is rebuilt.
venv="$ROOT$PREFIX/venv"
if ! { [ -x "$venv/bin/python" ] && "$venv/bin/python" -m pip --version >/dev/null 2>&1; }; then
  [ -e "$venv" ] && echo "rebuilding the half-made virtual environment in $PREFIX/venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade "$ROOT$PREFIX/src[web]"  # [web]: the dashboard

# The config: installed once from the package as released (the committed config.yaml, not
# a working copy someone edited), then it is the user's.
if [ ! -f "$ROOT$CONF_DIR/config.yaml" ]; then
  clean="$(mktemp)"
  trap 'rm -f "$clean"' EXIT
  if ! git -C "$SRC" show HEAD:config.yaml >"$clean" 2>/dev/null; then
    cp "$SRC/config.yaml" "$clean"  # a release archive: the file is as shipped
  fi
  sed -e "s|^data_dir: .*|data_dir: $STATE_DIR                 # database, alerts, status file|" \
      -e "s|^  file: null.*|  file: $LOG_DIR/homepoll.log|" \
      "$clean" >"$ROOT$CONF_DIR/config.yaml"
  chown "root:$SERVICE_USER" "$ROOT$CONF_DIR/config.yaml"
  chmod 0640 "$ROOT$CONF_DIR/config.yaml"
  echo "installed $CONF_DIR/config.yaml: edit collectors.hue.bridge before starting"
else
  echo "kept your $CONF_DIR/config.yaml"
fi

# `homepoll status`, `readings`, `hue-pair`... as typed: as the service's user, with its config.
cat >"$ROOT$WRAPPER" <<EOF
#!/bin/sh
# homepoll as the service runs it: user $SERVICE_USER, config $CONF_DIR/config.yaml
# (written by homepoll's systemd/install.sh; a --config PATH argument still wins).
HOMEPOLL_CONFIG="\${HOMEPOLL_CONFIG:-$CONF_DIR/config.yaml}"
if [ "\$(id -un)" = "$SERVICE_USER" ]; then
  export HOMEPOLL_CONFIG
  exec $PREFIX/venv/bin/homepoll "\$@"
elif [ "\$(id -u)" -eq 0 ]; then
  exec runuser -u $SERVICE_USER -- env HOMEPOLL_CONFIG="\$HOMEPOLL_CONFIG" $PREFIX/venv/bin/homepoll "\$@"
else
  exec sudo -u $SERVICE_USER env HOMEPOLL_CONFIG="\$HOMEPOLL_CONFIG" $PREFIX/venv/bin/homepoll "\$@"
fi
EOF
chmod 0755 "$ROOT$WRAPPER"

install -m 0644 "$SRC/systemd/homepoll.service" "$ROOT$UNIT"
systemctl daemon-reload
systemctl enable homepoll.service >/dev/null

# Without a clock chip a Pi boots in the past until NTP answers; systemd-time-wait-sync holds
# time-sync.target (which homepoll.service waits for) until the clock is synchronised.
if [ "$time_sync" = ask ] && [ ! -e /dev/rtc0 ] && [ -t 0 ]; then
  read -r -p "No clock chip found: wait for NTP at boot (enable $TIME_SYNC)? [Y/n] " answer
  case "$answer" in [nN]*) time_sync=no ;; *) time_sync=yes ;; esac
fi
if [ "$time_sync" = yes ]; then
  systemctl enable "$TIME_SYNC" >/dev/null
  echo "enabled $TIME_SYNC: homepoll starts once the clock is set"
elif ! systemctl is-enabled --quiet "$TIME_SYNC" 2>/dev/null; then
  echo "tip: on a Pi without a clock chip, run: sudo systemctl enable $TIME_SYNC"
fi

if systemctl is-active --quiet homepoll.service; then
  systemctl restart homepoll.service
  echo "homepoll upgraded and restarted"
else
  echo "homepoll installed. Next:"
  echo "  homepoll hue-pair --bridge <bridge-ip>   (runs as $SERVICE_USER with $CONF_DIR/config.yaml)"
  echo "  sudo systemctl start homepoll && homepoll status"
fi
