"""Cluster mode with --cluster-key: three nats-servers and three spated
nodes sharing a key. A bare NATS client (natscluster.NatsClient: what any
program allowed to publish on that NATS can do) forges registry entries,
artifact chunks, heartbeats and invocations: no node deploys, applies or runs
them, each node counts them in spate_cluster_rejected_total and says why in
its log; real deploys still reach every node. The same forgery without a key
is deployed (the last test): what the key protects."""

import hashlib
import json
import os
import re
import time

import pytest

from conftest import Spated, wait_for
from natscluster import NatsClient, kv_raw, listed, nats_pub, node_id, spated_cluster

SEAL = b"spate-seal1 "


def write_key(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, text)
    os.close(fd)
    return path


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    key = write_key(tmp_path_factory.mktemp("key") / "cluster.key",
                    b"a cluster key of more than thirty-two bytes, for the tests\n")
    with spated_cluster(tmp_path_factory, name="sealed", args=["--cluster-key", str(key)]) as c:
        yield c


def rejected(d, kind):
    for line in d.request("GET", "/metrics")[2].decode().splitlines():
        if line.startswith(f'spate_cluster_rejected_total{{kind="{kind}"}} '):
            return float(line.split()[-1])
    raise AssertionError("no spate_cluster_rejected_total on /metrics")


def unique_artifact(functions, name):
    """hello.so with bytes after its end (the loader ignores them): an
    artifact no node has yet."""
    return open(functions[name], "rb").read() + os.urandom(16)


def forge_artifact(nats, data):
    """The artifact's chunk and count in the artifact stream, unsealed."""
    sha = hashlib.sha256(data).hexdigest()
    nats_pub(nats, f"spate.artifact.{sha}.0", data)
    nats_pub(nats, f"spate.artifact.{sha}.n", f"1 {len(data)}".encode())
    return sha


def test_real_deploys_reach_every_node_sealed(sealed, functions):
    nats, nodes = sealed
    a, b, c = nodes
    for d in nodes:
        assert "sealed and checked with the cluster key" in d.log()
    status, doc = a.deploy("app", functions["probe"], env="GREETING%3Dhi")
    assert status == 201, doc
    for d in (b, c):
        assert wait_for(lambda: listed(d, "app"), timeout=15), d.log()
        assert d.invoke("app", b"env:GREETING") == (200, b"hi")
    raw = kv_raw(nats, "fn.app")
    assert raw.startswith(SEAL) and b'"GREETING":"hi"' in raw, raw[:200]
    for d in nodes:
        assert rejected(d, "entry") == 0 and rejected(d, "chunk") == 0, d.log()


def test_a_forged_function_is_deployed_nowhere(sealed, functions):
    nats, nodes = sealed
    a = nodes[0]
    # A whole entry as a node writes it (taken from the real one, without
    # its seal), naming an artifact the forger put in the stream.
    entry = json.loads(kv_raw(nats, "fn.app").split(b"\n", 1)[1])
    data = unique_artifact(functions, "hello")
    entry.update(sha256=forge_artifact(nats, data), size=len(data), origin="forger")
    nats_pub(nats, "$KV.spate-registry.fn.evil", json.dumps(entry).encode())
    # A real entry moved to another key keeps a seal that no longer holds.
    nats_pub(nats, "$KV.spate-registry.fn.moved", kv_raw(nats, "fn.app"))
    for d in nodes:
        assert wait_for(lambda: rejected(d, "entry") >= 2, timeout=15), d.log()
        log = d.log()
        assert "refused registry entry fn.evil" in log and "not sealed" in log, log
        assert "refused registry entry fn.moved" in log and "does not match" in log, log
    time.sleep(1)  # had one deployed it, it would be listed by now
    for d in nodes:
        assert not listed(d, "evil") and not listed(d, "moved")
        assert d.invoke("evil", b"x")[0] == 404
    # Each refused once, however often read: a restarted watcher reads them
    # again, the count stays.
    assert all(rejected(d, "entry") == 2 for d in nodes)
    # Real deploys still reach every node.
    assert a.deploy("after", functions["hello"])[0] == 201
    for d in nodes:
        assert wait_for(lambda: listed(d, "after"), timeout=15), d.log()


def test_a_tampered_entry_is_refused(sealed, functions):
    nats, nodes = sealed
    a, b, c = nodes
    before = [rejected(d, "entry") for d in nodes]
    raw = kv_raw(nats, "fn.app")
    assert b'"GREETING":"hi"' in raw
    # One byte flipped: the environment the function gets.
    nats_pub(nats, "$KV.spate-registry.fn.app", raw.replace(b'"GREETING":"hi"', b'"GREETING":"ho"'))
    for i, d in enumerate(nodes):
        assert wait_for(lambda: rejected(d, "entry") == before[i] + 1, timeout=15), d.log()
        assert "refused registry entry fn.app" in d.log()
    for d in nodes:
        assert d.invoke("app", b"env:GREETING") == (200, b"hi")
    # A bare delete of the key (as `nats kv del` writes it) is refused too.
    nats_pub_delete(nats, "fn.app")
    for i, d in enumerate(nodes):
        assert wait_for(lambda: rejected(d, "entry") == before[i] + 2, timeout=15), d.log()
    time.sleep(1)
    assert all(listed(d, "app") for d in nodes)
    # A node starting while the bucket holds only a refused value for the
    # function keeps the version it runs (it is no delete).
    assert c.stop() == 0
    c.start()
    assert wait_for(lambda: "registry followed" in c.log(), timeout=20), c.log()
    assert wait_for(lambda: "refused registry entry fn.app" in c.log(), timeout=10), c.log()
    time.sleep(1)
    assert listed(c, "app"), c.log()
    assert c.invoke("app", b"env:GREETING") == (200, b"hi")
    # A real change still reaches every node, and a real delete too.
    assert b.deploy("app", functions["probe"], env="GREETING%3Dhey")[0] == 200
    for d in nodes:
        assert wait_for(lambda: d.invoke("app", b"env:GREETING") == (200, b"hey"), timeout=15)
    assert c.request("DELETE", "/v1/functions/after")[0] == 204
    for d in nodes:
        assert wait_for(lambda: not listed(d, "after"), timeout=15), d.log()


def nats_pub_delete(nats, key):
    """A KV delete marker: an empty message with the KV-Operation header."""
    cl = NatsClient(nats)
    try:
        hdr = b"NATS/1.0\r\nKV-Operation: DEL\r\n\r\n"
        cl.sock.sendall(f"HPUB $KV.spate-registry.{key} {len(hdr)} {len(hdr)}\r\n".encode() +
                        hdr + b"\r\n")
        cl.flush()
    finally:
        cl.close()


def test_forged_chunks_after_the_real_ones_do_not_hide_them(sealed, functions):
    nats, nodes = sealed
    a, b, c = nodes
    assert c.stop() == 0
    data = unique_artifact(functions, "hello")
    sha = hashlib.sha256(data).hexdigest()
    assert a.deploy("late", data)[0] == 201
    # a publishes the chunks, then the entry, after its answer: b deploying
    # it means the real chunks are in the stream (forged ones sent before
    # them would be removed by the upload, and would test nothing).
    assert wait_for(lambda: listed(b, "late"), timeout=20), b.log()
    # What a forger may publish after the real chunks: other bytes, twice.
    for _ in range(2):
        nats_pub(nats, f"spate.artifact.{sha}.0", b"forged" * 100)
        nats_pub(nats, f"spate.artifact.{sha}.n", b"1 600")
    c.start()  # catches up: fetches the artifact
    assert wait_for(lambda: listed(c, "late"), timeout=20), c.log()
    assert c.invoke("late", b"x")[0] == 200
    assert rejected(c, "chunk") >= 2, c.log()
    assert f"refused artifact chunk spate.artifact.{sha}" in c.log()


def test_forged_heartbeats_and_invocations_are_refused(sealed, functions):
    nats, nodes = sealed
    a = nodes[0]
    ids = {node_id(d) for d in nodes}
    before = [rejected(d, "message") for d in nodes]
    hb = {"id": "f" * 16, "url": "http://127.0.0.1:1", "instances": 0, "functions": 0}
    for _ in range(3):
        nats_pub(nats, "spate.node.hb", json.dumps(hb).encode())
    cl = NatsClient(nats)
    try:
        # No node runs it nor answers.
        for d in nodes:
            assert cl.request(f"spate.invoke.{node_id(d)}.app", b"env:GREETING", timeout=3) is None
    finally:
        cl.close()
    for i, d in enumerate(nodes):
        assert wait_for(lambda: rejected(d, "message") >= before[i] + 4, timeout=10), d.log()
        assert {n["id"] for n in d.json("GET", "/v1/nodes")[1]["nodes"]} == ids
    assert "refused message spate.node.hb" in a.log()
    # A real heartbeat with its time changed (to replay it later): refused.
    cl = NatsClient(nats)
    try:
        cl.subscribe("spate.node.hb")
        hdr, data = cl.next_msg(5)
        assert b"Spate-Seal: " in hdr and b"Spate-Sent-Ms: " in hdr, hdr
        old = re.sub(rb"Spate-Sent-Ms: \d+", b"Spate-Sent-Ms: 1000", hdr)
        mark = [rejected(d, "message") for d in nodes]
        cl.sock.sendall(f"HPUB spate.node.hb {len(old)} {len(old) + len(data)}\r\n".encode() +
                        old + data + b"\r\n")
        cl.flush()
    finally:
        cl.close()
    for i, d in enumerate(nodes):
        assert wait_for(lambda: rejected(d, "message") > mark[i], timeout=10), d.log()
    assert sum(rejected(d, "message") - before[i] for i, d in enumerate(nodes)) >= 10
    # Invocations routed between the real nodes still work (sealed).
    assert a.invoke("app", b"env:GREETING") == (200, b"hey")


def test_a_node_with_another_key_refuses_and_is_refused(sealed, tmp_path, functions):
    nats, nodes = sealed
    key = write_key(tmp_path / "other.key", b"another key, also more than thirty-two bytes long")
    d = Spated(tmp_path / "other", args=["--cluster", nats.urls, "--cluster-key", str(key)])
    d.workdir.mkdir()
    d.start()
    try:
        assert wait_for(lambda: rejected(d, "entry") >= 1, timeout=15), d.log()
        assert "does not match" in d.log()
        assert not listed(d, "app")
        time.sleep(2)  # its heartbeats: refused by the others
        for n in nodes:
            assert node_id(d) not in {x["id"] for x in n.json("GET", "/v1/nodes")[1]["nodes"]}
    finally:
        d.stop()


def test_a_key_file_others_may_read_is_refused(sealed, tmp_path):
    nats, _ = sealed
    key = write_key(tmp_path / "open.key", b"x" * 40)
    os.chmod(key, 0o644)
    d = Spated(tmp_path / "open", args=["--cluster", nats.urls, "--cluster-key", str(key)])
    d.workdir.mkdir()
    with pytest.raises(RuntimeError) as e:
        d.start()
    assert "group or others may access it (chmod 600)" in str(e.value)
    write_key(tmp_path / "short.key", b"short\n")
    d.args[-1] = str(tmp_path / "short.key")
    with pytest.raises(RuntimeError) as e:
        d.start()
    assert "shorter than 32 bytes" in str(e.value)


def test_without_a_key_the_same_forgery_is_deployed(tmp_path_factory, functions):
    """What the key protects: the forger's entry, as above, deployed."""
    with spated_cluster(tmp_path_factory, name="bare", n=2) as (nats, (a, b)):
        assert "are not authenticated" in a.log()
        assert a.deploy("app", functions["probe"])[0] == 201
        raw = wait_for(lambda: kv_raw(nats, "fn.app"), timeout=15)
        assert raw is not None
        entry = json.loads(raw)
        data = unique_artifact(functions, "hello")
        entry.update(sha256=forge_artifact(nats, data), size=len(data), origin="forger")
        nats_pub(nats, "$KV.spate-registry.fn.evil", json.dumps(entry).encode())
        for d in (a, b):
            assert wait_for(lambda: listed(d, "evil"), timeout=15), d.log()
            assert d.invoke("evil", b"x")[0] == 200


def test_schedules_and_leases_work_sealed_and_refuse_forgeries(sealed):
    """Schedules (sc.) and their leases (lease.schedule.NAME) are sealed
    too: one node holds and fires; a forged lease or schedule changes
    nothing; a delete (a sealed tombstone) reaches every node."""
    nats, nodes = sealed
    a, b, c = nodes

    def schedule(d, name):
        code, doc = d.json("GET", f"/v1/schedules/{name}")
        return doc if code == 200 else None

    def runs(d):
        code, doc = d.json("GET", "/v1/topics/ticks/messages?limit=1000")
        return len(doc["messages"]) if code == 200 else 0

    code, doc = a.json("PUT", "/v1/schedules/tick",
                       json.dumps({"expression": "@every 1s", "topic": "ticks"}).encode())
    assert code == 201, doc
    ids = {node_id(d) for d in nodes}
    assert wait_for(lambda: all(schedule(d, "tick") for d in nodes) and
                    len({schedule(d, "tick")["lease_holder"] for d in nodes}) == 1 and
                    schedule(a, "tick")["lease_holder"] in ids, timeout=60), \
        [schedule(d, "tick") for d in nodes]
    holder = schedule(a, "tick")["lease_holder"]
    assert wait_for(lambda: runs(a) >= 2, timeout=30)
    before = [rejected(d, "entry") for d in nodes]
    # A forger claims the lease, and adds a schedule of its own.
    forged = {"node": "f" * 16, "expires_ms": int(time.time() * 1000) + 600000}
    nats_pub(nats, "$KV.spate-registry.lease.schedule.tick", json.dumps(forged).encode())
    evil = dict(schedule(a, "tick"), name="evil")
    nats_pub(nats, "$KV.spate-registry.sc.evil", json.dumps(evil).encode())
    assert wait_for(lambda: all(rejected(d, "entry") > before[i] for i, d in enumerate(nodes)),
                    timeout=15), [d.log() for d in nodes]
    n0 = runs(a)
    assert wait_for(lambda: runs(a) >= n0 + 3, timeout=30)  # still fired
    for d in nodes:
        assert schedule(d, "evil") is None
        assert schedule(d, "tick")["lease_holder"] in ids
    assert any("refused registry entry lease.schedule.tick" in d.log() for d in nodes)
    assert holder in ids
    assert b.request("DELETE", "/v1/schedules/tick")[0] == 204
    for d in nodes:
        assert wait_for(lambda: schedule(d, "tick") is None, timeout=30), d.log()
    assert kv_raw(nats, "sc.tick").startswith(SEAL)  # the tombstone, sealed
