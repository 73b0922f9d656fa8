#!/usr/bin/env bash
# Builds a Python plugin into a component: build.sh PLUGIN_DIR OUT.wasm
# PLUGIN_DIR holds app.py (`WitWorld = omni_sdk.component.export(...)`) and the plugin's
# modules. componentize-py (the pinned one, from env.sh's virtualenv) generates the bindings of
# wit/'s `job-handler-preinit` world while it builds (they are never written into the tree), and bundles
# the plugin, this SDK and the virtualenv's vendor/ (Jinja2, jsonschema, ruamel.yaml) with
# CPython into one component, pre-initialized: the modules are imported at build time and their
# state is part of the component. Written to a temporary file, then renamed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -eq 2 ] || { echo "usage: $0 PLUGIN_DIR OUT.wasm" >&2; exit 2; }
plugin=$(cd "$1" && pwd)
out=$2
venv=$("$here/env.sh")
mkdir -p "$(dirname "$out")"
tmp="$out.tmp$$"
trap 'rm -f "$tmp"' EXIT
"$venv/bin/componentize-py" -d "$here/../../wit" -w job-handler-preinit componentize \
  -p "$plugin" -p "$here" -p "$venv/vendor" -o "$tmp" app >/dev/null
mv "$tmp" "$out"
trap - EXIT
