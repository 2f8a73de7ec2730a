#!/usr/bin/env bash
# A one-node Slurm cluster on this machine for trying tf-crnn's Slurm support (tests/test_slurm.py runs it):
#
#   scripts/slurm/local_cluster.sh DIR COMMAND...     e.g.  scripts/slurm/local_cluster.sh /tmp/slurm srun -n 2 hostname
#
# Starts munged, slurmctld and slurmd (Debian's `slurm-wlm munge`; run as root) from a slurm.conf written into DIR
# (state, spool, logs and the munge key there too), waits until the node is idle, runs COMMAND with SLURM_CONF set,
# stops the daemons (also when COMMAND fails) and exits with COMMAND's status. The node is this machine under its
# short host name with two CPUs (TF_CRNN_SLURM_CPUS), every daemon runs in the foreground of this script.
#
# Run it inside a network namespace of its own (`unshare --net --fork scripts/slurm/local_cluster.sh ...`, which
# is what the test does) and the daemons and the training's gRPC ports exist on that namespace's loopback only:
# Slurm binds its ports on every interface and has no setting to keep them on 127.0.0.1. The script brings the
# namespace's loopback up itself and gives it a second address, 127.0.0.2: Slurm asks getaddrinfo for IPv4
# addresses with AI_ADDRCONFIG, which finds none where 127.0.0.1 is the only one (glibc skips exactly that one).
set -euo pipefail
dir=$(realpath -m "$1"); shift
mkdir -p "$dir"/{state,spool,log,munge}
node=$(hostname -s)
cpus=${TF_CRNN_SLURM_CPUS:-2}
if ! ip -o link show lo | grep -q "[<,]UP[,>]"; then ip link set lo up; fi  # a fresh network namespace
if [ -z "$(ip -o -4 addr show | grep -v ' 127\.0\.0\.1/')" ]; then ip addr add 127.0.0.2/32 dev lo; fi

# munge authenticates Slurm's messages: a fresh key, a socket of our own (not the system's munged).
mungekey --create --keyfile="$dir/munge/munge.key" --force 2>/dev/null \
    || dd if=/dev/urandom bs=1 count=1024 of="$dir/munge/munge.key" status=none
chmod 600 "$dir/munge/munge.key"
munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.sock" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed"

cat > "$dir/slurm.conf" <<CONF
ClusterName=tfcrnn
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.sock
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
SlurmdParameters=config_overrides
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$dir/slurm.conf"

pids=()
stop() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    [ -f "$dir/munge/munged.pid" ] && kill "$(cat "$dir/munge/munged.pid")" 2>/dev/null || true
}
trap stop EXIT
slurmctld -D -i -f "$SLURM_CONF" >"$dir/log/slurmctld.out" 2>&1 & pids+=($!)
slurmd -D -f "$SLURM_CONF" >"$dir/log/slurmd.out" 2>&1 & pids+=($!)
for _ in $(seq 60); do
    [ "$(sinfo -h -N -o %t 2>/dev/null)" = idle ] && break
    sleep 1
done
if [ "$(sinfo -h -N -o %t 2>/dev/null)" != idle ]; then
    echo "the Slurm node did not become idle in 60 s (logs in $dir/log):" >&2
    tail -n 20 "$dir"/log/slurmctld.log "$dir"/log/slurmd.log >&2 || true
    exit 3
fi
set +e
"$@"
status=$?
set -e
exit $status
