"""What the cluster tests share: a nats-server cluster with JetStream on
loopback ports, and helpers to deploy, publish and read what a recording
function (functions/recorder.c) saw."""

import base64
import contextlib
import json
import random
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import Spated, wait_for


def free_port(host="127.0.0.1"):
    """A port free now, below the kernel's ephemeral range: a port the
    kernel hands out (bind to 0) may meanwhile become the source port of some
    outgoing connection — nats-servers' routes connect while the next server
    starts — and then that server cannot listen on it."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    while True:
        port = random.randrange(max(1024, low - 12000), low)
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _given.add(port)
        return port


_given = set()  # handed out by this process: not twice


class NatsCluster:
    """n nats-servers clustered with JetStream, all on one loopback address."""

    def __init__(self, tmp, n=3, host="127.0.0.1"):
        self.tmp = tmp
        self.host = host
        self.client = [free_port(host) for _ in range(n)]
        self.route = [free_port(host) for _ in range(n)]
        self.monitor = [free_port(host) for _ in range(n)]
        self.procs = [None] * n
        try:
            for i in range(n):
                self.start(i)
        except Exception:
            self.stop()  # the ones that did start do not outlive the test
            raise
        # Until JetStream has a leader: the nodes' start-up retries too.
        deadline = time.time() + 20
        while time.time() < deadline:
            logs = "".join((tmp / f"nats{i}.log").read_text() for i in range(n))
            if "JetStream cluster new metadata leader" in logs or \
                    "Self is new JetStream cluster metadata leader" in logs:
                break
            time.sleep(0.1)

    def start(self, i):
        routes = ",".join(f"nats://{self.host}:{p}" for p in self.route)
        self.procs[i] = subprocess.Popen(
            ["nats-server", "-js", "-sd", str(self.tmp / f"js{i}"), "-a", self.host,
             "-p", str(self.client[i]), "-m", str(self.monitor[i]), "-n", f"n{i}",
             "--cluster_name", "spate",
             "-cluster", f"nats://{self.host}:{self.route[i]}", "-routes", routes],
            stdout=open(self.tmp / f"nats{i}.log", "ab"), stderr=subprocess.STDOUT)
        for _ in range(100):
            try:
                socket.create_connection((self.host, self.client[i]), timeout=1).close()
                return
            except OSError:
                if self.procs[i].poll() is not None:
                    break
                time.sleep(0.05)
        log = (self.tmp / f"nats{i}.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"nats-server {i} did not start:\n{log}")

    def stream_state(self, name, i=0):
        """A stream's state as server i reports it (its monitoring port)."""
        url = f"http://{self.host}:{self.monitor[i]}/jsz?streams=true"
        with urllib.request.urlopen(url, timeout=10) as r:
            doc = json.load(r)
        for account in doc.get("account_details", []):
            for stream in account.get("stream_detail", []):
                if stream["name"] == name:
                    return stream["state"]
        return None

    def consumer_config(self, stream, name, i=0):
        """A consumer's configuration as server i reports it, or None."""
        url = (f"http://{self.host}:{self.monitor[i]}/jsz?streams=true&consumers=true"
               "&config=true")
        with urllib.request.urlopen(url, timeout=10) as r:
            doc = json.load(r)
        for account in doc.get("account_details", []):
            for s in account.get("stream_detail", []):
                if s["name"] != stream:
                    continue
                for c in s.get("consumer_detail") or []:
                    if c["name"] == name:
                        return c.get("config")
        return None

    def kill(self, i):
        self.procs[i].kill()
        self.procs[i].wait()

    @property
    def urls(self):
        return ",".join(f"nats://{self.host}:{p}" for p in self.client)

    def stop(self):
        for p in self.procs:
            if p and p.poll() is None:
                p.terminate()
                p.wait(10)


def listed(d, name):
    return any(f["name"] == name for f in d.json("GET", "/v1/functions")[1]["functions"])


def ok_count(d, function):
    for line in d.request("GET", "/metrics")[2].decode().splitlines():
        if line.startswith(f'spate_invocations_total{{function="{function}",outcome="ok"}} '):
            return float(line.split()[-1])
    return 0


def record_dir(tmp_path):
    d = tmp_path / "records"
    d.mkdir()
    d.chmod(0o1777)  # functions run as their own uid
    return d


def ended(path):
    """Payloads whose run ended, from a recorder file (with repeats)."""
    if not path.exists():
        return []
    return [line.split()[1] for line in path.read_text().splitlines() if line.startswith("E ")]


def attempts(path):
    """The attempt numbers the recorder was given, over every run."""
    return {int(line.split()[2]) for line in path.read_text().splitlines()}


def publish_lines(d, topic, lines, key_field=None):
    headers = {"Content-Type": "application/x-ndjson"}
    if key_field:
        headers["Spate-Key-Field"] = key_field
    body = "".join(x + "\n" for x in lines).encode()
    status, _, out = d.request("POST", f"/v1/topics/{topic}/messages", body, headers)
    assert status == 202, out


def add_trigger(d, nodes, topic, function, query=""):
    """Adds a trigger through d and waits until every node pulls for it."""
    assert d.request("PUT", f"/v1/triggers/{topic}/{function}{query}")[0] == 201
    for n in nodes:
        assert wait_for(lambda: n.request("GET", f"/v1/triggers/{topic}/{function}")[0] == 200,
                        timeout=30)
    time.sleep(1)  # its consumers bound and pullers started on every node


def node_id(d):
    return d.json("GET", "/v1/nodes")[1]["self"]


@contextlib.contextmanager
def spated_cluster(tmp_path_factory, name="cluster", n=3, args=()):
    """n nats-servers and n spated nodes (--cluster, and args), all up and
    seeing each other; yields (nats, nodes) and stops them all after."""
    if not shutil.which("nats-server"):
        pytest.fail("nats-server is not installed (scripts/install-deps.sh installs it)")
    tmp = tmp_path_factory.mktemp(name)
    tmp.chmod(0o755)
    nats = NatsCluster(tmp, n)
    nodes = []
    try:
        for i in range(n):
            d = Spated(tmp / f"node{i}", args=["--cluster", nats.urls, *args])
            d.workdir.mkdir()
            nodes.append(d.start())
        for d in nodes:
            assert wait_for(lambda: len([x for x in d.json("GET", "/v1/nodes")[1]["nodes"]
                                         if x["state"] == "up"]) == n, timeout=15), d.log()
        yield nats, nodes
    finally:
        for d in nodes:
            d.stop()
        nats.stop()


class NatsClient:
    """A bare NATS client (the text protocol on a socket): what any program
    allowed to publish on the cluster's NATS can do, without spate's key."""

    def __init__(self, nats, i=0):
        self.sock = socket.create_connection((nats.host, nats.client[i]), timeout=10)
        self.buf = b""
        self.line()  # INFO
        self.sock.sendall(b'CONNECT {"verbose":false,"headers":true}\r\n')
        self.sid = 0

    def close(self):
        self.sock.close()

    def line(self):
        while b"\r\n" not in self.buf:
            got = self.sock.recv(65536)
            if not got:
                raise ConnectionError("NATS closed the connection")
            self.buf += got
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exactly(self, n):
        while len(self.buf) < n + 2:
            got = self.sock.recv(65536)
            if not got:
                raise ConnectionError("NATS closed the connection")
            self.buf += got
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def flush(self):
        self.sock.sendall(b"PING\r\n")
        while self.line() != b"PONG":
            pass

    def pub(self, subject, data, reply=""):
        self.sock.sendall(f"PUB {subject} {reply} {len(data)}\r\n".encode() + data + b"\r\n")
        self.flush()

    def subscribe(self, subject):
        self.sid += 1
        self.sock.sendall(f"SUB {subject} {self.sid}\r\n".encode())
        return self.sid

    def next_msg(self, timeout):
        """The next message's (headers bytes, data), or None by timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                line = self.line()
                if line.startswith(b"PING"):
                    self.sock.sendall(b"PONG\r\n")
                elif line.startswith(b"MSG "):
                    return b"", self.exactly(int(line.split()[-1]))
                elif line.startswith(b"HMSG "):
                    parts = line.split()
                    raw = self.exactly(int(parts[-1]))
                    return raw[:int(parts[-2])], raw[int(parts[-2]):]
        except socket.timeout:
            return None
        finally:
            self.sock.settimeout(10)

    def request(self, subject, data, timeout=5):
        inbox = f"_INBOX.test.{random.randrange(1 << 60)}"
        self.subscribe(inbox)
        self.pub(subject, data, reply=inbox)
        return self.next_msg(timeout)


def kv_raw(nats, key):
    """The registry bucket's value of key as stored (bytes), or None."""
    c = NatsClient(nats)
    try:
        got = c.request("$JS.API.STREAM.MSG.GET.KV_spate-registry",
                        json.dumps({"last_by_subj": f"$KV.spate-registry.{key}"}).encode())
    finally:
        c.close()
    doc = json.loads(got[1]) if got else {}
    if "message" not in doc:
        return None
    return base64.b64decode(doc["message"].get("data", ""))


def nats_pub(nats, subject, data):
    """Publishes data on subject (a stream's subject: stored by JetStream)."""
    c = NatsClient(nats)
    try:
        c.pub(subject, data)
    finally:
        c.close()
