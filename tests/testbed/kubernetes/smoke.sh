#!/usr/bin/env bash
# Checks a running testbed the way Omni uses a cluster: a Job pinned to the
# arm64 node by nodeSelector, with an init container, is scheduled there, runs
# and succeeds; an invalid Job is rejected; server-side dry run works; kubectl
# logs answers (from kwok's ClusterLogs file). Deletes its namespace at the end.
#
#   tests/testbed/kubernetes/smoke.sh    (after tests/testbed/kubernetes.sh start)
set -euo pipefail

tb=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/kubernetes.sh
ns=omni-smoke-$$
k() { "$tb" kubectl "$@"; }
log() { printf 'smoke.sh: %s\n' "$*" >&2; }
fail() {
    log "FAIL: $*"
    k -n "$ns" get job,pod -o wide >&2 || true
    exit 1
}
t0=$EPOCHREALTIME
since() {
    local now=${EPOCHREALTIME/[,.]/} then=${t0/[,.]/}
    printf '%d ms' $(((now - then) / 1000))
}

job() { # job NAME [containers yes|no]
    cat <<YAML
apiVersion: batch/v1
kind: Job
metadata:
  name: $1
  namespace: $ns
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      nodeSelector:
        kubernetes.io/arch: arm64
YAML
    [[ ${2:-yes} == yes ]] || return 0
    cat <<YAML
      initContainers:
      - name: fetch
        image: registry.invalid/omni/fetch:1
        command: [sh, -c, "echo fetch"]
      containers:
      - name: build
        image: registry.invalid/omni/build:1
        command: [sh, -c, "echo build"]
        resources:
          requests: {cpu: "2", memory: 4Gi}
YAML
}

k create namespace "$ns" >/dev/null
trap 'k delete namespace "$ns" --wait=false >/dev/null 2>&1 || true' EXIT

out=$(job dry | k apply --dry-run=server -f - 2>&1) || fail "server-side dry run: $out"
[[ $out == *"created (server dry run)"* ]] || fail "server-side dry run said: $out"
k -n "$ns" get job dry >/dev/null 2>&1 && fail "the dry-run Job exists"
log "ok: apply --dry-run=server ($out)"

if out=$(job bad no | k apply -f - 2>&1); then fail "an invalid Job (no containers) was accepted: $out"; fi
[[ $out == *"spec.template.spec.containers: Required value"* ]] || fail "the invalid Job was refused, but not for its containers: $out"
log "ok: invalid Job rejected: $out"

t0=$EPOCHREALTIME
job arm | k apply -f - >/dev/null
k -n "$ns" wait --for=condition=complete job/arm --timeout=60s >/dev/null || fail "job/arm did not complete"
log "ok: job/arm complete after $(since)"
pod=$(k -n "$ns" get pod -l job-name=arm -o jsonpath='{.items[0].metadata.name}')
node=$(k -n "$ns" get pod "$pod" -o jsonpath='{.spec.nodeName}')
phase=$(k -n "$ns" get pod "$pod" -o jsonpath='{.status.phase}')
init=$(k -n "$ns" get pod "$pod" -o jsonpath='{.status.initContainerStatuses[0].state.terminated.reason}')
[[ $node == kwok-arm64 ]] || fail "pod $pod ran on ${node:-no node}, not kwok-arm64"
[[ $phase == Succeeded ]] || fail "pod $pod is $phase, not Succeeded"
[[ $init == Completed ]] || fail "init container of $pod: ${init:-no status}, not Completed"
log "ok: pod $pod on $node, init container $init, phase $phase"
events=$(k -n "$ns" get events --field-selector involvedObject.name="$pod" -o jsonpath='{range .items[*]}{.reason} {end}')
log "events of $pod: $events"

# Without a Logs object: the testbed's ClusterLogs file.
out=$(k -n "$ns" logs "$pod" -c build 2>&1) || fail "kubectl logs: $out"
log "ok: kubectl logs (ClusterLogs): $out"

# A Logs object named after the pod: its own file (kwok reads it locally).
logfile=$(mktemp)
trap 'rm -f "$logfile"; k delete namespace "$ns" --wait=false >/dev/null 2>&1 || true' EXIT
printf '%s\n' '2026-01-01T00:00:00.000000000Z stdout F building omni' \
    '2026-01-01T00:00:01.000000000Z stderr F warning: fake' >"$logfile"
k apply -f - >/dev/null <<YAML
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Logs
metadata:
  name: $pod
  namespace: $ns
spec:
  logs:
  - containers: [build]
    logsFile: $logfile
YAML
for ((i = 0; i < 50; i++)); do
    out=$(k -n "$ns" logs "$pod" -c build 2>&1) && [[ $out == "building omni"* ]] && break
    sleep 0.1
done
[[ $out == $'building omni\nwarning: fake' ]] || fail "kubectl logs with a Logs object: $out"
log "ok: kubectl logs (Logs object, after $((i * 100)) ms): ${out//$'\n'/ | }"
out=$(k -n "$ns" logs "$pod" -c build --timestamps --tail=1 2>&1)
log "kubectl logs --timestamps --tail=1: $out"
out=$(timeout 3 "$tb" kubectl -n "$ns" logs -f "$pod" -c build 2>&1) && rc=0 || rc=$?
log "kubectl logs -f (3 s, exit $rc): ${out//$'\n'/ | }"
echo "PASS"
