#!/usr/bin/env bash
# Vendor the widget JavaScript the static book needs, so pages render widgets with no network and no CDN.
# Fetches pinned packages from npm into a temporary folder and copies only what the pages load
# (embed-amd.js + its chunks, require.js) into _vendor/widgets/ (git-ignored; ~4 MB).
# Idempotent: does nothing when _vendor/widgets/.stamp matches the pinned versions.
set -euo pipefail
HTML_MANAGER=1.0.15
REQUIREJS=2.3.8
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/_vendor/widgets"
WANT="html-manager@$HTML_MANAGER requirejs@$REQUIREJS"
if [[ -f "$DEST/.stamp" && "$(cat "$DEST/.stamp")" == "$WANT" ]]; then
  exit 0
fi
command -v npm >/dev/null || { echo "vendor_widgets: npm is needed once to fetch the widget JS ($WANT)" >&2; exit 1; }
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
( cd "$TMP" && npm init -y >/dev/null && npm install --no-audit --no-fund --silent \
    "@jupyter-widgets/html-manager@$HTML_MANAGER" "requirejs@$REQUIREJS" )
rm -rf "$DEST"
mkdir -p "$DEST"
DIST="$TMP/node_modules/@jupyter-widgets/html-manager/dist"
# embed-amd.js loads its numbered chunks and fonts from the same folder (data-jupyter-widgets-cdn).
cp "$DIST"/embed-amd.js "$DEST"/
find "$DIST" -maxdepth 1 -type f \( -name '*.js' -o -name '*.woff' -o -name '*.woff2' -o -name '*.ttf' -o -name '*.eot' -o -name '*.svg' \) \
  ! -name 'embed.js' ! -name 'libembed*.js' ! -name 'index.js' -exec cp {} "$DEST"/ \;
cp "$TMP/node_modules/requirejs/require.js" "$DEST"/
cp "$TMP/node_modules/@jupyter-widgets/html-manager/LICENSE"* "$DEST"/ 2>/dev/null || true
echo "$WANT" > "$DEST/.stamp"
echo "vendored $WANT into $DEST ($(du -sh "$DEST" | cut -f1))"
