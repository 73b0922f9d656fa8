#!/usr/bin/env bash
# The web UI's assets from a clean build: installs the locked npm packages (npm ci), builds the
# assets twice into fresh directories and checks that the builds are byte-identical, that they
# are the committed host/ui/dist (which the omni binary embeds), and that they weigh under
# 500 KB gzipped; and runs the sources' own tests (node --test: the YAML of the render preview,
# the log's ANSI colours). Run by `make test` (`make ui-check`).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
web="$here/../host/ui/web"
dist="$here/../host/ui/dist"
(cd "$web" && npm ci --no-audit --no-fund --loglevel=error)
node --test "$web"/test/*.test.js
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
node "$web/build.mjs" "$work/first"
node "$web/build.mjs" "$work/second"
if ! diff -r "$work/first" "$work/second"; then
  echo "ui-assets: two builds of the UI differ" >&2
  exit 1
fi
if ! diff -r "$work/first" "$dist"; then
  echo "ui-assets: host/ui/dist is not what the sources build: run 'make ui' and commit host/ui/dist" >&2
  exit 1
fi
size=0
for file in "$work/first"/*; do
  size=$((size + $(gzip -9 -n -c "$file" | wc -c)))
done
if [ "$size" -ge 512000 ]; then
  echo "ui-assets: the UI's assets are $size bytes gzipped, over 500 KB" >&2
  exit 1
fi
echo "ui-assets: two builds identical and committed; $size bytes gzipped"
