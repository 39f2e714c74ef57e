#!/usr/bin/env bash
# A single-node SLURM on localhost, for testing the cluster profile (tests/test_slurm.py).
#
#   scripts/local-slurm.sh start     # writes slurm.conf to $LOCAL_SLURM_DIR, starts munged,
#                                    # slurmctld and slurmd, waits until the node is idle
#   eval "$(scripts/local-slurm.sh env)"   # export SLURM_CONF for sbatch/squeue/sinfo
#   scripts/local-slurm.sh status    # sinfo of the local cluster (exit 1 when it is down)
#   scripts/local-slurm.sh stop      # stops the daemons this script started
#
# Installs nothing unless asked: `scripts/local-slurm.sh install` runs
# `apt-get install -y slurm-wlm munge` (Debian/Ubuntu, as root).
# Needs root (slurmd runs jobs as the submitting user). Accounting is disabled, so use the
# SLURM executor with `--slurm-no-account --slurm-status-command squeue`.
#
# Environment: LOCAL_SLURM_DIR (default /tmp/alchemy-local-slurm), LOCAL_SLURM_PORT
# (slurmctld port, default 6817; slurmd uses PORT+1), LOCAL_SLURM_PARTITION (default debug),
# LOCAL_SLURM_TIMEOUT (seconds to wait for the node, default 60).
set -euo pipefail

DIR="${LOCAL_SLURM_DIR:-/tmp/alchemy-local-slurm}"
PORT="${LOCAL_SLURM_PORT:-6817}"
PARTITION="${LOCAL_SLURM_PARTITION:-debug}"
TIMEOUT="${LOCAL_SLURM_TIMEOUT:-60}"
CONF="$DIR/slurm.conf"
NODE="$(hostname -s)"

die() { echo "local-slurm: $*" >&2; exit 1; }

need() {
    for bin in "$@"; do
        command -v "$bin" >/dev/null 2>&1 || die "'$bin' not found; install SLURM with: $0 install"
    done
}

write_conf() {
    local cpus mem_mb
    cpus="$(nproc)"
    # leave 512 MB to the system; SLURM refuses jobs asking for more than RealMemory
    mem_mb="$(awk '/MemTotal/ {printf "%d", $2 / 1024 - 512}' /proc/meminfo)"
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
    cat >"$CONF" <<EOF
# Written by scripts/local-slurm.sh: a single-node cluster on localhost, no accounting.
ClusterName=alchemy-local
# configless: slurmd fetches this file from slurmctld and caches it under /run/slurm/conf,
# where SLURM commands inside jobs find it (Snakemake's job step drops SLURM_CONF).
SlurmctldParameters=enable_configless
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
AuthType=auth/munge
CryptoType=crypto/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=600
InactiveLimit=0
KillWait=5
Waittime=0
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        return 0  # a munged is already answering
    fi
    [ -s /etc/munge/munge.key ] || die "/etc/munge/munge.key missing (create it with mungekey or create-munge-key)"
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    if id munge >/dev/null 2>&1; then
        chown munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
        runuser -u munge -- /usr/sbin/munged
    else
        /usr/sbin/munged --force
    fi
    touch "$DIR/munged.started-by-us"
    for _ in $(seq 1 50); do
        munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "munged did not start"
}

node_state() {
    SLURM_CONF="$CONF" sinfo -h -N -o '%t' 2>/dev/null | head -n1
}

cmd_start() {
    need slurmctld slurmd sinfo munged munge unmunge
    [ "$(id -u)" = 0 ] || die "must run as root (slurmd starts jobs as the submitting user)"
    if [ -f "$DIR/slurmctld.pid" ] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null; then
        echo "local-slurm: already running (SLURM_CONF=$CONF)"
        return 0
    fi
    write_conf
    start_munge
    SLURM_CONF="$CONF" /usr/sbin/slurmctld -i -f "$CONF"   # -i: ignore stale state
    /usr/sbin/slurmd --conf-server "127.0.0.1:$PORT"
    local waited=0 state=""
    while [ "$waited" -lt $((TIMEOUT * 2)) ]; do
        state="$(node_state || true)"
        case "$state" in
            idle|mix|alloc) echo "local-slurm: node $NODE $state; export SLURM_CONF=$CONF"; return 0 ;;
            down*|drain*) SLURM_CONF="$CONF" scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
        esac
        sleep 0.5
        waited=$((waited + 1))
    done
    echo "--- slurmctld.log" >&2; tail -n 20 "$DIR/log/slurmctld.log" >&2 || true
    echo "--- slurmd.log" >&2; tail -n 20 "$DIR/log/slurmd.log" >&2 || true
    die "node did not become idle within ${TIMEOUT}s (state: '${state:-unknown}')"
}

stop_pidfile() {
    local pidfile="$1" pid
    [ -f "$pidfile" ] || return 0
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$pidfile"
}

cmd_stop() {
    stop_pidfile "$DIR/slurmd.pid"
    stop_pidfile "$DIR/slurmctld.pid"
    if [ -f "$DIR/munged.started-by-us" ]; then
        stop_pidfile /run/munge/munged.pid
        rm -f "$DIR/munged.started-by-us"
    fi
    echo "local-slurm: stopped"
}

cmd_status() {
    [ -f "$CONF" ] || die "not started (no $CONF)"
    SLURM_CONF="$CONF" sinfo || exit 1
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    install)
        [ "$(id -u)" = 0 ] || die "install needs root"
        DEBIAN_FRONTEND=noninteractive apt-get install -y slurm-wlm munge ;;
    *) echo "usage: $0 start|stop|status|env|install" >&2; exit 2 ;;
esac
