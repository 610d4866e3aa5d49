#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine (controller and compute node = localhost),
# for trying `aelab-train -m hydra/launcher=slurm ...` and for the tests in tests/test_slurm.py.
#
#   scripts/slurm/start.sh            # installs Debian's SLURM + munge if missing (needs root),
#                                     # starts munged, slurmctld, slurmd; waits for `sinfo` idle
#   export SLURM_CONF=/tmp/aelab-slurm/slurm.conf   # what the last line it prints says
#
# Idempotent: a second call finds the cluster answering and does nothing. Everything it writes
# (slurm.conf, munge key and socket, state, spool, logs, pid files) lives in $AELAB_SLURM_DIR
# (default /tmp/aelab-slurm); /etc/slurm/slurm.conf is linked to it only when that path is free,
# so that plain `sinfo` works. scripts/slurm/stop.sh undoes it.
# Exit status: 0 running, 3 cannot run here (not root, or SLURM missing and apt-get failed), 1 other.
set -euo pipefail

STATE=${AELAB_SLURM_DIR:-/tmp/aelab-slurm}
CONF=$STATE/slurm.conf
HOST=$(hostname -s)
export SLURM_CONF=$CONF

say() { echo "slurm/start: $*" >&2; }

node_state() { sinfo -h -n "$HOST" -o %t 2>/dev/null | head -n1 || true; }

install_slurm() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
        command -v sbatch >/dev/null && command -v munged >/dev/null && return 0
    if ! command -v apt-get >/dev/null; then
        say "SLURM is not installed and there is no apt-get to install it"
        exit 3
    fi
    say "installing slurmctld slurmd slurm-client munge (apt-get)"
    if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        slurmctld slurmd slurm-client munge; } >"${TMPDIR:-/tmp}/aelab-slurm-apt.log" 2>&1; then
        tail -n 20 "${TMPDIR:-/tmp}/aelab-slurm-apt.log" >&2
        say "apt-get failed (log: ${TMPDIR:-/tmp}/aelab-slurm-apt.log)"
        exit 3
    fi
}

running() { # pid file names a live process
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

write_conf() {
    local cpus mem
    cpus=$(nproc)
    mem=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo) # a bit under the total, MB
    cat >"$CONF.tmp" <<EOF
# Written by scripts/slurm/start.sh: a one-node cluster on $HOST for aelab's tests.
ClusterName=aelab
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also sets how long a requeued job waits before it may start again (default 120 s)
AuthInfo=socket=$STATE/munge/munge.socket,cred_expire=10
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldPort=${AELAB_SLURMCTLD_PORT:-6817}
SlurmdPort=${AELAB_SLURMD_PORT:-6818}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=600
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.tmp" "$CONF"
}

start_munge() {
    running "$STATE/munge/munged.pid" && return 0
    [[ -s $STATE/munge/munge.key ]] || mungekey -c -k "$STATE/munge/munge.key"
    chmod 600 "$STATE/munge/munge.key"
    # --force: the state folder may sit in /tmp, whose permissions munged would otherwise refuse
    munged --force --key-file="$STATE/munge/munge.key" --socket="$STATE/munge/munge.socket" \
        --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/log/munged.log" \
        --seed-file="$STATE/munge/munged.seed"
}

link_etc_conf() { # plain `sinfo` (no SLURM_CONF) finds this cluster, unless /etc is taken
    local etc=/etc/slurm/slurm.conf
    if [[ -w /etc/slurm && ! -e $etc && ! -L $etc ]]; then
        ln -s "$CONF" "$etc"
    fi
}

main() {
    if [[ -s $CONF ]] && [[ $(node_state) =~ ^(idle|mix|alloc) ]]; then
        say "already running ($(node_state)) on $HOST"
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    if [[ $(id -u) -ne 0 ]]; then
        say "starting slurmd and slurmctld (SlurmUser=root) needs root"
        exit 3
    fi
    install_slurm
    mkdir -p "$STATE"/{munge,ctld,spool,log}
    chmod 700 "$STATE/munge"
    running "$STATE/slurmctld.pid" || running "$STATE/slurmd.pid" || write_conf
    start_munge
    # -c: a fresh queue; jobs of an earlier session must not come back and hold the CPUs
    running "$STATE/slurmctld.pid" || slurmctld -c -f "$CONF"
    running "$STATE/slurmd.pid" || slurmd -f "$CONF"
    link_etc_conf
    local state=""
    for _ in $(seq 60); do
        state=$(node_state)
        [[ $state =~ ^(idle|mix|alloc) ]] && break
        # a node that was down when slurmctld last saw it comes back on request
        if [[ $state =~ ^(down|drain) ]]; then
            scontrol update nodename="$HOST" state=resume 2>/dev/null || true
        fi
        sleep 0.5
    done
    if ! [[ $state =~ ^(idle|mix|alloc) ]]; then
        say "the node did not become idle (state '${state}'); logs in $STATE/log"
        tail -n 5 "$STATE"/log/*.log >&2 || true
        exit 1
    fi
    say "running on $HOST: $(sinfo -h -o '%P %a %D %t %c CPUs')"
    echo "export SLURM_CONF=$CONF"
}

main "$@"
