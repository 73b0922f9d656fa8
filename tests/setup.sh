#!/usr/bin/env bash
# Installs what building and testing Omni need on a clean machine: the wasm32-wasip2 Rust target
# (plus rustfmt and clippy), the tools of the testbeds, and Node, Chromium and chromedriver for
# the web UI. Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
target=wasm32-wasip2
shared="$here/../../shared/toolchain/ensure-wasm-target"
if [ -x "$shared" ]; then
  # Tries rustup, then unpacks a copy kept beside the repository where rustup cannot reach its
  # servers (this project's CI machines).
  "$shared"
elif [ -d "$(rustc --print sysroot)/lib/rustlib/$target/lib" ]; then
  echo "$target: already installed"
else
  rustup target add "$target"
fi
for tool in rustfmt clippy; do
  command -v "cargo-${tool/rustfmt/fmt}" >/dev/null 2>&1 || rustup component add "$tool"
done

# The Cassandra testbed (tests/testbed/cassandra.sh) runs Cassandra from Maven jars: it needs a
# Java 17+ runtime, Maven for the first download, and python3 for its CQL probe.
missing=()
java_major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1 || true)
if [ -z "$java_major" ] || [ "$java_major" -lt 17 ]; then missing+=(openjdk-17-jre-headless); fi
command -v mvn >/dev/null 2>&1 || missing+=(maven)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
# The API's contract test installs schemathesis from PyPI into a virtualenv of its own
# (host/omni/tests/contract.rs): Debian's python3 makes one only with python3-venv (ensurepip).
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
# The local engine's tests run the task plugins' jobs for real on this machine.
command -v rpmbuild >/dev/null 2>&1 || missing+=(rpm)
# The rpm task's deps step (dnf builddep) and the file:// repositories its tests make.
command -v dnf >/dev/null 2>&1 || missing+=(dnf)
[ -e /usr/lib/python3/dist-packages/dnf-plugins/builddep.py ] || missing+=(dnf-plugins-core)
command -v createrepo_c >/dev/null 2>&1 || missing+=(createrepo-c)
# The local engine's build-root test makes a root of a static busybox.
command -v busybox >/dev/null 2>&1 || missing+=(busybox-static)
command -v xorriso >/dev/null 2>&1 || missing+=(xorriso)
# Every step of a local job runs in a bubblewrap sandbox (host/engine-local/src/sandbox.rs).
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
# A step that asks for network gets a stack of its own through slirp4netns (same file).
command -v slirp4netns >/dev/null 2>&1 || missing+=(slirp4netns)
command -v git >/dev/null 2>&1 || missing+=(git)
# The sign task's step test runs its script here: rpmsign (rpm, above) with gpg and its agent.
command -v gpg >/dev/null 2>&1 || missing+=(gpg)
command -v gpg-agent >/dev/null 2>&1 || missing+=(gpg-agent)
command -v curl >/dev/null 2>&1 || missing+=(curl)
# The Kubernetes testbed (tests/testbed/kubernetes.sh) builds its binaries with Go and makes its
# keys with the openssl CLI. The S3 testbed (tests/testbed/s3.sh) builds SeaweedFS with Go too
# (its go.mod asks for Go 1.26: Debian's golang-go is older, so a newer Go on PATH or
# GOTOOLCHAIN=auto is needed there), and its readiness probe signs requests with curl (above).
command -v go >/dev/null 2>&1 || missing+=(golang-go)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# The web UI: its assets are built with Node and npm (host/ui/web), and its browser tests
# (host/omni/tests/browser.rs) drive Debian's headless Chromium over WebDriver (chromedriver).
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update
  $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi
# slirp4netns opens /dev/net/tun: Debian's udev makes it 0666; a container without udev may
# have none, or one only root can open.
if [ ! -c /dev/net/tun ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo mkdir -p /dev/net
  $sudo mknod -m 0666 /dev/net/tun c 10 200 || echo "warning: cannot make /dev/net/tun; a step with network (network = \"user\") will fail" >&2
elif [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo chmod 0666 /dev/net/tun || echo "warning: cannot make /dev/net/tun usable by anyone" >&2
fi
# Python plugins: componentize-py (pinned), pytest and the packages every Python component
# bundles, in a virtualenv of the testbed cache (sdk/python/env.sh; made once, ~10 s, then reused).
python_env=$("$here/../sdk/python/env.sh")
echo "python plugins: $("$python_env/bin/componentize-py" --version) in $python_env"
echo "testbed tools: java ${java_major:-17}, $(mvn -B -v 2>/dev/null | head -1 | cut -c1-40), $(python3 --version)"
