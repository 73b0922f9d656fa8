#!/usr/bin/env bash
# Checks that `start` recovers a testbed whose processes went without `stop`
# (killed, or gone with the session or machine that ran them) and left their
# pid files behind: it SIGKILLs every component of a running testbed, then
# `start` must bring them back instead of mistaking a stale pid file for a
# component that crashed while it waited for the API server. About 5 s; etcd
# keeps its data, so the cluster's objects stay.
#
#   tests/testbed/kubernetes/recover.sh    (after tests/testbed/kubernetes.sh start)
set -euo pipefail

tb=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/kubernetes.sh
log() { printf 'recover.sh: %s\n' "$*" >&2; }
fail() {
    log "FAIL: $*"
    exit 1
}

if [[ -n ${OMNI_TEST_KUBECONFIG:-} ]]; then
    log "skipped: OMNI_TEST_KUBECONFIG points at a cluster this script does not own"
    exit 0
fi
rundir=${OMNI_TESTBED_CACHE:-$HOME/.cache/omni-testbed}/kubernetes-run/run
[[ -d $rundir ]] || fail "no testbed state at $rundir: run \`$tb start\` first"

components=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
for c in "${components[@]}"; do
    [[ -s $rundir/$c.pid ]] || fail "$c has no pid file: is the testbed running?"
    pid=$(<"$rundir/$c.pid")
    kill -KILL "$pid" 2>/dev/null || fail "$c (pid $pid) is not running"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    [[ -f $rundir/$c.pid ]] || fail "the pid file of $c went with it: this checks nothing"
    log "killed $c (pid $pid); its pid file stays"
done

out=$("$tb" start 2>&1) || {
    printf '%s\n' "$out" >&2
    fail "start did not recover from the stale pid files"
}
status=$("$tb" status 2>&1) || {
    printf '%s\n' "$status" >&2
    fail "status after the recovery"
}
for c in "${components[@]}"; do
    [[ $status == *"$c"*running* ]] || fail "$c is not running after start: $status"
done
log "ok: start brought back the killed components"
