"""The nemesis against a cluster (issue 21, item 3): three nats-servers with
JetStream (R3 streams) and three spated nodes (--cluster), with the
workload and the checker of nemesis.py.

Faults, one at a time at random (seeded) moments, each healed before the
next:
  * ``spated_kill``: kill -9 of a spated node, restarted on its data
    directory with the same options (a new port: the clients follow it);
  * ``spated_pause``: SIGSTOP of a spated node for 0.2-3 s, then SIGCONT;
  * ``nats_kill``: kill -9 of a nats-server, restarted on its store;
  * ``nats_pause``: SIGSTOP of a nats-server for 0.2-3 s, then SIGCONT;
  * ``partition``: the third spated node and the third nats-server run in
    a network namespace of their own (test_partition.Partition: a veth
    pair; blackhole routes on both sides cut it), which is cut off for
    1-8 s: they keep each other, a minority, and lose the other servers,
    nodes and clients. The node may be a client of the server with it (it
    stays connected, to a server without a quorum: JetStream's answers stop)
    or of one outside (its connection goes silent);
  * ``nats_partition``: only the routes of that nats-server are cut for
    1-8 s (its routes use addresses of their own): it loses the other
    servers, every client keeps its connection to it — a node that is its
    client stays connected but JetStream's answers stop, and what it sent
    reaches the others only when TCP brings it after the heal;
  * ``node_partition``: everything but those routes is cut for 1-8 s: the
    node loses the servers outside and the clients, the server its clients
    outside, and the server stays in the cluster (the partition of a node
    alone, as before session 45).
The last three need root and network namespaces; without them they are left
out. Never more than one nats-server is down, paused or cut off at a time
(JetStream R3 needs a quorum of 2): a fault of one ends, and every server
answers /healthz ok (its streams caught up), before the next fault begins.

Workload (nemesis.Workload; its clients are spread over the three nodes: a
thread that gets no answer, or a 5xx, goes on with the next node; what it
was sending is not sent again, so its outcome stays "unknown"): keyed
publishes to an ordered trigger, ndjson batches to a trigger of batches
(an exec function), direct invokes (a node with no room routes them) and
SQS (a cluster serves standard queues: a DeleteMessage goes to the node of
the receive). Left out: the full disk (JetStream's store, not spated's, holds
the messages) and SQS delays (refused in cluster mode).

Checker (nemesis.check with Redeliveries): nothing acknowledged lost; a
duplicate run only with a fault between the two runs that can lose a
settlement: a spated kill -9 or cut off (its unacknowledged work is
redelivered after the ack wait, the function's timeout + 5 s), a nats-server
killed or paused (an acknowledgement on its way, or a consumer leader's
state, lost); a SIGSTOP of spated shorter than the ack wait explains no
redelivery, but a node that wakes past a function's timeout times the call
out, and its retry is a run again (spated_pause_timeout); so is a deliberate
failure's final attempt handed back for 1 s when its dead letter's publish
failed (dead_letter_publish_retried). Ordered: never two of a key at once;
never out of publish order among answered publishes, except a replay with
such a fault in between, or a message JetStream skipped (nats-server before
2.11 can forget a delivery its replicas did not agree on) that a node found
and published again — it runs late, once for each such warning in the
nodes' logs (jetstream_skip). Dead letters exactly the deliberate failures.

Used by tests/integration/test_cluster_nemesis.py (a short run) and
bench/cluster-nemesis (a long one).
"""

import collections
import json
import os
import re
import random
import shutil
import signal
import threading
import time
import urllib.request

import nemesis
from conftest import Spated, wait_for
from natscluster import NatsCluster

# The functions' timeout: a trigger's AckWait is it + 5 s, so what a dead
# node held comes back after 7 s.
TIMEOUT_MS = 2000
ACK_WAIT_S = TIMEOUT_MS / 1000 + 5
# Faults that can lose a settlement (and so make a message run again).
REDELIVERING = ("spated_kill", "partition", "nats_kill", "nats_pause", "nats_partition",
                "node_partition")
KINDS = ("spated_kill", "spated_pause", "nats_kill", "nats_pause", "partition", "nats_partition",
         "node_partition")
# On the third node or server, in the namespace.
PARTED = ("partition", "nats_partition", "node_partition")
# A node's warning that it published again what JetStream skipped: the key.
# Only the copy stored (not "by another node", a duplicate of it, nor "cannot
# be published again"): one allowance per copy.
SKIPPED = re.compile(r"ord seq=\d+ \(consumer \S+, key (\S+)\) was skipped by JetStream "
                     r"[^\n]*published again as seq=\d+, after")


class ClusterNode(nemesis.Client):
    def __init__(self, d):
        self.d = d


class Spread:
    """The cluster's nodes as one client: each thread starts on a node of
    its own and stays there until a request gets no answer or a 5xx, then
    goes on with the next."""

    def __init__(self, nodes):
        self.nodes = nodes
        self.local = threading.local()
        self.next = 0
        self.lock = threading.Lock()
        self.moves = 0

    def where(self):
        """The index of the node this thread asks now."""
        self.current()
        return self.local.i

    def current(self):
        if not hasattr(self.local, "i"):
            with self.lock:
                self.local.i = self.next % len(self.nodes)
                self.next += 1
        return self.nodes[self.local.i]

    def moved(self, status):
        if status is None or status >= 500:
            with self.lock:
                self.moves += 1
            self.local.i = (self.local.i + 1) % len(self.nodes)

    def request(self, *args, **kw):
        status, doc = self.current().request(*args, **kw)
        self.moved(status)
        return status, doc

    def sqs(self, *args, **kw):
        status, doc = self.current().sqs(*args, **kw)
        self.moved(status)
        return status, doc

    def queue_url(self, name):
        return self.current().queue_url(name)


class Redeliveries:
    """How the checker reads the cluster's faults (nemesis.Lives is one
    spated's): no fault ends a life of the whole. A run again (b after a) is
    explained
      * as a redelivery by a fault that can lose a settlement (REDELIVERING)
        which began before b started and ended, with SLACK_NS, after a began;
      * as a retry (b's attempt above a's: a counted as failed though its
        function recorded success) by a SIGSTOP of a spated node while a's
        timeout ran: the node wakes past the deadline and times the call out
        ("spated_pause_timeout"). The deadline runs from the call's dispatch,
        up to a timeout before its run starts: a call handed to an instance
        before the pause can run just after it and still be timed out (seed
        475502933: a batch run 75 ms after a 2.6 s pause ended, "invocation
        timed out after 2000 ms" as the node woke)."""

    order_skips_unknown = True
    SLACK_NS = 2_000_000_000  # a settlement sent just after the fault's end, lost in a reconnect

    def __init__(self, events, skipped=(), source_again=(), src_added=None):
        self.faults = sorted((e[1], e[2], e[0]) for e in events if e[0] in REDELIVERING)
        self.pauses = sorted((e[1], e[2]) for e in events if e[0] == "spated_pause")
        # Keys of the ordered messages JetStream skipped and a node published
        # again (jsqueue/skipped.c, logged): each runs once late.
        self.skipped = collections.Counter(skipped)
        self.source_again = source_again  # nemesis.source_events()
        self.src_added = src_added or {}  # Workload.src_added

    def epoch(self, ns):
        return 0

    def life_known(self, ns):
        return True

    def explain(self, a, b):
        if b[3] > a[3] and any(t0 < a[4] + TIMEOUT_MS * 1_000_000
                               and t1 > a[4] - TIMEOUT_MS * 1_000_000
                               for t0, t1 in self.pauses):
            return "spated_pause_timeout"
        for t0, t1, kind in self.faults:
            if a[4] < t1 + self.SLACK_NS and b[4] >= t0:
                return kind
        # A deliberate failure's final attempt again about 1 s later: its
        # dead letter's publish failed ("cannot publish to ord.dlq"), and the
        # message is handed back for 1 s with its attempt number
        # (jsqueue__dead_letter); the campaign of seed 20261204 had one.
        if (":fail" in a[2] and a[3] == b[3] == nemesis.MAX_ATTEMPTS
                and 0.9e9 <= b[4] - a[4] <= 2.5e9):
            return "dead_letter_publish_retried"
        if nemesis.source_reread(a, b, self.source_again, self.src_added):
            return "source_reread"
        return None

    def explain_late(self, a, b):
        """b's run after a later message of its key: a message that
        JetStream skipped, found and published again (one for each logged).
        Its first run, or a run again when JetStream forgot a retry's
        delivery (the copy starts at attempt 1)."""
        if self.skipped[b[1]] > 0:
            self.skipped[b[1]] -= 1
            return "jetstream_skip"
        return None

    explain_replay = explain

    def sqs_life(self, ns):
        # A receive lost with a killed node is not counted (docs/api.md).
        return sum(1 for t0, _, _ in self.faults if t0 <= ns)


def healthy(nats, i):
    try:
        with urllib.request.urlopen(f"http://{nats.hosts[i]}:{nats.monitor[i]}/healthz",
                                    timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


class ClusterNemesis:
    """Faults at random moments: see the module's documentation."""

    def __init__(self, nats, nodes, part, rng, log, scale=1.0, kinds=None):
        self.nats, self.nodes, self.part = nats, nodes, part
        self.rng, self.log, self.scale = rng, log, scale
        self.only = kinds
        self.counts = {k: 0 for k in self.kinds()}
        self.problems = []
        self.events = []  # (kind, monotonic ns at its start, at its end, target)
        # Until every server is healthy / the node is back.
        self.heal_s = {"nats": [], "partition": []}

    def kinds(self):
        kinds = [k for k in KINDS if k not in PARTED or self.part]
        return [k for k in kinds if self.only is None or k in self.only]

    def run(self, faults, seconds=None):
        end = time.monotonic() + seconds if seconds else None
        n = 0
        while (faults is None or n < faults) and (end is None or time.monotonic() < end):
            time.sleep(self.rng.uniform(0.5, 2.0) * self.scale)
            kind = self.rng.choice(self.kinds())
            target = len(self.nodes) - 1 if kind in PARTED else \
                self.rng.randrange(len(self.nodes))
            t0 = time.monotonic_ns()
            getattr(self, kind)(target)
            if kind.startswith("nats") or kind.endswith("partition"):
                # It lasts until every server has caught up: acknowledgements
                # were lost up to 3.4 s after a restart (seed 20261204).
                self.nats_healthy(kind)
            self.events.append((kind, t0, time.monotonic_ns(), target))
            self.counts[kind] += 1
            n += 1
            if n % 10 == 0:
                self.log(f"nemesis: {n} faults {self.counts}")

    def nats_healthy(self, kind):
        t0 = time.monotonic()
        if not wait_for(lambda: all(healthy(self.nats, i) for i in range(len(self.nats.procs))),
                        timeout=60 * self.scale, step=0.2):
            self.problems.append(f"after {kind}: a nats-server not healthy within 60 s")
        self.heal_s["nats"].append(time.monotonic() - t0)

    def spated_kill(self, i):
        nemesis.kill_and_restart(self.nodes[i], self.rng.uniform(0, 0.5), f"node {i}",
                                 self.problems)

    def spated_pause(self, i):
        d = self.nodes[i]
        d.proc.send_signal(signal.SIGSTOP)
        time.sleep(self.rng.uniform(0.2, 3.0))
        d.proc.send_signal(signal.SIGCONT)

    def nats_kill(self, i):
        self.nats.kill(i)
        time.sleep(self.rng.uniform(0, 1.0))
        self.nats.start(i)

    def nats_pause(self, i):
        p = self.nats.procs[i]
        p.send_signal(signal.SIGSTOP)
        time.sleep(self.rng.uniform(0.2, 3.0))
        p.send_signal(signal.SIGCONT)

    def nats_partition(self, i):
        self.part.cut("routes")
        time.sleep(self.rng.uniform(1.0, 8.0))
        self.part.heal()

    def node_partition(self, i):
        self.partition(i, "clients")

    def partition(self, i, what="all"):
        d = self.nodes[i]
        self.part.cut(what)
        time.sleep(self.rng.uniform(1.0, 8.0))
        self.part.heal()
        t0 = time.monotonic()
        # Back: connected again (asked from within its namespace is not
        # needed: the clients reach it again once the routes are back).
        c = ClusterNode(d)
        if not wait_for(lambda: (c.request("GET", "/v1/nodes", timeout=5)[1] or {})
                        .get("connected"), timeout=60 * self.scale, step=0.2):
            self.problems.append("the cut-off node did not reconnect within 60 s of the heal")
        self.heal_s["partition"].append(time.monotonic() - t0)

    def resume_all(self):
        for d in self.nodes:
            if d.proc and d.proc.poll() is None:
                d.proc.send_signal(signal.SIGCONT)
        for p in self.nats.procs:
            if p and p.poll() is None:
                p.send_signal(signal.SIGCONT)
        if self.part:
            self.part.heal()


def make_partition(log):
    """test_partition's namespace and veth pair, up; None where it cannot be."""
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nsenter"):
        log("no partition faults: network namespaces need root, ip(8) and nsenter(1)")
        return None
    from test_partition import Partition
    part = Partition()
    try:
        part.up()
        return part
    except RuntimeError as e:
        part.down()
        log(f"no partition faults: no network namespaces here: {e}")
        return None


def wait_up(nodes):
    """Every node sees all of them up."""
    for d in nodes:
        c = ClusterNode(d)
        assert wait_for(lambda: len([x for x in (c.request("GET", "/v1/nodes")[1] or {})
                                     .get("nodes", []) if x["state"] == "up"]) == len(nodes),
                        timeout=30), d.log()[-3000:]


def wait_known(nodes):
    """Every node knows the workload's functions, triggers and queue."""
    for d in nodes:
        c = ClusterNode(d)
        for path in ("/v1/triggers/ord/ordrec", "/v1/triggers/bat/batrec",
                     "/v1/functions/invrec", "/v1/triggers/src/srcrec", "/v1/sources/nemsrc"):
            assert wait_for(lambda: c.request("GET", path)[0] == 200, timeout=30), (path, d.log())
        assert wait_for(lambda: c.sqs("GetQueueUrl", {"QueueName": "nemq"})[0] == 200,
                        timeout=30), d.log()
    time.sleep(1)  # consumers bound and pullers started on every node


def run(workdir, functions, seed, faults=None, seconds=None, scale=1.0, log=print,
        drain_timeout=180, kinds=None, log_level=None):
    """One run: starts the nats-servers and the nodes (workdir must be
    reachable by the functions' user), the workload and the nemesis; drains
    and checks. (fig, problems, text)."""
    workdir.chmod(0o1777)
    log(f"cluster nemesis seed {seed}")
    part = make_partition(log) if kinds is None or set(PARTED) & set(kinds) else None
    nats, nodes, wl = None, [], None
    try:
        if part:
            nats = NatsCluster(workdir, hosts=[part.outer, part.outer, part.inner],
                               route_hosts=[part.outer_routes, part.outer_routes,
                                            part.inner_routes],
                               prefixes=[[], [], part.enter()])
        else:
            nats = NatsCluster(workdir)
        for i in range(3):
            inside = part and i == 2
            args = ["--cluster", nats.urls] + (["--log-level", log_level] if log_level else [])
            d = Spated(workdir / f"node{i}", args=args, writable=[workdir],
                       host=part.inner if inside else "127.0.0.1",
                       prefix=part.enter() if inside else [])
            d.workdir.mkdir()
            nodes.append(d.start())
        spread = Spread([ClusterNode(d) for d in nodes])
        # The source's redis-server where every node reaches it (node 2 may
        # be in a network namespace): not faulted itself, but cut off from
        # node 2 with its partitions.
        wl = nemesis.Workload(spread, workdir, functions, seed, log, timeout_ms=TIMEOUT_MS,
                              probe_topic=False, redis_host=part.outer if part else "127.0.0.1")
        # "retrying" is JetStream's NumRedelivered here: seen at 3 on every
        # node with nothing pending (depth and in_flight 0) after a run.
        wl.busy_fields = ("depth", "in_flight")
        wait_up(nodes)
        wl.setup()
        wait_known(nodes)
        nem = ClusterNemesis(nats, nodes, part, random.Random(seed), log, scale, kinds)
        wl.start()
        t_start = time.monotonic()
        try:
            nem.run(faults, seconds)
        finally:
            nem.resume_all()
        fault_s = time.monotonic() - t_start
        drained = wl.drain(drain_timeout * scale)
        skipped = [m.group(1) for d in nodes for n in range(1, d.starts + 1)
                   for m in SKIPPED.finditer((d.workdir / f"spated-{n}.log")
                                             .read_text(errors="replace"))]
        fig, problems = nemesis.check(spread, wl, nem,
                                      Redeliveries(nem.events, skipped, nemesis.source_events(
                                          [d.workdir / f"spated-{n}.log" for d in nodes
                                           for n in range(1, d.starts + 1)]), wl.src_added))
        fig["notes"] = [
            f"faults for {fault_s:.0f} s; clients moved to another node {spread.moves} times; "
            f"nats-servers healthy again after a fault: max "
            f"{max(nem.heal_s['nats'], default=0):.1f} s; the cut-off node connected again "
            f"after the heal: max {max(nem.heal_s['partition'], default=0):.1f} s"]
        for i, d in enumerate(nodes):
            rc = d.stop()
            if rc != 0:
                problems.append(f"node {i} exited with {rc} when stopped")
            for n in range(1, d.starts + 1):
                text = (d.workdir / f"spated-{n}.log").read_text(errors="replace")
                if "Sanitizer" in text:
                    problems.append(f"node{i}/spated-{n}.log has a sanitizer report")
        with open(workdir / "nemesis.json", "w") as f:  # for a post-mortem
            json.dump({"seed": seed, "events": nem.events, "ord": wl.ord, "bat": wl.bat,
                       "inv": wl.inv, "src": wl.src, "sent": wl.sent, "sqs_sent": wl.sqs_sent,
                       "sqs_receives": wl.sqs_receives,
                       "sqs_deleted": wl.sqs_deleted, "problems": problems}, f)
        if not drained:
            problems.append("did not drain (triggers or the queue still busy)")
        fig["seed"] = seed
        return fig, problems, nemesis.summary(fig, problems)
    finally:
        if wl and wl.redis:
            wl.redis.close()
        for d in nodes:
            if d.proc and d.proc.poll() is None:
                d.proc.send_signal(signal.SIGCONT)
                d.stop()
        if nats:
            for p in nats.procs:
                if p and p.poll() is None:
                    p.send_signal(signal.SIGCONT)
            nats.stop()
        if part:
            part.down()
