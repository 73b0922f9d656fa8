#!/usr/bin/env bash
# Runs pytest (the pinned one, from env.sh's virtualenv) with the SDK and its vendored packages
# importable: test.sh [PYTEST ARGS...], e.g. `sdk/python/test.sh plugins/sign`. Without a path
# among them: the SDK's tests and every Python plugin's (a plugin directory with an app.py).
# With OMNI_BIN and OMNI_PLUGIN_WASM_DIR set (as the omni crate's python test sets them), each
# plugin's cases also run through the real host; see omni_sdk.testing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=$("$here/env.sh")
export PYTHONPATH="$here:$venv/vendor${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
paths=0
for arg in "$@"; do
  case $arg in -*) ;; *) paths=1 ;; esac
done
if [ $paths -eq 0 ]; then
  root=$(cd "$here/../.." && pwd)
  set -- "$@" "$here/tests"
  for app in "$root"/plugins/*/app.py; do
    [ -e "$app" ] && set -- "$@" "$(dirname "$app")"
  done
fi
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
