# Building the testbed's binaries from their Go modules, once, into the cache: etcd, kwok (with
# its configuration) and Kubernetes' own. Sourced by kubernetes.sh, whose variables it uses
# (k8s_version, etcd_version, kwok_version, the *_bin directories, build_logs).
# shellcheck shell=bash
need_go() {
    command -v go >/dev/null 2>&1 || die "no go: the testbed builds its binaries from Go modules (Debian: apt-get install golang, or a newer Go on PATH)"
}

# Runs `go "$@"` at the lowest priority with CGO off, appending to log $1.
# The machine's own Go unless GOTOOLCHAIN says otherwise.
run_go() {
    local logfile=$1
    shift
    printf '+ go %s\n' "$*" >>"$logfile"
    low_priority env CGO_ENABLED=0 GOTOOLCHAIN="${GOTOOLCHAIN:-local}" go "$@" >>"$logfile" 2>&1
}

# Prints the path of the go.mod that module@version $2 ships (log: $1).
upstream_gomod() {
    local logfile=$1 mod=$2 json
    printf '+ go mod download -json %s\n' "$mod" >>"$logfile"
    json=$(GOTOOLCHAIN="${GOTOOLCHAIN:-local}" go mod download -json "$mod" 2>>"$logfile") || return 1
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' <<<"$json"
}

build_failed() {
    local what=$1 logfile=$2
    printf '==> %s (last 40 lines) <==\n' "$logfile" >&2
    tail -n 40 "$logfile" >&2
    die "building $what failed; the whole log is $logfile"
}

# The go and godebug lines of go.mod $1, for a module that builds it as a dependency.
go_lines() { grep -E '^(go|godebug) ' "$1" || true; }

# new_build_dir NAME: a fresh temp dir beside the cache entry (build_tmp),
# removed on exit unless it was renamed into place.
new_build_dir() {
    mkdir -p "$build_logs"
    cache_tmp_dir "$1"
    build_tmp=$cache_tmp
}

# finish_build_dir DEST: the build, without its sources, renamed into place.
finish_build_dir() {
    rm -rf "${build_tmp:?}/src"
    cache_commit "$1"
}

k8s_cmds=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

build_kubernetes() {
    local c ok=1
    for c in "${k8s_cmds[@]}"; do [[ -x $k8s_bin/$c ]] || ok=0; done
    ((ok)) && return 0
    [[ $k8s_version =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || die "OMNI_K8S_VERSION=$k8s_version is not v1.Y.Z"
    local staging=v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]} minor=${BASH_REMATCH[1]}
    local logfile=$build_logs/kubernetes-$k8s_version.log t0=$EPOCHREALTIME gomod build_tmp cache_tmp
    new_build_dir "kubernetes-$k8s_version"
    : >"$logfile"
    log "building Kubernetes $k8s_version (${k8s_cmds[*]}) once, at nice 19; this takes a while (log: $logfile)"
    mkdir -p "$build_tmp/src" "$build_tmp/bin"
    if ! gomod=$(cd "$build_tmp/src" && upstream_gomod "$logfile" "k8s.io/kubernetes@$k8s_version") || [[ ! -f $gomod ]]; then
        build_failed "Kubernetes $k8s_version (is that version served by the Go module proxy?)" "$logfile"
    fi
    # Every k8s.io/* => ./staging/src/k8s.io/* becomes the published v0.Y.Z.
    {
        echo "module omni.invalid/testbed/kubernetes"
        echo
        go_lines "$gomod"
        echo
        echo "require k8s.io/kubernetes $k8s_version"
        echo
        echo "replace ("
        sed -n 's#^[[:space:]]*\(replace[[:space:]]\{1,\}\)\{0,1\}\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\2#p' "$gomod" |
            while read -r m; do printf '\t%s => %s %s\n' "$m" "$m" "$staging"; done
        echo ")"
    } >"$build_tmp/src/go.mod"
    grep -q "=> k8s.io/api $staging" "$build_tmp/src/go.mod" || build_failed "Kubernetes: no staging replaces found in $gomod" "$logfile"
    local pkgs=()
    for c in "${k8s_cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
    local v vars=() ldflags="-s -w"
    vars=(gitVersion="$k8s_version" gitMajor=1 gitMinor="$minor" gitTreeState=clean
        buildDate="$(date -u +%Y-%m-%dT%H:%M:%SZ)")
    for v in "${vars[@]}"; do
        ldflags+=" -X k8s.io/component-base/version.$v -X k8s.io/client-go/pkg/version.$v"
    done
    (cd "$build_tmp/src" && run_go "$logfile" get "${pkgs[@]/%/@$k8s_version}") ||
        build_failed "Kubernetes $k8s_version (resolving modules)" "$logfile"
    (cd "$build_tmp/src" && run_go "$logfile" build -trimpath -ldflags="$ldflags" -o "$build_tmp/bin/" "${pkgs[@]}") ||
        build_failed "Kubernetes $k8s_version" "$logfile"
    echo "$k8s_version" >"$build_tmp/VERSION"
    finish_build_dir "$cache/kubernetes-$k8s_version"
    log "built Kubernetes $k8s_version in $(since "$t0") s ($(du -sh "$k8s_bin" | cut -f1))"
}

build_etcd() {
    [[ -x $etcd_bin/etcd ]] && return 0
    local logfile=$build_logs/etcd-$etcd_version.log t0=$EPOCHREALTIME gomod build_tmp cache_tmp
    new_build_dir "etcd-$etcd_version"
    : >"$logfile"
    log "building etcd $etcd_version once (log: $logfile)"
    mkdir -p "$build_tmp/src" "$build_tmp/bin"
    if ! gomod=$(cd "$build_tmp/src" && upstream_gomod "$logfile" "go.etcd.io/etcd/server/v3@$etcd_version") || [[ ! -f $gomod ]]; then
        build_failed "etcd $etcd_version (is that version served by the Go module proxy?)" "$logfile"
    fi
    # Every go.etcd.io/etcd/* => ../* becomes the published module of the same version.
    {
        echo "module omni.invalid/testbed/etcd"
        echo
        go_lines "$gomod"
        echo
        echo "require go.etcd.io/etcd/server/v3 $etcd_version"
        echo
        echo "replace ("
        sed -n 's#^[[:space:]]*\(replace[[:space:]]\{1,\}\)\{0,1\}\(go\.etcd\.io/etcd/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\.\./.*#\2#p' "$gomod" |
            while read -r m; do printf '\t%s => %s %s\n' "$m" "$m" "$etcd_version"; done
        echo ")"
    } >"$build_tmp/src/go.mod"
    (cd "$build_tmp/src" && run_go "$logfile" get "go.etcd.io/etcd/server/v3@$etcd_version") ||
        build_failed "etcd $etcd_version (resolving modules)" "$logfile"
    (cd "$build_tmp/src" && run_go "$logfile" build -trimpath -ldflags="-s -w" -o "$build_tmp/bin/etcd" go.etcd.io/etcd/server/v3) ||
        build_failed "etcd $etcd_version" "$logfile"
    echo "$etcd_version" >"$build_tmp/VERSION"
    finish_build_dir "$cache/etcd-$etcd_version"
    log "built etcd $etcd_version in $(since "$t0") s"
}

build_kwok() {
    [[ -x $kwok_bin/kwok ]] && return 0
    local logfile=$build_logs/kwok-$kwok_version.log t0=$EPOCHREALTIME build_tmp cache_tmp
    new_build_dir "kwok-$kwok_version"
    : >"$logfile"
    log "building kwok $kwok_version once (log: $logfile)"
    mkdir -p "$build_tmp/bin"
    (cd "$build_tmp" && GOBIN=$build_tmp/bin run_go "$logfile" install -trimpath -ldflags="-s -w" "sigs.k8s.io/kwok/cmd/kwok@$kwok_version") ||
        build_failed "kwok $kwok_version" "$logfile"
    echo "$kwok_version" >"$build_tmp/VERSION"
    finish_build_dir "$cache/kwok-$kwok_version"
    log "built kwok $kwok_version in $(since "$t0") s"
}

# kwok's Stage objects and its Logs CRD, as shipped in its module, into
# $kwok_dir/config/: node-fast.yaml (initialize + heartbeat with lease),
# pod-fast.yaml, pod-general.yaml, crd-logs.yaml.
install_kwok_config() {
    [[ -f $kwok_dir/config/crd-logs.yaml ]] && return 0
    local logfile=$build_logs/kwok-$kwok_version.log dir tmp json f
    printf '+ go mod download -json sigs.k8s.io/kwok@%s\n' "$kwok_version" >>"$logfile"
    json=$(cd "$cache" && GOTOOLCHAIN="${GOTOOLCHAIN:-local}" go mod download -json "sigs.k8s.io/kwok@$kwok_version" 2>>"$logfile") ||
        build_failed "kwok $kwok_version's stages" "$logfile"
    dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")
    [[ -d $dir/kustomize/stage ]] || build_failed "kwok $kwok_version's stages (no kustomize/stage in ${dir:-the module})" "$logfile"
    rm -rf "$kwok_dir/.config".*
    tmp=$(mktemp -d "$kwok_dir/.config.XXXXXX")
    # cat_stages OUT FILE...: the files, as one YAML stream.
    cat_stages() {
        local out=$tmp/$1
        shift
        for f in "$@"; do
            [[ -f $dir/kustomize/stage/$f ]] || die "kwok $kwok_version has no kustomize/stage/$f"
            printf -- '---\n# kustomize/stage/%s of sigs.k8s.io/kwok@%s\n' "$f" "$kwok_version" >>"$out"
            cat "$dir/kustomize/stage/$f" >>"$out"
        done
    }
    cat_stages node-fast.yaml node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
    cat_stages pod-fast.yaml pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml
    local general=()
    for f in "$dir"/kustomize/stage/pod/general/*.yaml; do
        [[ $(basename "$f") == kustomization.yaml ]] || general+=("pod/general/$(basename "$f")")
    done
    cat_stages pod-general.yaml "${general[@]}"
    [[ -f $dir/kustomize/crd/bases/kwok.x-k8s.io_logs.yaml ]] || die "kwok $kwok_version has no kustomize/crd/bases/kwok.x-k8s.io_logs.yaml"
    cp "$dir/kustomize/crd/bases/kwok.x-k8s.io_logs.yaml" "$tmp/crd-logs.yaml"
    chmod 755 "$tmp"
    rm -rf "$kwok_dir/config"
    mv -T "$tmp" "$kwok_dir/config"
}

cmd_build() {
    need_go
    local t0=$EPOCHREALTIME
    build_etcd
    build_kwok
    install_kwok_config
    build_kubernetes
    log "all binaries ready after $(since "$t0") s"
}
