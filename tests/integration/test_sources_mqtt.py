"""Event sources: MQTT topics drained into a spate topic (docs/api.md "Sources").

Each test starts its own mosquitto (Debian's, 2.0) on a free loopback port
with its persistence under tmp_path, and publishes with bench/mqtt_pub.c
(QoS 1, waiting for every PUBACK: what it prints the broker accepted).

What the tests may assert follows from libmosquitto (src/sources/mqtt.c): a
message is acknowledged to the broker as the source reads it, before spate
commits it. So across a kill -9 of spated what the broker still held (not
yet read, or published while spated was down) must all arrive through the
persistent session, and the loss is at most the one batch the source had
read (SPATE_SOURCE_BATCH_MAX, 256). Nothing asserts on speed.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import add_source, add_trigger, source, seen, ROOT, deploy_recorder, wait_for

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
pytestmark = pytest.mark.skipif(not os.path.exists(MOSQUITTO),
                                reason="mosquitto not installed (scripts/install-deps.sh)")
BATCH_MAX = 256  # SPATE_SOURCE_BATCH_MAX: what a crash of spated may lose


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mqtt_pub(tmp_path_factory):
    out = tmp_path_factory.mktemp("mqttpub") / "mqtt_pub"
    subprocess.run(["cc", "-O2", "-o", str(out), str(ROOT / "bench" / "mqtt_pub.c"),
                    "-lmosquitto"], check=True)
    return out


class Mosquitto:
    def __init__(self, workdir, pub, password=None):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.pub_tool = pub
        self.proc = None
        conf = [f"listener {self.port} 127.0.0.1",
                # Run as root by the tests: stay root to write under tmp_path.
                "user root",
                # The session's queued messages survive a restart of the broker.
                "persistence true",
                f"persistence_location {self.dir}/",
                # The default of 1000 would drop what is queued beyond it.
                "max_queued_messages 100000",
                "max_inflight_messages 100"]
        if password:
            pw = self.dir / "passwd"
            pw.write_text("")
            subprocess.run([PASSWD, "-b", str(pw), "spate", password], check=True)
            conf += ["allow_anonymous false", f"password_file {pw}"]
        else:
            conf += ["allow_anonymous true"]
        (self.dir / "mosquitto.conf").write_text("\n".join(conf) + "\n")

    def start(self):
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.dir / "mosquitto.conf")],
                                     stdout=open(self.dir / "mosquitto.log", "ab"),
                                     stderr=subprocess.STDOUT)
        assert wait_for(self.listening, timeout=10), (self.dir / "mosquitto.log").read_text()
        return self

    def listening(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self):
        # SIGTERM: mosquitto writes its persistence file as it exits.
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(15)

    def pub(self, topic, start=0, n=1, *args, check=True):
        """Publishes e<start>..e<start+n-1> at QoS 1; returns how many the
        broker acknowledged."""
        r = subprocess.run([str(self.pub_tool), "-p", str(self.port), "-t", topic, "-s",
                            str(start), "-n", str(n), *args], capture_output=True, text=True,
                           timeout=120)
        if check:
            assert r.returncode == 0, r.stderr
        return int(r.stdout.strip() or 0)


@pytest.fixture
def mosquitto(tmp_path, mqtt_pub):
    started = []

    def make(**kw):
        m = Mosquitto(tmp_path / f"mosquitto{len(started)}", mqtt_pub, **kw).start()
        started.append(m)
        return m

    yield make
    for m in started:
        m.stop()










def connected(d, name):
    return wait_for(lambda: source(d, name)["connected"] is True, timeout=30)


def test_messages_all_processed_with_a_wildcard_filter(spated, functions, tmp_path, mosquitto):
    m = mosquitto()
    rec = deploy_recorder(spated, functions, tmp_path)
    add_trigger(spated, "orders", "rec")
    # '+' as it is; '#' would be %23.
    status, doc = add_source(spated, "orders-in", f"mqtt://127.0.0.1:{m.port}/orders/+?qos=1",
                             "orders")
    assert status == 201, doc
    assert doc["delivery"].startswith("at-least-once") and "crash" in doc["delivery"]
    assert connected(spated, "orders-in")
    assert m.pub("orders/eu", 0, 300) == 300
    assert m.pub("orders/us", 300, 200) == 200
    assert m.pub("other/eu", 900, 5) == 5  # not under the filter
    want = {f"e{i}" for i in range(500)}
    assert wait_for(lambda: want <= set(seen(rec)), timeout=60), len(want - set(seen(rec)))
    assert wait_for(lambda: source(spated, "orders-in")["committed"] == 500, timeout=30)
    doc = source(spated, "orders-in")
    assert doc["state"] == "running" and doc["refused"] == 0 and doc["received"] == 500
    assert doc["lag"] is None  # MQTT does not tell
    assert not set(seen(rec)) & {f"e{i}" for i in range(900, 905)}
    metrics = spated.request("GET", "/metrics")[2].decode()
    assert 'spate_source_committed_total{source="orders-in"} 500' in metrics
    assert spated.request("DELETE", "/v1/sources/orders-in")[0] == 204


def test_qos_0_says_at_most_once(spated, mosquitto):
    m = mosquitto()
    status, doc = add_source(spated, "q0", f"mqtt://127.0.0.1:{m.port}/a/%23?qos=0", "t")
    assert status == 201, doc
    assert doc["delivery"] == "at-most-once"
    r = spated.cli("source", "status", "q0")
    assert r.returncode == 0 and b"delivery   at-most-once" in r.stdout, r.stdout + r.stderr


def test_keys_and_refusals(make_spated, functions, tmp_path, mosquitto):
    m = mosquitto()
    d = make_spated("--message-max", "1024")
    rec = deploy_recorder(d, functions, tmp_path)
    add_trigger(d, "t", "rec")
    assert add_source(d, "s", f"mqtt://127.0.0.1:{m.port}/k", "t", key_field="acct")[0] == 201
    assert connected(d, "s")
    m.pub("k", 0, 1, "-m", '{"acct":"a1","v":1}')
    m.pub("k", 0, 1, "-m", '{"acct":7}')
    m.pub("k", 0, 1, "-m", "not-json")                        # refused: no key
    m.pub("k", 0, 1, "-m", '{"v":2}')                          # refused: no key field
    m.pub("k", 0, 1, "-m", '{"acct":"big"}' + " " * 2000)      # refused: over 1024 bytes
    m.pub("k", 0, 1, "-m", '{"acct":"a3","after":"the-big-one"}')
    assert wait_for(lambda: source(d, "s")["refused"] == 3, timeout=30), source(d, "s")
    assert wait_for(lambda: source(d, "s")["committed"] == 3, timeout=30)
    assert wait_for(lambda: len(seen(rec)) == 3, timeout=30)
    keys = {line.split()[3] for line in open(rec) if line.startswith("S ")}
    assert keys == {"a1", "7", "a3"}
    log = d.log()
    assert "refused (in the dead letters" in log and "over the topic's maximum of 1024 bytes" in log
    assert "key field 'acct' is missing" in log and "not a JSON object" in log


def test_kill_9_mid_stream_then_the_session_delivers(make_spated, functions, tmp_path, mosquitto):
    m = mosquitto()
    d = make_spated()
    # Two instances of 10 ms each: about 200 messages a second, so the kill
    # at 50 lands mid-stream even on a loaded machine.
    rec = deploy_recorder(d, functions, tmp_path, sleep_us=10000, max=2)
    add_trigger(d, "jobs", "rec")
    assert add_source(d, "jobs", f"mqtt://127.0.0.1:{m.port}/jobs", "jobs")[0] == 201
    assert connected(d, "jobs")
    assert m.pub("jobs", 0, 1000) == 1000
    assert wait_for(lambda: len(seen(rec)) > 50, timeout=60)
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    assert len(set(seen(rec))) < 1000  # it was killed mid-stream
    # While spated is down: queued by the broker for the source's session.
    assert m.pub("jobs", 1000, 500) == 500
    d.start()
    down = {f"e{i}" for i in range(1000, 1500)}
    assert wait_for(lambda: down <= set(seen(rec)), timeout=120), len(down - set(seen(rec)))
    # Before the kill: what the source had read and not committed may be
    # gone (acknowledged to the broker as read), at most one batch.
    before = {f"e{i}" for i in range(1000)}
    time.sleep(1)
    assert len(before - set(seen(rec))) <= BATCH_MAX


def test_broker_restart_mid_stream_loses_nothing_accepted(spated, functions, tmp_path, mosquitto):
    m = mosquitto()
    rec = deploy_recorder(spated, functions, tmp_path)
    add_trigger(spated, "flow", "rec")
    assert add_source(spated, "flow", f"mqtt://127.0.0.1:{m.port}/flow", "flow")[0] == 201
    assert connected(spated, "flow")
    # A publisher paced at 5 ms, stopped by the restart: what it printed the
    # broker accepted.
    pub = subprocess.Popen([str(m.pub_tool), "-p", str(m.port), "-t", "flow", "-n", "2000", "-w",
                            "5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: len(seen(rec)) > 50, timeout=60)
    m.stop()
    out, _ = pub.communicate(timeout=30)
    accepted = int(out.strip() or 0)
    assert 0 < accepted < 2000, accepted  # mid-stream
    assert wait_for(lambda: source(spated, "flow")["connected"] is False, timeout=30)
    assert source(spated, "flow")["last_error"]
    m.start()
    assert connected(spated, "flow")
    assert m.pub("flow", 5000, 100) == 100
    want = {f"e{i}" for i in range(accepted)} | {f"e{i}" for i in range(5000, 5100)}
    assert wait_for(lambda: want <= set(seen(rec)), timeout=120), len(want - set(seen(rec)))
    # Queued in the broker's persistent session while spated is stopped
    # (SIGTERM), kept across a restart of the broker (persistence true).
    spated.stop()
    assert m.pub("flow", 6000, 200) == 200
    m.stop()
    m.start()
    spated.start()
    want = {f"e{i}" for i in range(6000, 6200)}
    assert wait_for(lambda: want <= set(seen(rec)), timeout=120), len(want - set(seen(rec)))


def test_stop_mid_stream_loses_nothing(spated, functions, tmp_path, mosquitto):
    """A stopping source still publishes the batch it read (acknowledged to
    the broker already); the rest waits in the session."""
    m = mosquitto()
    rec = deploy_recorder(spated, functions, tmp_path)
    add_trigger(spated, "steady", "rec")
    assert add_source(spated, "steady", f"mqtt://127.0.0.1:{m.port}/steady", "steady")[0] == 201
    assert connected(spated, "steady")
    pub = subprocess.Popen([str(m.pub_tool), "-p", str(m.port), "-t", "steady", "-n", "1500",
                            "-w", "2"], stdout=subprocess.PIPE, text=True)
    for _ in range(3):
        n = len(seen(rec))
        assert wait_for(lambda: len(seen(rec)) > n + 50, timeout=60)
        spated.stop()  # SIGTERM, while messages flow
        spated.start()
    assert pub.wait(120) == 0
    want = {f"e{i}" for i in range(1500)}
    assert wait_for(lambda: want <= set(seen(rec)), timeout=120), sorted(want - set(seen(rec)))[:20]


@pytest.mark.parametrize("url,why", [
    ("mqtt://127.0.0.1:1883", "missing topic filter"),
    ("mqtt://127.0.0.1:1883/a?qos=2", "bad value of 'qos'"),
    ("mqtt://127.0.0.1:1883/a?group=g", "unknown URL parameter 'group'"),
    ("mqtt://127.0.0.1:1883/a/%23/b", "malformed topic filter"),
    ("mqtt://127.0.0.1:1883/a+b", "malformed topic filter"),
    ("mqtt://127.0.0.1:1883/a#b", "fragment"),
    ("mqtt://127.0.0.1:1883/a?client_id=", "bad value of 'client_id'"),
    ("mqtts://127.0.0.1:8883/a?cert=/c.pem", "needs both 'cert' and 'key'"),
    ("mqtt://127.0.0.1:0/a", "port"),
])
def test_bad_url_is_400_naming_the_problem(spated, url, why):
    status, doc = add_source(spated, "bad", url, "t")
    assert status == 400, doc
    assert why in doc["error"], doc
    assert spated.request("GET", "/v1/sources/bad")[0] == 404


def test_credentials_never_shown(spated, functions, tmp_path, mosquitto):
    secret = "s3cr3t-Pa55"
    m = mosquitto(password=secret)
    rec = deploy_recorder(spated, functions, tmp_path)
    add_trigger(spated, "c", "rec")
    url = f"mqtt://spate:{secret}@127.0.0.1:{m.port}/c?client_id=creds-1"
    status, doc = add_source(spated, "creds", url, "c")
    assert status == 201, doc
    assert doc["url"] == f"mqtt://spate:***@127.0.0.1:{m.port}/c?client_id=creds-1"
    assert connected(spated, "creds")
    # The publisher has no password: it is refused; publish with one.
    r = subprocess.run([str(m.pub_tool), "-p", str(m.port), "-t", "c", "-n", "1"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert m.pub("c", 0, 5, "-U", f"spate:{secret}") == 5
    assert wait_for(lambda: source(spated, "creds")["committed"] == 5, timeout=30)
    status, doc = add_source(spated, "wrong",
                             f"mqtt://spate:nope-{secret}@127.0.0.1:{m.port}/c", "c")
    assert status == 201
    assert wait_for(lambda: source(spated, "wrong")["last_error"], timeout=30)
    assert "refused the connection" in source(spated, "wrong")["last_error"]
    for path in ("/v1/sources", "/v1/sources/creds", "/v1/sources/wrong", "/metrics"):
        assert secret not in spated.request("GET", path)[2].decode()
    r = spated.cli("source", "ls")
    assert r.returncode == 0 and b"creds" in r.stdout and secret.encode() not in r.stdout + r.stderr
    spated.stop()
    assert secret not in spated.log()
    spated.start()
    assert set(seen(rec)) == {f"e{i}" for i in range(5)}
