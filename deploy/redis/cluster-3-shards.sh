#!/bin/sh
# A 3-shard Redis Cluster for framecast: 3 masters + 1 replica each, on this machine, ports
# BASE..BASE+5 (default 7001-7006). On real hosts run one master and one other shard's replica per
# host with the same settings, and give `redis-cli --cluster create` the hosts' addresses.
#
#   deploy/redis/cluster-3-shards.sh start [DIR]   # prints the REDIS_URL to give every service
#   deploy/redis/cluster-3-shards.sh stop [DIR]
#
# Sizing (README, "How many cameras one Redis carries"): each master takes the cameras whose hash
# tag lands in its slots; with cameras spread over 3 masters, the cluster carries 3x one server's.
set -eu
action=${1:-start}
dir=${2:-run/redis-cluster}
base=${FRAMECAST_CLUSTER_BASE_PORT:-7001}
maxmemory=${FRAMECAST_CLUSTER_MAXMEMORY:-1gb}  # per node: ~70 MB per camera at the default bounds

mkdir -p "$dir" && dir=$(cd "$dir" && pwd)

ports() { i=0; while [ $i -lt 6 ]; do echo $((base + i)); i=$((i + 1)); done; }

case $action in
start)
    for port in $(ports); do
        mkdir -p "$dir/$port"
        redis-server --port "$port" --bind 127.0.0.1 --dir "$dir/$port" --daemonize yes \
            --pidfile "$dir/$port/redis.pid" --logfile "$dir/$port/redis.log" \
            --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
            --appendonly yes --appendfsync everysec \
            --maxmemory "$maxmemory" --maxmemory-policy noeviction
    done
    for port in $(ports); do  # wait until every node answers
        until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
    done
    if ! redis-cli -p "$base" cluster info | grep -q 'cluster_state:ok'; then
        redis-cli --cluster create $(ports | sed 's/^/127.0.0.1:/') --cluster-replicas 1 --cluster-yes >/dev/null
        until redis-cli -p "$base" cluster info | grep -q 'cluster_state:ok'; do sleep 0.2; done
    fi
    echo "REDIS_URL=redis+cluster://127.0.0.1:$base,127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2))"
    ;;
stop)
    for port in $(ports); do
        redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    done
    ;;
*)
    echo "usage: $0 start|stop [DIR]" >&2
    exit 2
    ;;
esac
