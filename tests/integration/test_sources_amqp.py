"""Event sources: a RabbitMQ queue drained into a topic (docs/api.md "Sources").

One rabbitmq-server (Debian's) serves the whole module: it starts in about
ten seconds, so every test takes its own queues on it rather than its own
broker. It runs as a private node (tests/tools/rabbit.py: its own epmd,
ports, data, cookie and configuration under a temporary directory, no
plugins) and is stopped at the end. Messages are published with
tests/tools/amqp_tool.c (librabbitmq, with publisher confirms): Python has
no AMQP library on this system.

The queues are durable and the messages persistent (delivery_mode 2): what
the broker restart test needs to lose nothing. Nothing asserts on speed:
waits are generous bounds.
"""

import json
import os
import signal
import sys

import pytest

from conftest import add_source, add_trigger, source, seen, ROOT, deploy_recorder, wait_for

sys.path.insert(0, str(ROOT / "tests/tools"))
from rabbit import Rabbit, available, build_tool  # noqa: E402

pytestmark = pytest.mark.skipif(not available(),
                                reason="rabbitmq-server not installed (scripts/install-deps.sh)")

USER = "spate"
SECRET = "s3cr3t-Rabb1t-Pa55"


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rabbit")
    r = Rabbit(tmp, build_tool(tmp / "amqp_tool"), USER, SECRET)
    try:
        yield r.start()
    finally:
        r.close()


def url(r, queue, password=SECRET, extra=""):
    return f"amqp://{USER}:{password}@127.0.0.1:{r.port}/%2F?queue={queue}{extra}"










def all_acked(d, r, name, queue):
    """Removes the source, and says whether the queue then holds nothing:
    what was delivered and never acked goes back to ready when the source's
    connection closes."""
    assert d.request("DELETE", f"/v1/sources/{name}")[0] == 204
    assert wait_for(lambda: r.count(queue)[1] == 0, timeout=30)
    return r.count(queue)[0] == 0


def test_messages_are_all_processed_and_acked_after_commit(spated, functions, tmp_path, rabbit):
    r = rabbit
    r.declare("orders")
    r.publish("orders", 0, 300)  # already there: drained from the start
    rec = deploy_recorder(spated, functions, tmp_path)
    add_trigger(spated, "orders", "rec")
    status, doc = add_source(spated, "orders-in", url(r, "orders", extra="&prefetch=100"), "orders")
    assert status == 201, doc
    assert doc["topic"] == "orders" and doc["name"] == "orders-in"
    r.publish("orders", 300, 200)
    want = {f"e{i}" for i in range(500)}
    assert wait_for(lambda: want <= set(seen(rec)), timeout=60), len(set(seen(rec)))
    assert wait_for(lambda: source(spated, "orders-in")["committed"] == 500, timeout=30)
    doc = source(spated, "orders-in")
    assert doc["state"] == "running" and doc["connected"] is True
    assert doc["received"] == 500 and doc["refused"] == 0
    assert wait_for(lambda: source(spated, "orders-in")["lag"] == 0, timeout=10)
    assert r.count("orders") == (0, 1)
    metrics = spated.request("GET", "/metrics")[2].decode()
    assert 'spate_source_committed_total{source="orders-in"} 500' in metrics
    assert 'spate_source_connected{source="orders-in"} 1' in metrics
    assert all_acked(spated, r, "orders-in", "orders")


def test_the_queue_must_exist(spated, functions, tmp_path, rabbit):
    r = rabbit
    rec = deploy_recorder(spated, functions, tmp_path)
    add_trigger(spated, "late", "rec")
    assert add_source(spated, "late", url(r, "late-queue"), "late")[0] == 201
    # Declared passively: a missing queue is not created, the source says
    # so and tries again.
    assert wait_for(lambda: "not found" in (source(spated, "late")["last_error"] or ""),
                    timeout=30)
    doc = source(spated, "late")
    assert "queue 'late-queue' not found in vhost '/'" in doc["last_error"]
    assert doc["connected"] is False
    r.declare("late-queue")
    r.publish("late-queue", 0, 20)
    want = {f"e{i}" for i in range(20)}
    assert wait_for(lambda: want <= set(seen(rec)), timeout=60), seen(rec)
    assert wait_for(lambda: source(spated, "late")["connected"] is True, timeout=10)
    # Deleted under a running source: the broker cancels the consumer, the
    # source reconnects and says the queue is gone.
    assert r.run("delete", "late-queue").returncode == 0
    assert wait_for(lambda: source(spated, "late")["connected"] is False, timeout=30)
    assert wait_for(lambda: "not found" in (source(spated, "late")["last_error"] or ""),
                    timeout=30)


def test_keys_and_refusals(make_spated, functions, tmp_path, rabbit):
    r = rabbit
    d = make_spated("--message-max", "65536")
    rec = deploy_recorder(d, functions, tmp_path)
    add_trigger(d, "k", "rec")
    r.declare("keyed")
    lines = ['{"acct":"a1","v":"one"}', '{"acct":2,"v":"two"}', '{"v":"nokey"}', "not-json"]
    r.publish("keyed", 0, 0, "--lines", input="\n".join(lines) + "\n")
    # Over --message-max (and over the 128 KiB frame: several body frames),
    # between messages that must all arrive.
    r.publish("keyed", 0, 1, "--prefix", '{"acct":"big","pad":"', "--size", "200000")
    r.publish("keyed", 0, 0, "--lines", input='{"acct":"a3","v":"three"}\n')
    assert add_source(d, "keyed", url(r, "keyed"), "k", key_field="acct")[0] == 201
    assert wait_for(lambda: source(d, "keyed")["refused"] == 3, timeout=30), source(d, "keyed")
    assert wait_for(lambda: source(d, "keyed")["committed"] == 3, timeout=30)
    assert wait_for(lambda: len(seen(rec)) == 3, timeout=30)
    by_key = {parts[3]: json.loads(parts[1])["v"]
              for parts in (line.split() for line in open(rec) if line.startswith("S "))}
    assert by_key == {"a1": "one", "2": "two", "a3": "three"}
    log = d.log()
    assert "refused (in the dead letters" in log
    assert "the message is 200000 bytes, over the topic's maximum of 65536" in log
    assert "the key field 'acct' is missing" in log
    assert "the payload is not a JSON object" in log
    # Refused entries are acked too: nothing stays behind upstream.
    assert all_acked(d, r, "keyed", "keyed")


def test_kill_9_mid_stream_loses_nothing(make_spated, functions, tmp_path, rabbit):
    r = rabbit
    r.declare("jobs")
    r.publish("jobs", 0, 1000)
    d = make_spated()
    # Two instances of 10 ms each: about 200 messages a second; and the
    # source itself slow, one delivery a batch (prefetch=1: a commit each),
    # so that the kill lands while it drains the queue, a delivery unacked.
    rec = deploy_recorder(d, functions, tmp_path, sleep_us=10000, max=2)
    add_trigger(d, "jobs", "rec")
    assert add_source(d, "jobs", url(r, "jobs", extra="&prefetch=1"), "jobs")[0] == 201
    assert wait_for(lambda: source(d, "jobs")["committed"] > 50, timeout=60)
    committed = source(d, "jobs")["committed"]
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    assert committed < 1000 and len(set(seen(rec))) < 1000  # killed mid-stream, both ends
    r.publish("jobs", 1000, 500)  # while spated is down
    d.start()
    want = {f"e{i}" for i in range(1500)}
    assert wait_for(lambda: want <= set(seen(rec)), timeout=120), len(want - set(seen(rec)))
    assert wait_for(lambda: source(d, "jobs")["lag"] == 0, timeout=30)
    assert all_acked(d, r, "jobs", "jobs")


def test_broker_restart_mid_stream_loses_nothing(spated, functions, tmp_path, rabbit):
    r = rabbit
    r.declare("flow")  # durable, and the messages persistent: they survive the restart
    r.publish("flow", 0, 2000)
    rec = deploy_recorder(spated, functions, tmp_path, sleep_us=5000, max=2)
    add_trigger(spated, "flow", "rec")
    # One delivery a batch (prefetch=1): the source is still draining the
    # queue when the broker stops, so what the queue holds must survive.
    assert add_source(spated, "flow", url(r, "flow", extra="&prefetch=1"), "flow")[0] == 201
    assert wait_for(lambda: source(spated, "flow")["committed"] > 20, timeout=60)
    r.stop()
    assert wait_for(lambda: source(spated, "flow")["connected"] is False, timeout=30)
    assert source(spated, "flow")["last_error"]
    assert source(spated, "flow")["committed"] < 2000  # stopped mid-stream
    r.start()
    r.publish("flow", 2000, 200)
    want = {f"e{i}" for i in range(2200)}
    assert wait_for(lambda: want <= set(seen(rec)), timeout=120), len(want - set(seen(rec)))
    assert wait_for(lambda: source(spated, "flow")["connected"] is True, timeout=30)
    assert all_acked(spated, r, "flow", "flow")


@pytest.mark.parametrize("u,why", [
    ("amqp://h:5672/", "missing queue"),
    ("amqp://h:5672/%2F?queue=", "missing queue"),
    ("amqp://h:5672/%2F?queue=q&group=g", "unknown URL parameter 'group'"),
    ("amqp://h:5672/%2F?queue=q&prefetch=0", "'prefetch' must be a number from 1 to 4096"),
    ("amqp://h:5672/a/b?queue=q", "the path is the vhost"),
    ("amqp://h:99999/?queue=q", "port"),
    ("amqps://h:5671/?queue=q&tls=0", "contradicts the scheme 'amqps'"),
    ("amqp://h:5672/?queue=q&ca=/ca.pem", "'ca', 'cert' and 'key' are for TLS"),
])
def test_bad_url_is_400_naming_the_problem(spated, u, why):
    status, doc = add_source(spated, "bad", u, "t")
    assert status == 400, doc
    assert why in doc["error"], doc
    assert spated.request("GET", "/v1/sources/bad")[0] == 404


def test_credentials_never_shown(spated, functions, tmp_path, rabbit):
    r = rabbit
    r.declare("creds")
    deploy_recorder(spated, functions, tmp_path)
    add_trigger(spated, "c", "rec")
    status, doc = add_source(spated, "creds", url(r, "creds"), "c")
    assert status == 201, doc
    assert doc["url"] == f"amqp://{USER}:***@127.0.0.1:{r.port}/%2F?queue=creds"
    r.publish("creds", 0, 5)
    assert wait_for(lambda: source(spated, "creds")["committed"] == 5, timeout=30)
    # A wrong password: the broker's refusal is shown, the password is not.
    status, doc = add_source(spated, "wrong", url(r, "creds", password="nope-" + SECRET), "c")
    assert status == 201
    assert wait_for(lambda: "ACCESS_REFUSED" in (source(spated, "wrong")["last_error"] or ""),
                    timeout=30)
    for path in ("/v1/sources", "/v1/sources/creds", "/v1/sources/wrong", "/metrics"):
        assert SECRET not in spated.request("GET", path)[2].decode()
    out = spated.cli("source", "ls")
    assert out.returncode == 0 and b"creds" in out.stdout
    assert SECRET.encode() not in out.stdout + out.stderr
    out = spated.cli("source", "status", "wrong")
    assert SECRET.encode() not in out.stdout + out.stderr
    spated.stop()
    assert SECRET not in spated.log()
    spated.start()  # the fixture stops it
