#!/usr/bin/env bash
# A one-node Slurm for the tests: munged + slurmctld + slurmd inside a network namespace that
# this script makes (a veth pair on a private /30), all state under one directory. The runner
# on the host reaches slurmctld over the veth as a real login node would; jobs run under the
# slurmd in the namespace and share the filesystem. Needs root and the Debian packages
# slurm-wlm, munge and iproute2.
#
#   tests/services/slurm.sh start DIR   # prints SLURM_CONF=DIR/slurm.conf when the node is up
#   tests/services/slurm.sh stop DIR    # stops the daemons by the PIDs in DIR, deletes the netns
#
# Outside CI, when the namespace cannot be made (no `ip`, no CAP_NET_ADMIN), the daemons run
# on the host bound to 127.0.0.1 instead, with a message; under CI=true that fails loudly.
set -euo pipefail
action=$1
dir=$(realpath -m "$2")

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

in_ci() {
    case "${CI:-}" in 1 | true | TRUE | True | yes) return 0 ;; *) return 1 ;; esac
}

# A /30 in 10.254.0.0/16 that no route on this host covers yet (prints "HOST_IP NS_IP").
free_subnet() {
    ip -4 route show table all | python3 -c '
import ipaddress, random, sys
taken = []
for line in sys.stdin:
    word = line.split()[0] if line.split() else ""
    if word in ("local", "broadcast", "unreachable", "prohibit", "blackhole"):
        word = line.split()[1]
    if word in ("default", "") or word[0].isalpha():
        continue  # a default route covers everything: it does not make a /30 clash
    try:
        taken.append(ipaddress.ip_network(word, strict=False))
    except ValueError:
        pass
for _ in range(200):
    net = ipaddress.ip_network(f"10.254.{random.randrange(256)}.{4 * random.randrange(64)}/30")
    if not any(net.overlaps(t) for t in taken):
        hosts = list(net.hosts())
        print(hosts[0], hosts[1])
        sys.exit(0)
sys.exit("no free /30 in 10.254.0.0/16")
'
}

# Make the namespace and veth pair; records their names in DIR so `stop` can delete them.
make_netns() {
    command -v ip > /dev/null || { echo "ip (iproute2) is not installed" >&2; return 1; }
    local tag ns host_if ns_if addrs host_ip ns_ip
    tag=$(od -An -N2 -tx2 /dev/urandom | tr -d ' ')
    ns="rp-slurm-$tag"
    host_if="rpsh-$tag"  # interface names are limited to 15 characters
    ns_if="rpsn-$tag"
    addrs=$(free_subnet) || return 1
    read -r host_ip ns_ip <<< "$addrs"
    ip netns add "$ns" || return 1
    echo "$ns" > "$dir/netns"
    echo "$host_if" > "$dir/veth"
    ip link add "$host_if" type veth peer name "$ns_if" || return 1
    ip link set "$ns_if" netns "$ns" || return 1
    ip addr add "$host_ip/30" dev "$host_if" || return 1
    ip link set "$host_if" up || return 1
    ip netns exec "$ns" ip addr add "$ns_ip/30" dev "$ns_if" || return 1
    ip netns exec "$ns" ip link set "$ns_if" up || return 1
    ip netns exec "$ns" ip link set lo up || return 1
    echo "$ns_ip" > "$dir/address"
}

write_conf() {  # write_conf ADDRESS CTLD_PORT SLURMD_PORT COMMUNICATION_PARAMETERS_LINE
    cat > "$dir/slurm.conf" <<CONF
ClusterName=runproject
SlurmctldHost=localhost($1)
SlurmctldPort=$2
SlurmdPort=$3
$4
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=3
MinJobAge=600
MpiDefault=none
NodeName=localhost NodeAddr=$1 CPUs=2 RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
}

start() {
    mkdir -p "$dir"/{state,spool,munge}
    chmod 755 "$dir"  # munged (its own user) must reach its directory
    chown munge:munge "$dir/munge"
    chmod 755 "$dir/munge"  # munged wants its socket directory searchable by all
    local run=() address ctld_port slurmd_port
    local bind="CommunicationParameters=NoInAddrAny,NoCtldInAddrAny"
    if make_netns 2> "$dir/netns.err"; then
        # nsenter, not `ip netns exec`: that one remounts /sys, hiding the cgroup fs slurmd needs.
        run=(nsenter --net="/run/netns/$(cat "$dir/netns")")
        address=$(cat "$dir/address")
        ctld_port=6817  # the namespace is ours alone: the standard ports are free there
        slurmd_port=6818
        # Inside our namespace "any address" is only its lo and veth: nothing reaches the host.
        # (slurmctld binds the name "localhost" under NoCtldInAddrAny, not the address given.)
        bind=""
    else
        local why
        why=$(cat "$dir/netns.err")
        delete_netns
        if in_ci; then
            echo "could not make a network namespace for Slurm: $why" >&2
            return 1
        fi
        echo "note: no network namespace for Slurm ($why); running it on 127.0.0.1" >&2
        address=127.0.0.1
        ctld_port=$(free_port)
        slurmd_port=$(free_port)
    fi
    # Our own munged (own socket and pid file) so a system munged, if any, is left alone. Its
    # socket is a file, so sbatch on the host and slurmd in the namespace both reach it.
    "${run[@]}" runuser -u munge -- /usr/sbin/munged --socket="$dir/munge/munge.socket" \
        --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
        --seed-file="$dir/munge/munged.seed"
    write_conf "$address" "$ctld_port" "$slurmd_port" "$bind"
    export SLURM_CONF="$dir/slurm.conf"
    "${run[@]}" slurmctld -f "$SLURM_CONF"
    "${run[@]}" slurmd -f "$SLURM_CONF" -N localhost
    for _ in $(seq 60); do
        # sinfo runs on the host: it proves the controller is reachable from outside.
        if sinfo -h -o %T 2>/dev/null | grep -qx idle; then
            echo "SLURM_CONF=$SLURM_CONF"
            return 0
        fi
        sleep 0.5
    done
    echo "slurm did not come up; logs in $dir" >&2
    tail -n 20 "$dir"/*.log >&2 || true
    return 1
}

stop_pid() {
    local pid=$1
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
}

delete_netns() {
    local ns veth pid
    if [ -f "$dir/netns" ]; then
        ns=$(cat "$dir/netns")
        # Whatever still runs in our namespace (a job slurmd left behind) is ours to stop.
        for pid in $(ip netns pids "$ns" 2>/dev/null); do stop_pid "$pid"; done
        ip netns del "$ns" 2>/dev/null || true
        rm -f "$dir/netns"
    fi
    if [ -f "$dir/veth" ]; then
        veth=$(cat "$dir/veth")
        # Deleting the namespace removes the pair; this catches a half-made setup.
        ip link del "$veth" 2>/dev/null || true
        rm -f "$dir/veth"
    fi
}

stop() {
    local pidfile
    for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
        [ -f "$pidfile" ] || continue
        stop_pid "$(cat "$pidfile")"
    done
    delete_netns
}

case "$action" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
