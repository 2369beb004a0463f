#!/usr/bin/env bash
# A one-node SLURM cluster on this machine (127.0.0.1), for the cluster tests and for trying the SLURM launcher.
#
#   scripts/slurm_local.sh install   # Debian packages slurmctld, slurmd, slurm-client, munge (root, apt-get)
#   scripts/slurm_local.sh start     # munged (if none answers), slurmctld, slurmd; waits until the node is idle
#   eval "$(scripts/slurm_local.sh env)"   # SLURM_CONF for sbatch/srun/squeue/scontrol in this shell
#   scripts/slurm_local.sh stop      # stops what start started
#
# Needs root (slurmd runs jobs as their user, SlurmUser=root). Everything it writes is under $SLURM_LOCAL_DIR
# (default /tmp/tvlt-slurm): slurm.conf, state, spool, pid and log files. /etc/slurm is not touched: clients find
# the cluster through SLURM_CONF, which jobs inherit (sbatch exports the environment).
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"  # slurmctld, slurmd and munged live there; not every root PATH has it

DIR=${SLURM_LOCAL_DIR:-/tmp/tvlt-slurm}
CTLD_PORT=${SLURM_LOCAL_CTLD_PORT:-16817}
SLURMD_PORT=${SLURM_LOCAL_SLURMD_PORT:-16818}
CONF=$DIR/slurm.conf
PACKAGES="slurmctld slurmd slurm-client munge"

die() { echo "slurm_local.sh: $*" >&2; exit 1; }

need_tools() {
    local missing=()
    for tool in slurmctld slurmd srun sbatch scontrol sinfo munged munge; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    if ((${#missing[@]})); then
        die "missing ${missing[*]}: install the Debian packages ($PACKAGES), e.g. as root: $0 install"
    fi
}

install() {
    [[ $EUID -eq 0 ]] || die "install needs root (apt-get install -y $PACKAGES)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $PACKAGES >/dev/null
    echo "installed $PACKAGES"
}

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    if munge_ok; then return; fi
    [[ -s /etc/munge/munge.key ]] || {
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    }
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    # munged runs as munge, which may not reach $DIR (e.g. under a mode-700 folder): its pid file goes to /run/munge,
    # and a copy in $DIR records that this script started it
    rm -f /run/munge/slurm_local.pid
    runuser -u munge -- munged --pid-file=/run/munge/slurm_local.pid || die "munged did not start (see /var/log/munge)"
    cp /run/munge/slurm_local.pid "$DIR/munged.pid"
    for _ in $(seq 50); do munge_ok && return; sleep 0.2; done
    die "munged does not answer"
}

write_conf() {
    local host cpus mem
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    mkdir -p "$DIR/state" "$DIR/spool"
    cat >"$CONF" <<EOF
# written by scripts/slurm_local.sh: a one-node cluster on 127.0.0.1
ClusterName=tvlt-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
# a requeued or cancelled job's processes get SIGKILL 5 s after SIGTERM (default 30 s)
KillWait=5
MinJobAge=300
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

pid_alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
    [[ $EUID -eq 0 ]] || die "start needs root (SlurmUser=root, slurmd starts jobs as their user)"
    need_tools
    mkdir -p "$DIR"
    if pid_alive "$DIR/slurmctld.pid"; then die "already running (stop it first: $0 stop)"; fi
    write_conf
    start_munge
    rm -rf "$DIR/state"/* "$DIR/spool"/*
    slurmctld -f "$CONF" || die "slurmctld did not start: $(tail -5 "$DIR/slurmctld.log" 2>/dev/null)"
    slurmd -f "$CONF" || die "slurmd did not start: $(tail -5 "$DIR/slurmd.log" 2>/dev/null)"
    export SLURM_CONF=$CONF
    for _ in $(seq 120); do
        if [[ $(sinfo -h -N -o %t 2>/dev/null) == idle ]]; then
            echo "SLURM up: node $(hostname -s), $(nproc) CPUs, partition local; export SLURM_CONF=$CONF"
            return
        fi
        sleep 0.5
    done
    sinfo -N -l >&2 || true
    tail -20 "$DIR/slurmctld.log" "$DIR/slurmd.log" >&2 || true
    die "the node did not become idle within 60 s"
}

stop_pid() {  # stop_pid <pid file> <name>: SIGTERM, then SIGKILL after 10 s
    local file=$1 pid
    pid_alive "$file" || return 0
    pid=$(cat "$file")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
    echo "slurm_local.sh: $2 ($pid) still running after 10 s: SIGKILL" >&2
    kill -9 "$pid" 2>/dev/null || true
}

stop() {
    if [[ -s $CONF ]] && pid_alive "$DIR/slurmctld.pid"; then
        SLURM_CONF=$CONF scancel --quiet --full --partition=local 2>/dev/null || true
    fi
    stop_pid "$DIR/slurmd.pid" slurmd
    stop_pid "$DIR/slurmctld.pid" slurmctld
    stop_pid "$DIR/munged.pid" munged  # only a munged this script started
    echo "SLURM stopped"
}

case ${1:-} in
    install) install ;;
    start) start ;;
    stop) stop ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) die "usage: $0 install|start|stop|env" ;;
esac
