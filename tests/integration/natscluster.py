"""What the cluster tests share: a nats-server cluster with JetStream on
loopback ports, and helpers to deploy, publish and read what a recording
function (functions/recorder.c) saw."""

import base64
import binascii
import contextlib
import json
import os
import pathlib
import random
import shutil
import signal
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


def openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True)
    assert r.returncode == 0, r.stderr.decode(errors="replace")


def make_ca(d, name):
    """A self-made CA in d: name.pem and name.key."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
            "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def make_cert(d, ca, name, host):
    """A certificate (name.pem, name.key) for host (an IP address) signed by
    the CA ca in d: a server's and a client's alike (no extended key usage)."""
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    (d / f"{name}.ext").write_text(f"subjectAltName=IP:{host},DNS:localhost\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
            cwd=d)


def _nkey_text(prefix, raw):
    """NATS's text form of a key (nkeys: prefix bytes, the key, CRC-16/XMODEM
    little-endian, base32 without padding)."""
    body = bytes(prefix) + raw
    return base64.b32encode(body + binascii.crc_hqx(body, 0).to_bytes(2, "little")) \
        .decode().rstrip("=")


NKEY_OPERATOR, NKEY_ACCOUNT, NKEY_USER = 14 << 3, 0, 20 << 3  # nkeys' prefix bytes


def make_nkey(kind=NKEY_USER):
    """An NKey of a kind: (its Ed25519 key, seed "S.", public key), as
    nk -gen TYPE -pubout writes them (a user's: "SU...", "U...")."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw)
    return (key, _nkey_text([(18 << 3) | (kind >> 5), (kind & 31) << 3], seed),
            _nkey_text([kind], public))


def make_jwt(signer, issuer, subject, name, nats):
    """A NATS JWT (v2) of subject's claims, signed by issuer's key."""
    def b64(b):
        return base64.urlsafe_b64encode(b).decode().rstrip("=")
    claims = {"jti": b64(os.urandom(16)), "iat": int(time.time()), "iss": issuer,
              "name": name, "sub": subject, "nats": {**nats, "version": 2}}
    signed = b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode()) + "." + \
        b64(json.dumps(claims).encode())
    return signed + "." + b64(signer.sign(signed.encode()))


PERMISSIONS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "nats-permissions.conf"


class NatsSecurity:
    """What a secured cluster uses, made in d: a CA and a certificate for
    the servers (clients must show one: verify), one for the nodes, a CA
    nobody uses, and users in an account SPATE with spate's permissions
    (docs/nats-permissions.conf): an NKey (node.nk: its seed and public key)
    and a password user, and one refused heartbeats; a user of another
    account (OTHER) too."""

    password = "s3cret-node-pass"

    def __init__(self, d, host="127.0.0.1"):
        self.dir = d
        d.mkdir(exist_ok=True)
        make_ca(d, "ca")
        make_ca(d, "stranger-ca")
        make_cert(d, "ca", "server", host)
        make_cert(d, "ca", "node", host)
        _, seed, self.nkey = make_nkey()
        (d / "node.nk").write_text(f"{seed}\n{self.nkey}\n")
        (d / "node.nk").chmod(0o600)

    def server_conf(self):
        """The part of each server's configuration that secures it."""
        d = self.dir
        tls = (f'cert_file: "{d}/server.pem", key_file: "{d}/server.key", '
               f'ca_file: "{d}/ca.pem", timeout: 5')
        return f"""
include ./nats-permissions.conf
tls {{ {tls}, verify: true }}
accounts {{
  SPATE {{
    jetstream: enabled
    users: [
      {{ nkey: {self.nkey}, permissions: $SPATE_NODE }}
      {{ user: node, password: "{self.password}", permissions: $SPATE_NODE }}
      {{ user: noheartbeat, password: "{self.password}",
         permissions: {{ publish: {{ deny: ["spate.node.hb"] }} }} }}
    ]
  }}
  OTHER {{
    jetstream: enabled
    users: [ {{ user: other, password: "other-pass" }} ]
  }}
}}
""", f"tls {{ {tls} }}"

    def node_args(self, urls, how="nkey"):
        """spated's options to join with: how is "nkey" (--cluster-creds) or
        "password" (in the URLs)."""
        d = self.dir
        if how == "password":
            urls = urls.replace("nats://", f"nats://node:{self.password}@")
        args = ["--cluster", urls, "--cluster-tls-ca", str(d / "ca.pem"),
                "--cluster-tls-cert", str(d / "node.pem"), "--cluster-tls-key", str(d / "node.key")]
        return args + (["--cluster-creds", str(d / "node.nk")] if how == "nkey" else [])


class NatsCluster:
    """n nats-servers clustered with JetStream, all on one loopback address;
    secured (TLS, accounts, permissions) with a NatsSecurity. Or each server
    on addresses of its own: hosts[i] for clients and monitoring,
    route_hosts[i] for routes, started with the command prefix prefixes[i]
    (a network namespace: test_partition.Partition)."""

    def __init__(self, tmp, n=3, host="127.0.0.1", security=None, hosts=None,
                 route_hosts=None, prefixes=None, extra=()):
        self.tmp = tmp
        self.extra = list(extra)  # more nats-server options (unsecured ones only)
        self.host = host
        self.hosts = hosts or [host] * n
        self.route_hosts = route_hosts or self.hosts
        self.prefixes = prefixes or [[]] * n
        self.security = security
        # A port is tried here: in a namespace of its own a server is alone.
        ports = [lambda i=i: free_port(self.hosts[i] if not self.prefixes[i] else "127.0.0.1")
                 for i in range(n)]
        self.client = [ports[i]() for i in range(n)]
        self.route = [ports[i]() for i in range(n)]
        self.monitor = [ports[i]() for i in range(n)]
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
        host, route_host = self.hosts[i], self.route_hosts[i]
        routes = ",".join(f"nats://{h}:{p}" for h, p in zip(self.route_hosts, self.route))
        args = ["nats-server", "-js", "-sd", str(self.tmp / f"js{i}"), "-a", host,
                "-p", str(self.client[i]), "-m", str(self.monitor[i]), "-n", f"n{i}",
                "--cluster_name", "spate",
                "-cluster", f"nats://{route_host}:{self.route[i]}", "-routes", routes,
                *self.extra]
        if self.security:
            # The same through a file, with TLS on clients and routes, and
            # the accounts.
            shutil.copy(PERMISSIONS, self.tmp / "nats-permissions.conf")
            clients, route_tls = self.security.server_conf()
            route_urls = ", ".join(f'"nats://{h}:{p}"'
                                   for h, p in zip(self.route_hosts, self.route))
            conf = self.tmp / f"nats{i}.conf"
            conf.write_text(f"""
server_name: n{i}
host: {host}
port: {self.client[i]}
http: "{host}:{self.monitor[i]}"
jetstream {{ store_dir: "{self.tmp / f"js{i}"}" }}
cluster {{
  name: spate
  listen: "{route_host}:{self.route[i]}"
  routes: [ {route_urls} ]
  {route_tls}
}}
{clients}
""")
            args = ["nats-server", "-c", str(conf)]
        self.procs[i] = subprocess.Popen(
            [*self.prefixes[i], *args], stdout=open(self.tmp / f"nats{i}.log", "ab"),
            stderr=subprocess.STDOUT)
        for _ in range(100):
            try:
                socket.create_connection((host, self.client[i]), timeout=1).close()
                return
            except OSError:
                if self.procs[i].poll() is not None:
                    break
                time.sleep(0.05)
        log = (self.tmp / f"nats{i}.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"nats-server {i} did not start:\n{log}")

    def stream_state(self, name, i=0):
        """A stream's state as server i reports it (its monitoring port)."""
        url = f"http://{self.hosts[i]}:{self.monitor[i]}/jsz?streams=true"
        with urllib.request.urlopen(url, timeout=10) as r:
            doc = json.load(r)
        for account in doc.get("account_details", []):
            for stream in account.get("stream_detail", []):
                if stream["name"] == name:
                    return stream["state"]
        return None

    def stored_messages(self, name, timeout=30):
        """A stream's message count once every running server reports the
        same (a replica may still be catching up when the publish has been
        answered: server 0 alone once said 199,844 of 200,000)."""
        counts = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            counts = {(self.stream_state(name, i) or {}).get("messages")
                      for i, p in enumerate(self.procs) if p and p.poll() is None}
            if len(counts) == 1:
                return counts.pop()
            time.sleep(0.2)
        raise AssertionError(f"{name}: the servers do not agree within {timeout} s: {counts}")

    def stream_detail(self, name, i=0):
        """A stream as server i reports it: its config, state, cluster and
        consumers (consumer_detail)."""
        url = (f"http://{self.hosts[i]}:{self.monitor[i]}/jsz?streams=true&consumers=true"
               "&config=true")
        with urllib.request.urlopen(url, timeout=10) as r:
            doc = json.load(r)
        for account in doc.get("account_details", []):
            for stream in account.get("stream_detail", []):
                if stream["name"] == name:
                    return stream
        return None

    def stream_leader(self, name, consumer=None):
        """The index of the server that leads a stream (or its consumer), or None."""
        for i, p in enumerate(self.procs):
            if p and p.poll() is None:
                try:
                    d = self.stream_detail(name, i) or {}
                except OSError:
                    continue
                if consumer:
                    d = next((x for x in d.get("consumer_detail") or [] if x["name"] == consumer),
                             {})
                leader = (d.get("cluster") or {}).get("leader")
                if leader:
                    return int(leader[1:])  # servers are called n0, n1, ...
        return None

    def consumer_config(self, stream, name, i=0):
        """A consumer's configuration as server i reports it, or None."""
        for c in (self.stream_detail(stream, i) or {}).get("consumer_detail") or []:
            if c["name"] == name:
                return c.get("config")
        return None

    def pause(self, i, seconds):
        """Server i stopped (SIGSTOP) for seconds, then let go on."""
        self.procs[i].send_signal(signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            self.procs[i].send_signal(signal.SIGCONT)

    def kill(self, i):
        self.procs[i].kill()
        self.procs[i].wait()

    @property
    def urls(self):
        return ",".join(f"nats://{h}:{p}" for h, p in zip(self.hosts, self.client))

    def stop(self):
        for p in self.procs:
            if p and p.poll() is None:
                p.terminate()
        for p in self.procs:  # each stopped, even when one will not go
            if p and p.poll() is None:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def listed(d, name):
    return any(f["name"] == name for f in d.json("GET", "/v1/functions")[1]["functions"])


def ok_count(d, function):
    for line in d.request("GET", "/metrics")[2].decode().splitlines():
        if line.startswith(f'spate_invocations_total{{function="{function}",outcome="ok"}} '):
            return float(line.split()[-1])
    return 0


def js_api(nats, subject, body=b"", tries=60, pause=0.5, spread=False):
    """A JetStream API request, asked again while JetStream is slow to answer
    or elects a leader (an error, or no answer); spread: each try through a
    server picked at random. Its answer's JSON."""
    doc = {}
    for _ in range(tries):
        c = NatsClient(nats, random.randrange(len(nats.procs))) if spread else NatsClient(nats)
        try:
            got = c.request(subject, body)
        except OSError:
            got = None
        finally:
            c.close()
        doc = json.loads(got[1]) if got and got[1] else {}
        if doc and "error" not in doc:
            return doc
        time.sleep(pause)
    raise AssertionError(f"no answer to {subject}: {doc}")


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


def deploy_everywhere(d, nodes, name, artifact, **kw):
    """Deploys through d (Spated.deploy's options) and waits until every node
    lists the function."""
    status = d.deploy(name, artifact, **kw)[0]
    assert status == 201, (status, d.log()[-3000:])
    for n in nodes:
        # 10 s fell short under make check's load (session 48).
        assert wait_for(lambda: listed(n, name), timeout=30), name


def add_trigger(d, nodes, topic, function, query=""):
    """Adds a trigger through d and waits until every node pulls for it;
    asked again while it is answered 503, as a client would: on a loaded
    machine (make sanitize) JetStream may not answer the trigger's save or
    its consumers' set-up within their time-outs."""
    for tries in range(5):
        status, _, body = d.request("PUT", f"/v1/triggers/{topic}/{function}{query}")
        if status != 503:
            break
        time.sleep(2)
    # 409 after a 503: the refused answer's trigger was saved after all.
    assert status == 201 or (tries and status == 409), (status, body, d.log()[-3000:])
    for n in nodes:
        assert wait_for(lambda: n.request("GET", f"/v1/triggers/{topic}/{function}")[0] == 200,
                        timeout=30)
    time.sleep(1)  # its consumers bound and pullers started on every node


def node_id(d):
    return d.json("GET", "/v1/nodes")[1]["self"]


@contextlib.contextmanager
def spated_cluster(tmp_path_factory, name="cluster", n=3, secure=False, args=()):
    """n nats-servers and n spated nodes (--cluster, and args), all up and
    seeing each other; yields (nats, nodes) and stops them all after. secure:
    the servers want TLS and users with spate's permissions (NatsSecurity);
    the second node joins with a password in the URLs, the others with an NKey."""
    if not shutil.which("nats-server"):
        pytest.fail("nats-server is not installed (scripts/install-deps.sh installs it)")
    tmp = tmp_path_factory.mktemp(name)
    tmp.chmod(0o755)
    security = NatsSecurity(tmp / "pki") if secure else None
    nats = NatsCluster(tmp, n, security=security)
    nodes = []
    try:
        for i in range(n):
            node_args = security.node_args(nats.urls, "password" if i == 1 else "nkey") \
                if security else ["--cluster", nats.urls]
            d = Spated(tmp / f"node{i}", args=[*node_args, *args])
            d.workdir.mkdir()
            nodes.append(d.start())
        for d in nodes:
            assert wait_for(lambda: len([x for x in d.json("GET", "/v1/nodes")[1]["nodes"]
                                         if x["state"] == "up"]) == n, timeout=15), d.log()
        yield nats, nodes
    finally:
        # Every node and server stopped, whatever one's stop raised: a node
        # whose stop timed out (make sanitize, load 25) once left the others
        # and the three nats-servers running, at a core between them, for
        # the rest of the run.
        failed = None
        for d in nodes:
            try:
                d.stop()
            except Exception as e:  # noqa: BLE001 - raised below, once all are stopped
                failed = failed or e
        nats.stop()
        if failed:
            raise failed


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
        """The next message's (headers bytes, data), or None by timeout; its
        subject and reply subject in self.subject and self.reply."""
        self.sock.settimeout(timeout)
        try:
            while True:
                line = self.line()
                if line.startswith(b"PING"):
                    self.sock.sendall(b"PONG\r\n")
                elif line.startswith(b"MSG "):
                    parts = line.split()
                    self.subject = parts[1].decode()
                    self.reply = parts[3].decode() if len(parts) == 5 else ""
                    return b"", self.exactly(int(line.split()[-1]))
                elif line.startswith(b"HMSG "):
                    parts = line.split()
                    self.subject = parts[1].decode()
                    self.reply = parts[3].decode() if len(parts) == 6 else ""
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


def kv_raw(nats, key, timeout=60):
    """The registry bucket's value of key as stored (bytes), or None when
    JetStream says there is none. No answer, or another error (a stream
    leader being elected on a loaded machine), is asked again: CI once had
    none for 20 s under make check's load."""
    deadline = time.monotonic() + timeout
    while True:
        c = NatsClient(nats)
        try:
            got = c.request("$JS.API.STREAM.MSG.GET.KV_spate-registry",
                            json.dumps({"last_by_subj": f"$KV.spate-registry.{key}"}).encode())
        finally:
            c.close()
        doc = json.loads(got[1]) if got else {}
        if "message" in doc:
            return base64.b64decode(doc["message"].get("data", ""))
        if doc.get("error", {}).get("err_code") == 10037:  # no message found
            return None
        if time.monotonic() > deadline:
            raise AssertionError(f"no answer from JetStream for {key}: {doc or 'timed out'}")
        time.sleep(0.2)


def nats_pub(nats, subject, data):
    """Publishes data on subject (a stream's subject: stored by JetStream)."""
    c = NatsClient(nats)
    try:
        c.pub(subject, data)
    finally:
        c.close()
