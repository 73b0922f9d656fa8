#!/usr/bin/env bash
# A small Kubernetes control plane for Omni's tests, without Docker or
# kubelets: etcd, kube-apiserver, kube-controller-manager and kube-scheduler
# built from their Go modules (once, into a cache), and kwok playing the
# kubelets of two fake nodes (amd64 and arm64). Pods are scheduled, run and,
# when a Job owns them, succeed; no container ever runs. Everything listens
# on 127.0.0.1 and survives the calling shell.
#
#   tests/testbed/kubernetes.sh build    build the binaries (first time: 10-30 min)
#   tests/testbed/kubernetes.sh start    build if needed, start, wait until both nodes are
#                                        Ready and the default service account exists;
#                                        prints the kubeconfig path as the last line:
#                                        export KUBECONFIG=$(tests/testbed/kubernetes.sh start)
#   tests/testbed/kubernetes.sh stop     stop the components, in reverse order
#   tests/testbed/kubernetes.sh status   exit 0 when every component runs
#   tests/testbed/kubernetes.sh logs [COMPONENT] [-f]   where the logs are, and their tails
#   tests/testbed/kubernetes.sh kubectl ARGS...         the built kubectl, on the testbed
#   tests/testbed/kubernetes.sh env      OMNI_TEST_KUBECONFIG=...
#   tests/testbed/kubernetes.sh reset    stop, then delete the cluster's data, keys and logs
#
# Components: etcd kube-apiserver kube-controller-manager kube-scheduler kwok.
# Nodes: kwok-amd64 and kwok-arm64 (labels kubernetes.io/arch, kubernetes.io/os=linux,
# type=kwok). `kubectl logs` of any pod shows $STATE/kwok/pod.log (CRI log lines).
# A pod labelled omni.io/kwok-stage=fail-first-init fails (its first init container exits 3);
# one labelled omni.io/kwok-stage=run runs until deleted; one labelled
# omni.io/kwok-stage=image-pull-backoff stays Pending on ImagePullBackOff
# (kubernetes/kwok-omni-stages.yaml).
#
# With OMNI_TEST_KUBECONFIG already set (your own cluster), `start` only waits
# until that cluster answers and prints it.
#
# Environment (all optional):
#   OMNI_TESTBED_CACHE          cache and state root (~/.cache/omni-testbed)
#   OMNI_K8S_VERSION            k8s.io/kubernetes version (v1.35.4)
#   OMNI_K8S_ETCD_VERSION       go.etcd.io/etcd/server/v3 version (v3.6.16)
#   OMNI_K8S_KWOK_VERSION       sigs.k8s.io/kwok version (v0.8.0)
#   OMNI_K8S_PORT               kube-apiserver's secure port (16443)
#   OMNI_K8S_ETCD_PORT          etcd's client port (16379)
#   OMNI_K8S_KWOK_PORT          kwok's kubelet port, for logs (16250)
#   OMNI_K8S_POD_STAGES         fast (pods run at once) or general (kwok's delays) (fast)
#   OMNI_K8S_NODE_TAINT         1: taint the nodes kwok.x-k8s.io/node=fake:NoSchedule,
#                               as kwok's docs do (pods then need a toleration) (0)
#   OMNI_K8S_API_QPS            kube-controller-manager's and kube-scheduler's client rate
#                               limit (--kube-api-qps; burst twice that): client-go's 20 (kcm)
#                               and 50 (scheduler) would pace pod creation (500)
#   OMNI_K8S_START_TIMEOUT      seconds to wait for each step of start (120)
#   OMNI_K8S_STOP_TIMEOUT       seconds between SIGTERM and SIGKILL (20)
#   GOTOOLCHAIN, GOCACHE, GOMODCACHE, GOFLAGS   as for any go build (GOTOOLCHAIN=local
#                               unless set); builds run under `nice -n 19`, CGO_ENABLED=0
#
# Only the kubeconfig path (start) goes to stdout; everything else goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/testbed/lib.sh
. "$here/lib.sh"
files=$here/kubernetes
k8s_version=${OMNI_K8S_VERSION:-v1.35.4}
etcd_version=${OMNI_K8S_ETCD_VERSION:-v3.6.16}
kwok_version=${OMNI_K8S_KWOK_VERSION:-v0.8.0}
k8s_bin=$cache/kubernetes-$k8s_version/bin
etcd_bin=$cache/etcd-$etcd_version/bin
kwok_dir=$cache/kwok-$kwok_version
kwok_bin=$kwok_dir/bin
build_logs=$cache/build-logs
state=$cache/kubernetes-run
logdir=$state/logs
rundir=$state/run
pki=$state/pki
kubeconfig=$state/kubeconfig
api_port=${OMNI_K8S_PORT:-16443}
etcd_port=${OMNI_K8S_ETCD_PORT:-16379}
kwok_port=${OMNI_K8S_KWOK_PORT:-16250}
pod_stages=${OMNI_K8S_POD_STAGES:-fast}
node_taint=${OMNI_K8S_NODE_TAINT:-0}
start_timeout=${OMNI_K8S_START_TIMEOUT:-120}
api_qps=${OMNI_K8S_API_QPS:-500}
rate_flags=(--kube-api-qps="$api_qps" --kube-api-burst="$((api_qps * 2))")
stop_timeout=${OMNI_K8S_STOP_TIMEOUT:-20}
components=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
nodes=(amd64 arm64)

# --- build (kubernetes/build.sh) -----------------------------------------------

# shellcheck source=tests/testbed/kubernetes/build.sh
. "$files/build.sh"

built() {
    local c
    for c in "${k8s_cmds[@]}"; do [[ -x $k8s_bin/$c ]] || return 1; done
    [[ -x $etcd_bin/etcd && -x $kwok_bin/kwok && -f $kwok_dir/config/crd-logs.yaml ]]
}

# --- processes -------------------------------------------------------------------

bin_of() {
    case $1 in
    etcd) echo "$etcd_bin/etcd" ;;
    kwok) echo "$kwok_bin/kwok" ;;
    *) echo "$k8s_bin/$1" ;;
    esac
}

# Prints the pid of component $1 and succeeds when it runs.
component_pid() {
    local pid cmdline
    pid=$(pid_from "$rundir/$1.pid") || return 1
    # Still ours, not a recycled pid: our binary, with our state dir in its arguments.
    cmdline=$(cmdline_of "$pid") || return 1
    [[ $cmdline == */"$1 "* && $cmdline == *"$state/"* ]] || return 1
    echo "$pid"
}

# The size of each log when its component was launched: show_log_tail prints
# only what this start wrote.
declare -A log_offset=()

show_log_tail() { tail_since "$logdir/$1.log" "${log_offset[$1]:-0}" "${2:-30}"; }

# Dies with the tail of component $1's log, saying $2.
component_failed() {
    show_log_tail "$1"
    die "$2; see $logdir/$1.log (\`$0 stop\` stops what still runs)"
}

# launch NAME ARGS...: runs component NAME in the background, in its own
# session, logging to $logdir/NAME.log, its pid in $rundir/NAME.pid.
launch() {
    local name=$1 bin pidfile=$rundir/$1.pid
    shift
    bin=$(bin_of "$name")
    touch "$logdir/$name.log"
    log_offset[$name]=$(stat -c %s "$logdir/$name.log")
    printf '\n=== %s start: %s ===\n' "$(date -Is)" "$name" >>"$logdir/$name.log"
    spawn "$state" "$pidfile" "$logdir/$name.log" "$bin" "$@" ||
        component_failed "$name" "$name did not start (no pid file)"
    log "started $name (pid $(<"$pidfile"))"
}

# wait_until WHAT COMPONENT COMMAND...: polls COMMAND until it succeeds; fails
# when COMPONENT's process is gone, or after $start_timeout s.
wait_until() {
    local what=$1 comp=$2 start=$SECONDS t0=$EPOCHREALTIME c
    shift 2
    while ! "$@" >/dev/null 2>&1; do
        for c in "${components[@]}"; do
            if [[ -f $rundir/$c.pid ]] && ! component_pid "$c" >/dev/null; then
                component_failed "$c" "$c exited while waiting for $what"
            fi
        done
        ((SECONDS - start < start_timeout)) ||
            component_failed "$comp" "no $what after $start_timeout s"
        sleep 0.2
    done
    log "$what after $(since "$t0") s"
}

stop_component() {
    local c=$1 pid
    if ! pid=$(component_pid "$c"); then
        rm -f "$rundir/$c.pid"
        return 0
    fi
    terminate "$c (pid $pid)" "$pid" "$stop_timeout"
    rm -f "$rundir/$c.pid"
    log "stopped $c (pid $pid)"
}

# --- probes -------------------------------------------------------------------------

kubectl_bin() {
    if [[ -x $k8s_bin/kubectl ]]; then
        echo "$k8s_bin/kubectl"
    elif command -v kubectl >/dev/null 2>&1; then
        command -v kubectl
    else
        die "no kubectl: \`$0 build\` builds one"
    fi
}

kc() { "$k8s_bin/kubectl" --kubeconfig="$kubeconfig" --request-timeout=5s "$@"; }

etcd_healthy() {
    local reply
    exec 3<>"/dev/tcp/127.0.0.1/$etcd_port" || return 1
    printf 'GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
    reply=$(timeout 5 cat <&3) || true
    exec 3<&-
    [[ $reply == *'"health":"true"'* ]]
}

api_ready() { [[ $(kc get --raw=/readyz 2>/dev/null) == ok ]]; }

# Both nodes Ready and, once kwok was launched at $kwok_launched, their leases
# renewed since: a Ready condition alone may be one stored before a stop.
kwok_launched=
nodes_ready() {
    local n renewed
    for n in "${nodes[@]}"; do
        [[ $(kc get node "kwok-$n" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]] || return 1
        [[ -n $kwok_launched ]] || continue
        renewed=$(kc -n kube-node-lease get lease "kwok-$n" -o 'jsonpath={.spec.renewTime}' 2>/dev/null) || return 1
        [[ ! $renewed < $kwok_launched ]] || return 1
    done
}

default_sa() { kc -n default get serviceaccount default; }

# --- configuration (once per state dir; reset deletes it) ---------------------------

write_pki() {
    [[ -f $pki/complete ]] && return 0
    command -v openssl >/dev/null 2>&1 || die "no openssl: it makes the testbed's keys (Debian: apt-get install openssl)"
    rm -rf "$pki"
    mkdir -p "$pki"
    local out=$pki/openssl.log
    {
        # A CA, and the apiserver's serving certificate for every name it is reached by.
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
            -subj /CN=omni-testbed-ca -keyout "$pki/ca.key" -out "$pki/ca.crt" &&
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
                -subj /CN=kube-apiserver -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" &&
            printf '%s\n' 'subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local' \
                'extendedKeyUsage=serverAuth' 'keyUsage=critical,digitalSignature,keyEncipherment' >"$pki/apiserver.ext" &&
            openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
                -days 3650 -extfile "$pki/apiserver.ext" -out "$pki/apiserver.crt" &&
            # Service-account token keys.
            openssl genrsa -out "$pki/sa.key" 2048 &&
            openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub"
    } >"$out" 2>&1 || {
        tail -n 20 "$out" >&2
        die "openssl failed (log: $out)"
    }
    # An admin token in system:masters.
    local token
    token=$(openssl rand -hex 24)
    printf '%s,admin,admin,"system:masters"\n' "$token" >"$pki/tokens.csv"
    chmod 600 "$pki"/*.key "$pki/tokens.csv"
    local kc_tmp=$kubeconfig.tmp ca
    ca=$(base64 -w0 <"$pki/ca.crt")
    cat >"$kc_tmp" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: omni-testbed
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority-data: $ca
users:
- name: admin
  user:
    token: $token
contexts:
- name: omni-testbed
  context:
    cluster: omni-testbed
    user: admin
    namespace: default
current-context: omni-testbed
KUBECONFIG
    chmod 600 "$kc_tmp"
    mv -f "$kc_tmp" "$kubeconfig"
    echo "$api_port" >"$pki/port"
    touch "$pki/complete"
}

# kwok's configuration: node stages, the pod stages of $pod_stages with Omni's own
# (kwok-omni-stages.yaml), and the ClusterLogs.
kwok_config() {
    cat "$kwok_dir/config/node-fast.yaml" "$kwok_dir/config/pod-$pod_stages.yaml"
    printf -- '---\n'
    cat "$files/kwok-omni-stages.yaml"
    printf -- '---\n'
    sed "s#@LOGS_FILE@#$state/kwok/pod.log#" "$files/kwok-logs.yaml"
}

write_kwok_config() {
    local stages=$kwok_dir/config/pod-$pod_stages.yaml f=$state/kwok/kwok.yaml
    [[ -f $stages ]] || die "OMNI_K8S_POD_STAGES=$pod_stages: no $stages (fast or general)"
    mkdir -p "$state/kwok"
    [[ -f $state/kwok/pod.log ]] ||
        printf '%s stdout F %s\n' "$(date -u +%Y-%m-%dT%H:%M:%S.000000000Z)" \
            "kwok fake container: no container runs here (this line comes from $state/kwok/pod.log)" >"$state/kwok/pod.log"
    kwok_config >"$f.tmp"
    # A running kwok read the config at its start: a changed config restarts it.
    if [[ -f $f ]] && ! cmp -s "$f" "$f.tmp" && component_pid kwok >/dev/null; then
        log "kwok's configuration changed: restarting kwok"
        stop_component kwok
    fi
    mv -f "$f.tmp" "$f"
}

# True when component $1 runs with the rate limits of rate_flags.
rate_limits_current() {
    local pid
    pid=$(component_pid "$1") || return 1
    [[ $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) == *" ${rate_flags[*]} "* ]]
}

# True when the running kwok's configuration is the one write_kwok_config would write now.
kwok_config_current() {
    [[ -f $state/kwok/kwok.yaml && -f $kwok_dir/config/pod-$pod_stages.yaml ]] || return 1
    cmp -s "$state/kwok/kwok.yaml" <(kwok_config)
}

nodes_yaml() {
    local arch spec=' {}'
    if [[ $node_taint == 1 ]]; then
        spec=$'\n  taints:\n  - effect: NoSchedule\n    key: kwok.x-k8s.io/node\n    value: fake'
    fi
    for arch in "${nodes[@]}"; do
        echo ---
        sed -e "s#@ARCH@#$arch#g" -e "s#@NAME@#kwok-$arch#g" "$files/node.yaml.in" |
            while IFS= read -r line; do
                [[ $line == 'spec: @SPEC@' ]] && line="spec:$spec"
                printf '%s\n' "$line"
            done
    done
}

# --- commands -----------------------------------------------------------------------

use_own_cluster() {
    local kc_bin start=$SECONDS t0=$EPOCHREALTIME
    [[ -f $OMNI_TEST_KUBECONFIG ]] || die "OMNI_TEST_KUBECONFIG=$OMNI_TEST_KUBECONFIG: no such file"
    kc_bin=$(kubectl_bin)
    log "OMNI_TEST_KUBECONFIG is set: using $OMNI_TEST_KUBECONFIG, starting nothing"
    until [[ $("$kc_bin" --kubeconfig="$OMNI_TEST_KUBECONFIG" --request-timeout=5s get --raw=/readyz 2>/dev/null) == ok ]]; do
        ((SECONDS - start < start_timeout)) ||
            die "the cluster of $OMNI_TEST_KUBECONFIG did not answer /readyz within $start_timeout s"
        sleep 1
    done
    log "$OMNI_TEST_KUBECONFIG answers after $(since "$t0") s"
    echo "$OMNI_TEST_KUBECONFIG"
}

cmd_start() {
    if [[ -n ${OMNI_TEST_KUBECONFIG:-} ]]; then
        use_own_cluster
        return
    fi
    lock kubernetes
    local t0=$EPOCHREALTIME c running=0 out
    for c in "${components[@]}"; do
        if component_pid "$c" >/dev/null; then
            running=$((running + 1))
        else
            # Left by a process that went without `stop` (killed, or the
            # machine restarted): wait_until would take it for a crash.
            rm -f "$rundir/$c.pid"
        fi
    done
    if ((running == ${#components[@]})) && [[ -f $kubeconfig ]] && kwok_config_current &&
        rate_limits_current kube-controller-manager && rate_limits_current kube-scheduler &&
        api_ready && nodes_ready; then
        [[ $(<"$pki/port") == "$api_port" ]] ||
            die "the testbed already runs on port $(<"$pki/port"), not $api_port: stop it first"
        log "reusing the running testbed"
        echo "$kubeconfig"
        return
    fi
    if ! built; then
        need_go
        cmd_build
    fi
    if [[ -f $pki/port && $(<"$pki/port") != "$api_port" ]]; then
        ((running == 0)) || die "the testbed runs on port $(<"$pki/port"), not $api_port: stop it first"
        log "OMNI_K8S_PORT changed: new keys and kubeconfig"
        rm -rf "$pki"
    fi
    mkdir -p "$logdir" "$rundir"
    mkdir -p "$state/etcd"
    chmod 700 "$state/etcd"
    write_pki
    write_kwok_config
    ((running == 0)) || log "$running of ${#components[@]} components run already; starting the others"

    if ! component_pid etcd >/dev/null; then
        port_in_use "$etcd_port" && die "port 127.0.0.1:$etcd_port (etcd) is taken by another process: stop it or set OMNI_K8S_ETCD_PORT"
        launch etcd --name=omni-testbed --data-dir="$state/etcd" \
            --listen-client-urls="http://127.0.0.1:$etcd_port" \
            --advertise-client-urls="http://127.0.0.1:$etcd_port" \
            --listen-peer-urls=http://localhost:0 \
            --unsafe-no-fsync=true --log-level=warn
    fi
    wait_until "etcd healthy" etcd etcd_healthy

    if ! component_pid kube-apiserver >/dev/null; then
        port_in_use "$api_port" && die "port 127.0.0.1:$api_port (kube-apiserver) is taken by another process: stop it, set OMNI_K8S_PORT, or point OMNI_TEST_KUBECONFIG at a running cluster"
        launch kube-apiserver --etcd-servers="http://127.0.0.1:$etcd_port" \
            --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
            --cert-dir="$state/apiserver" \
            --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
            --client-ca-file="$pki/ca.crt" --token-auth-file="$pki/tokens.csv" \
            --authorization-mode=RBAC --allow-privileged=true \
            --service-cluster-ip-range=10.0.0.0/24 \
            --service-account-issuer=https://kubernetes.default.svc.cluster.local \
            --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
            --kubelet-preferred-address-types=InternalIP \
            --profiling=false
    fi
    wait_until "kube-apiserver ready" kube-apiserver api_ready

    # Started with other rate limits (OMNI_K8S_API_QPS, or before they were set): restart.
    for c in kube-controller-manager kube-scheduler; do
        if component_pid "$c" >/dev/null && ! rate_limits_current "$c"; then
            log "$c's rate limits changed: restarting it"
            stop_component "$c"
        fi
    done
    if ! component_pid kube-controller-manager >/dev/null; then
        launch kube-controller-manager --kubeconfig="$kubeconfig" \
            --leader-elect=false --bind-address=127.0.0.1 --secure-port=0 \
            --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
            --flex-volume-plugin-dir="$state/kcm/volume-plugins" "${rate_flags[@]}" --profiling=false
    fi
    if ! component_pid kube-scheduler >/dev/null; then
        launch kube-scheduler --kubeconfig="$kubeconfig" \
            --leader-elect=false --bind-address=127.0.0.1 --secure-port=0 "${rate_flags[@]}" \
            --profiling=false
    fi
    if ! component_pid kwok >/dev/null; then
        port_in_use "$kwok_port" && die "port 127.0.0.1:$kwok_port (kwok) is taken by another process: stop it or set OMNI_K8S_KWOK_PORT"
        # A fresh kwok takes over a node lease only when it expires; without
        # one it makes it at once, which tells that it manages the nodes.
        kc -n kube-node-lease delete lease "${nodes[@]/#/kwok-}" --ignore-not-found >/dev/null 2>&1 || true
        kwok_launched=$(date -u +%Y-%m-%dT%H:%M:%S)
        # Per-pod Logs objects (kwok.x-k8s.io/v1alpha1), watched by kwok.
        out=$(kc apply -f "$kwok_dir/config/crd-logs.yaml" 2>&1) || {
            printf '%s\n' "$out" >&2
            die "could not create kwok's Logs CRD"
        }
        wait_until "kwok's Logs CRD established" kube-apiserver \
            kc wait --for=condition=Established --timeout=5s crd/logs.kwok.x-k8s.io
        launch kwok --kubeconfig="$kubeconfig" --config="$state/kwok/kwok.yaml" \
            --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
            --node-ip=127.0.0.1 --node-port="$kwok_port" --server-address="127.0.0.1:$kwok_port" \
            --cidr=10.244.0.0/16 --node-lease-duration-seconds=40 --enable-crds=Logs
    fi
    out=$(nodes_yaml | kc apply -f - 2>&1) || {
        printf '%s\n' "$out" >&2
        die "could not create the nodes"
    }
    wait_until "nodes ${nodes[*]/#/kwok-} Ready" kwok nodes_ready
    wait_until "service account default/default" kube-controller-manager default_sa
    log "ready in $(since "$t0") s (state $state)"
    echo "$kubeconfig"
}

cmd_stop() {
    local i t0=$EPOCHREALTIME any=0
    for i in "${components[@]}"; do component_pid "$i" >/dev/null && any=1; done
    for ((i = ${#components[@]} - 1; i >= 0; i--)); do
        stop_component "${components[i]}"
    done
    if ((any)); then
        log "stopped in $(since "$t0") s"
    else
        log "not running"
    fi
}

cmd_status() {
    local c pid down=0
    for c in "${components[@]}"; do
        if pid=$(component_pid "$c"); then
            printf '%-24s running, pid %s, RSS %s MiB\n' "$c" "$pid" "$(($(awk '/^VmRSS/{print $2}' "/proc/$pid/status") / 1024))"
        else
            printf '%-24s not running\n' "$c"
            down=$((down + 1))
        fi
    done
    if [[ -x $k8s_bin/kubectl && -f $kubeconfig ]] && api_ready; then
        echo "kube-apiserver answers on https://127.0.0.1:$(<"$pki/port") (kubeconfig $kubeconfig)"
        kc get nodes -L kubernetes.io/arch 2>&1 || true
    elif ((down < ${#components[@]})); then
        echo "kube-apiserver does not answer (yet)"
    fi
    ((down == 0)) || return 3
}

cmd_logs() {
    local c follow=0 which=()
    for c in "$@"; do
        case $c in
        -f) follow=1 ;;
        *)
            [[ " ${components[*]} " == *" $c "* ]] || die "no component $c (${components[*]})"
            which+=("$c")
            ;;
        esac
    done
    if ((${#which[@]} == 0)); then
        ((follow == 0)) || die "logs -f needs a component (${components[*]})"
        for c in "${components[@]}"; do
            [[ -f $logdir/$c.log ]] || continue
            printf '==> %s <==\n' "$logdir/$c.log"
            tail -n 5 "$logdir/$c.log"
        done
        return 0
    fi
    echo "$logdir/${which[0]}.log" >&2
    [[ -f $logdir/${which[0]}.log ]] || die "no log yet: $logdir/${which[0]}.log"
    if ((follow)); then
        exec tail -n 50 -f "$logdir/${which[0]}.log"
    fi
    tail -n 50 "$logdir/${which[0]}.log"
}

cmd_kubectl() {
    local kc_bin
    kc_bin=$(kubectl_bin)
    exec "$kc_bin" --kubeconfig="${OMNI_TEST_KUBECONFIG:-$kubeconfig}" "$@"
}

cmd_env() { echo "OMNI_TEST_KUBECONFIG=${OMNI_TEST_KUBECONFIG:-$kubeconfig}"; }

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
    build) lock kubernetes && cmd_build ;;
    start) cmd_start ;;
    stop) lock kubernetes && cmd_stop ;;
    status) cmd_status ;;
    logs) cmd_logs "$@" ;;
    kubectl) cmd_kubectl "$@" ;;
    env) cmd_env ;;
    reset) lock kubernetes && cmd_reset ;;
    -h | --help | help) usage ;;
    *)
        log "unknown command: $cmd"
        usage
        ;;
    esac
}

main "$@"
