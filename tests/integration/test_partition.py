"""Cluster mode across a network partition. One spated node runs in a
network namespace of its own, joined to this one by a veth pair; the
nats-servers and the two other nodes stay here. Cutting the pair's routes
(blackhole routes on both sides: packets vanish, no reset tells anyone)
cuts the node off from NATS: it notices, stops pulling, and refuses
publishes; JetStream hands what it held to the others after AckWait; when
the routes come back it reconnects and takes work again. Nothing is lost.

Only loopback addresses are used: both ends of the pair carry addresses of
127.0.0.0/8 (route_localnet lets them leave the loopback device), with a
host route in each side's local table so that the peer's address is not
taken as one's own."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import Spated, wait_for
from natscluster import (NatsCluster, add_trigger, attempts, deploy_everywhere, ended, ok_count,
                         publish_lines, record_dir)


def sh(*cmd, ns=None):
    prefix = ["ip", "netns", "exec", ns] if ns else []
    r = subprocess.run([*prefix, *cmd], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")


class Partition:
    """A network namespace and the veth pair that joins it to this one,
    with two pairs of addresses across it: (outer, inner) for everything
    but nats-servers' routes, (outer_routes, inner_routes) for those (a
    nats-server in the namespace listens for routes on inner_routes, those
    outside on outer_routes), so that a cut can take the routes alone."""

    def __init__(self):
        pid = os.getpid()
        self.ns = f"spate-part-{pid}"
        self.outer_if, self.inner_if = f"spo{pid % 100000}", f"spi{pid % 100000}"
        net = f"127.{100 + pid % 100}.{pid // 100 % 250}"
        self.outer, self.inner = f"{net}.1", f"{net}.2"
        self.outer_routes, self.inner_routes = f"{net}.3", f"{net}.4"

    def up(self):
        sh("ip", "netns", "add", self.ns)
        sh("ip", "link", "add", self.outer_if, "type", "veth", "peer", "name", self.inner_if,
           "netns", self.ns)
        for ns, dev, mine, _ in self.sides():
            if ns:
                sh("ip", "link", "set", "lo", "up", ns=ns)
            sh("sysctl", "-qw", f"net.ipv4.conf.{dev}.route_localnet=1", ns=ns)
            for address in mine:
                sh("ip", "addr", "add", f"{address}/32", "dev", dev, ns=ns)
            sh("ip", "link", "set", dev, "up", ns=ns)
        self.heal()

    def sides(self):
        """(namespace or None for this one, device, own addresses, peer's):
        the addresses as (for all else, for routes)."""
        return ((None, self.outer_if, (self.outer, self.outer_routes),
                 (self.inner, self.inner_routes)),
                (self.ns, self.inner_if, (self.inner, self.inner_routes),
                 (self.outer, self.outer_routes)))

    def enter(self):
        """A command prefix that runs a program in the namespace. Only the
        network namespace: `ip netns exec` would also mount a sysfs of its
        own, hiding the cgroups spated limits instances with."""
        return ["nsenter", f"--net=/run/netns/{self.ns}"]

    def cut(self, what="all"):
        """Packets to the other side vanish (no reset tells anyone): all of
        them, only those between the route addresses ("routes": a
        connection takes its source from the route to its peer, the one of
        its pair), or all but those ("clients")."""
        pairs = {"all": slice(0, 2), "routes": slice(1, 2), "clients": slice(0, 1)}[what]
        for ns, _, _, peer in self.sides():
            for address in peer[pairs]:
                sh("ip", "route", "replace", "blackhole", f"{address}/32", "table", "local",
                   ns=ns)

    def heal(self):
        for ns, dev, mine, peer in self.sides():
            for src, address in zip(mine, peer):
                sh("ip", "route", "replace", f"{address}/32", "dev", dev, "src", src, "table",
                   "local", ns=ns)

    def down(self):
        # The namespace takes its end of the pair with it, and the pair the
        # other end, its address and both routes; the second is for a pair
        # whose move into the namespace failed.
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.outer_if], capture_output=True)


@pytest.fixture(scope="module")
def parted(tmp_path_factory):
    if not shutil.which("nats-server"):
        pytest.fail("nats-server is not installed (scripts/install-deps.sh installs it)")
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("network namespaces need root and ip(8)")
    part = Partition()
    try:
        part.up()
    except RuntimeError as e:
        part.down()
        pytest.skip(f"no network namespaces here: {e}")
    tmp = tmp_path_factory.mktemp("partition")
    tmp.chmod(0o755)
    nats = None
    nodes = []
    try:
        nats = NatsCluster(tmp, host=part.outer)
        for i in range(3):
            inside = i == 2
            d = Spated(tmp / f"node{i}", args=["--cluster", nats.urls],
                       host=part.inner if inside else "127.0.0.1",
                       prefix=part.enter() if inside else [])
            d.workdir.mkdir()
            nodes.append(d.start())
        for d in nodes:
            assert wait_for(lambda: len([n for n in d.json("GET", "/v1/nodes")[1]["nodes"]
                                         if n["state"] == "up"]) == 3, timeout=20), d.log()
        yield part, nats, nodes
    finally:
        for d in nodes:
            d.stop()
        if nats:
            nats.stop()
        part.down()


def inside(part, d, method, path, body=b""):
    """An HTTP request from within the node's namespace: (status, body)."""
    code = ("import http.client,sys\n"
            f"c=http.client.HTTPConnection({d.host!r},{d.port},timeout=20)\n"
            f"c.request({method!r},{path!r},body=sys.stdin.buffer.read())\n"
            "r=c.getresponse();sys.stdout.write(str(r.status)+'\\n');"
            "sys.stdout.flush();sys.stdout.buffer.write(r.read())\n")
    r = subprocess.run([*part.enter(), sys.executable, "-c", code],
                       input=body, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    status, _, out = r.stdout.partition(b"\n")
    return int(status), out


def ok_inside(part, d, function):
    for line in inside(part, d, "GET", "/metrics")[1].decode().splitlines():
        if line.startswith(f'spate_invocations_total{{function="{function}",outcome="ok"}} '):
            return float(line.split()[-1])
    return 0


def state_of(d, node):
    for n in d.json("GET", "/v1/nodes")[1]["nodes"]:
        if n["id"] == node:
            return n["state"]
    return None


def test_a_node_cut_off_from_nats_stops_and_loses_nothing(parted, functions, tmp_path):
    part, nats, (a, b, c) = parted
    c_id = c.json("GET", "/v1/nodes")[1]["self"]
    rec = record_dir(tmp_path) / "parted.txt"
    # Timeout 2 s: what the cut-off node held goes to the others after 7 s.
    deploy_everywhere(a, (a, b, c), "parted", functions["recorder"], max=4, timeout=2000,
                      env=f"RECORD%3D{rec}&env=SLEEP_US%3D20000")
    add_trigger(a, (a, b, c), "orders", "parted")
    before = [f"before{i}" for i in range(600)]
    publish_lines(a, "orders", before)
    assert wait_for(lambda: ok_count(c, "parted") > 10, timeout=30), c.log()

    part.cut()
    t0 = time.time()
    # It notices (missing PONGs), and says so.
    assert wait_for(lambda: inside(part, c, "GET", "/v1/nodes")[1] and
                    not json.loads(inside(part, c, "GET", "/v1/nodes")[1])["connected"],
                    timeout=30, step=0.5), c.log()
    noticed = time.time() - t0
    assert "lost the connection to NATS" in c.log()
    status, body = inside(part, c, "POST", "/v1/topics/orders/messages", b"lost\n")
    assert status == 503, body
    assert b"NATS" in body, body
    # The others see it go, and finish everything, its share too.
    assert wait_for(lambda: state_of(a, c_id) == "down", timeout=30)
    assert wait_for(lambda: set(before) <= set(ended(rec)), timeout=120), \
        len(set(before) - set(ended(rec)))
    during = [f"during{i}" for i in range(200)]
    publish_lines(b, "orders", during)
    # It pulls nothing while cut off (what it was running when it noticed
    # has long finished).
    ran = ok_inside(part, c, "parted")
    assert wait_for(lambda: set(during) <= set(ended(rec)), timeout=60)
    assert ok_inside(part, c, "parted") == ran
    print(f"\ncut off: noticed after {noticed:.1f} s; the others did all {len(before)} + "
          f"{len(during)} messages while it was away")

    part.heal()
    t1 = time.time()
    assert wait_for(lambda: c.json("GET", "/v1/nodes")[1]["connected"], timeout=60), c.log()
    assert wait_for(lambda: state_of(a, c_id) == "up" and state_of(c, c_id) == "up", timeout=30)
    back = time.time() - t1
    after = [f"after{i}" for i in range(600)]
    publish_lines(c, "orders", after)
    assert wait_for(lambda: set(after) <= set(ended(rec)), timeout=120)
    # It takes work again.
    assert ok_count(c, "parted") > ran
    runs = ended(rec)
    every = before + during + after
    assert set(runs) == set(every)  # nothing lost, nothing made up
    assert "lost" not in runs
    # What it held when cut off ran elsewhere as a first attempt: JetStream
    # counted a delivery, but waiting never costs an attempt.
    assert attempts(rec) == {1}
    assert wait_for(lambda: a.json("GET", "/v1/topics/orders")[1]["depth"] == 0, timeout=30)
    assert a.json("GET", "/v1/topics/orders")[1]["published"] == len(every)
    print(f"healed: reconnected after {back:.1f} s; {len(runs) - len(every)} of {len(every)} "
          f"messages ran twice (at-least-once: acks lost in the cut)")
