#!/usr/bin/env bash
# A local three-node RabbitMQ cluster for tests and benchmarks of node loss.
#
#   scripts/rabbitmq-cluster.sh up       start three nodes (if not running), join them, print the URLs
#   scripts/rabbitmq-cluster.sh status   which nodes run, the cluster's view, the URLs
#   scripts/rabbitmq-cluster.sh stop-node N / start-node N   stop or start node N (1-3) alone
#   scripts/rabbitmq-cluster.sh down [--purge]   stop the nodes (--purge also deletes their data)
#
# The nodes are fitness-c1@localhost .. fitness-c3@localhost, from Debian's rabbitmq-server,
# each with its own ports and data under var/rabbitmq-cluster/ (CLUSTER_DIR), and one Erlang
# cookie of their own; they never touch the RabbitMQ service on 5672 nor /etc/rabbitmq.
# AMQP ports are CLUSTER_BASE_PORT+1..3 (default 5681..5683), distribution ports
# 25681..25683. Point the project at all three (Celery's failover URLs):
#
#   export CELERY_BROKER_URL="$(scripts/rabbitmq-cluster.sh url)"   # url [VHOST] prints it
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CLUSTER_DIR="${CLUSTER_DIR:-$ROOT/var/rabbitmq-cluster}"
BASE_PORT="${CLUSTER_BASE_PORT:-5680}"
DIST_BASE_PORT="${CLUSTER_DIST_BASE_PORT:-25680}"
SERVER=/usr/lib/rabbitmq/bin/rabbitmq-server
CTL=/usr/lib/rabbitmq/bin/rabbitmqctl
NODES=(1 2 3)

die() { echo "rabbitmq-cluster: $*" >&2; exit 1; }
say() { echo "==> $*" >&2; }

node_name() { echo "fitness-c$1@localhost"; }
node_port() { echo $((BASE_PORT + $1)); }
node_dir() { echo "$CLUSTER_DIR/node$1"; }

# The environment of one node: its own config, data and logs, and the cluster's cookie (in $HOME).
node_env() {
    local n=$1 dir
    shift
    dir="$(node_dir "$n")"
    env -u RABBITMQ_NODENAME -u RABBITMQ_NODE_PORT \
        HOME="$CLUSTER_DIR/home" \
        RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf" \
        RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
        RABBITMQ_NODENAME="$(node_name "$n")" \
        RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
        RABBITMQ_NODE_PORT="$(node_port "$n")" \
        RABBITMQ_DIST_PORT=$((DIST_BASE_PORT + n)) \
        RABBITMQ_MNESIA_BASE="$dir/mnesia" \
        RABBITMQ_LOG_BASE="$dir/log" \
        RABBITMQ_PID_FILE="$dir/rabbitmq.pid" \
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
        "$@"
}

ctl() { local n=$1; shift; node_env "$n" "$CTL" -n "$(node_name "$n")" "$@"; }

running() { ctl "$1" -q await_startup --timeout 2 >/dev/null 2>&1; }

prepare() {
    local n=$1 dir
    dir="$(node_dir "$n")"
    mkdir -p "$dir/mnesia" "$dir/log" "$CLUSTER_DIR/home"
    if [ ! -f "$CLUSTER_DIR/home/.erlang.cookie" ]; then
        (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-F > "$CLUSTER_DIR/home/.erlang.cookie")
        chmod 400 "$CLUSTER_DIR/home/.erlang.cookie"
    fi
    : > "$dir/rabbitmq-env.conf"
    echo "[]." > "$dir/enabled_plugins"
    cat > "$dir/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$(node_port "$n")
disk_free_limit.absolute = 50MB
# a stopped node is expected here: keep its queues' replicas and wait for it
cluster_partition_handling = pause_minority
EOF
}

start_node() {
    local n=$1
    [ -x "$SERVER" ] || die "$SERVER is missing: install Debian's rabbitmq-server (make setup does)"
    if running "$n"; then
        say "$(node_name "$n") is running"
        return
    fi
    prepare "$n"
    say "starting $(node_name "$n") on port $(node_port "$n")"
    node_env "$n" setsid "$SERVER" >>"$(node_dir "$n")/server.out" 2>&1 < /dev/null &
    local waited=0
    until running "$n"; do
        sleep 1
        waited=$((waited + 1))
        [ "$waited" -lt 90 ] || die "$(node_name "$n") did not start in 90 s; see $(node_dir "$n")/log/"
    done
}

stop_node() {
    local n=$1
    if running "$n"; then
        say "stopping $(node_name "$n")"
        ctl "$n" -q stop >/dev/null
    fi
}

clustered_with_first() {
    ctl 1 -q cluster_status --formatter json 2>/dev/null | grep -q "\"$(node_name "$1")\""
}

join() {
    local n=$1
    if clustered_with_first "$n"; then
        return
    fi
    say "joining $(node_name "$n") to $(node_name 1)"
    ctl "$n" -q stop_app
    ctl "$n" -q reset
    ctl "$n" -q join_cluster "$(node_name 1)"
    ctl "$n" -q start_app
}

urls() {
    local vhost="${1:-}" joined="" n
    for n in "${NODES[@]}"; do
        joined+="${joined:+;}amqp://guest:guest@127.0.0.1:$(node_port "$n")/$vhost"
    done
    echo "$joined"
}

status() {
    local n
    for n in "${NODES[@]}"; do
        if running "$n"; then state=running; else state=stopped; fi
        printf '%-22s %-8s amqp://guest:guest@127.0.0.1:%s/\n' "$(node_name "$n")" "$state" "$(node_port "$n")"
    done
    for n in "${NODES[@]}"; do
        if running "$n"; then
            echo
            echo "cluster members running, as $(node_name "$n") sees them:"
            ctl "$n" -q cluster_status --formatter json 2>/dev/null \
                | python3 -c 'import json,sys; print("  " + "  ".join(json.load(sys.stdin)["running_nodes"]))' || true
            break
        fi
    done
}

case "${1:-}" in
    up)
        for n in "${NODES[@]}"; do start_node "$n"; done
        for n in 2 3; do join "$n"; done
        status
        echo
        echo "CELERY_BROKER_URL=\"$(urls)\""
        ;;
    down)
        for n in 3 2 1; do stop_node "$n"; done
        if [ "${2:-}" = "--purge" ]; then
            say "deleting $CLUSTER_DIR"
            rm -rf "$CLUSTER_DIR"
        fi
        ;;
    status) status ;;
    url) urls "${2:-}" ;;
    stop-node)
        [[ "${2:-}" =~ ^[123]$ ]] || die "stop-node takes a node number, 1 to 3"
        stop_node "$2" ;;
    start-node)
        [[ "${2:-}" =~ ^[123]$ ]] || die "start-node takes a node number, 1 to 3"
        start_node "$2" ;;
    ctl)
        [[ "${2:-}" =~ ^[123]$ ]] || die "ctl takes a node number, 1 to 3, then rabbitmqctl arguments"
        n=$2; shift 2; ctl "$n" "$@" ;;
    -h|--help|help|"")
        sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
        [ -n "${1:-}" ] || exit 2
        ;;
    *) die "unknown command '$1' (up, down, status, url, stop-node N, start-node N, ctl N ...)" ;;
esac
