"""A nemesis with a checker, in the spirit of Jepsen, for one spated (issue 21).

A workload runs against a real spated while faults hit it at random (seeded)
moments; when the faults stop and everything has drained, a checker reads
what the functions recorded and what the clients were answered, and says
whether anything acknowledged was lost, what ran twice and why, whether an
ordered trigger ever ran two of a key at once or out of order, whether dead
letters are exactly the deliberate failures, and whether SQS receive counts
agree with the receives seen.

Faults: ``kill`` (kill -9, restarted on the same data directory with the
same options), ``pause`` (SIGSTOP for 0.2-2 s, then SIGCONT), ``disk`` (the
data directory is on a small tmpfs: a ballast file fills it, spated must
answer 503, the ballast goes, spated must take publishes again by itself).

Workload (threads, all during the faults):
  * ``ord``: keyed publishes (each key owned by one publisher thread, so its
    publish order is known) to a topic with an ``ordered`` trigger of a
    native function (functions/nemesis_rec.c);
  * ``bat``: keyed and unkeyed ndjson publishes (1-4 messages) to a topic
    with an unordered trigger of batches (batch_size 5, an exec function
    with report_batch_item_failures);
  * ``inv``: direct invokes of the native function;
  * ``sqs``: SendMessage, ReceiveMessage (and DeleteMessage for most of what
    is received; the rest comes back after its visibility timeout);
  * ``src``: XADDs to a Redis stream (a redis-server of its own, every write
    fsynced: acknowledged is durable upstream) that a source drains into a
    topic with an unordered trigger of the native function.
A payload containing ``:fail`` fails in every attempt and must reach the
dead-letter topic; nothing else may.

Used by tests/integration/test_nemesis.py (a short run) and bench/nemesis
(a long one). tests/integration/cluster_nemesis.py runs the same workload
(its clients spread over a cluster's nodes) and checker (with a model of its
own faults: what explains a run again) against three nodes.
"""

import datetime
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

from conftest import Spated, fill_disk, wait_for, zipped

MAX_ATTEMPTS = 2
ORD_KEYS = 6
SQS_VISIBILITY = 2

# Exec function for the batches: records one line per message of each batch
# (the format of functions/nemesis_rec.c), fails those containing ":fail" by
# batchItemFailures.
BATCH_BOOTSTRAP = b"""#!/usr/bin/python3
import json, os, time, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
fd = os.open(os.environ["RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
while True:
    with urllib.request.urlopen(api + "next") as r:
        rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(r.read())
    start = time.monotonic_ns()
    time.sleep(0.002)
    end = time.monotonic_ns()
    failed = []
    for m in event:
        p = m.get("payload") or "-"
        os.write(fd, ("bat %s %s %d %d %d %d\\n" % (m.get("key") or "-", p, m["attempt"], start,
                                                  end, os.getpid())).encode())
        if ":fail" in p:
            failed.append({"itemIdentifier": m["messageId"]})
    urllib.request.urlopen(urllib.request.Request(
        api + rid + "/response", data=json.dumps({"batchItemFailures": failed}).encode(),
        method="POST")).read()
"""


class RedisStream:
    """A redis-server of the workload's own (appendfsync always: an XADD
    answered is on its disk) and one connection that XADDs to a stream."""

    def __init__(self, workdir, host="127.0.0.1"):
        self.host, self.dir = host, workdir / "redis"
        self.dir.mkdir()
        with socket.socket() as s:
            s.bind((host, 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [shutil.which("redis-server"), "--port", str(self.port), "--bind", host, "--dir",
             str(self.dir), "--save", "", "--appendonly", "yes", "--appendfsync", "always",
             # A cluster's outer address is not loopback: no password here.
             "--protected-mode", "no"],
            stdout=open(self.dir / "redis.log", "ab"), stderr=subprocess.STDOUT)
        self.sock, self.error = None, None  # the last error answered
        assert wait_for(lambda: self.connect(), timeout=10), (self.dir / "redis.log").read_text()

    def connect(self):
        try:
            self.sock = socket.create_connection((self.host, self.port), timeout=5)
            self.reader = self.sock.makefile("rb")
            return True
        except OSError:
            return False

    def xadd(self, stream, payload):
        """The entry's id, or None (no answer: unknown)."""
        words = [b"XADD", stream.encode(), b"*", b"payload", payload.encode()]
        req = b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)
        try:
            self.sock.sendall(req)
            line = self.reader.readline()
            if not line.startswith(b"$"):
                self.error = line.strip().decode(errors="replace")
                return None
            return self.reader.readline().strip().decode()
        except OSError:
            self.connect()
            return None

    def close(self):
        if self.sock:
            self.sock.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)


class Client:
    """HTTP and SQS requests to one spated (self.d, a conftest.Spated: its
    host and its port as of now, a restart changes it)."""

    def request(self, method, path, body=None, headers=None, timeout=15):
        """(status, parsed JSON or raw bytes); status None when the request
        failed (refused, reset, timed out: the outcome is not known)."""
        port = self.d.port
        try:
            conn = http.client.HTTPConnection(self.d.host, port, timeout=timeout)
            try:
                conn.request(method, path, body=body, headers=headers or {})
                r = conn.getresponse()
                data = r.read(1 << 20)
            finally:
                conn.close()
        except (OSError, http.client.HTTPException):
            return None, None
        try:
            return r.status, json.loads(data) if data else None
        except ValueError:
            return r.status, data

    def sqs(self, action, body, timeout=15):
        return self.request("POST", "/", json.dumps(body).encode(),
                            {"X-Amz-Target": "AmazonSQS." + action,
                             "Content-Type": "application/x-amz-json-1.0"}, timeout)

    def queue_url(self, name):
        return f"http://{self.d.host}:{self.d.port}/000000000000/{name}"


class Node(Client):
    """The spated under test: a conftest.Spated whose data directory is on a
    small tmpfs when it can be (root), so the disk can fill up."""

    def __init__(self, workdir, args=(), writable=(), tmpfs_size="256m"):
        self.workdir = workdir
        self.mnt = workdir / "disk"
        self.mnt.mkdir()
        self.tmpfs = os.geteuid() == 0 and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={tmpfs_size}", "tmpfs", str(self.mnt)]).returncode == 0
        self.ballast = self.mnt / "ballast"
        self.d = Spated(workdir, data=self.mnt / "data", args=args, writable=list(writable))
        self.lock = threading.Lock()  # held while restarting
        self.paused = False

    def start(self):
        self.d.start()

    def close(self):
        if self.d.proc and self.d.proc.poll() is None:
            self.d.proc.send_signal(signal.SIGCONT)
        self.d.stop()
        if os.environ.get("SPATE_NEMESIS_KEEP"):  # the store, for a post-mortem
            subprocess.run(["cp", "-a", str(self.mnt / "data"), str(self.workdir / "data-kept")])
        if self.tmpfs:
            subprocess.run(["umount", "-l", str(self.mnt)])


def kill_and_restart(d, gap_s, who, problems):
    """kill -9 of spated d, gap_s of nothing, and its restart on the same
    data; a start that fails is a finding (said in problems), tried again."""
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    time.sleep(gap_s)
    for attempt in range(3):
        try:
            d.start()
            return
        except RuntimeError as e:  # a finding: say it, try again
            problems.append(f"{who} did not start after kill -9: {str(e)[-400:]}")
            time.sleep(1)
    d.start()


class Nemesis:
    """Faults at random moments: see the module's documentation."""

    def __init__(self, node, rng, log, scale=1.0, kinds=None):
        self.node, self.rng, self.log, self.scale = node, rng, log, scale
        self.only = kinds  # None: every kind this machine can do
        self.counts = {"kill": 0, "pause": 0, "disk": 0}
        self.disk_refused = 0  # disk faults during which a publish was answered 503
        self.disk_recovery_s = []  # from the ballast's removal to the next 202
        self.problems = []
        self.events = []  # (kind, monotonic ns at its start, at its end)

    def kinds(self):
        kinds = ["kill", "pause"] + (["disk"] if self.node.tmpfs else [])
        return [k for k in kinds if self.only is None or k in self.only]

    def run(self, faults, seconds=None):
        end = time.monotonic() + seconds if seconds else None
        n = 0
        while (faults is None or n < faults) and (end is None or time.monotonic() < end):
            time.sleep(self.rng.uniform(0.2, 1.2) * self.scale)
            kind = self.rng.choice(self.kinds())
            t0 = time.monotonic_ns()
            getattr(self, kind)()
            self.events.append((kind, t0, time.monotonic_ns()))
            self.counts[kind] += 1
            n += 1
            if n % 20 == 0:
                self.log(f"nemesis: {n} faults {self.counts}")

    def kill(self):
        with self.node.lock:
            kill_and_restart(self.node.d, self.rng.uniform(0, 0.3), "spated", self.problems)

    def pause(self):
        d = self.node.d
        d.proc.send_signal(signal.SIGSTOP)
        time.sleep(self.rng.uniform(0.2, 2.0))
        d.proc.send_signal(signal.SIGCONT)

    def disk(self):
        node = self.node
        fill_disk(node.ballast)
        refused = False
        # The WAL may have room left (it is reused after a checkpoint, not
        # grown): publish 512 KB at a time until the store needs a block.
        for i in range(60):
            status, doc = node.request("POST", "/v1/topics/nemprobe/messages",
                                       b"".join(b"probe-%d-%d-%s\n" % (i, j, b"z" * 65536)
                                                for j in range(8)),
                                       {"Content-Type": "application/x-ndjson"})
            if status == 503:
                refused = True
                break
            if status not in (202, None):
                self.problems.append(f"disk full: a publish answered {status} {doc}")
                break
        self.disk_refused += refused
        time.sleep(self.rng.uniform(0.2, 1.5))
        os.unlink(node.ballast)
        t0 = time.monotonic()
        deadline = t0 + 30 * self.scale
        while time.monotonic() < deadline:
            if node.request("POST", "/v1/topics/nemprobe/messages", b"again")[0] == 202:
                self.disk_recovery_s.append(time.monotonic() - t0)
                return
            time.sleep(0.05)
        self.problems.append(f"the store did not take publishes again within {30 * self.scale:.0f} s "
                             "after the disk had room again")


class Workload:
    """The clients: see the module's documentation. Every request and its
    answer is kept for the checker."""

    def __init__(self, node, workdir, functions, seed, log, timeout_ms=None, probe_topic=True,
                 redis_host="127.0.0.1"):
        # node: a Client, or anything with its request, sqs and queue_url
        # (cluster_nemesis.Spread: the nodes of a cluster in turn).
        self.node, self.workdir, self.functions, self.log = node, workdir, functions, log
        self.seed = seed
        self.timeout_ms = timeout_ms  # the functions' timeout (a cluster's AckWait: it + 5 s)
        # A trigger's figures that are 0 once it has nothing left to do (in a
        # cluster "retrying" is JetStream's NumRedelivered, which can stay
        # above 0 with nothing pending: cluster_nemesis.py leaves it out).
        self.busy_fields = ("depth", "in_flight", "retrying")
        self.probe_topic = probe_topic  # the disk fault's topic
        self.stop = threading.Event()
        self.draining = threading.Event()
        self.threads = []
        self.lock = threading.Lock()
        # payload -> "acked" / "unknown" / "refused"
        self.ord, self.bat, self.inv, self.src = {}, {}, {}, {}
        self.src_added = {}  # payload -> monotonic ns when its XADD was sent
        # The source's redis-server listens there (None: no source; a
        # cluster's node in a network namespace reaches it on an outer address).
        self.redis_host, self.redis = redis_host, None
        self.ord_order = {}  # key -> [n, ...] in publish order
        self.sqs_sent = {}  # MessageId -> body (acknowledged sends)
        self.sqs_unknown = set()  # bodies of sends without an answer
        # (monotonic ns when the receive was asked, MessageId, body, ApproximateReceiveCount)
        self.sqs_receives = []
        self.sqs_deleted = {}  # MessageId -> monotonic ns of the acknowledged delete
        self.statuses = {}
        self.seqs = {}  # payload -> (seq, monotonic ns of the publish, of its answer)
        # payload -> (monotonic ns of the publish, of its answer, node asked):
        # where the client has a where() (a cluster's Spread), for a post-mortem
        self.sent = {}

    def record(self, what):
        return self.workdir / f"{what}.log"

    def setup(self):
        d = self.node
        for name in ("ord", "bat", "inv", "src"):
            path = self.record(name)
            path.touch()
            path.chmod(0o666)

        def ok(status, doc, want=(200, 201)):
            assert status in want, doc

        so = self.functions["nemesis_rec"].read_bytes()
        timeout = f"&timeout={self.timeout_ms}" if self.timeout_ms else ""
        for name, record in (("ordrec", "ord"), ("invrec", "inv")):
            ok(*d.request("PUT", f"/v1/functions/{name}?env=RECORD%3D{self.record(record)}"
                          f"&env=SLEEP_US%3D3000{timeout}", so))
        ok(*d.request("PUT", f"/v1/functions/batrec?runtime=exec&env=RECORD%3D{self.record('bat')}"
                      f"{timeout}", zipped({"bootstrap": BATCH_BOOTSTRAP})))
        ok(*d.request("PUT", f"/v1/triggers/ord/ordrec?ordered=true&max_attempts={MAX_ATTEMPTS}"))
        ok(*d.request("PUT", f"/v1/triggers/bat/batrec?batch_size=5&batch_window=50"
                      f"&report_batch_item_failures=true&max_attempts={MAX_ATTEMPTS}"))
        # The disk fault's probes: kept by nothing (a topic without a trigger
        # would keep them all and fill the disk for good).
        if self.probe_topic:
            ok(*d.request("PUT", "/v1/topics/nemprobe?max_messages=1"))
        ok(*d.sqs("CreateQueue", {"QueueName": "nemq",
                                  "Attributes": {"VisibilityTimeout": str(SQS_VISIBILITY)}}), want=(200,))
        if self.redis_host and shutil.which("redis-server"):
            self.redis = RedisStream(self.workdir, self.redis_host)
            ok(*d.request("PUT", f"/v1/functions/srcrec?env=RECORD%3D{self.record('src')}"
                          f"&env=SLEEP_US%3D1000{timeout}", so))
            ok(*d.request("PUT", f"/v1/triggers/src/srcrec?max_attempts={MAX_ATTEMPTS}"))
            ok(*d.request("PUT", "/v1/sources/nemsrc", json.dumps({
                "url": f"redis://{self.redis_host}:{self.redis.port}/nemsrc?group=spate",
                "topic": "src"}).encode()))

    def count(self, what, status):
        with self.lock:
            key = f"{what} {status}"
            self.statuses[key] = self.statuses.get(key, 0) + 1

    @staticmethod
    def outcome(status, want):
        return "acked" if status == want else ("unknown" if status is None else "refused")

    def pause_on_error(self, status):
        if status is None or status >= 500:
            time.sleep(0.05)  # restarting, paused or full: do not spin
        else:
            time.sleep(0.002)

    def start(self):
        for i in range(2):
            self.spawn(self.ord_publisher, i)
        self.spawn(self.bat_publisher, 0)
        self.spawn(self.invoker, 0)
        self.spawn(self.sqs_sender, 0)
        for i in range(2):
            self.spawn(self.sqs_receiver, i)
        if self.redis:
            self.spawn(self.src_producer, 0)

    def spawn(self, fn, i):
        rng = random.Random(f"{self.seed}-{fn.__name__}-{i}")
        t = threading.Thread(target=fn, args=(i, rng), daemon=True)
        t.start()
        self.threads.append(t)

    def ord_publisher(self, i, rng):
        keys = [f"k{j}" for j in range(ORD_KEYS) if j % 2 == i]
        n = 0
        while not self.stop.is_set():
            key = rng.choice(keys)
            n += 1
            payload = f"ord:{key}:{n}" + (":fail" if rng.random() < 0.03 else "")
            t0 = time.monotonic_ns()
            where = self.node.where() if hasattr(self.node, "where") else None
            status, doc = self.node.request("POST", "/v1/topics/ord/messages", payload.encode(),
                                            {"Spate-Key": key})
            self.count("ord", status)
            if where is not None:
                with self.lock:
                    self.sent[payload] = (t0, time.monotonic_ns(), where, status)
            if status == 202 and "first_seq" in doc:  # a cluster answers {"published": N}
                with self.lock:
                    self.seqs[payload] = (doc["first_seq"], t0, time.monotonic_ns())
            with self.lock:
                self.ord[payload] = self.outcome(status, 202)
                self.ord_order.setdefault(key, []).append(n)
            self.pause_on_error(status)

    def bat_publisher(self, i, rng):
        n = 0
        while not self.stop.is_set():
            lines = []
            for _ in range(rng.randint(1, 4)):
                n += 1
                lines.append(f"bat:{n}" + (":fail" if rng.random() < 0.03 else ""))
            headers = {"Content-Type": "application/x-ndjson"}
            if rng.random() < 0.3:
                headers["Spate-Key"] = f"b{rng.randint(0, 3)}"
            t0 = time.monotonic_ns()
            status, doc = self.node.request("POST", "/v1/topics/bat/messages",
                                            "".join(p + "\n" for p in lines).encode(), headers)
            self.count("bat", status)
            with self.lock:
                for j, p in enumerate(lines):
                    self.bat[p] = self.outcome(status, 202)
                    if status == 202 and "first_seq" in doc:
                        self.seqs[p] = (doc["first_seq"] + j, t0, time.monotonic_ns())
            self.pause_on_error(status)

    def invoker(self, i, rng):
        n = 0
        while not self.stop.is_set():
            n += 1
            payload = f"inv:{n}"
            status, _ = self.node.request("POST", "/v1/functions/invrec/invoke", payload.encode())
            self.count("invoke", status)
            with self.lock:
                self.inv[payload] = self.outcome(status, 200)
            self.pause_on_error(status)

    def src_producer(self, i, rng):
        n = 0
        while not self.stop.is_set():
            n += 1
            payload = f"src:{n}"
            with self.lock:
                self.src_added[payload] = time.monotonic_ns()
            entry = self.redis.xadd("nemsrc", payload)
            with self.lock:
                self.src[payload] = "acked" if entry else "unknown"
            time.sleep(0.01 if entry else 0.05)  # ~100/s: the others' share stays

    def sqs_sender(self, i, rng):
        n = 0
        while not self.stop.is_set():
            n += 1
            body = f"sqs:{n}"
            status, doc = self.node.sqs("SendMessage", {"QueueUrl": self.node.queue_url("nemq"),
                                                        "MessageBody": body})
            self.count("SendMessage", status)
            with self.lock:
                if status == 200:
                    self.sqs_sent[doc["MessageId"]] = body
                elif status is None or status >= 500:
                    self.sqs_unknown.add(body)
            self.pause_on_error(status)

    def sqs_receiver(self, i, rng):
        while not self.stop.is_set() or self.draining.is_set():
            asked = time.monotonic_ns()
            status, doc = self.node.sqs("ReceiveMessage", {
                "QueueUrl": self.node.queue_url("nemq"), "MaxNumberOfMessages": 10,
                "WaitTimeSeconds": 1, "AttributeNames": ["ApproximateReceiveCount"]})
            self.count("ReceiveMessage", status)
            if status != 200:
                self.pause_on_error(status)
                continue
            for m in (doc or {}).get("Messages", []):
                with self.lock:
                    self.sqs_receives.append((asked, m["MessageId"], m["Body"],
                                              int(m["Attributes"]["ApproximateReceiveCount"])))
                if rng.random() < 0.1 and not self.draining.is_set():
                    continue  # comes back after its visibility timeout
                st, _ = self.node.sqs("DeleteMessage", {"QueueUrl": self.node.queue_url("nemq"),
                                                        "ReceiptHandle": m["ReceiptHandle"]})
                self.count("DeleteMessage", st)
                if st == 200:
                    with self.lock:
                        self.sqs_deleted.setdefault(m["MessageId"], time.monotonic_ns())

    def drain(self, timeout):
        """Stops the senders; waits for the triggers and the queue to be
        empty (the receivers delete everything now). False on timeout."""
        self.draining.set()
        self.stop.set()
        deadline = time.monotonic() + timeout
        quiet = 0
        while time.monotonic() < deadline:
            idle = True
            for topic in ("ord", "bat") + (("src",) if self.redis else ()):
                status, doc = self.node.request("GET", f"/v1/topics/{topic}")
                if status != 200 or any(t[f] for t in doc["triggers"] for f in self.busy_fields):
                    idle = False
            if self.redis:  # every entry read from the stream
                status, doc = self.node.request("GET", "/v1/sources/nemsrc")
                if status != 200 or doc.get("lag") not in (0, None) or not doc.get("connected"):
                    idle = False
            status, doc = self.node.sqs("GetQueueAttributes", {
                "QueueUrl": self.node.queue_url("nemq"), "AttributeNames": ["All"]})
            if status != 200 or any(doc["Attributes"][a] != "0" for a in (
                    "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible")):
                idle = False
            quiet = quiet + 1 if idle else 0
            if quiet >= 3:
                break
            time.sleep(0.5)
        self.draining.clear()
        for t in self.threads:
            t.join(30)
        time.sleep(0.3)  # the last records written
        return quiet >= 3


def read_records(path):
    """[(topic, key, payload, attempt, start ns, end ns, pid)] of a record file."""
    out = []
    with open(path) as f:
        for line in f:
            if not line.endswith("\n"):
                continue
            t, k, p, a, s, e, pid = line.split()
            out.append((t, k, p, int(a), int(s), int(e), int(pid)))
    return out


# A source's reconnect (after an XACK or a read that failed, or a publish
# into its topic it could not make: a full disk, a cluster without
# JetStream): it reads its pending entries again, and those it had published
# and not yet acknowledged upstream run again (at least once, docs/api.md).
SOURCE_AGAIN = re.compile(r"^(\S+) \w+ +spated: source nemsrc: (?:XACK|cannot|connected to)", re.M)


def source_events(logs):
    """Monotonic ns of every SOURCE_AGAIN line of spated logs (their wall
    times read against this machine's monotonic clock, as the records are)."""
    offset = time.time_ns() - time.monotonic_ns()
    out = []
    for path in logs:
        for m in SOURCE_AGAIN.finditer(path.read_text(errors="replace")):
            wall = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))
            out.append(int(wall.timestamp() * 1e9) - offset)
    return sorted(out)


def source_reread(a, b, events, added):
    """Whether b, a source entry's run again after a, can be its reading
    again by a logged reconnect of the source (source_events) that came
    after the entry was added to the stream (added: payload -> monotonic ns
    of its XADD) and before b ran."""
    t0 = added.get(a[2])
    return t0 is not None and any(t0 <= t <= b[4] for t in events)


class Lives:
    """How the checker reads one spated's faults: each kill -9 ends a life of
    spated (what it had not settled runs again) and starts another. The
    cluster's nemesis has its own (cluster_nemesis.Redeliveries)."""

    # Messages whose publish was not answered take part in the order check.
    order_skips_unknown = False

    def __init__(self, events, source_again=(), src_added=None):
        self.source_again = source_again  # source_events()
        self.src_added = src_added or {}  # Workload.src_added
        # Each kill -9: (when it was sent, when the new spated listened). A
        # call that started before the new one listened is the old one's (an
        # instance may begin what it was handed a moment after spated died).
        self.kills = sorted((e[1], e[2]) for e in events if e[0] == "kill")
        self.disks = sorted((e[1], e[2]) for e in events if e[0] == "disk")

    def epoch(self, ns):
        return sum(1 for _, up in self.kills if up <= ns)

    def life_known(self, ns):
        # Between a kill and the new spated's listening either life may have
        # started a call: the old one's instance what it was handed, the new
        # one its restored triggers (it delivers before it listens: in the
        # nemesis of session 41 every "replay out of order" was a replay of
        # the new life that started there, compared with the old one's runs).
        return not any(k <= ns < up for k, up in self.kills)

    def explain(self, a, b):
        """The fault that explains b, a second run of what ran in a (records
        of read_records), or None."""
        if any(a[4] < up and b[4] >= k for k, up in self.kills):
            return "kill"
        # A deliberate failure's last attempt ends in a dead letter, a write:
        # with the disk full it is refused, the message is retried with the
        # same attempt number (seen ~1 s later in session 41's runs).
        if ":fail" in a[2] and b[3] == a[3] and any(t0 <= a[5] and a[4] <= t1
                                                    for t0, t1 in self.disks):
            return "disk"
        if source_reread(a, b, self.source_again, self.src_added):
            return "source_reread"
        return None

    def explain_replay(self, a, b):
        """The fault that explains b, a replay of a message run after a (a
        later one of its key), or None (one spated: none)."""
        return None

    def sqs_life(self, ns):
        """Receive counts grow within one of these (a receive is not durable)."""
        return sum(1 for k, _ in self.kills if k <= ns)


def check(node, wl, nemesis, model=None):
    """The checker: a dict of figures and a list of problems (empty: all
    guarantees held). model: how faults explain runs again (Lives)."""
    problems = list(nemesis.problems)
    model = model or Lives(nemesis.events)
    epoch, life_known = model.epoch, model.life_known

    fig = {"faults": dict(nemesis.counts), "statuses": dict(sorted(wl.statuses.items()))}
    dead, dead_error = {}, {}
    # The source's trigger has no deliberate failures, but its runs time out
    # on a loaded machine as the others' do (make test's CI, session 53: a
    # source entry dead-lettered after two timed-out runs was counted lost).
    for topic in ("ord", "bat") + (("src",) if wl.redis else ()):
        payloads, after = [], 0
        while True:  # a page at a time (at most 1000)
            status, doc = node.request("GET", f"/v1/topics/{topic}.dlq/messages?limit=1000"
                                       f"&after={after}")
            page = (doc or {}).get("messages", []) if status == 200 else []
            if status not in (200, 404):  # 404: no dead letter yet
                problems.append(f"{topic}.dlq: reading it answered {status}")
            if not page:
                break
            payloads += [m["payload"] for m in page]
            dead_error.update((m["payload"], m.get("error") or "") for m in page)
            after = page[-1]["seq"]
        dead[topic] = payloads

    for name, sent, recs in (("ord", wl.ord, read_records(wl.record("ord"))),
                             ("bat", wl.bat, read_records(wl.record("bat"))),
                             ("inv", wl.inv, read_records(wl.record("inv"))),
                             ("src", wl.src, read_records(wl.record("src")))):
        if name == "src" and not wl.redis:
            continue
        runs = {}
        for r in recs:
            runs.setdefault(r[2], []).append(r)
        acked = {p for p, o in sent.items() if o == "acked"}
        # Dead-lettered without ever running: not lost, but not a real failure either.
        unrun = sorted((acked - runs.keys()) & set(dead.get(name, ())))
        lost = sorted(acked - runs.keys() - set(unrun))
        # Unless each of its runs outlasted the function's timeout (the
        # recorder writes when a run ends): a real failure, on a machine too
        # loaded to run it in time (make check's load, with 2 s timeouts).
        timed_out = [p for p in unrun if "timed out" in dead_error.get(p, "")]
        unrun = [p for p in unrun if p not in timed_out]
        never_sent = sorted(runs.keys() - sent.keys())
        dups, unexplained, by_fault, gaps = 0, [], {}, []
        for p, rs in runs.items():
            rs.sort(key=lambda r: r[4])
            for a, b in zip(rs, rs[1:]):
                if ":fail" in p and b[3] > a[3]:
                    continue  # a deliberate failure's next attempt; a repeated one is a duplicate
                dups += 1
                gaps.append((b[4] - a[4]) / 1e9)
                why = model.explain(a, b)
                if why is None:
                    unexplained.append((p, a, b))
                else:
                    by_fault[why] = by_fault.get(why, 0) + 1
        fig[name] = {"acked": len(acked), "unknown": sum(o == "unknown" for o in sent.values()),
                     "processed": len(runs), "runs": len(recs), "lost": len(lost),
                     "dead_lettered_unrun": len(unrun),
                     "dead_lettered_after_timeouts": len(timed_out),
                     "duplicates": dups, "duplicates_by_fault": dict(sorted(by_fault.items())),
                     # from a run's start to its next one's: an ack wait's redelivery or a replay
                     "duplicate_gap_s": [round(min(gaps), 2), round(max(gaps), 2)] if gaps else [],
                     "unexplained_duplicates": len(unexplained)}
        if lost:
            problems.append(f"{name}: {len(lost)} acknowledged messages never processed: {lost[:10]}")
        if unrun:
            problems.append(f"{name}: {len(unrun)} acknowledged messages dead-lettered without ever "
                            f"running (see spated's log: 'giving up after'): {unrun[:10]}")
        if never_sent:
            problems.append(f"{name}: processed what was never sent: {never_sent[:10]}")
        if unexplained:
            problems.append(f"{name}: {len(unexplained)} duplicates with no fault that explains them "
                            f"between the runs: {unexplained[:5]}")
        if name in dead:
            fails = {p for p in acked if ":fail" in p}
            got = dead[name]
            # A run that outlasted the timeout is a real failure even when
            # it recorded: the recorder wrote, then its answer came after
            # spated's deadline (which counts from the hand-over).
            wrong = sorted(p for p in got if ":fail" not in p and p not in unrun
                           and "timed out" not in dead_error.get(p, ""))
            missing = sorted(fails - set(got))
            extra = sorted(set(got) - sent.keys())
            fig[name].update(failed_on_purpose=len(fails), dead_letters=len(got),
                             dead_letter_duplicates=len(got) - len(set(got)))
            if wrong:
                problems.append(f"{name}: dead letters that did not fail on purpose: {wrong[:10]}")
            if missing:
                problems.append(f"{name}: deliberate failures missing from {name}.dlq: {missing[:10]}")
            if extra:
                problems.append(f"{name}: dead letters never published: {extra[:10]}")

    # --ordered: per key, never two at once and never out of order (within
    # one life of spated; a restart replays from the oldest unsettled message).
    per_key = {}
    for r in read_records(wl.record("ord")):
        per_key.setdefault(r[1], []).append(r)
    overlaps, cross_overlaps, disorder, replays, explained_replays = [], [], [], [], 0
    late_explained = 0  # first runs late after a logged JetStream skip (cluster_nemesis)
    skip_replays = 0  # runs again after one
    # A publish that was not answered may have reached the stream after a
    # later one of its key made through another node (a cluster's clients
    # go on with the next node): only answered ones have a known order.
    unsure = {p for p, o in wl.ord.items() if o != "acked"} if model.order_skips_unknown else set()
    for key, rs in per_key.items():
        rs.sort(key=lambda r: r[4])
        ran = set()  # payloads of this key that ran before
        for a, b in zip(rs, rs[1:]):
            ran.add(a[2])
            if b[4] < a[5]:
                (overlaps if epoch(a[4]) == epoch(b[4]) else cross_overlaps).append((a, b))
            if a[2] in unsure or b[2] in unsure:
                continue
            na, nb = int(a[2].split(":")[2]), int(b[2].split(":")[2])
            if epoch(a[4]) == epoch(b[4]) and life_known(a[4]) and life_known(b[4]) and nb < na:
                # A replay (b ran before, its settling lost with a kill -9)
                # out of order, or a message's first run out of order.
                if b[2] in ran and model.explain_replay(a, b):
                    explained_replays += 1
                elif getattr(model, "explain_late", None) and (
                        b[2] not in ran or ":fail" in b[2]) and model.explain_late(a, b):
                    # A copy of a skipped message: its first run, or (a
                    # deliberately failing message's retry delivery
                    # forgotten) a run again. Any other run again is a
                    # problem: a settled message published again.
                    if b[2] in ran:
                        skip_replays += 1
                    else:
                        late_explained += 1
                else:
                    (replays if b[2] in ran else disorder).append((a, b))
    fig["ordered"] = {"keys": len(per_key), "overlaps": len(overlaps),
                      "overlaps_across_a_restart": len(cross_overlaps),
                      "order_violations": len(disorder) + len(replays),
                      "of_which_replays": len(replays)}
    if model.order_skips_unknown:
        fig["ordered"].update(replays_explained_by_a_fault=explained_replays,
                              unanswered_publishes_left_out=len(unsure))
    if getattr(model, "explain_late", None):
        fig["ordered"]["late_after_a_jetstream_skip"] = late_explained
        fig["ordered"]["run_again_after_a_jetstream_skip"] = skip_replays
    if overlaps or cross_overlaps:
        problems.append(f"ord: two of a key at once: {(overlaps + cross_overlaps)[:5]}")
    if disorder:
        problems.append(f"ord: first runs out of publish order: {disorder[:5]}")
    if replays:
        problems.append(f"ord: out of publish order: a message that had run (its settling lost "
                        f"with a kill -9) ran again after a later one of its key: {replays[:5]}")

    # SQS: every acknowledged send received; receive counts grow with each
    # receive seen.
    received = {}
    for t, mid, body, count in sorted(wl.sqs_receives):
        received.setdefault(mid, []).append((t, body, count))
    lost = sorted(set(wl.sqs_sent) - received.keys())
    bad_counts = []
    resets = 0  # counts that began again after a kill -9 (a receive is not durable)
    redelivered_after_delete = 0
    # A count repeated by a receive after a DeleteMessage that answered 200:
    # the delete's ack was lost (a cluster partition), and the attempts
    # bucket counts failed receives only (docs/api.md, "SQS in a cluster").
    repeated_after_delete = 0
    for mid, rs in received.items():
        deleted = wl.sqs_deleted.get(mid)
        lives = {}
        for t, _, c in rs:
            lives.setdefault(model.sqs_life(t), []).append((t, c))
        order = [[c for _, c in lives[k]] for k in sorted(lives)]
        resets += sum(1 for a, b in zip(order, order[1:]) if b[0] <= a[-1])
        for seen in lives.values():
            stuck = [(a, b) for a, b in zip(seen, seen[1:]) if b[1] <= a[1]]
            if stuck and all(deleted and b[0] > deleted for _, b in stuck):
                repeated_after_delete += 1
            elif stuck:
                bad_counts.append((mid, rs[0][1], [c for _, _, c in rs]))
        if deleted and any(t > deleted for t, _, _ in rs):
            redelivered_after_delete += 1
    fig["sqs"] = {"acked": len(wl.sqs_sent), "unknown": len(wl.sqs_unknown),
                  "received": len(received), "receives": len(wl.sqs_receives), "lost": len(lost),
                  "duplicates": len(wl.sqs_receives) - len(received),
                  "received_after_acked_delete": redelivered_after_delete,
                  "receive_count_inconsistent": len(bad_counts),
                  "receive_count_repeated_after_acked_delete": repeated_after_delete,
                  "receive_count_reset_by_a_kill": resets}
    if lost:
        problems.append(f"sqs: {len(lost)} acknowledged sends never received: "
                        f"{[(m, wl.sqs_sent[m]) for m in lost[:10]]}")
    if bad_counts:
        problems.append(f"sqs: ApproximateReceiveCount not growing with the receives seen in "
                        f"one life of spated (MessageId, body, counts): {bad_counts[:10]}")
    if "disk" not in nemesis.counts:
        return fig, problems
    fig["disk"] = {"faults": nemesis.counts["disk"], "refused_503": nemesis.disk_refused,
                   "recovery_s_max": round(max(nemesis.disk_recovery_s, default=0), 2)}
    if nemesis.counts["disk"] and not nemesis.disk_refused:
        problems.append("disk full: spated never answered 503 while its disk was full")
    return fig, problems


def summary(fig, problems):
    lines = [f"faults: {fig['faults']}"] + fig.get("notes", [])
    kinds = [n for n in ("ord", "bat", "inv", "src", "sqs") if n in fig]
    for name in kinds:
        lines.append(f"{name}: " + ", ".join(f"{k} {v}" for k, v in fig[name].items()))
    lines.append("ordered: " + ", ".join(f"{k} {v}" for k, v in fig["ordered"].items()))
    if "disk" in fig:
        lines.append("disk full: " + ", ".join(f"{k} {v}" for k, v in fig["disk"].items()))
    lines.append(f"answers: {fig['statuses']}")
    lost = sum(fig[n]["lost"] for n in kinds)
    lines.append(f"LOST {lost}; problems: {len(problems)}")
    lines.extend("  " + p for p in problems)
    return "\n".join(lines)


def run(workdir, functions, seed, faults=None, seconds=None, scale=1.0, args=(), log=print,
        drain_timeout=120, kinds=None):
    """One run: starts spated (workdir must be reachable by the functions'
    user), the workload and the nemesis; drains and checks. (fig, problems, text)."""
    workdir.chmod(0o1777)
    log(f"nemesis seed {seed}")
    node = Node(workdir, args=args, writable=[workdir])
    wl = None
    try:
        node.start()
        wl = Workload(node, workdir, functions, seed, log)
        wl.setup()
        nemesis = Nemesis(node, random.Random(seed), log, scale, kinds)
        wl.start()
        try:
            nemesis.run(faults, seconds)
        finally:
            node.d.proc.send_signal(signal.SIGCONT)
            if node.ballast.exists():
                node.ballast.unlink()
        drained = wl.drain(drain_timeout * scale)
        logs = [workdir / f"spated-{i}.log" for i in range(1, node.d.starts + 1)]
        fig, problems = check(node, wl, nemesis,
                              Lives(nemesis.events, source_events(logs), wl.src_added))
        rc = node.d.stop()
        if rc != 0:
            problems.append(f"spated exited with {rc} when stopped")
        for i in range(1, node.d.starts + 1):
            text = (workdir / f"spated-{i}.log").read_text(errors="replace")
            if "Sanitizer" in text:
                problems.append(f"spated-{i}.log has a sanitizer report")
        with open(workdir / "nemesis.json", "w") as f:  # for a post-mortem
            json.dump({"seed": seed, "events": nemesis.events, "ord": wl.ord, "bat": wl.bat,
                       "inv": wl.inv, "src": wl.src, "sqs_sent": wl.sqs_sent, "sqs_receives": wl.sqs_receives,
                       "sqs_deleted": wl.sqs_deleted, "problems": problems, "seqs": wl.seqs,
                       "topics": {t: node.request("GET", f"/v1/topics/{t}")[1] for t in ("ord", "bat")}},
                      f)
        if not drained:
            problems.append("did not drain (triggers or the queue still busy)")
        fig["seed"] = seed
        return fig, problems, summary(fig, problems)
    finally:
        node.close()
        if wl and wl.redis:
            wl.redis.close()
