#!/usr/bin/env bash
# Regenerates the portal's vendored front-end files (provisioning/portal/static/vendor/)
# from the npm registry at the pinned versions below; the files are committed, so a
# machine without the registry still serves the portal. Run it after changing a version.
#   htmx.org      - the small interaction library (forms and fragments over HTTP)
#   chart.js      - the charts of the incoming-call analysis
#   @picocss/pico - the stylesheet (responsive: usable on a phone screen)
set -euo pipefail
cd "$(dirname "$0")/.."
out=provisioning/portal/static/vendor
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack -q htmx.org@2.0.4 chart.js@4.4.7 @picocss/pico@2.0.6 >/dev/null)
for f in "$tmp"/*.tgz; do mkdir -p "${f%.tgz}" && tar xzf "$f" -C "${f%.tgz}"; done
mkdir -p "$out"
cp "$tmp"/htmx.org-2.0.4/package/dist/htmx.min.js "$out/htmx.min.js"
cp "$tmp"/chart.js-4.4.7/package/dist/chart.umd.js "$out/chart.umd.min.js"
cp "$tmp"/picocss-pico-2.0.6/package/css/pico.min.css "$out/pico.min.css"
cat >"$out/VERSIONS" <<V
htmx.org 2.0.4 (BSD-2-Clause) dist/htmx.min.js
chart.js 4.4.7 (MIT) dist/chart.umd.js
@picocss/pico 2.0.6 (MIT) css/pico.min.css
V
echo "portal_vendor: $(ls "$out" | tr '\n' ' ')"
