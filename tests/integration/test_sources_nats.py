"""Event sources: NATS drained into a topic (docs/api.md "Sources").

Each test starts its own nats-server (Debian's, JetStream on, its store in
the test's temporary directory) on a free loopback port and publishes with
tests/tools/nats-pub.c (libnats; the nats CLI is not in Debian), compiled
once here. JetStream: every message processed at least once, after spated
is killed with -9 and after nats-server restarts, acknowledged upstream
only after the commit. Core NATS: what is published while the source is
subscribed is processed, and status says at-most-once. Nothing asserts on
speed: waits are generous bounds.
"""

import json
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import add_source, add_trigger, source, seen, ROOT, deploy_recorder, wait_for
from natscluster import free_port

NATS = shutil.which("nats-server")
pytestmark = pytest.mark.skipif(not NATS, reason="nats-server not installed (scripts/install-deps.sh)")


@pytest.fixture(scope="module")
def nats_pub(tmp_path_factory):
    out = tmp_path_factory.mktemp("natspub") / "nats-pub"
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libnats"], capture_output=True,
                           text=True, check=True).stdout.split()
    subprocess.run(["cc", "-O2", "-o", str(out), str(ROOT / "tests/tools/nats-pub.c"), *flags],
                   check=True)
    return out


class Nats:
    """A nats-server with JetStream, its store under workdir (kept across
    a restart: file storage, so the streams and consumers survive)."""

    def __init__(self, workdir, pub, auth=()):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.pub = pub
        self.auth = list(auth)  # ["--user", U, "--pass", P] or ["--auth", TOKEN]
        self.creds = ""
        if self.auth[:1] == ["--user"]:
            self.creds = f"{self.auth[1]}:{self.auth[3]}@"
        elif self.auth[:1] == ["--auth"]:
            self.creds = f"{self.auth[1]}@"
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [NATS, "-js", "-sd", str(self.dir / "store"), "-a", "127.0.0.1", "-p",
             str(self.port), *self.auth],
            stdout=open(self.dir / "nats.log", "ab"), stderr=subprocess.STDOUT)

        def up():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        assert wait_for(up, timeout=15), (self.dir / "nats.log").read_text()
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(15)

    def url(self, path):
        return f"nats://{self.creds}127.0.0.1:{self.port}/{path}"

    def run(self, *args):
        r = subprocess.run([str(self.pub), f"nats://{self.creds}127.0.0.1:{self.port}", *args],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    def stream(self, name, subjects):
        self.run("stream", name, subjects)

    def publish(self, subject, start, n, size=0, core=False):
        self.run("core" if core else "js", subject, str(start), str(n),
                 *([str(size)] if size else []))

    def consumer(self, stream, name):
        """(unacked, not yet delivered) of a durable consumer."""
        ack_pending, pending = self.run("info", stream, name).split()
        return int(ack_pending), int(pending)


@pytest.fixture
def nats(tmp_path, nats_pub):
    started = []

    def make(**kw):
        n = Nats(tmp_path / f"nats{len(started)}", nats_pub, **kw).start()
        started.append(n)
        return n

    yield make
    for n in started:
        n.stop()










def test_jetstream_messages_all_processed_and_acked_after_commit(spated, functions, tmp_path,
                                                                 nats):
    n = nats()
    n.stream("ORDERS", "orders.>")
    n.publish("orders.new", 0, 300)  # already there: a new consumer drains from the start
    rec = deploy_recorder(spated, functions, tmp_path)
    add_trigger(spated, "orders", "rec")
    status, doc = add_source(spated, "orders-in", n.url("orders.new?stream=ORDERS"), "orders")
    assert status == 201, doc
    assert doc["delivery"] == "at-least-once" and doc["dropped"] is None
    n.publish("orders.new", 300, 200)
    want = {f"e{i}" for i in range(500)}
    assert wait_for(lambda: want <= set(seen(rec)), timeout=60), len(want - set(seen(rec)))
    assert wait_for(lambda: source(spated, "orders-in")["committed"] == 500, timeout=30)
    doc = source(spated, "orders-in")
    assert doc["state"] == "running" and doc["connected"] is True
    assert doc["received"] >= 500 and doc["refused"] == 0
    # The durable consumer is named after the source; everything acked.
    assert wait_for(lambda: n.consumer("ORDERS", "spate-orders-in") == (0, 0), timeout=15)
    assert wait_for(lambda: source(spated, "orders-in")["lag"] == 0, timeout=15)
    metrics = spated.request("GET", "/metrics")[2].decode()
    assert 'spate_source_committed_total{source="orders-in"} 500' in metrics
    assert 'spate_source_connected{source="orders-in"} 1' in metrics
    assert 'spate_source_dropped_total{source="orders-in"}' not in metrics
    # spated stopped and started: the consumer goes on where it was (the
    # stream is not drained again).
    spated.stop()
    spated.start()
    n.publish("orders.new", 500, 1)
    assert wait_for(lambda: "e500" in seen(rec), timeout=30)
    time.sleep(1)
    assert len(seen(rec)) == 501 and source(spated, "orders-in")["received"] == 1
    assert spated.request("DELETE", "/v1/sources/orders-in")[0] == 204
    # Removed, it keeps its durable consumer upstream (and its position).
    time.sleep(1)
    assert n.consumer("ORDERS", "spate-orders-in") == (0, 0)


def test_jetstream_keys_and_refusals(make_spated, functions, tmp_path, nats):
    d = make_spated("--message-max", "1024")
    n = nats()
    n.stream("ACCTS", "accts")
    rec = deploy_recorder(d, functions, tmp_path)
    add_trigger(d, "t", "rec")
    # All in the stream first: one fetch takes them together, keys side by side.
    n.run("one", "accts", '{"acct":"a1","v":1}', '{"v":2}', "not-json")  # 2 refused (no key)
    n.publish("accts", 0, 1, size=5000)  # over --message-max: refused, acked
    n.run("one", "accts", '{"acct":"a2","v":3}')  # later messages still arrive
    status, doc = add_source(d, "s", n.url("accts?stream=ACCTS&consumer=mine"), "t",
                             key_field="acct")
    assert status == 201, doc
    assert wait_for(lambda: source(d, "s")["committed"] == 2, timeout=30), source(d, "s")
    assert wait_for(lambda: source(d, "s")["refused"] == 3, timeout=30), source(d, "s")
    assert wait_for(lambda: len(seen(rec)) == 2, timeout=30)
    keys = sorted(line.split()[3] for line in open(rec) if line.startswith("S "))
    assert keys == ["a1", "a2"]
    assert wait_for(lambda: n.consumer("ACCTS", "mine") == (0, 0), timeout=15)
    log = d.log()
    assert "refused (in the dead letters" in log and "key field 'acct'" in log
    assert "over the topic's maximum of 1024 bytes" in log


def test_kill_9_mid_stream_loses_nothing(make_spated, functions, tmp_path, nats):
    n = nats()
    n.stream("JOBS", "jobs")
    d = make_spated()
    # Two instances of 10 ms each: about 200 messages a second, so the kill
    # at 50 lands mid-stream even on a loaded machine.
    rec = deploy_recorder(d, functions, tmp_path, sleep_us=10000, max=2)
    add_trigger(d, "jobs", "rec")
    # A short ack wait: what the killed spated fetched and never acked comes
    # again 2 s later, not after the default 30 s.
    assert add_source(d, "jobs", n.url("jobs?stream=JOBS&ack_wait=2"), "jobs")[0] == 201
    n.publish("jobs", 0, 1000)
    assert wait_for(lambda: len(seen(rec)) > 50, timeout=60)
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    assert len(set(seen(rec))) < 1000  # it was killed mid-stream
    n.publish("jobs", 1000, 500)  # while spated is down
    d.start()
    want = {f"e{i}" for i in range(1500)}
    assert wait_for(lambda: want <= set(seen(rec)), timeout=120), len(want - set(seen(rec)))
    assert wait_for(lambda: n.consumer("JOBS", "spate-jobs") == (0, 0), timeout=30)


def test_nats_server_restart_mid_stream_loses_nothing(spated, functions, tmp_path, nats):
    n = nats()
    n.stream("FLOW", "flow")
    rec = deploy_recorder(spated, functions, tmp_path, sleep_us=5000, max=2)
    add_trigger(spated, "flow", "rec")
    assert add_source(spated, "flow", n.url("flow?stream=FLOW&ack_wait=2"), "flow")[0] == 201
    n.publish("flow", 0, 800)
    assert wait_for(lambda: len(seen(rec)) > 20, timeout=60)
    n.stop()
    assert len(set(seen(rec))) < 800  # stopped mid-stream
    assert wait_for(lambda: source(spated, "flow")["connected"] is False, timeout=30)
    assert source(spated, "flow")["last_error"]
    n.start()  # the same store: the stream, its messages and the consumer are kept
    n.publish("flow", 800, 200)
    want = {f"e{i}" for i in range(1000)}
    assert wait_for(lambda: want <= set(seen(rec)), timeout=120), len(want - set(seen(rec)))
    assert wait_for(lambda: source(spated, "flow")["connected"] is True, timeout=30)
    assert wait_for(lambda: n.consumer("FLOW", "spate-flow") == (0, 0), timeout=30)


def test_core_subject_is_processed_and_said_at_most_once(spated, functions, tmp_path, nats):
    n = nats()
    rec = deploy_recorder(spated, functions, tmp_path)
    add_trigger(spated, "ticks", "rec")
    status, doc = add_source(spated, "ticks", n.url("ticks.*?queue=spate"), "ticks")
    assert status == 201, doc
    assert doc["delivery"] == "at-most-once" and doc["dropped"] == 0
    # Core NATS keeps nothing: only what is published while subscribed counts.
    assert wait_for(lambda: source(spated, "ticks")["connected"] is True, timeout=30)
    n.publish("ticks.eu", 0, 300, core=True)
    want = {f"e{i}" for i in range(300)}
    assert wait_for(lambda: want <= set(seen(rec)), timeout=60), len(want - set(seen(rec)))
    assert wait_for(lambda: source(spated, "ticks")["committed"] == 300, timeout=30)
    doc = source(spated, "ticks")
    assert doc["delivery"] == "at-most-once" and doc["dropped"] == 0
    metrics = spated.request("GET", "/metrics")[2].decode()
    assert 'spate_source_dropped_total{source="ticks"} 0' in metrics
    r = spated.cli("source", "status", "ticks")
    out = r.stdout.decode()
    assert r.returncode == 0 and "at-most-once" in out and "dropped    0" in out, out


@pytest.mark.parametrize("url,why", [
    ("nats://127.0.0.1:4222", "missing subject"),
    ("nats://127.0.0.1:4222/a..b", "not a NATS subject"),
    ("nats://127.0.0.1:4222/a?stream=S&queue=q", "'queue' is for core NATS"),
    ("nats://127.0.0.1:4222/a?consumer=c", "'consumer' is for JetStream"),
    ("nats://127.0.0.1:4222/a?stream=a.b", "bad stream name"),
    ("nats://127.0.0.1:4222/a?stream=S&ack_wait=never", "'ack_wait' must be seconds"),
    ("nats://127.0.0.1:4222/a?stream=S&colour=red", "unknown URL parameter 'colour'"),
])
def test_bad_url_is_400_naming_the_problem(spated, url, why):
    status, doc = add_source(spated, "bad", url, "t")
    assert status == 400, doc
    assert why in doc["error"], doc
    assert spated.request("GET", "/v1/sources/bad")[0] == 404


def test_unknown_stream_is_kept_and_says_why(spated, nats):
    n = nats()
    assert add_source(spated, "lost", n.url("x?stream=NOPE"), "t")[0] == 201
    assert wait_for(lambda: "stream not found" in (source(spated, "lost")["last_error"] or ""),
                    timeout=30), source(spated, "lost")
    assert source(spated, "lost")["connected"] is False


@pytest.mark.parametrize("kind", ["password", "token"])
def test_credentials_never_shown(spated, functions, tmp_path, nats, kind):
    secret = "s3cr3t-Pa55"
    n = nats(auth=["--user", "spate", "--pass", secret] if kind == "password"
             else ["--auth", secret])
    n.stream("C", "c")
    deploy_recorder(spated, functions, tmp_path)
    add_trigger(spated, "c", "rec")
    status, doc = add_source(spated, "creds", n.url("c?stream=C"), "c")
    assert status == 201, doc
    shown = "spate:***@" if kind == "password" else "***@"
    assert doc["url"] == f"nats://{shown}127.0.0.1:{n.port}/c?stream=C"
    n.publish("c", 0, 5)
    assert wait_for(lambda: source(spated, "creds")["committed"] == 5, timeout=30)
    # A wrong secret: the error is shown, the secret is not.
    wrong = n.url("c?stream=C").replace(secret, "nope-" + secret)
    assert add_source(spated, "wrong", wrong, "c")[0] == 201
    assert wait_for(lambda: source(spated, "wrong")["last_error"], timeout=30)
    for path in ("/v1/sources", "/v1/sources/creds", "/v1/sources/wrong", "/metrics"):
        assert secret not in spated.request("GET", path)[2].decode()
    r = spated.cli("source", "ls")
    assert r.returncode == 0 and b"creds" in r.stdout and secret.encode() not in r.stdout + r.stderr
    r = spated.cli("source", "status", "wrong")
    assert secret.encode() not in r.stdout + r.stderr
    spated.stop()
    assert secret not in spated.log()
    spated.start()  # the fixture stops it
