#!/usr/bin/env python3
"""Failover probe: the phases of an MQTT client's way back after a NATS node is killed, with a
bare MQTT 3.1.1 client (standard library only), so that what NATS does is seen apart from
rumqttc and simpang. docs/deploy.md ("Failover is one Raft election") quotes its results.

A persistent-session subscriber (like the desk's intake) and a clean-session QoS 1 publisher
(like a producer, 10 messages a second) connect to node 1 of a cluster made by
scripts/nats-cluster.sh init/start WITHOUT --users (anonymous, loopback only). Then, KILLS
times, a node is killed with SIGKILL, every CONNECT attempt is logged with its time since the
kill (node, result, duration), and the largest gap in deliveries and in PUBACKs is printed; the
node is started again before the next kill. The clients follow simpang's policy: the next node
at once after an error, and BO seconds after a full round of failures.

  scripts/nats-cluster.sh init DIR --mqtt-ports A,B,C --http-ports X,Y,Z ...
  scripts/nats-cluster.sh start DIR
  KILLS=10 VICTIM=desk BO=0.25 scripts/failover-probe.py DIR A,B,C X,Y,Z

  CT      client connection timeout, s (rumqttc's 5)
  BO      pause after a full round of failures, s
  KILLS   kills (3)
  VICTIM  desk: the subscriber's node; sess / msgs / meta: the node leading $MQTT_sess,
          $MQTT_msgs or the JetStream meta group
Edit js_api_timeout in DIR/n*.conf (and restart) to compare the server's timeouts.
"""
import json, os, signal, socket, struct, subprocess, sys, threading, time, urllib.request

if len(sys.argv) != 4:
    sys.exit(__doc__)
DIR = sys.argv[1]
MQ = [int(p) for p in sys.argv[2].split(",")]
HT = [int(p) for p in sys.argv[3].split(",")]
CONN_TIMEOUT = float(os.environ.get("CT", "5"))
BACKOFF = float(os.environ.get("BO", "1"))
KILLS = int(os.environ.get("KILLS", "3"))
VICTIM = os.environ.get("VICTIM", "desk")  # desk | sess | msgs | meta

T0 = [None]
LOG = []
lock = threading.Lock()


def log(who, what):
    t = time.monotonic()
    rel = t - T0[0] if T0[0] else float("nan")
    with lock:
        LOG.append((rel, who, what))
        print(f"{rel:8.3f} {who:5} {what}", flush=True)


def enc_str(s):
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def enc_len(n):
    out = b""
    while True:
        d = n % 128
        n //= 128
        out += bytes([d | (0x80 if n else 0)])
        if not n:
            return out


def pkt(h, body):
    return bytes([h]) + enc_len(len(body)) + body


def read_pkt(s):
    h = s.recv(1)
    if not h:
        raise EOFError("closed")
    mult, n = 1, 0
    while True:
        b = s.recv(1)
        if not b:
            raise EOFError("closed")
        n += (b[0] & 127) * mult
        mult *= 128
        if b[0] < 128:
            break
    body = b""
    while len(body) < n:
        c = s.recv(n - len(body))
        if not c:
            raise EOFError("closed")
        body += c
    return h[0], body


def connect(port, cid, clean, timeout):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    flags = 0x02 if clean else 0
    body = enc_str("MQTT") + bytes([4, flags]) + struct.pack("!H", 15) + enc_str(cid)
    s.sendall(pkt(0x10, body))
    s.settimeout(timeout)
    h, b = read_pkt(s)
    if h >> 4 != 2:
        raise EOFError(f"not a CONNACK: {h:#x}")
    return s, b[0] & 1, b[1]


def node_of_port(p):
    return MQ.index(p) + 1


class Client(threading.Thread):
    def __init__(self, who, cid, clean, role):
        super().__init__(daemon=True)
        self.who, self.cid, self.clean, self.role = who, cid, clean, role
        self.at = 0
        self.node = None
        self.first_after_kill = None
        self.stop = False
        self.sock = None
        self.received = 0
        self.acked = 0
        self.events = []

    def run(self):
        failed = 0
        while not self.stop:
            port = MQ[self.at]
            t = time.monotonic()
            try:
                s, sp, rc = connect(port, self.cid, self.clean, CONN_TIMEOUT)
                if rc != 0:
                    raise EOFError(f"rc {rc}")
            except Exception as e:
                log(self.who, f"CONNECT n{node_of_port(port)} failed after {time.monotonic()-t:.3f}s: {e!r}")
                self.at = (self.at + 1) % len(MQ)
                failed += 1
                if failed >= len(MQ):
                    failed = 0
                    time.sleep(BACKOFF)
                continue
            failed = 0
            self.node = node_of_port(port)
            log(self.who, f"CONNACK n{self.node} sp={sp} after {time.monotonic()-t:.3f}s")
            self.sock = s
            try:
                self.session(s, sp)
            except Exception as e:
                log(self.who, f"connection to n{self.node} lost: {e!r}")
                self.node = None
                self.at = (self.at + 1) % len(MQ)

    def session(self, s, sp):
        s.settimeout(0.2)
        if self.role == "sub" and not sp:
            s.sendall(pkt(0x82, struct.pack("!H", 1) + enc_str("x/+/incidents") + b"\x01"))
        pkid = 1
        inflight = {}
        next_pub = time.monotonic()
        last_ping = time.monotonic()
        while not self.stop:
            now = time.monotonic()
            if self.role == "pub" and now >= next_pub and len(inflight) < 16:
                next_pub = now + 0.1
                pkid = pkid % 60000 + 1
                inflight[pkid] = now
                s.sendall(pkt(0x32, enc_str("x/a/incidents") + struct.pack("!H", pkid) + f"{now}".encode()))
            if now - last_ping > 5:
                s.sendall(b"\xc0\x00")
                last_ping = now
            try:
                h, b = read_pkt(s)
            except socket.timeout:
                continue
            kind = h >> 4
            if kind == 9:
                log(self.who, f"SUBACK n{self.node} {b[2:].hex()}")
            elif kind == 3:
                qos = (h >> 1) & 3
                tl = struct.unpack("!H", b[:2])[0]
                if qos:
                    pid = b[2 + tl:4 + tl]
                    s.sendall(b"\x40\x02" + pid)
                self.received += 1
                self.events.append(time.monotonic())
            elif kind == 4:
                pid = struct.unpack("!H", b[:2])[0]
                inflight.pop(pid, None)
                self.acked += 1
                self.events.append(time.monotonic())


def jsz(i):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{HT[i]}/jsz?accounts=true&streams=true&consumers=true", timeout=2) as r:
            return json.load(r)
    except Exception:
        return None


def leaders():
    for i in range(3):
        j = jsz(i)
        if not j:
            continue
        out = {"meta": j.get("meta_cluster", {}).get("leader")}
        for a in j.get("account_details", []):
            for st in a.get("stream_detail", []):
                out[st["name"]] = st.get("cluster", {}).get("leader")
                for c in st.get("consumer_detail", []) or []:
                    out[st["name"] + "/" + c["name"]] = c.get("cluster", {}).get("leader")
        return out
    return {}


def kill(n):
    pid = int(open(f"{DIR}/n{n}.pid").read())
    os.kill(pid, signal.SIGKILL)


def main():
    sub = Client("desk", "desk-x", False, "sub")
    pub = Client("prod", "prod-x", True, "pub")
    sub.start()
    time.sleep(1)
    pub.start()
    time.sleep(3)
    for k in range(KILLS):
        L = leaders()
        desk_node, prod_node = sub.node, pub.node
        if VICTIM == "desk":
            v = desk_node
        else:
            key = {"sess": "$MQTT_sess", "msgs": "$MQTT_msgs", "meta": "meta"}[VICTIM]
            name = L.get(key)
            v = int(name[1:]) if name else desk_node
        print(f"=== kill {k+1}: victim n{v}; desk n{desk_node} prod n{prod_node}; leaders {json.dumps(L)}", flush=True)
        T0[0] = time.monotonic()
        print(f"=== kill wall {time.strftime('%H:%M:%S', time.localtime())}.{int((time.time()%1)*1e6):06d}", flush=True)
        kill(v)
        time.sleep(25)
        def gap(ev):
            ev = [t for t in ev if T0[0] <= t <= T0[0] + 25]
            pts = [T0[0]] + ev
            best = (0, 0)
            for a, b in zip(pts, pts[1:]):
                if b - a > best[0]:
                    best = (b - a, b - T0[0])
            return f"largest gap {best[0]:.2f}s ending at {best[1]:.2f}s, {len(ev)} events"
        print(f"=== kill {k+1} result: desk deliveries {gap(sub.events)}; prod PUBACKs {gap(pub.events)}", flush=True)
        subprocess.run([os.path.join(os.path.dirname(os.path.abspath(__file__)), "nats-cluster.sh"), "start", DIR, str(v)], check=True, capture_output=True)
        T0[0] = None
        time.sleep(3)
    sub.stop = pub.stop = True


main()
