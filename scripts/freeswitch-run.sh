#!/usr/bin/env bash
# Development helper: renders docker/freeswitch/*.xml into "$STACK_DIR/freeswitch-conf"
# and starts/stops the FreeSWITCH built by scripts/freeswitch.sh, by its recorded PID.
# (The stack module will take this over; this script proves the build and templates.)
#   scripts/freeswitch-run.sh start | stop | status | render
# Every @@NAME@@ placeholder is filled from the environment variable NAME (defaults below).
set -euo pipefail
cd "$(dirname "$0")/.."

STACK_DIR="${SOFTSWITCH_STACK__DIR:-/opt/softswitch-stack}"
P="$STACK_DIR/freeswitch"
CONF="$STACK_DIR/freeswitch-conf"
RUN="$STACK_DIR/freeswitch-run"
DB="$STACK_DIR/freeswitch-db"
LOGS="$STACK_DIR/logs/freeswitch"
PIDFILE="$RUN/softswitch-freeswitch.pid"
mkdir -p "$RUN" "$DB" "$LOGS"

# ESL password of this stack: generated once, kept in the run folder (never ClueCon).
if [ -z "${FS_ESL_PASSWORD:-}" ]; then
  [ -s "$RUN/esl-password" ] || (umask 077 && od -An -tx1 -N12 /dev/urandom | tr -d ' \n' >"$RUN/esl-password")
  FS_ESL_PASSWORD=$(cat "$RUN/esl-password")
fi
: "${FS_SIP_HOST:=127.0.0.1}" "${FS_CARRIER_PORT:=5080}" "${FS_PHONES_PORT:=5070}"
: "${FS_RTP_START:=30000}" "${FS_RTP_END:=30999}" "${FS_ESL_PORT:=8021}"
: "${FS_SOCKET_ADDR:=127.0.0.1:8084}"
: "${FS_DIRECTORY_URL:=http://127.0.0.1:8080/v1/freeswitch/directory}"
: "${FS_CORE_DB:=$DB/core.db}"
: "${CARRIER_IN_HOST:=127.0.0.2}" "${CARRIER_OUT_HOST:=127.0.0.3}" "${CARRIER_OUT_PORT:=5060}"
: "${BASELINE_IN_HOST:=127.0.0.4}" "${FS_MOH_DIR:=$STACK_DIR/freeswitch-sounds/moh}"
NAMES=(FS_SIP_HOST FS_CARRIER_PORT FS_PHONES_PORT FS_RTP_START FS_RTP_END FS_ESL_PORT
  FS_ESL_PASSWORD FS_SOCKET_ADDR FS_DIRECTORY_URL FS_CORE_DB CARRIER_IN_HOST
  CARRIER_OUT_HOST CARRIER_OUT_PORT BASELINE_IN_HOST FS_MOH_DIR)

fs_cli() { "$P/bin/fs_cli" -H 127.0.0.1 -P "$FS_ESL_PORT" -p "$FS_ESL_PASSWORD" "$@"; }

recorded_pid() {
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = freeswitch ] && echo "$pid"
}

render() {
  local args=() n v tpl out
  for n in "${NAMES[@]}"; do
    v=${!n}
    v=${v//\\/\\\\}; v=${v//|/\\|}; v=${v//&/\\&}   # literal in sed's replacement
    args+=(-e "s|@@${n}@@|${v}|g")
  done
  rm -rf "$CONF.new"
  mkdir -p "$CONF.new"
  for tpl in docker/freeswitch/*.xml; do
    out="$CONF.new/$(basename "$tpl")"
    sed "${args[@]}" "$tpl" >"$out"
    if grep -n '@@[A-Z0-9_]*@@' "$out" >&2; then
      echo "freeswitch-run: unrendered placeholder in $(basename "$tpl")" >&2
      exit 1
    fi
  done
  rm -rf "$CONF"
  mv "$CONF.new" "$CONF"
}

start() {
  [ -x "$P/bin/freeswitch" ] || { echo "freeswitch-run: no build in $P: run scripts/freeswitch.sh" >&2; exit 1; }
  local pid
  if pid=$(recorded_pid); then
    echo "freeswitch-run: already running (pid $pid)"
    return 0
  fi
  render
  mkdir -p "$FS_MOH_DIR"
  if [ -z "$(ls -A "$FS_MOH_DIR")" ] && command -v sox >/dev/null; then
    # a quiet placeholder tone so that local_stream://moh is audible
    sox -n -r 8000 -c 1 -b 16 "$FS_MOH_DIR/placeholder.wav" synth 4 sine 440 vol 0.1 2>/dev/null || true
  fi
  rm -f "$RUN/freeswitch.pid" "$PIDFILE"   # a stale pid file blocks start-up
  (
    ulimit -s 240   # else FreeSWITCH re-executes itself to set its stack (new PID)
    exec setsid "$P/bin/freeswitch" -nonat -nonatmap -np -nc -nf \
      -base "$P" -conf "$CONF" -run "$RUN" -db "$DB" -log "$LOGS" \
      </dev/null >"$LOGS/stdout.log" 2>&1
  ) &
  pid=$!
  echo "$pid" >"$PIDFILE"
  local i
  for i in $(seq 1 120); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "freeswitch-run: FreeSWITCH exited during start-up; last lines of $LOGS:" >&2
      tail -n 20 "$LOGS/stdout.log" "$LOGS/freeswitch.log" >&2 2>/dev/null || true
      rm -f "$PIDFILE"
      exit 1
    fi
    if fs_cli -x status >/dev/null 2>&1; then
      # FreeSWITCH's own pid file must name the process started here
      if [ "$(cat "$RUN/freeswitch.pid" 2>/dev/null)" != "$pid" ]; then
        echo "freeswitch-run: pid mismatch: started $pid, freeswitch.pid says $(cat "$RUN/freeswitch.pid" 2>/dev/null)" >&2
        kill -TERM "$pid" 2>/dev/null || true
        exit 1
      fi
      echo "freeswitch-run: running (pid $pid, ESL 127.0.0.1:$FS_ESL_PORT, conf $CONF)"
      return 0
    fi
    sleep 0.25
  done
  echo "freeswitch-run: no answer on ESL after 30 s; stopping pid $pid" >&2
  kill -TERM "$pid" 2>/dev/null || true
  exit 1
}

stop() {
  local pid i
  if ! pid=$(recorded_pid); then
    echo "freeswitch-run: not running"
    rm -f "$PIDFILE"
    return 0
  fi
  kill -TERM "$pid"
  for i in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$PIDFILE"; echo "freeswitch-run: stopped (pid $pid)"; return 0; }
    sleep 0.25
  done
  echo "freeswitch-run: pid $pid still running 15 s after SIGTERM" >&2
  exit 1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  render) render && echo "freeswitch-run: rendered into $CONF" ;;
  status)
    if pid=$(recorded_pid); then
      echo "freeswitch-run: running (pid $pid)"
      fs_cli -x status
    else
      echo "freeswitch-run: not running"
      exit 3
    fi
    ;;
  *) echo "usage: $0 start|stop|status|render" >&2; exit 2 ;;
esac
