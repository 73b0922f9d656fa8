#!/usr/bin/env bash
# A real S3 server for Omni's tests, without Docker: SeaweedFS (Apache-2.0)
# built from its Go module (once, into a cache) and run as `weed mini` (master,
# volume, filer and S3 gateway in one process) on 127.0.0.1 in the background,
# with one identity whose keys sign every request, and one bucket.
#
#   tests/testbed/s3.sh start         build (first time), start, wait until a signed
#                                     request lists the bucket; prints the endpoint as
#                                     the last line: export OMNI_TEST_S3=$(tests/testbed/s3.sh start)
#   tests/testbed/s3.sh stop          SIGTERM, then SIGKILL after OMNI_S3_STOP_TIMEOUT s
#   tests/testbed/s3.sh kill          SIGKILL at once
#   tests/testbed/s3.sh status        exit 0 when running (and says whether it answers)
#   tests/testbed/s3.sh logs [-f]     where the log is, and its tail
#   tests/testbed/s3.sh env           OMNI_TEST_S3=..., OMNI_TEST_S3_CREDENTIALS=..., OMNI_TEST_S3_BUCKET=...
#   tests/testbed/s3.sh credentials   the path of the AWS credentials file (INI, [default])
#   tests/testbed/s3.sh bucket        the bucket's name
#   tests/testbed/s3.sh build         only build (or find) the weed binary
#   tests/testbed/s3.sh reset         stop, then delete the server's data, keys and logs
#
# With OMNI_TEST_S3 already set (your own server), `start` only waits until that
# endpoint answers HTTP and prints it; the tests then read OMNI_TEST_S3_CREDENTIALS
# and OMNI_TEST_S3_BUCKET.
#
# Environment (all optional):
#   OMNI_TESTBED_CACHE          cache and state root (~/.cache/omni-testbed)
#   OMNI_SEAWEEDFS_VERSION      the Go module version of github.com/seaweedfs/seaweedfs
#   OMNI_S3_PORT                the S3 port (18333); the server's other ports are the
#                               next ones: master +1, volume +2, filer +3, WebDAV +5,
#                               admin +6, and their gRPC ports +11 to +16
#   OMNI_S3_BUCKET              the bucket made at start (omni-test)
#   OMNI_S3_START_TIMEOUT       seconds to wait for the bucket to answer (90)
#   OMNI_S3_STOP_TIMEOUT        seconds between SIGTERM and SIGKILL (20)
#   GOTOOLCHAIN, GOCACHE, GOMODCACHE   as for any go build (GOTOOLCHAIN=local unless set)
#
# Only the answer goes to stdout; everything else goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/testbed/lib.sh
. "$here/lib.sh"
module=github.com/seaweedfs/seaweedfs
version=${OMNI_SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}
install_dir=$cache/seaweedfs-$version
weed=$install_dir/weed
build_logs=$cache/build-logs
state=$cache/s3-run
pidfile=$state/weed.pid
endpoint_file=$state/endpoint
credentials=$state/credentials
identities=$state/s3.json
logdir=$state/logs
port=${OMNI_S3_PORT:-18333}
bucket=${OMNI_S3_BUCKET:-omni-test}
start_timeout=${OMNI_S3_START_TIMEOUT:-90}
stop_timeout=${OMNI_S3_STOP_TIMEOUT:-20}
endpoint=http://127.0.0.1:$port

# --- prerequisites -----------------------------------------------------------

need_curl() {
    command -v curl >/dev/null 2>&1 || die "no curl: the readiness probe signs S3 requests with curl --aws-sigv4 (Debian: apt-get install curl)"
}

need_go() {
    command -v go >/dev/null 2>&1 || die "no go: SeaweedFS is built from its Go module (Debian: apt-get install golang, or a newer Go on PATH)"
}

# --- building weed ------------------------------------------------------------

build_failed() {
    local logfile=$1
    printf '==> %s (last 40 lines) <==\n' "$logfile" >&2
    tail -n 40 "$logfile" >&2
    die "building SeaweedFS $version failed; the whole log is $logfile (is that version served by the Go module proxy, and is Go new enough for its go.mod?)"
}

# Builds weed into $install_dir, once. `go install module@version` is refused
# (its go.mod has a replace directive), so the module's source is downloaded,
# copied somewhere writable and built there. Runs under the lock.
install() {
    [[ -x $weed ]] && return 0
    need_go
    mkdir -p "$build_logs"
    local logfile=$build_logs/seaweedfs-$version.log t0=$EPOCHREALTIME json src cache_tmp
    : >"$logfile"
    cache_tmp_dir "seaweedfs-$version"
    log "building SeaweedFS $version from its Go module (once, at low priority; about 6 minutes on 2 idle cores) into $install_dir; log: $logfile"
    printf '+ go mod download -json %s@%s\n' "$module" "$version" >>"$logfile"
    json=$(GOTOOLCHAIN="${GOTOOLCHAIN:-local}" go mod download -json "$module@$version" 2>>"$logfile") ||
        build_failed "$logfile"
    src=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")
    [[ -d $src ]] || build_failed "$logfile"
    cp -R "$src" "$cache_tmp/src"
    chmod -R u+w "$cache_tmp/src"
    printf '+ go build -trimpath -o weed ./weed\n' >>"$logfile"
    if ! (cd "$cache_tmp/src" && low_priority env CGO_ENABLED=0 GOTOOLCHAIN="${GOTOOLCHAIN:-local}" \
        GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=mod" go build -trimpath -o "$cache_tmp/weed" ./weed >>"$logfile" 2>&1); then
        build_failed "$logfile"
    fi
    rm -rf "$cache_tmp/src"
    echo "$version" >"$cache_tmp/VERSION"
    cache_commit "$install_dir"
    log "built weed ($(du -sh "$weed" | cut -f1)) in $(since "$t0") s"
}

# --- keys and config ----------------------------------------------------------

# Makes the identity's keys once (kept with the state, so a restart keeps them):
# the AWS credentials file the tests read and the identities file weed reads.
write_keys() {
    mkdir -p "$state" "$logdir" "$state/data"
    if [[ ! -s $credentials ]]; then
        local key secret
        key=OMNI$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n' | tr '[:lower:]' '[:upper:]')
        secret=$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')
        umask 077
        printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' "$key" "$secret" \
            >"$credentials.tmp"
        mv -f "$credentials.tmp" "$credentials"
    fi
    local key secret
    key=$(sed -n 's/^aws_access_key_id = //p' "$credentials")
    secret=$(sed -n 's/^aws_secret_access_key = //p' "$credentials")
    cat >"$identities.tmp" <<EOF
{
  "identities": [
    {
      "name": "omni-test",
      "credentials": [{"accessKey": "$key", "secretKey": "$secret"}],
      "actions": ["Admin", "Read", "List", "Tagging", "Write"]
    }
  ]
}
EOF
    mv -f "$identities.tmp" "$identities"
}

# curl with the identity's signature: curl_s3 [CURL ARGS...] URL
curl_s3() {
    local key secret
    key=$(sed -n 's/^aws_access_key_id = //p' "$credentials")
    secret=$(sed -n 's/^aws_secret_access_key = //p' "$credentials")
    curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
        --aws-sigv4 "aws:amz:us-east-1:s3" --user "$key:$secret" "$@"
}

# --- the server's process -------------------------------------------------------

server_pid() {
    local pid
    pid=$(pid_from "$pidfile") || return 1
    # The pid must still be our weed, not a recycled pid.
    cmdline_of "$pid" | grep -qF -- "$weed mini " || return 1
    cmdline_of "$pid" | grep -qF -- "-dir=$state/data " || return 1
    echo "$pid"
}

log_offset=0
show_log_tail() { tail_since "$logdir/weed.log" "$log_offset" 30; }

# Waits until the bucket answers a signed listing (making it if the server has
# none yet). With a pid in $1, fails as soon as that process is gone.
wait_for_bucket() {
    local pid=${1:-} start=$SECONDS t0=$EPOCHREALTIME code=none
    while :; do
        code=$(curl_s3 "$endpoint/$bucket?list-type=2&max-keys=1" 2>/dev/null) || code=none
        case $code in
        200)
            log "$endpoint/$bucket answers after $(since "$t0") s"
            return 0
            ;;
        404) curl_s3 -X PUT "$endpoint/$bucket" >/dev/null 2>&1 || true ;;
        esac
        if [[ -n $pid ]] && ! alive "$pid"; then
            show_log_tail
            die "weed (pid $pid) exited during start-up; see $logdir/weed.log"
        fi
        if ((SECONDS - start >= start_timeout)); then
            show_log_tail
            die "$endpoint/$bucket did not answer within $start_timeout s (last status: $code); weed (pid ${pid:-?}) still runs: \`$0 stop\` stops it"
        fi
        sleep 0.5
    done
}

launch() {
    touch "$logdir/weed.log"
    log_offset=$(stat -c %s "$logdir/weed.log")
    printf '\n=== %s start: SeaweedFS %s, S3 on %s ===\n' "$(date -Is)" "$version" "$endpoint" >>"$logdir/weed.log"
    spawn "$state" "$pidfile" "$logdir/weed.log" \
        "$weed" mini "-dir=$state/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        "-s3.port=$port" "-master.port=$((port + 1))" "-volume.port=$((port + 2))" \
        "-filer.port=$((port + 3))" "-webdav.port=$((port + 5))" "-admin.port=$((port + 6))" \
        "-s3.port.grpc=$((port + 10))" "-master.port.grpc=$((port + 11))" \
        "-volume.port.grpc=$((port + 12))" "-filer.port.grpc=$((port + 13))" \
        "-admin.port.grpc=$((port + 16))" -admin.port.legacy=0 \
        -webdav=false -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0 \
        -master.telemetry=false "-s3.config=$identities" "-bucket=$bucket" \
        -master.vacuumIntervalSeconds=60 -master.garbageThreshold=0.1 \
        "-filer.localSocket=$state/filer.sock" "-s3.localSocket=$state/s3.sock" ||
        die "weed did not start (no pid file); see $logdir/weed.log"
    echo "$endpoint" >"$endpoint_file"
}

# --- commands -------------------------------------------------------------------

cmd_start() {
    need_curl
    if [[ -n ${OMNI_TEST_S3:-} ]]; then
        log "OMNI_TEST_S3 is set: using $OMNI_TEST_S3, starting nothing"
        local i
        for ((i = 0; i < start_timeout * 2; i++)); do
            [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$OMNI_TEST_S3/" 2>/dev/null) != 000 ]] &&
                break
            sleep 0.5
        done
        echo "$OMNI_TEST_S3"
        return
    fi
    lock s3
    local pid running_at
    if pid=$(server_pid); then
        running_at=$(cat "$endpoint_file" 2>/dev/null || echo "$endpoint")
        [[ $running_at == "$endpoint" ]] ||
            die "the test server already runs on $running_at (pid $pid), not $endpoint: stop it first"
        log "reusing the running server (pid $pid)"
        wait_for_bucket "$pid"
        echo "$endpoint"
        return
    fi
    rm -f "$pidfile"
    local p i
    for p in "$port" $((port + 1)) $((port + 2)) $((port + 3)) $((port + 10)) $((port + 11)) $((port + 12)) $((port + 13)); do
        # A server killed a moment ago may still be closing its sockets.
        for ((i = 0; i < 20; i++)); do
            port_in_use "$p" || break
            sleep 0.5
        done
        # weed mini would move to another port by itself: refuse instead.
        port_in_use "$p" &&
            die "port 127.0.0.1:$p is taken by another process: stop it, set OMNI_S3_PORT, or point OMNI_TEST_S3 at a running server"
    done
    install
    write_keys
    local t0=$EPOCHREALTIME
    launch
    pid=$(<"$pidfile")
    log "started weed mini (pid $pid, state $state); waiting for $endpoint/$bucket"
    wait_for_bucket "$pid"
    log "ready in $(since "$t0") s"
    echo "$endpoint"
}

cmd_stop() { stop_service server_pid; }

cmd_kill() { kill_service server_pid; }

cmd_status() {
    local pid at code
    if pid=$(server_pid); then
        at=$(cat "$endpoint_file" 2>/dev/null || echo "$endpoint")
        code=$(curl_s3 "$at/$bucket?list-type=2&max-keys=1" 2>/dev/null) || code=none
        if [[ $code == 200 ]]; then
            echo "running: pid $pid, $at/$bucket answers"
        else
            echo "running: pid $pid, $at/$bucket does not answer (yet: $code)"
        fi
        return 0
    fi
    echo "not running"
    return 3
}

cmd_logs() {
    echo "$logdir/weed.log" >&2
    [[ -f $logdir/weed.log ]] || die "no log yet: $logdir/weed.log"
    if [[ ${1:-} == -f ]]; then
        exec tail -n 50 -f "$logdir/weed.log"
    fi
    tail -n 50 "$logdir/weed.log"
}

cmd_credentials() {
    [[ -s $credentials ]] || die "no credentials yet: run \`$0 start\` first"
    echo "$credentials"
}

cmd_env() {
    echo "OMNI_TEST_S3=${OMNI_TEST_S3:-$(cat "$endpoint_file" 2>/dev/null || echo "$endpoint")}"
    echo "OMNI_TEST_S3_CREDENTIALS=${OMNI_TEST_S3_CREDENTIALS:-$credentials}"
    echo "OMNI_TEST_S3_BUCKET=${OMNI_TEST_S3_BUCKET:-$bucket}"
}

cmd_reset() {
    cmd_stop
    rm -rf "$state"
    log "deleted $state"
}

main() {
    [[ $# -ge 1 ]] || usage
    local cmd=$1
    shift
    case $cmd in
    start) cmd_start ;;
    stop) lock s3 && cmd_stop ;;
    kill) lock s3 && cmd_kill ;;
    status) cmd_status ;;
    logs) cmd_logs "$@" ;;
    env) cmd_env ;;
    credentials) cmd_credentials ;;
    bucket) echo "$bucket" ;;
    build) lock s3 && install && echo "$weed" ;;
    reset) lock s3 && cmd_reset ;;
    -h | --help | help) usage ;;
    *)
        log "unknown command: $cmd"
        usage
        ;;
    esac
}

main "$@"
