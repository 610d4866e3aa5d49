#!/usr/bin/env bash
# Stop the one-node SLURM cluster that scripts/slurm/start.sh started: cancel its jobs and wait
# for them to end, then stop slurmd, slurmctld, munged (by the pids in their pid files, nothing
# else) and remove the /etc/slurm/slurm.conf link if it is ours. Idempotent. `--purge` also
# deletes the state folder (queue, logs, munge key).
set -euo pipefail

STATE=${AELAB_SLURM_DIR:-/tmp/aelab-slurm}

stop_pid_file() {
    local file=$1 pid
    [[ -s $file ]] || return 0
    pid=$(cat "$file")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$file"
}

drain() { # end the jobs first: slurmd leaves its job steps running when it stops
    export SLURM_CONF=$STATE/slurm.conf
    [[ -s $SLURM_CONF && -s $STATE/slurmctld.pid ]] || return 0
    local jobs
    jobs=$(squeue -h -o %A 2>/dev/null || true)
    [[ -z $jobs ]] && return 0
    # shellcheck disable=SC2086 # one argument per job id
    scancel $jobs 2>/dev/null || true
    for _ in $(seq 60); do # up to KillWait (10 s) and a bit
        [[ -z $(squeue -h -o %A 2>/dev/null || true) ]] && return 0
        sleep 0.5
    done
    echo "slurm/stop: jobs still there: $(squeue -h 2>/dev/null | tr '\n' ';')" >&2
}

drain
stop_pid_file "$STATE/slurmd.pid"
stop_pid_file "$STATE/slurmctld.pid"
stop_pid_file "$STATE/munge/munged.pid"
if [[ -L /etc/slurm/slurm.conf && $(readlink /etc/slurm/slurm.conf) == "$STATE/slurm.conf" ]]; then
    rm -f /etc/slurm/slurm.conf
fi
if [[ ${1:-} == --purge ]]; then
    rm -rf "$STATE"
fi
echo "slurm/stop: stopped (state in $STATE)" >&2
