"""Cluster mode: three nats-servers with JetStream clustered on loopback and
three spated nodes (--cluster), all started here. Deploys, deletes and
configuration reach every node through the registry bucket; invocations a
node has no room for run on another; a node that was away catches up; the
loss of one nats-server does not stop the cluster."""

import json
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import Spated, wait_for


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsCluster:
    def __init__(self, tmp, n=3):
        self.tmp = tmp
        self.client = [free_port() for _ in range(n)]
        self.route = [free_port() for _ in range(n)]
        self.procs = [None] * n
        for i in range(n):
            self.start(i)
        # Until JetStream has a leader: the nodes' start-up retries too.
        deadline = time.time() + 20
        while time.time() < deadline:
            logs = "".join((tmp / f"nats{i}.log").read_text() for i in range(n))
            if "JetStream cluster new metadata leader" in logs or \
                    "Self is new JetStream cluster metadata leader" in logs:
                break
            time.sleep(0.1)

    def start(self, i):
        routes = ",".join(f"nats://127.0.0.1:{p}" for p in self.route)
        self.procs[i] = subprocess.Popen(
            ["nats-server", "-js", "-sd", str(self.tmp / f"js{i}"), "-a", "127.0.0.1",
             "-p", str(self.client[i]), "-n", f"n{i}", "--cluster_name", "spate",
             "-cluster", f"nats://127.0.0.1:{self.route[i]}", "-routes", routes],
            stdout=open(self.tmp / f"nats{i}.log", "ab"), stderr=subprocess.STDOUT)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.client[i]), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nats-server did not start")

    def kill(self, i):
        self.procs[i].kill()
        self.procs[i].wait()

    @property
    def urls(self):
        return ",".join(f"nats://127.0.0.1:{p}" for p in self.client)

    def stop(self):
        for p in self.procs:
            if p and p.poll() is None:
                p.terminate()
                p.wait(10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not shutil.which("nats-server"):
        pytest.fail("nats-server is not installed (scripts/install-deps.sh installs it)")
    tmp = tmp_path_factory.mktemp("cluster")
    tmp.chmod(0o755)
    nats = NatsCluster(tmp)
    nodes = []
    try:
        for i in range(3):
            d = Spated(tmp / f"node{i}", args=["--cluster", nats.urls])
            d.workdir.mkdir()
            nodes.append(d.start())
        for d in nodes:
            assert wait_for(lambda: len([n for n in d.json("GET", "/v1/nodes")[1]["nodes"]
                                         if n["state"] == "up"]) == 3, timeout=15), d.log()
        yield nats, nodes
    finally:
        for d in nodes:
            d.stop()
        nats.stop()


def listed(d, name):
    return any(f["name"] == name for f in d.json("GET", "/v1/functions")[1]["functions"])


def node_id(d):
    return d.json("GET", "/v1/nodes")[1]["self"]


def test_nodes_see_each_other(cluster):
    nats, nodes = cluster
    ids = {node_id(d) for d in nodes}
    assert len(ids) == 3
    for d in nodes:
        doc = d.json("GET", "/v1/nodes")[1]
        assert doc["cluster"] and doc["nodes"][0]["self"] and doc["nodes"][0]["id"] == node_id(d)
        assert {n["id"] for n in doc["nodes"]} == ids
    r = nodes[0].cli("nodes")
    assert r.returncode == 0
    out = r.stdout.decode()
    assert out.count(" up ") == 3 and f"{node_id(nodes[0])}*" in out
    metrics = nodes[1].request("GET", "/metrics")[2].decode()
    assert "\nspate_cluster_nodes 3\n" in metrics, [x for x in metrics.splitlines() if "cluster" in x]


def test_deploy_on_one_node_invoke_on_another(cluster, functions):
    nats, (a, b, c) = cluster
    t0 = time.time()
    status, doc = a.deploy("everywhere", functions["probe"], env="GREETING%3Dhi")
    assert status == 201, doc
    assert wait_for(lambda: listed(b, "everywhere") and listed(c, "everywhere"), timeout=10)
    print(f"\ndeploy visible on all nodes after {time.time() - t0:.2f} s")
    for d in (b, c):
        status, body = d.invoke("everywhere", b"env:GREETING")
        assert status == 200 and body == b"hi"
        assert d.describe("everywhere")["versions"][0]["sha256"] == doc["sha256"]
    # A new version deployed on another node replaces it everywhere.
    status, doc2 = c.deploy("everywhere", functions["probe"], env="GREETING%3Dhello")
    assert status == 200, doc2
    for d in (a, b):
        assert wait_for(lambda: d.invoke("everywhere", b"env:GREETING")[1] == b"hello", timeout=10)


def test_delete_reaches_every_node(cluster, functions):
    nats, (a, b, c) = cluster
    assert b.deploy("short-lived", functions["hello"])[0] == 201
    assert wait_for(lambda: listed(a, "short-lived") and listed(c, "short-lived"), timeout=10)
    assert c.request("DELETE", "/v1/functions/short-lived")[0] == 204
    for d in (a, b):
        assert wait_for(lambda: not listed(d, "short-lived"), timeout=10)
        assert d.invoke("short-lived", b"x")[0] == 404


def test_a_busy_node_hands_invocations_to_another(cluster, functions):
    nats, (a, b, c) = cluster
    assert a.deploy("single", functions["probe"], max=1, queue=1)[0] == 201
    assert wait_for(lambda: listed(b, "single") and listed(c, "single"), timeout=10)
    ids = {node_id(d): d for d in (a, b, c)}
    results = {}

    def call(d, key, payload):
        results[key] = d.request("POST", "/v1/functions/single/invoke", payload, timeout=30)

    # Node a's only instance is busy: the next invocation on a runs elsewhere.
    t = threading.Thread(target=call, args=(a, "hold", b"sleep:1500"))
    t.start()
    time.sleep(0.3)
    status, hdrs, body = a.request("POST", "/v1/functions/single/invoke", b"pid")
    assert status == 200, body
    assert hdrs["Spate-Node"] in ids and hdrs["Spate-Node"] != node_id(a), hdrs
    # Errors come back as they are.
    status, hdrs, body = a.request("POST", "/v1/functions/single/invoke", b"fail")
    assert status == 502 and json.loads(body)["code"] == "function_error"
    t.join()
    assert results["hold"][0] == 200

    # Every node busy: it waits at the node asked (queue of 1), and past that 429.
    threads = [threading.Thread(target=call, args=(d, f"hold{i}", b"sleep:2000"))
               for i, d in enumerate((a, b, c))]
    for t in threads:
        t.start()
    time.sleep(0.4)
    waiting = threading.Thread(target=call, args=(a, "waited", b"echo"))
    waiting.start()
    time.sleep(0.4)
    status, _, body = a.request("POST", "/v1/functions/single/invoke", b"echo")
    assert status == 429, body
    for t in threads + [waiting]:
        t.join()
    assert all(results[f"hold{i}"][0] == 200 for i in range(3))
    assert results["waited"][0] == 200


def test_a_node_that_was_away_catches_up(cluster, functions):
    nats, (a, b, c) = cluster
    assert a.deploy("stays", functions["hello"])[0] == 201
    assert a.deploy("goes", functions["hello"])[0] == 201
    assert wait_for(lambda: listed(c, "stays") and listed(c, "goes"), timeout=10)
    assert c.stop() == 0
    assert a.request("DELETE", "/v1/functions/goes")[0] == 204
    assert b.deploy("arrived", functions["hello"])[0] == 201
    c.start()
    assert wait_for(lambda: listed(c, "arrived") and not listed(c, "goes"), timeout=15), c.log()
    assert listed(c, "stays")
    assert c.invoke("arrived", b"back")[0] == 200


def test_losing_one_nats_server_does_not_stop_the_cluster(cluster, functions):
    nats, (a, b, c) = cluster
    nats.kill(0)
    try:
        t0 = time.time()
        status, _ = b.deploy("after-loss", functions["hello"])
        assert status == 201
        # When the lost server led JetStream's metadata, the watchers' new
        # consumers wait for the next leader: seconds, not milliseconds.
        assert wait_for(lambda: listed(a, "after-loss") and listed(c, "after-loss"), timeout=90)
        print(f"\ndeploy visible on all nodes {time.time() - t0:.1f} s after a NATS server was lost")
        for d in (a, b, c):
            assert d.invoke("after-loss", b"x")[0] == 200
    finally:
        nats.start(0)
