#!/bin/sh
# Hourglass's Slurm Epilog: stops the Podman containers of a job Slurm has ended.
#
# Hourglass starts a Slurm pool's containers in the job's allocation, labelled
# hourglass.slurm-job=<job id> (a heterogeneous job's: its leader's id). They live in
# Podman's cgroups, outside the job's, so Slurm ending the job (time limit, scancel, a
# node failure) does not stop them; this script does, before the node leaves COMPLETING
# and the job's chips go to another job.
#
# Install it as root on every compute node (owned by root, writable by root alone), and in
# slurm.conf:
#     Epilog=/path/slurm_epilog.sh
#     KillWait=30    (above the containers' stop timeout, STOP_TIMEOUT below)
#     and PrologEpilogTimeout unset (no limit) or above it too
# It uses the node's root Podman, or the Podman service HOURGLASS_EPILOG_PODMAN_URL names
# when that is set in its environment (e.g. by a wrapper that exports it and execs this).
#
# It always exits 0: an Epilog that fails drains the node.

set -u
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
STOP_TIMEOUT=10

# A heterogeneous job's Epilog runs per component, SLURM_HET_JOB_ID naming the leader.
JOB="${SLURM_HET_JOB_ID:-${SLURM_JOB_ID:-}}"
case "$JOB" in
    '' | *[!0-9]*)
        echo "hourglass epilog: no job id to clean up after" >&2
        exit 0
        ;;
esac

run_podman() {
    if [ -n "${HOURGLASS_EPILOG_PODMAN_URL:-}" ]; then
        podman --url "$HOURGLASS_EPILOG_PODMAN_URL" "$@"
    else
        podman "$@"
    fi
}

# Stopped, not removed: an ended replica's container keeps its logs for the renter until
# Hourglass removes it with its task, as on any node.
if ! containers=$(run_podman ps -q --filter "label=hourglass.slurm-job=$JOB"); then
    echo "hourglass epilog: job $JOB: could not list its containers" >&2
    exit 0
fi
for container in $containers; do
    if run_podman stop -t "$STOP_TIMEOUT" "$container" >/dev/null; then
        echo "hourglass epilog: job $JOB: stopped container $container" >&2
    else
        echo "hourglass epilog: job $JOB: could not stop container $container" >&2
    fi
done
exit 0
