#!/usr/bin/env bash
# Builds FreeSWITCH 1.10.12 (with spandsp 3.0.0 and sofia-sip 1.13.17) from the vendored
# source tarballs into "$SOFTSWITCH_STACK__DIR/freeswitch" (default /opt/softswitch-stack).
# Idempotent: a stamp file $P/.built-1.10.12-<hash> is written only after `make install`
# succeeded; when it is present the script exits at once. About 3 minutes on 2 cores.
#   FREESWITCH_VENDOR  folder with the tarballs (default ../shared/vendor/freeswitch beside the checkout)
#   FREESWITCH_JOBS    make -j (default 2)
set -euo pipefail

STACK_DIR="${SOFTSWITCH_STACK__DIR:-/opt/softswitch-stack}"
P="$STACK_DIR/freeswitch"
FS_VERSION=1.10.12
SPANDSP_DIR=spandsp-3.0.0
SOFIA_DIR=sofia-sip-1.13.17

# The modules built (FreeSWITCH's modules.conf syntax). Not mod_spandsp: FreeSWITCH
# 1.10.12's mod_spandsp does not compile against spandsp 3.0.0 (its V.18 API changed:
# V18_MODE_5BIT_4545 undeclared, v18_init takes more arguments).
MODULES="applications/mod_commands
applications/mod_db
applications/mod_dptools
applications/mod_hash
dialplans/mod_dialplan_xml
endpoints/mod_loopback
endpoints/mod_sofia
event_handlers/mod_cdr_pg_csv
event_handlers/mod_event_socket
formats/mod_local_stream
formats/mod_native_file
formats/mod_sndfile
formats/mod_tone_stream
loggers/mod_console
loggers/mod_logfile
say/mod_say_en
xml_int/mod_xml_curl"
# --enable-core-pgsql-support: only so that mod_cdr_pg_csv builds (FreeSWITCH's own call
# records in PostgreSQL, read by the control plane after a crash); the core's database
# stays SQLite.
FS_CONFIGURE=(--prefix="$P" --disable-fhs --disable-libvpx --disable-libyuv --enable-core-pgsql-support)

HASH=$(printf '%s\n%s\n' "$MODULES" "${FS_CONFIGURE[*]}" | sha256sum | cut -c1-12)
STAMP="$P/.built-$FS_VERSION-$HASH"
if [ -f "$STAMP" ]; then
  exit 0
fi

VENDOR="${FREESWITCH_VENDOR:-$(cd "$(dirname "$0")/../.." && pwd)/shared/vendor/freeswitch}"
JOBS="${FREESWITCH_JOBS:-2}"
BUILD="$STACK_DIR/freeswitch-build"
LOG="$STACK_DIR/logs/freeswitch-build.log"
mkdir -p "$STACK_DIR/logs" "$P"
: >"$LOG"
t0=$SECONDS

fail() {
  echo "freeswitch: FAILED at: $1 (see $LOG); last lines:" >&2
  tail -n 25 "$LOG" >&2 || true
  exit 1
}
# stage NAME COMMAND...: runs COMMAND with its output in the log, one line per stage.
stage() {
  local name=$1 t=$SECONDS
  shift
  echo "=== $name" >>"$LOG"
  "$@" >>"$LOG" 2>&1 || fail "$name"
  echo "freeswitch: $name ($((SECONDS - t)) s)"
}

for t in freeswitch-$FS_VERSION.tar.gz spandsp-3.0.0-0c7bceb.tar.gz sofia-sip-1.13.17.tar.gz; do
  [ -r "$VENDOR/$t" ] || { echo "freeswitch: missing tarball $VENDOR/$t" >&2; exit 1; }
done

# Debian build dependencies, installed only when missing.
DEPS=(build-essential autoconf automake libtool libtool-bin pkg-config uuid-dev zlib1g-dev
  libjpeg-dev libsqlite3-dev libcurl4-openssl-dev libpcre3-dev libspeex-dev libspeexdsp-dev
  libedit-dev libssl-dev libtiff-dev libsndfile1-dev libpq-dev)
missing=()
for d in "${DEPS[@]}"; do
  dpkg-query -W -f='${Status}' "$d" 2>/dev/null | grep -q "install ok installed" || missing+=("$d")
done
if [ ${#missing[@]} -gt 0 ]; then
  stage "apt-get update" apt-get update -qq
  stage "apt-get install ${missing[*]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The libraries carry their own stamps (in $P) so that a change of the module list
# rebuilds FreeSWITCH only.
build_spandsp() {
  cd "$BUILD/$SPANDSP_DIR" && ./bootstrap.sh &&
    ./configure --prefix="$P" --with-pic --disable-static &&
    make -j"$JOBS" && make install
}
build_sofia() {
  cd "$BUILD/$SOFIA_DIR" && ./bootstrap.sh &&
    ./configure --prefix="$P" --with-pic --disable-static --with-glib=no \
      --without-doxygen --disable-stun &&
    make -j"$JOBS" && make install
}
fs_configure() {
  cd "$BUILD/freeswitch-$FS_VERSION" && printf '%s\n' "$MODULES" >modules.conf &&
    ./bootstrap.sh -j &&
    PKG_CONFIG_PATH="$P/lib/pkgconfig" ./configure "${FS_CONFIGURE[@]}" LDFLAGS="-Wl,-rpath,$P/lib"
}
fs_make() { make -C "$BUILD/freeswitch-$FS_VERSION" -j"$JOBS"; }
fs_install() {
  # modules of an earlier build with another module list must not linger
  rm -rf "$P/mod" && make -C "$BUILD/freeswitch-$FS_VERSION" install
}
fs_check() {
  # every library found, every listed module installed
  ! ldd "$P/bin/freeswitch" | grep -q "not found" || return 1
  local m
  for m in $MODULES; do
    [ -f "$P/mod/$(basename "$m").so" ] || { echo "module not installed: $m"; return 1; }
  done
}

rm -f "$P"/.built-*
mkdir -p "$BUILD"
if [ ! -f "$P/.stage-$SPANDSP_DIR" ]; then
  stage "unpack spandsp" bash -c "rm -rf '$BUILD/$SPANDSP_DIR' && tar -xzf '$VENDOR/spandsp-3.0.0-0c7bceb.tar.gz' -C '$BUILD'"
  stage "build+install spandsp 3.0.0" build_spandsp
  touch "$P/.stage-$SPANDSP_DIR"
fi
if [ ! -f "$P/.stage-$SOFIA_DIR" ]; then
  stage "unpack sofia-sip" bash -c "rm -rf '$BUILD/$SOFIA_DIR' && tar -xzf '$VENDOR/sofia-sip-1.13.17.tar.gz' -C '$BUILD'"
  stage "build+install sofia-sip 1.13.17" build_sofia
  touch "$P/.stage-$SOFIA_DIR"
fi
stage "unpack freeswitch" bash -c "rm -rf '$BUILD/freeswitch-$FS_VERSION' && tar -xzf '$VENDOR/freeswitch-$FS_VERSION.tar.gz' -C '$BUILD'"
stage "configure freeswitch $FS_VERSION" fs_configure
stage "make freeswitch (-j$JOBS)" fs_make
stage "make install freeswitch" fs_install
stage "check binary and modules" fs_check
touch "$STAMP"
echo "freeswitch: ok, $P ($((SECONDS - t0)) s; log $LOG)"
