#!/usr/bin/env bash
# A real single-node Apache Cassandra 5.0 for Omni's tests, without Docker:
# the jars come from Maven Central (once, into a cache), the node runs on
# 127.0.0.1 in the background and survives the calling shell.
#
#   tests/testbed/cassandra.sh start   download (first time), start, wait for CQL;
#                                      prints the contact point as the last line:
#                                      export OMNI_TEST_CASSANDRA=$(tests/testbed/cassandra.sh start)
#   tests/testbed/cassandra.sh stop    SIGTERM, then SIGKILL after OMNI_CASSANDRA_STOP_TIMEOUT s
#   tests/testbed/cassandra.sh kill    SIGKILL at once (a crashed store)
#   tests/testbed/cassandra.sh status  exit 0 when running (and says whether it answers CQL)
#   tests/testbed/cassandra.sh logs [-f]  where the log is, and its tail
#   tests/testbed/cassandra.sh env     OMNI_TEST_CASSANDRA=127.0.0.1:9042
#   tests/testbed/cassandra.sh cql 'SELECT ...'   one CQL statement through cqlprobe.py
#   tests/testbed/cassandra.sh reset   stop, then delete the node's data and logs
#
# With OMNI_TEST_CASSANDRA already set (your own node), `start` only waits
# until that endpoint answers CQL and prints it.
#
# Environment (all optional):
#   OMNI_TESTBED_CACHE            cache and state root (~/.cache/omni-testbed)
#   OMNI_CASSANDRA_VERSION        cassandra-all version (5.0.9)
#   OMNI_CASSANDRA_PORT           native (CQL) port (9042)
#   OMNI_CASSANDRA_STORAGE_PORT   inter-node port (7000)
#   OMNI_CASSANDRA_HEAP           -Xms and -Xmx (1g)
#   OMNI_CASSANDRA_START_TIMEOUT  seconds to wait for CQL (180)
#   OMNI_CASSANDRA_STOP_TIMEOUT   seconds between SIGTERM and SIGKILL (60)
#   OMNI_CASSANDRA_JVM_OPTS       extra JVM arguments, split on spaces
#   OMNI_CASSANDRA_MLOCK          1: let a root-run node mlockall() its heap (off)
#   JAVA_HOME                     Java 17 to use (else `java` on PATH)
#
# Only the contact point goes to stdout; everything else goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/testbed/lib.sh
. "$here/lib.sh"
files=$here/cassandra
version=${OMNI_CASSANDRA_VERSION:-5.0.9}
install_dir=$cache/cassandra-$version
lib=$install_dir/lib
state=$cache/cassandra-run
pidfile=$state/cassandra.pid
endpoint_file=$state/endpoint
logdir=$state/logs
native_port=${OMNI_CASSANDRA_PORT:-9042}
storage_port=${OMNI_CASSANDRA_STORAGE_PORT:-7000}
heap=${OMNI_CASSANDRA_HEAP:-1g}
start_timeout=${OMNI_CASSANDRA_START_TIMEOUT:-180}
stop_timeout=${OMNI_CASSANDRA_STOP_TIMEOUT:-60}
endpoint=127.0.0.1:$native_port

# --- prerequisites -----------------------------------------------------------

java_bin=
need_java() {
    if [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
        java_bin=$JAVA_HOME/bin/java
    elif command -v java >/dev/null 2>&1; then
        java_bin=$(command -v java)
    else
        die "no java: Cassandra $version needs Java 17 (Debian: apt-get install openjdk-17-jdk-headless), or set JAVA_HOME"
    fi
    local spec major
    spec=$("$java_bin" -XshowSettings:properties -version 2>&1 |
        sed -n 's/^ *java\.specification\.version = *//p')
    major=${spec#1.}
    major=${major%%.*}
    [[ $major =~ ^[0-9]+$ ]] || die "cannot tell the version of $java_bin"
    ((major >= 17)) || die "$java_bin is Java $spec; Cassandra $version needs Java 17 (set JAVA_HOME)"
    ((major == 17)) || log "warning: Java $major; Cassandra 5.0 supports Java 11 and 17 only"
}

need_python() {
    command -v python3 >/dev/null 2>&1 || die "no python3: the CQL readiness probe (cassandra/cqlprobe.py) needs it"
}

need_mvn() {
    command -v mvn >/dev/null 2>&1 ||
        die "no mvn: it downloads Cassandra's jars once (Debian: apt-get install maven)"
}

# --- the node's process -------------------------------------------------------

# Prints the pid of our node and succeeds when it runs.
node_pid() {
    local pid
    pid=$(pid_from "$pidfile") || return 1
    # The pid must still be our Cassandra, not a recycled pid.
    cmdline_of "$pid" | grep -q "CassandraDaemon" || return 1
    cmdline_of "$pid" | grep -qF -- "-Dcassandra.storagedir=$state " || return 1
    echo "$pid"
}

answers() { python3 "$files/cqlprobe.py" "$1" >/dev/null 2>&1; }

# Byte sizes of the logs when this node was launched: show_log_tail prints
# only what this start wrote.
log_offsets=(0 0)
mark_logs() {
    local f i=0
    for f in "$logdir/system.log" "$logdir/stdout.log"; do
        log_offsets[i]=$(stat -c %s "$f" 2>/dev/null || echo 0)
        i=$((i + 1))
    done
}

show_log_tail() {
    tail_since "$logdir/system.log" "${log_offsets[0]}" 30
    tail_since "$logdir/stdout.log" "${log_offsets[1]}" 15
}

# Waits until endpoint $1 answers CQL. With a pid in $2, fails as soon as
# that process is gone.
wait_for_cql() {
    local target=$1 pid=${2:-} start=$SECONDS t0=$EPOCHREALTIME why
    while :; do
        if why=$(python3 "$files/cqlprobe.py" "$target" 2>&1 >/dev/null); then
            log "$target answers CQL after $(since "$t0") s"
            return 0
        fi
        if [[ -n $pid ]] && ! alive "$pid"; then
            show_log_tail
            die "the Cassandra node (pid $pid) exited during start-up; see $logdir"
        fi
        if ((SECONDS - start >= start_timeout)); then
            if [[ -n $pid ]]; then
                show_log_tail
                die "$target did not answer CQL within $start_timeout s (last: ${why:-no answer}); the node (pid $pid) still runs: \`$0 stop\` stops it"
            fi
            die "$target did not answer CQL within $start_timeout s (last: ${why:-no answer})"
        fi
        sleep 1
    done
}

# --- install and configure ------------------------------------------------------

# Downloads the jars into $install_dir, atomically: into a temp dir first,
# renamed into place only once complete. Runs under the lock.
install() {
    if [[ -f $lib/cassandra-all-$version.jar ]]; then
        return 0
    fi
    need_mvn
    local cache_tmp tmp
    cache_tmp_dir "cassandra-$version"
    tmp=$cache_tmp
    log "downloading Cassandra $version jars through Maven (once) into $install_dir"
    local pom
    pom=$(<"$files/pom.xml")
    printf '%s\n' "${pom//@CASSANDRA_VERSION@/"$version"}" >"$tmp/pom.xml"
    local t0=$EPOCHREALTIME
    if ! (cd "$tmp" && mvn -q -B -Dstyle.color=never -f pom.xml dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp/lib" >"$tmp/mvn.log" 2>&1); then
        sed 's/\x1b\[[0-9;]*m//g' "$tmp/mvn.log" | tail -n 30 >&2
        die "mvn could not resolve org.apache.cassandra:cassandra-all:$version (set OMNI_CASSANDRA_VERSION?)"
    fi
    [[ -f $tmp/lib/cassandra-all-$version.jar ]] || die "mvn finished without cassandra-all-$version.jar"
    rm -f "$tmp/pom.xml" "$tmp/mvn.log"
    echo "$version" >"$tmp/VERSION"
    cache_commit "$install_dir" # replacing an old layout, never a complete install (checked above)
    log "downloaded $(find "$lib" -name '*.jar' | wc -l) jars ($(du -sh "$lib" | cut -f1)) in $(since "$t0") s"
}

write_config() {
    mkdir -p "$state"/{conf,data,commitlog,saved_caches,hints,cdc_raw,triggers,tmp} "$logdir"
    local yaml
    yaml=$(<"$files/cassandra.yaml.in")
    yaml=${yaml//@STATE_DIR@/"$state"}
    yaml=${yaml//@NATIVE_PORT@/"$native_port"}
    yaml=${yaml//@STORAGE_PORT@/"$storage_port"}
    printf '%s\n' "$yaml" >"$state/conf/cassandra.yaml.tmp"
    mv -f "$state/conf/cassandra.yaml.tmp" "$state/conf/cassandra.yaml"
    cp -f "$files/logback.xml" "$state/conf/logback.xml"
}

jvm_args() {
    jvm=(
        # conf/jvm-server.options (without AlwaysPreTouch and UseNUMA)
        -ea -da:net.openhft...
        -Xss256k
        -XX:+UseG1GC
        # Short young pauses on a small heap: G1's default 200 ms goal let single pauses of
        # 100-160 ms stall every request in flight; with these, pauses stayed under 75 ms and
        # the submissions bench's p99 under 50 ms (README, "The job service").
        -XX:MaxGCPauseMillis=20
        -XX:G1HeapRegionSize=4m
        -XX:+ParallelRefProcEnabled
        -XX:+PerfDisableSharedMem
        -XX:+ExitOnOutOfMemoryError
        "-XX:ErrorFile=$logdir/hs_err_%p.log"
        "-Xms$heap" "-Xmx$heap"
        # conf/jvm17-server.options
        -Djdk.attach.allowAttachSelf=true
        --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
        --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
        --add-exports java.management/com.sun.jmx.remote.security=ALL-UNNAMED
        --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
        --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
        --add-exports java.sql/java.sql=ALL-UNNAMED
        --add-exports java.base/java.lang.ref=ALL-UNNAMED
        --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
        --add-opens java.base/java.lang.module=ALL-UNNAMED
        --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
        --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
        --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
        --add-opens java.base/jdk.internal.math=ALL-UNNAMED
        --add-opens java.base/jdk.internal.module=ALL-UNNAMED
        --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
        --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
        --add-opens java.base/sun.nio.ch=ALL-UNNAMED
        --add-opens java.base/java.io=ALL-UNNAMED
        --add-opens java.base/java.lang.reflect=ALL-UNNAMED
        --add-opens java.base/java.lang=ALL-UNNAMED
        --add-opens java.base/java.util=ALL-UNNAMED
        --add-opens java.base/java.nio=ALL-UNNAMED
        -Dio.netty.tryReflectionSetAccessible=true
        -Dio.netty.allocator.useCacheForAllThreads=true
        -Dio.netty.allocator.maxOrder=11
        # what bin/cassandra and cassandra-env.sh would set
        "-Dcassandra.config=file://$state/conf/cassandra.yaml"
        -Dcassandra-foreground=yes
        "-Dcassandra.storagedir=$state"
        "-Dcassandra.logdir=$logdir"
        "-Dcassandra.triggers_dir=$state/triggers"
        "-Dlogback.configurationFile=$state/conf/logback.xml"
        "-Djava.io.tmpdir=$state/tmp"
        "-Djna.tmpdir=$state/tmp"
        -Djava.net.preferIPv4Stack=true
        -Dchronicle.analytics.disable=true
        -Dchronicle.announcer.disable=true
        # a single throw-away node: start fast
        -Dcassandra.skip_wait_for_gossip_to_settle=0
        -Dcassandra.superuser_setup_delay_ms=0
        -Dcassandra.shutdown_announce_in_ms=0 # no peers to tell: saves 2 s on stop
    )
    if [[ -n ${OMNI_CASSANDRA_JVM_OPTS:-} ]]; then
        local extra
        read -r -a extra <<<"$OMNI_CASSANDRA_JVM_OPTS"
        jvm+=("${extra[@]}")
    fi
}

launch() {
    local jvm prefix=()
    jvm_args
    # Cassandra calls mlockall() at start. A normal user's 8 MiB memlock limit
    # makes it fail harmlessly; root (CAP_IPC_LOCK) would lock the whole heap
    # into RAM (RSS ~1.5 GiB instead of ~0.6). Drop that capability for the JVM
    # unless OMNI_CASSANDRA_MLOCK=1.
    if [[ ${OMNI_CASSANDRA_MLOCK:-0} != 1 && $(id -u) == 0 ]] && command -v setpriv >/dev/null 2>&1 &&
        setpriv --bounding-set -ipc_lock -- true 2>/dev/null; then
        prefix=(setpriv --bounding-set -ipc_lock --)
    fi
    touch "$logdir/system.log" "$logdir/stdout.log"
    mark_logs
    printf '\n=== %s start: Cassandra %s on %s ===\n' "$(date -Is)" "$version" "$endpoint" >>"$logdir/stdout.log"
    spawn "$state" "$pidfile" "$logdir/stdout.log" \
        "${prefix[@]}" "$java_bin" "${jvm[@]}" \
        -cp "$state/conf:$lib/*" org.apache.cassandra.service.CassandraDaemon ||
        die "the node did not start (no pid file); see $logdir/stdout.log"
    echo "$endpoint" >"$endpoint_file"
}

# --- commands -------------------------------------------------------------------

cmd_start() {
    need_python
    if [[ -n ${OMNI_TEST_CASSANDRA:-} ]]; then
        log "OMNI_TEST_CASSANDRA is set: using $OMNI_TEST_CASSANDRA, starting nothing"
        wait_for_cql "$OMNI_TEST_CASSANDRA"
        echo "$OMNI_TEST_CASSANDRA"
        return
    fi
    lock cassandra
    local pid running_at
    if pid=$(node_pid); then
        running_at=$(cat "$endpoint_file" 2>/dev/null || echo "$endpoint")
        [[ $running_at == "$endpoint" ]] ||
            die "the test node already runs on $running_at (pid $pid), not $endpoint: stop it first"
        if answers "$endpoint"; then
            log "reusing the running node (pid $pid)"
        else
            log "the node (pid $pid) is starting; waiting for CQL"
            wait_for_cql "$endpoint" "$pid"
        fi
        echo "$endpoint"
        return
    fi
    rm -f "$pidfile"
    need_java
    local p i
    for p in "$native_port" "$storage_port"; do
        # A node killed a moment ago may still be closing its sockets.
        for ((i = 0; i < 20; i++)); do
            port_in_use "$p" || break
            sleep 0.5
        done
        if port_in_use "$p"; then
            die "port 127.0.0.1:$p is taken by another process: stop it, set OMNI_CASSANDRA_PORT / OMNI_CASSANDRA_STORAGE_PORT, or point OMNI_TEST_CASSANDRA at a running node"
        fi
    done
    install
    write_config
    local t0=$EPOCHREALTIME
    launch
    pid=$(<"$pidfile")
    log "started Cassandra $version (pid $pid, heap $heap, state $state); waiting for CQL on $endpoint"
    wait_for_cql "$endpoint" "$pid"
    log "ready in $(since "$t0") s"
    echo "$endpoint"
}

cmd_stop() { stop_service node_pid; }

cmd_kill() { kill_service node_pid; }

cmd_status() {
    local pid
    if pid=$(node_pid); then
        local at
        at=$(cat "$endpoint_file" 2>/dev/null || echo "$endpoint")
        if command -v python3 >/dev/null 2>&1 && answers "$at"; then
            echo "running: pid $pid, $at answers CQL"
        else
            echo "running: pid $pid, $at does not answer CQL (yet)"
        fi
        return 0
    fi
    echo "not running"
    return 3
}

cmd_logs() {
    echo "$logdir/system.log" >&2
    [[ -f $logdir/system.log ]] || die "no log yet: $logdir/system.log"
    if [[ ${1:-} == -f ]]; then
        exec tail -n 50 -f "$logdir/system.log"
    fi
    tail -n 50 "$logdir/system.log"
}

cmd_env() {
    if [[ -n ${OMNI_TEST_CASSANDRA:-} ]]; then
        echo "OMNI_TEST_CASSANDRA=$OMNI_TEST_CASSANDRA"
    else
        echo "OMNI_TEST_CASSANDRA=$(cat "$endpoint_file" 2>/dev/null || echo "$endpoint")"
    fi
}

cmd_cql() {
    [[ $# -eq 1 ]] || die "usage: cassandra.sh cql 'CQL STATEMENT'"
    need_python
    local at=${OMNI_TEST_CASSANDRA:-$(cat "$endpoint_file" 2>/dev/null || echo "$endpoint")}
    python3 "$files/cqlprobe.py" "$at" "$1"
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
    stop) lock cassandra && cmd_stop ;;
    kill) lock cassandra && cmd_kill ;;
    status) cmd_status ;;
    logs) cmd_logs "$@" ;;
    env) cmd_env ;;
    cql) cmd_cql "$@" ;;
    reset) lock cassandra && cmd_reset ;;
    -h | --help | help) usage ;;
    *)
        log "unknown command: $cmd"
        usage
        ;;
    esac
}

main "$@"
