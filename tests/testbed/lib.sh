# What the testbed scripts (cassandra.sh, kubernetes.sh, s3.sh) share, sourced by each
# after `set -euo pipefail`: messages, the cache, pid files and background
# processes, stopping them, and the lock that keeps two runs of a script apart.
# It defines functions and `cache`, and runs nothing.
#
# A script names itself in its messages by its file name (cassandra.sh: ...).
# Its usage is its header comment, from line 2 down to `set -euo pipefail`.

# Where downloads, builds and the services' state live.
cache=${OMNI_TESTBED_CACHE:-$HOME/.cache/omni-testbed}

# --- messages -------------------------------------------------------------------

log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }

die() {
    log "error: $*"
    exit 1
}

# Seconds since $1 (an $EPOCHREALTIME), with one decimal.
since() {
    local now=${EPOCHREALTIME/[,.]/} then=${1/[,.]/} ds
    ds=$(((now - then) / 100000))
    printf '%d.%d' $((ds / 10)) $((ds % 10))
}

# The script's header comment, then exit 2.
usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2
    exit 2
}

# Prints what file $1 grew by since it was $2 bytes long (a launch's own lines),
# its last $3 lines, under a header; nothing when the file is empty.
tail_since() {
    local f=$1 offset=$2 n=$3
    [[ -s $f ]] || return 0
    printf '==> %s (this start, last %d lines) <==\n' "$f" "$n" >&2
    tail -c +"$((offset + 1))" "$f" | tail -n "$n" >&2
}

# --- the lock -------------------------------------------------------------------

# Holds $cache/$1.lock (on fd 9) until the script exits, waiting for another
# run of the script that holds it.
lock() {
    mkdir -p "$cache"
    exec 9>"$cache/$1.lock"
    if ! flock -n 9; then
        log "waiting for another $1.sh (lock $cache/$1.lock)"
        flock 9
    fi
}

# --- the cache ------------------------------------------------------------------

# cache_tmp_dir NAME: sets cache_tmp to a fresh directory beside the cache
# entry NAME (whose leftovers of an interrupted run it deletes), removed on
# exit unless cache_commit renamed it into place.
cache_tmp_dir() {
    mkdir -p "$cache"
    rm -rf "$cache/.$1".* # leftovers of an interrupted download or build
    cache_tmp=$(mktemp -d "$cache/.$1.XXXXXX")
    # shellcheck disable=SC2064 # expand $cache_tmp now
    trap "rm -rf '$cache_tmp'" EXIT
}

# cache_commit DEST: renames cache_tmp to DEST, replacing what is there (an
# entry is only ever renamed into place complete: DEST is never half-written).
cache_commit() {
    chmod 755 "$cache_tmp"
    rm -rf "$1"
    mv -T "$cache_tmp" "$1"
    trap - EXIT
}

# Runs "$@" at the lowest CPU priority: builds must not slow the machine's tests.
low_priority() { nice -n 19 "$@"; }

# --- processes ------------------------------------------------------------------

# True while process $1 exists. A zombie counts as gone only once all its
# threads are: after SIGKILL a process's main thread turns Z while the others
# are still tearing down (and may still hold its listening sockets).
alive() {
    local st tasks
    [[ -r /proc/$1/stat ]] || return 1
    st=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $st ]] || return 1
    if [[ $st == Z || $st == X ]]; then
        tasks=$(find "/proc/$1/task" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
        ((tasks > 1)) || return 1
    fi
    return 0
}

# Prints the pid in pid file $1 and succeeds when that process runs. The caller
# checks that it is still its process (cmdline_of), not a recycled pid.
pid_from() {
    local pid
    [[ -f $1 ]] || return 1
    pid=$(<"$1")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    alive "$pid" || return 1
    echo "$pid"
}

# Prints the command line of process $1, its arguments joined by spaces (and
# one after the last).
cmdline_of() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null; }

# spawn DIR PIDFILE LOGFILE COMMAND...: runs COMMAND in DIR in the background,
# in a session of its own (setsid + nohup: it outlives the calling shell and
# its terminal), appending its output to LOGFILE; the pid goes to PIDFILE,
# written by the inner bash itself (COMMAND's pid, after exec) even if setsid
# forks. fd 9 (the lock) does not leak into it. Fails when no pid file
# appeared within 10 s.
spawn() {
    local dir=$1 pidfile=$2 logfile=$3 i
    shift 3
    rm -f "$pidfile"
    (
        cd "$dir"
        # shellcheck disable=SC2016 # $$, $0 and $@ belong to the inner bash
        nohup setsid bash -c 'echo $$ >"$0.tmp" && mv -f "$0.tmp" "$0" && exec "$@"' \
            "$pidfile" "$@" </dev/null >>"$logfile" 2>&1 9>&- &
    )
    for ((i = 0; i < 100; i++)); do
        [[ -s $pidfile ]] && return 0
        sleep 0.1
    done
    [[ -s $pidfile ]]
}

# True when something listens on 127.0.0.1:$1.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Sends signal $1 to pid $3 and waits up to $2 s for it to go.
signal_and_wait() {
    local sig=$1 timeout=$2 pid=$3 waited=0
    kill "-$sig" "$pid" 2>/dev/null || true
    while alive "$pid"; do
        ((waited >= timeout * 10)) && return 1
        sleep 0.1
        waited=$((waited + 1))
    done
    return 0
}

# terminate WHAT PID TIMEOUT: SIGTERM, then SIGKILL after TIMEOUT s; dies
# when the process survives that too. WHAT names it in the messages.
terminate() {
    local what=$1 pid=$2 timeout=$3
    if ! signal_and_wait TERM "$timeout" "$pid"; then
        log "$what still runs after $timeout s: SIGKILL"
        signal_and_wait KILL 10 "$pid" || die "$what survived SIGKILL"
    fi
}

# stop_service PIDFN: stops the one process a script runs, whose pid the script's
# function PIDFN prints (failing when it does not run): SIGTERM, then SIGKILL after
# $stop_timeout s; its $pidfile goes either way.
stop_service() {
    local pid
    if ! pid=$("$1"); then
        rm -f "$pidfile"
        log "not running"
        return 0
    fi
    log "stopping pid $pid (SIGTERM, SIGKILL after $stop_timeout s)"
    terminate "pid $pid" "$pid" "$stop_timeout"
    rm -f "$pidfile"
    log "stopped"
}

# kill_service PIDFN: as stop_service, with SIGKILL at once (a crash, for the tests).
kill_service() {
    local pid
    if ! pid=$("$1"); then
        rm -f "$pidfile"
        log "not running"
        return 0
    fi
    signal_and_wait KILL 10 "$pid" || die "pid $pid survived SIGKILL"
    rm -f "$pidfile"
    log "killed pid $pid (SIGKILL)"
}
