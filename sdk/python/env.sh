#!/usr/bin/env bash
# Makes (once) and prints the virtualenv that builds and tests Python plugins:
# componentize-py and pytest from requirements.txt in its bin/, and the pure-Python packages of
# vendor.txt in its vendor/, which every component bundles. It lives in the testbed cache
# (OMNI_TESTBED_CACHE, ~/.cache/omni-testbed by default), named by the hash of both lists, so a
# changed pin makes a new one; a marker written last tells a complete install from an
# interrupted one, which is made again. Needs python3 with venv (tests/setup.sh installs
# python3-venv).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${OMNI_TESTBED_CACHE:-$HOME/.cache/omni-testbed}
hash=$(cat "$here/requirements.txt" "$here/vendor.txt" | sha256sum | cut -c1-12)
venv="$cache/python-$hash"
if [ ! -e "$venv/.omni-installed" ]; then
  mkdir -p "$cache"
  exec 9>"$cache/python.lock"
  flock 9
  if [ ! -e "$venv/.omni-installed" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps \
      --target "$venv/vendor" -r "$here/vendor.txt" >&2
    # The optional C speedups (markupsafe, pyrsistent) are the build machine's code; each
    # package falls back to its own Python without them.
    find "$venv/vendor" -name '*.so' -delete
    rm -rf "$venv/vendor/bin"
    touch "$venv/.omni-installed"
  fi
fi
echo "$venv"
