"""Schedules and sources in cluster mode: three nats-servers with JetStream and
three spated nodes, all started here. Schedules and sources live in the
registry bucket: one added or removed through any node shows on every node.
A schedule fires on one node only, the holder of its lease, and moves to
another node when that one is killed; a source whose broker balances a
consumer group (Redis) runs on every node. Waits are generous bounds;
nothing asserts on speed, only on counts ("once per cluster, not once per
node")."""

import json
import signal
import time

import pytest

from conftest import Spated, deploy_recorder, wait_for
from natscluster import add_trigger, node_id, spated_cluster
from test_sources_redis import Redis, seen

# A lease moves once unrenewed for 10 s (limits.h SPATE_CLUSTER_LEASE_TTL_MS);
# the bound is far above it.
TAKEOVER_S = 60


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with spated_cluster(tmp_path_factory, "clusrc") as c:
        yield c


def schedule(d, name):
    code, doc = d.json("GET", f"/v1/schedules/{name}")
    return doc if code == 200 else None


def holder(d, name):
    doc = schedule(d, name)
    return doc and doc["lease_holder"]


def runs(d, topic):
    """The fire times of the runs published into topic (with repeats)."""
    code, doc = d.json("GET", f"/v1/topics/{topic}/messages?limit=1000")
    if code != 200:
        return []
    return [json.loads(m["payload"])["time"] for m in doc["messages"]]


def test_schedule_fires_once_per_cluster_and_moves_when_its_node_dies(cluster):
    nats, nodes = cluster
    a, b, c = nodes
    code, doc = a.json("PUT", "/v1/schedules/tick",
                       json.dumps({"expression": "@every 1s", "topic": "ticks"}).encode())
    assert code == 201, doc
    # Every node has it, and all agree on the one node that fires it.
    for d in (b, c):
        assert wait_for(lambda: schedule(d, "tick"), timeout=30), d.log()
        assert schedule(d, "tick")["expression"] == "@every 1s"
    ids = {node_id(d): d for d in nodes}
    assert wait_for(lambda: len({holder(d, "tick") for d in nodes}) == 1 and holder(a, "tick"),
                    timeout=TAKEOVER_S), [schedule(d, "tick") for d in nodes]
    first = holder(a, "tick")
    assert first in ids
    assert wait_for(lambda: len(runs(a, "ticks")) >= 2, timeout=30)
    # Over ~6 s: about one run a second for the whole cluster, not one per node.
    n0, t0 = len(runs(a, "ticks")), time.monotonic()
    time.sleep(6)
    n1, elapsed = len(runs(a, "ticks")), time.monotonic() - t0
    assert 2 <= n1 - n0 <= elapsed + 2, (n1 - n0, elapsed)
    times = runs(a, "ticks")
    assert len(set(times)) == len(times), "a run fired twice"
    fired = [schedule(d, "tick")["fired"] for d in nodes]
    assert sum(1 for f in fired if f > 0) == 1, fired  # one node fired them all

    # The holder dies: another node takes the lease and firing goes on.
    dead = ids[first]
    dead.proc.send_signal(signal.SIGKILL)
    dead.proc.wait()
    killed = time.monotonic()
    alive = [d for d in nodes if d is not dead]
    assert wait_for(lambda: all(holder(d, "tick") not in (None, first) for d in alive) and
                    holder(alive[0], "tick") == holder(alive[1], "tick"),
                    timeout=TAKEOVER_S), [schedule(d, "tick") for d in alive]
    second = holder(alive[0], "tick")
    print(f"\nlease of 'tick' moved from {first} to {second} "
          f"{time.monotonic() - killed:.1f} s after the kill")
    before = len(runs(alive[0], "ticks"))
    assert wait_for(lambda: len(runs(alive[0], "ticks")) >= before + 3, timeout=30)
    times = runs(alive[0], "ticks")
    # At most one run fired twice across the failover (the one in flight).
    assert len(times) - len(set(times)) <= 1, sorted(times)
    # The dead node comes back: it does not fire too.
    dead.start()
    assert wait_for(lambda: holder(dead, "tick") == second, timeout=TAKEOVER_S), dead.log()
    n0, t0 = len(runs(a if a is not dead else b, "ticks")), time.monotonic()
    time.sleep(4)
    n1 = len(runs(a if a is not dead else b, "ticks"))
    assert n1 - n0 <= time.monotonic() - t0 + 2, (n1 - n0)

    # Removed through another node: gone everywhere, and no more runs.
    assert c.request("DELETE", "/v1/schedules/tick")[0] == 204
    for d in nodes:
        assert wait_for(lambda: d.json("GET", "/v1/schedules/tick")[0] == 404, timeout=30)
    time.sleep(1)
    n = len(runs(b, "ticks"))
    time.sleep(3)
    assert len(runs(b, "ticks")) == n


def source(d, name):
    code, doc = d.json("GET", f"/v1/sources/{name}")
    return doc if code == 200 else None


def consumers(r, stream, group):
    """The consumer names of a Redis group (XINFO CONSUMERS)."""
    out = r.cli("XINFO", "CONSUMERS", stream, group).split("\n")
    return {out[i + 1] for i, x in enumerate(out[:-1]) if x == "name"}


def test_source_on_every_node_with_a_consumer_group(cluster, functions, tmp_path):
    nats, (a, b, c) = cluster
    nodes = (a, b, c)
    r = Redis(tmp_path / "redis", password="s3cret-pw").start()
    try:
        rec = deploy_recorder(a, functions, tmp_path, name="srcrec", sleep_us=2000)
        for d in (b, c):
            assert wait_for(lambda: d.json("GET", "/v1/functions/srcrec")[0] == 200, timeout=30)
        add_trigger(a, nodes, "orders", "srcrec")
        r.xadd("orders", 0, 300)
        url = f"redis://:s3cret-pw@127.0.0.1:{r.port}/orders?group=spate"
        code, doc = a.json("PUT", "/v1/sources/orders-in",
                           json.dumps({"url": url, "topic": "orders"}).encode())
        assert code == 201, doc
        # Shown on every node, its password redacted there too.
        for d in (b, c):
            assert wait_for(lambda: source(d, "orders-in"), timeout=30), d.log()
            doc = source(d, "orders-in")
            assert "s3cret-pw" not in json.dumps(doc) and doc["topic"] == "orders"
            assert doc["runs_on"] == "every_node" and doc["lease_holder"] is None
        # Every node is a consumer of the group, each under its own name.
        ids = [node_id(d) for d in nodes]
        assert wait_for(lambda: all(any(i in n for n in consumers(r, "orders", "spate"))
                                    for i in ids), timeout=30), consumers(r, "orders", "spate")
        r.xadd("orders", 300, 300)
        want = {f"e{i}" for i in range(600)}
        assert wait_for(lambda: want <= set(seen(rec)), timeout=120), len(want - set(seen(rec)))
        got = seen(rec)
        assert len(got) <= len(want) + 30, len(got) - len(want)  # once-ish
        assert wait_for(lambda: r.pending("orders", "spate") == 0, timeout=30)
        # The group balanced them: more than one node committed entries.
        assert wait_for(lambda: sum(source(d, "orders-in")["committed"] for d in nodes) >= 600,
                        timeout=30)

        # Removed through another node: it stops everywhere.
        assert c.request("DELETE", "/v1/sources/orders-in")[0] == 204
        for d in nodes:
            assert wait_for(lambda: d.json("GET", "/v1/sources/orders-in")[0] == 404, timeout=30)
        time.sleep(2)  # a fetch under way ends (SPATE_SOURCE_WAIT_MS)
        r.xadd("orders", 600, 20)
        time.sleep(4)
        assert not {f"e{i}" for i in range(600, 620)} & set(seen(rec))
    finally:
        r.stop()


def test_a_stopped_node_lets_its_leases_go(cluster):
    nats, nodes = cluster
    a = nodes[0]
    code, doc = a.json("PUT", "/v1/schedules/tock",
                       json.dumps({"expression": "@every 1s", "topic": "tocks"}).encode())
    assert code == 201, doc
    assert wait_for(lambda: len({holder(d, "tock") for d in nodes}) == 1 and holder(a, "tock"),
                    timeout=TAKEOVER_S), [schedule(d, "tock") for d in nodes]
    ids = {node_id(d): d for d in nodes}
    first = holder(a, "tock")
    d = ids[first]
    assert wait_for(lambda: schedule(d, "tock")["fired"] >= 1, timeout=30)
    d.stop()  # SIGTERM: it releases the lease on its way out
    assert "released lease schedule.tock" in d.log()
    alive = [x for x in nodes if x is not d]
    assert wait_for(lambda: holder(alive[0], "tock") not in (None, first), timeout=TAKEOVER_S)
    before = len(runs(alive[0], "tocks"))
    assert wait_for(lambda: len(runs(alive[0], "tocks")) >= before + 2, timeout=30)
    d.start()
    assert wait_for(lambda: holder(d, "tock") not in (None, first), timeout=TAKEOVER_S), d.log()
    assert alive[1].request("DELETE", "/v1/schedules/tock")[0] == 204


def test_a_nodes_own_schedules_and_sources_move_into_the_cluster(cluster, tmp_path):
    """Made on a node before they were shared (its own SQLite registry): at
    its first start in the cluster they move into the bucket."""
    nats, (a, b, c) = cluster
    alone = Spated(tmp_path / "alone")
    alone.workdir.mkdir()
    alone.start()
    try:
        code, doc = alone.json("PUT", "/v1/schedules/legacy", json.dumps(
            {"expression": "@every 1h", "topic": "old"}).encode())
        assert code == 201, doc
        code, doc = alone.json("PUT", "/v1/sources/legacy-in", json.dumps(
            {"url": "redis://127.0.0.1:1/s?group=g", "topic": "old"}).encode())
        assert code == 201, doc
    finally:
        alone.stop()
    joined = Spated(tmp_path / "alone", data=alone.data, args=["--cluster", nats.urls])
    joined.start()
    try:
        for d in (a, b):
            assert wait_for(lambda: schedule(d, "legacy") and source(d, "legacy-in"),
                            timeout=30), joined.log()
        assert schedule(a, "legacy")["expression"] == "@every 1h"
        assert "moved from this node's registry" in joined.log()
    finally:
        joined.stop()
    # Removed in the cluster: it does not come back when that node starts again.
    assert a.request("DELETE", "/v1/schedules/legacy")[0] == 204
    assert a.request("DELETE", "/v1/sources/legacy-in")[0] == 204
    joined.start()
    try:
        assert wait_for(lambda: joined.json("GET", "/v1/nodes")[1]["nodes"], timeout=15)
        time.sleep(2)
        for d in (a, joined):
            assert d.json("GET", "/v1/schedules/legacy")[0] == 404
            assert d.json("GET", "/v1/sources/legacy-in")[0] == 404
    finally:
        joined.stop()
