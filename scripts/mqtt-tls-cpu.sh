#!/usr/bin/env bash
# Measures the broker's CPU cost of TLS at six sites: Mosquitto with the users, passwords and ACL
# of `simpang mqtt-credentials` for config/palembang.toml (the managed broker's files), a plain
# listener and a TLS 1.2+ listener with an ECDSA P-256 certificate (what simpang generates).
# Each of the six sites publishes incident-sized messages at QoS 1 with its own login, and the
# desk's login subscribes to all incidents; first everything over plain MQTT, then everything
# over TLS. Prints the broker's CPU (user+sys from /proc, the broker process only) per run,
# per message and per MB, and checks that every message reached the desk.
#
#   scripts/mqtt-tls-cpu.sh [BIN] [SECONDS] [RATE_PER_SITE] [BYTES]
#
# BIN defaults to target/debug/simpang (only its `mqtt-credentials` command is used). RATE is
# messages per second per site (default 5: a burst far above a city's normal incident rate),
# BYTES the payload size (default 100000: an incident with its inline JPEG snapshot).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${1:-target/debug/simpang}
SECS=${2:-30}
RATE=${3:-5}
BYTES=${4:-100000}
TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MOSQ=$(command -v mosquitto || echo /usr/sbin/mosquitto)
TICK=$(getconf CLK_TCK)
SITES=$(python3 -c 'import tomllib; print(" ".join(s["id"] for s in tomllib.load(open("config/palembang.toml","rb"))["sites"]))')

"$BIN" mqtt-credentials --config config/palembang.toml --out "$TMP/mqtt" >/dev/null
pw() { python3 -c 'import sys,tomllib; print(tomllib.load(open(sys.argv[1],"rb"))["users"][sys.argv[2]]["password"])' "$TMP/mqtt/credentials.toml" "$1"; }

# A private CA and a server certificate for localhost, as simpang's certs.rs makes them.
mkdir -p "$TMP/tls"
(
  cd "$TMP/tls"
  openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
  openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=simpang test CA" -out ca.pem 2>/dev/null
  openssl ecparam -name prime256v1 -genkey -noout -out server.key 2>/dev/null
  openssl req -new -key server.key -subj "/CN=localhost" -out server.csr 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >ext.cnf
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 -sha256 \
    -extfile ext.cnf -out server.pem 2>/dev/null
)

PLAIN=$(free_port)
TLS=$(free_port)
cat >"$TMP/mosquitto.conf" <<EOF
per_listener_settings false
allow_anonymous false
password_file $TMP/mqtt/passwd
acl_file $TMP/mqtt/acl
persistence false
max_queued_messages 10000
max_packet_size 16778240
log_dest stderr
log_type error
listener $PLAIN 127.0.0.1
listener $TLS 127.0.0.1
certfile $TMP/tls/server.pem
keyfile $TMP/tls/server.key
tls_version tlsv1.2
EOF
# As root Mosquitto would switch to its own user, who cannot read the 0600 files (simpang does
# the same).
if [ "$(id -u)" = 0 ]; then echo "user root" >>"$TMP/mosquitto.conf"; fi
"$MOSQ" -c "$TMP/mosquitto.conf" 2>"$TMP/mosquitto.err" &
BROKER=$!
PIDS+=("$BROKER")
sleep 1
kill -0 "$BROKER" || { cat "$TMP/mosquitto.err"; exit 1; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$BROKER/stat"; }

# One line of BYTES characters, RATE times a second, for SECS seconds.
gen() {
  python3 - "$SECS" "$RATE" "$BYTES" <<'PY'
import sys, time
secs, rate, size = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
line = ('{"schema":"simpang.incident/1","pad":"' + 'A' * max(0, size - 40) + '"}\n').encode()
n = int(secs * rate)
t0 = time.monotonic()
for i in range(n):
    d = t0 + i / rate - time.monotonic()
    if d > 0:
        time.sleep(d)
    sys.stdout.buffer.write(line)
    sys.stdout.buffer.flush()
PY
}

run() {
  local mode=$1 port args
  if [ "$mode" = tls ]; then
    port=$TLS
    args=(-h localhost --cafile "$TMP/tls/ca.pem")
  else
    port=$PLAIN
    args=(-h 127.0.0.1)
  fi
  local expect=$(($(echo "$SITES" | wc -w) * $(python3 -c "print(int($SECS*$RATE))")))
  mosquitto_sub "${args[@]}" -p "$port" -u desk -P "$(pw desk)" -i "tlscpu-desk-$mode" -q 1 \
    -t 'simpang/v1/sites/+/incidents' -C "$expect" -W $((SECS + 60)) >"$TMP/recv-$mode" 2>/dev/null &
  local sub=$!
  sleep 0.5
  local before=$(cpu_ticks) t0=$(date +%s.%N)
  local pubs=()
  for s in $SITES; do
    gen | mosquitto_pub "${args[@]}" -p "$port" -u "site-$s" -P "$(pw "site-$s")" -i "tlscpu-$s-$mode" \
      -q 1 -t "simpang/v1/sites/$s/incidents" -l &
    pubs+=($!)
  done
  for p in "${pubs[@]}"; do wait "$p"; done
  wait "$sub" || true
  local after=$(cpu_ticks) t1=$(date +%s.%N)
  local got=$(wc -l <"$TMP/recv-$mode")
  python3 - "$mode" "$before" "$after" "$TICK" "$t0" "$t1" "$expect" "$got" "$BYTES" <<'PY'
import sys
mode, b, a, tick, t0, t1, expect, got, size = sys.argv[1:]
cpu = (int(a) - int(b)) / int(tick)
wall = float(t1) - float(t0)
n = int(expect)
mb = 2 * n * int(size) / 1e6  # in from the sites and out to the desk
print(f"{mode:5}  broker CPU {cpu:6.2f} s in {wall:5.1f} s = {100*cpu/wall:5.1f}% of a core; "
      f"{1e6*cpu/n:7.0f} us/message; {1e3*cpu/mb:6.2f} ms/MB moved; delivered {got}/{expect}")
PY
}

echo "mosquitto $("$MOSQ" -h 2>&1 | head -1 | awk '{print $3}'), 6 sites x $RATE msg/s x $BYTES B for ${SECS}s, QoS 1, desk subscribed"
lscpu | grep 'Model name' | sed 's/  */ /g'
run plain
run tls
