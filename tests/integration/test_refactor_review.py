"""What a review of issue 15's refactor (the registry interface and
replication behind it) found broken, each kept as a test: three nats-servers
with JetStream and two spated nodes, a and b. Where a change "made on
another node" must arrive at a given moment, the test writes the registry
bucket itself, as a node would, through a few lines of the NATS protocol."""

import base64
import hashlib
import json
import random
import shutil
import socket
import time

import pytest

from conftest import Spated, wait_for
from natscluster import NatsCluster, listed

BUCKET = "spate-registry"


class Nats:
    """Just enough of a NATS client (text protocol, headers) to read and
    write the registry bucket and the artifact stream as a node does."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.rf = self.sock.makefile("rb")
        self.rf.readline()  # INFO
        self.sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,'
                          b'"no_responders":true}\r\nPING\r\n')
        self._until_pong()
        self.sid = 0

    def close(self):
        self.sock.close()

    def _until_pong(self):
        while True:
            line = self.rf.readline()
            if not line:
                raise ConnectionError("nats-server closed the connection")
            if line.startswith(b"PONG"):
                return
            if line.startswith(b"-ERR"):
                raise RuntimeError(line.decode())

    def request(self, subject, payload=b"", timeout=10):
        """Sends payload on subject and returns (headers text, body) of the reply."""
        self.sid += 1
        inbox = f"_INBOX.review.{random.getrandbits(48):x}"
        self.sock.sendall(f"SUB {inbox} {self.sid}\r\nUNSUB {self.sid} 1\r\n".encode() +
                          f"PUB {subject} {inbox} {len(payload)}\r\n".encode() + payload + b"\r\n")
        self.sock.settimeout(timeout)
        while True:
            line = self.rf.readline()
            if not line:
                raise ConnectionError("nats-server closed the connection")
            if line.startswith(b"PING"):
                self.sock.sendall(b"PONG\r\n")
                continue
            words = line.split()
            if words[0] == b"MSG":
                data = self.rf.read(int(words[-1]) + 2)[:-2]
                return "", data
            if words[0] == b"HMSG":
                hlen, total = int(words[-2]), int(words[-1])
                raw = self.rf.read(total + 2)[:-2]
                return raw[:hlen].decode(errors="replace"), raw[hlen:]
            if words[0] == b"-ERR":
                raise RuntimeError(line.decode())

    def js(self, api, doc):
        return json.loads(self.request(f"$JS.API.{api}", json.dumps(doc).encode())[1])

    def kv_get(self, key):
        """The bucket's last value of key: (operation, value bytes), or None."""
        doc = self.js(f"STREAM.MSG.GET.KV_{BUCKET}", {"last_by_subj": f"$KV.{BUCKET}.{key}"})
        if "error" in doc:
            return None
        m = doc["message"]
        hdrs = base64.b64decode(m.get("hdrs") or b"").decode(errors="replace")
        op = "DEL" if "KV-Operation: DEL" in hdrs else "PURGE" if "PURGE" in hdrs else "PUT"
        return op, base64.b64decode(m.get("data") or b"")

    def publish(self, subject, payload):
        """Publishes into a stream and waits for JetStream's acknowledgement."""
        _, body = self.request(subject, payload)
        ack = json.loads(body)
        assert "error" not in ack, ack
        return ack


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    if not shutil.which("nats-server"):
        pytest.fail("nats-server is not installed (scripts/install-deps.sh installs it)")
    tmp = tmp_path_factory.mktemp("review")
    tmp.chmod(0o755)
    nats = NatsCluster(tmp)
    nodes = []
    try:
        for i in range(2):
            d = Spated(tmp / f"node{i}", args=["--cluster", nats.urls])
            d.workdir.mkdir()
            nodes.append(d.start())
        for d in nodes:
            assert wait_for(lambda: len([n for n in d.json("GET", "/v1/nodes")[1]["nodes"]
                                         if n["state"] == "up"]) == 2, timeout=15), d.log()
        client = Nats(nats.host, nats.client[0])
        yield nats, client, nodes
        client.close()
    finally:
        codes = [d.stop() for d in nodes]
        nats.stop()
    for d, rc in zip(nodes, codes):
        assert_clean_exit(d, rc)


def assert_clean_exit(d, rc):
    """Stopped with 0, and nothing from a sanitizer (the ASan build) in its log."""
    assert rc == 0 and "Sanitizer" not in d.log() and "runtime error" not in d.log(), \
        f"spated exited with {rc}:\n{d.log()[-6000:]}"


def env_of(d, name, var):
    status, body = d.invoke(name, f"env:{var}".encode())
    return body.decode() if status == 200 else f"({status})"


def test_a_newer_version_heard_while_applying_an_older_one_is_not_reverted(pair, functions):
    """b loads version 1 (its preload takes 3 s) while a deploys version 2:
    when b's load of version 1 ends, version 1 is recorded on b only; it is
    not written to the registry again as if b had deployed it, which undid
    a's newer deploy on every node."""
    nats, client, (a, b) = pair
    status, doc = a.deploy("flip", functions["probe"], env="PRELOAD_SLEEP_MS%3D3000&env=GEN%3D1")
    assert status == 201, doc
    # b is loading version 1 now, for 3 s; version 2 loads at once.
    status, doc = a.deploy("flip", functions["probe"], env="GEN%3D2", unset_env="PRELOAD_SLEEP_MS")
    assert status == 200, doc
    for d in (a, b):
        assert wait_for(lambda: env_of(d, "flip", "GEN") == "2", timeout=30), \
            (env_of(d, "flip", "GEN"), b.log()[-3000:])
    # Settled: a was not taken back to version 1 by b, nor was the registry.
    time.sleep(2)
    assert env_of(a, "flip", "GEN") == "2" and env_of(b, "flip", "GEN") == "2"
    op, value = client.kv_get("fn.flip")
    assert op == "PUT" and json.loads(value)["config"]["env"]["GEN"] == "2"
    assert a.describe("flip")["versions"][0]["version"] == 2, a.describe("flip")


def put_entry(client, name, sha, size, config):
    """Writes fn.NAME as another node's deploy would (its chunks apart)."""
    entry = {"sha256": sha, "size": size, "origin": "f" * 16, "config": config}
    client.publish(f"$KV.{BUCKET}.fn.{name}", json.dumps(entry).encode())


def put_chunks(client, sha, data):
    """The artifact's bytes in the artifact stream, as one chunk and its count."""
    client.publish(f"spate.artifact.{sha}.0", data)
    client.publish(f"spate.artifact.{sha}.n", f"1 {len(data)}".encode())


def unique(so):
    """The shared object with bytes of its own at the end (which the loader
    ignores): an artifact no test has put in the artifact stream before."""
    return so.read_bytes() + b"\0" * 8 + random.randbytes(16)


def test_a_delete_made_while_fetching_a_version_is_replicated(pair, functions):
    """Another node deploys a new version of a function; while b is still
    fetching its artifact (its chunks are not in the stream yet), the
    function is deleted through b. The delete reaches the registry and stays
    a delete everywhere; it was taken for the registry's own, recorded on b
    only, and the fetched version then brought the function back."""
    nats, client, (a, b) = pair
    assert a.deploy("gone", functions["hello"])[0] == 201
    assert wait_for(lambda: listed(b, "gone"), timeout=10)
    op, value = client.kv_get("fn.gone")
    assert op == "PUT"
    config = json.loads(value)["config"]
    probe = unique(functions["probe"])
    sha = hashlib.sha256(probe).hexdigest()
    put_entry(client, "gone", sha, len(probe), config)
    time.sleep(2)  # both nodes heard it and are fetching (trying again every 0.5 s)
    assert b.request("DELETE", "/v1/functions/gone")[0] == 204
    put_chunks(client, sha, probe)
    assert wait_for(lambda: client.kv_get("fn.gone")[0] == "DEL", timeout=30), \
        (client.kv_get("fn.gone"), b.log()[-3000:])
    for d in (a, b):
        assert wait_for(lambda: not listed(d, "gone"), timeout=30), d.log()[-3000:]
    time.sleep(2)
    for d in (a, b):
        assert not listed(d, "gone") and d.invoke("gone")[0] == 404


def test_a_version_overtaken_while_its_artifact_was_fetched_leaves_nothing(pair, functions):
    """A node fetches one version's artifact while the registry moves on to
    another: the fetched one is dropped (its configuration with it, which
    leaked: the ASan build's leak check at exit says so) and the newer one is
    deployed. The node then restarts and finds the function as it was."""
    nats, client, (a, b) = pair
    probe, hello = unique(functions["probe"]), functions["hello"].read_bytes()
    old_sha, new_sha = hashlib.sha256(probe).hexdigest(), hashlib.sha256(hello).hexdigest()
    assert a.deploy("overtaken", functions["hello"], env="GREETING%3Dfirst")[0] == 201
    assert wait_for(lambda: listed(b, "overtaken"), timeout=10)
    config = json.loads(client.kv_get("fn.overtaken")[1])["config"]
    config["env"] = {"GREETING": "old"}
    put_entry(client, "overtaken", old_sha, len(probe), config)
    time.sleep(2)  # both nodes fetch the old one, trying again every 0.5 s
    put_chunks(client, new_sha, hello)
    put_entry(client, "overtaken", new_sha, len(hello), dict(config, env={"GREETING": "new"}))
    time.sleep(1)
    put_chunks(client, old_sha, probe)  # the old fetch ends; the newer entry is deployed
    for d in (a, b):
        assert wait_for(lambda: d.invoke("overtaken") == (200, b"new, world\n"), timeout=30), \
            (d.invoke("overtaken"), d.log()[-3000:])
        assert d.describe("overtaken")["sha256"] == new_sha
    assert_clean_exit(b, b.stop())
    b.start()
    assert wait_for(lambda: listed(b, "overtaken"), timeout=15)
    assert b.invoke("overtaken") == (200, b"new, world\n")
    assert wait_for(lambda: len([n for n in b.json("GET", "/v1/nodes")[1]["nodes"]
                                 if n["state"] == "up"]) == 2, timeout=15)
