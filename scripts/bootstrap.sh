#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian 12 machine; quick when already done.
#   - Debian packages: PostgreSQL 15, SIPp (sip-tester), debootstrap, espeak-ng, sox, chromium,
#     prometheus (promtool for the alert rules' tests; its packaged daemon is disabled),
#     kamailio (the cluster layout's SIP edge; its packaged daemon is disabled)
#   - Asterisk 22 from Debian unstable in a debootstrap chroot (the host's libraries stay)
#   - FreeSWITCH 1.10.12 built from the vendored sources (scripts/freeswitch.sh)
#   - the Python venv (.venv) with the project installed in editable mode
set -euo pipefail
cd "$(dirname "$0")/.."
STACK_DIR="${SOFTSWITCH_STACK__DIR:-/opt/softswitch-stack}"
ROOT="$STACK_DIR/asterisk-root"
PY="${PYTHON:-python3}"

need=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
command -v psql >/dev/null || need+=(postgresql-client-15)
command -v sipp >/dev/null || need+=(sip-tester)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v sox >/dev/null || need+=(sox)
command -v chromium >/dev/null || need+=(chromium)  # the portal's browser tests (Playwright)
[ -x /usr/sbin/kamailio ] || need+=(kamailio)  # the cluster layout's SIP edge (stack up --cluster)
command -v promtool >/dev/null || need+=(prometheus)  # promtool check/test rules; the e2e scrape
[ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || need+=(fonts-wqy-microhei)  # Chinese text in screenshots
if [ ${#need[@]} -gt 0 ]; then
  echo "bootstrap: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [[ " ${need[*]} " == *" prometheus "* ]]; then
  # Where an init system runs, Debian starts the packaged Prometheus (:9090) and its node
  # exporter (:9100, recommended); the tests run their own Prometheus on a free port
  # (tests/e2e/test_prometheus.py): stop and disable the packaged ones, once, at install.
  for unit in prometheus prometheus-node-exporter; do
    if [ -d /run/systemd/system ]; then
      systemctl disable --now "$unit" >/dev/null 2>&1 || true
    elif [ -x "/etc/init.d/$unit" ]; then
      "/etc/init.d/$unit" stop >/dev/null 2>&1 || true
      update-rc.d "$unit" disable >/dev/null 2>&1 || true
    fi
  done
fi
if [[ " ${need[*]} " == *" kamailio "* ]]; then
  # Debian's packaged Kamailio listens on every address's 5060 (Asterisk's): the edge runs
  # its own configuration on 127.0.0.10 (scripts/devstack/edge.py); stop the packaged one.
  if [ -d /run/systemd/system ]; then
    systemctl disable --now kamailio >/dev/null 2>&1 || true
  elif [ -x /etc/init.d/kamailio ]; then
    /etc/init.d/kamailio stop >/dev/null 2>&1 || true
    update-rc.d kamailio disable >/dev/null 2>&1 || true
  fi
fi

if [ ! -x "$ROOT/usr/sbin/asterisk" ]; then
  echo "bootstrap: Asterisk 22 from Debian unstable into $ROOT (about a minute)"
  mkdir -p "$STACK_DIR"
  tmp="$STACK_DIR/asterisk-root.partial"
  rm -rf "$tmp"
  debootstrap --variant=minbase \
    --include=asterisk,asterisk-modules,asterisk-core-sounds-en-gsm sid "$tmp" >"$STACK_DIR/debootstrap.log" 2>&1 \
    || { echo "debootstrap failed; see $STACK_DIR/debootstrap.log" >&2; exit 1; }
  rm -rf "$ROOT"
  mv "$tmp" "$ROOT"
fi

# FreeSWITCH 1.10.12 from the vendored sources (../shared/vendor/freeswitch), once: about
# 4 minutes on a fresh machine, milliseconds once its stamp is there.
scripts/freeswitch.sh

stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "bootstrap: Python environment (.venv)"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
echo "bootstrap: ok"
