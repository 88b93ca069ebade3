"""Event sources: a Kafka topic drained into a spate topic (docs/api.md "Sources").

There is no Kafka broker package: each test starts build/kafka-mock
(tests/tools/kafka-mock.c), librdkafka's own mock cluster speaking the real
Kafka protocol on loopback ports, and produces into it through that helper's
librdkafka producer. The cluster lives in the helper's memory, so instead of
a broker restart the faults are spated killed with -9 mid-stream and a
consumer group rebalance (two spated nodes sharing the partitions, one killed
with -9). Nothing asserts on speed: waits are generous bounds.
"""

import collections
import json
import os
import re
import signal
import subprocess
import threading
import time

import pytest

from conftest import add_source, add_trigger, source, BUILD, deploy_recorder, wait_for

MOCK = BUILD / "kafka-mock"
# The group's session timeout in the URLs of the fault tests: how long the
# group waits for a member killed with -9 before its partitions go on.
SESSION = "session_timeout_ms=6000"


class Kafka:
    """A kafka-mock process: one cluster, its topics, and its producer."""

    def __init__(self, topics, partitions=3, brokers=1):
        self.proc = subprocess.Popen([str(MOCK), "--brokers", str(brokers), "--partitions",
                                      str(partitions), *topics], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.lock = threading.Lock()
        line = self.proc.stdout.readline().split()
        assert line and line[0] == "bootstrap", line
        self.bootstrap = line[1]
        self.partitions = partitions

    def cmd(self, *words):
        with self.lock:
            self.proc.stdin.write(" ".join(str(w) for w in words) + "\n")
            self.proc.stdin.flush()
            out = self.proc.stdout.readline().strip()
        assert out.startswith("ok"), (words[:3], out)
        return out[2:].strip()

    def produce(self, topic, start, count, prefix="e", keys=0):
        self.cmd("produce", topic, start, count, prefix, keys)

    def msg(self, topic, payload, key="-", ts_ms=0, headers="-"):
        self.cmd("msg", topic, key, ts_ms, headers, payload)

    def committed(self, topic, group):
        """The group's committed offsets, summed over the partitions (none: 0)."""
        parts = self.cmd("committed", topic, group).split()
        return sum(max(0, int(p.split(":")[1])) for p in parts)

    def url(self, topic, group="g", extra=""):
        return f"kafka://{self.bootstrap}/{topic}?group={group}" + (f"&{extra}" if extra else "")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def kafka():
    started = []

    def make(*topics, **kw):
        k = Kafka(topics, **kw)
        started.append(k)
        return k

    yield make
    for k in started:
        k.stop()


def records(path):
    if not os.path.exists(path):
        return []
    return [line.split() for line in open(path) if line.startswith("S ")]


def seen(path):
    """The payloads the recorder started with."""
    return [r[1] for r in records(path)]








# The kafka fixture comes first in each test's arguments: torn down last, the
# cluster outlives the spated processes, which then leave the group at once.
def test_messages_are_all_processed_and_committed_after_spate_commits(kafka, spated, functions,
                                                                        tmp_path):
    k = kafka("orders", partitions=3)
    k.produce("orders", 0, 300)  # already there: a new group starts at the beginning
    rec = deploy_recorder(spated, functions, tmp_path)
    add_trigger(spated, "orders", "rec")
    status, doc = add_source(spated, "orders-in", k.url("orders"), "orders")
    assert status == 201, doc
    k.produce("orders", 300, 200)
    want = {f"e{i}" for i in range(500)}
    assert wait_for(lambda: want <= set(seen(rec)), timeout=60), len(want - set(seen(rec)))
    assert wait_for(lambda: source(spated, "orders-in")["committed"] == 500, timeout=30)
    doc = source(spated, "orders-in")
    assert doc["state"] == "running" and doc["connected"] is True
    assert doc["received"] == 500 and doc["refused"] == 0
    # Offsets committed upstream: every partition's, 500 in all; the lag from
    # the watermarks falls to 0.
    assert wait_for(lambda: k.committed("orders", "g") == 500, timeout=10)
    assert wait_for(lambda: source(spated, "orders-in")["lag"] == 0, timeout=15)
    metrics = spated.request("GET", "/metrics")[2].decode()
    assert 'spate_source_committed_total{source="orders-in"} 500' in metrics
    assert 'spate_source_connected{source="orders-in"} 1' in metrics
    assert spated.request("DELETE", "/v1/sources/orders-in")[0] == 204
    assert spated.request("GET", "/v1/sources/orders-in")[0] == 404


def test_keys_key_field_and_oversized_messages(kafka, make_spated, functions, tmp_path):
    k = kafka("keyed", "json", partitions=2)
    d = make_spated("--message-max", "1024")
    rec = deploy_recorder(d, functions, tmp_path)
    add_trigger(d, "keyed", "rec")
    rec2 = deploy_recorder(d, functions, tmp_path, name="rec2")
    add_trigger(d, "json", "rec2")
    assert add_source(d, "keyed", k.url("keyed"), "keyed")[0] == 201
    # A group each: two members of one group on different topics met a race
    # of the mock's coordinator (SyncGroup 'Invalid request' for the follower,
    # then a rejoin that waited the 45 s session timeout: nothing committed
    # for 40 s in CI's make sanitize, librdkafka 2.0.2's debug=cgrp showed it).
    assert add_source(d, "json", k.url("json", group="gj"), "json", key_field="acct")[0] == 201
    # The Kafka key is the spate key; an old timestamp and headers ride along.
    k.msg("keyed", "old-one", key="acct-7", ts_ms=1000000000000, headers="trace=abc;n=1")
    k.produce("keyed", 0, 20, prefix="k", keys=4)
    # One over --message-max: refused and committed past, never blocking.
    k.cmd("big", "keyed", 4096, "huge")
    k.produce("keyed", 20, 10, prefix="k", keys=4)
    want = {f"k{i}" for i in range(30)} | {"old-one"}
    assert wait_for(lambda: want <= set(seen(rec)), timeout=60), want - set(seen(rec))
    assert wait_for(lambda: source(d, "keyed")["refused"] == 1, timeout=30)
    by_payload = {r[1]: r[3] for r in records(rec)}
    assert by_payload["old-one"] == "acct-7"
    assert all(by_payload[f"k{i}"] == f"k{i % 4}" for i in range(30))
    assert not any(p.startswith("huge") for p in by_payload)
    assert "refused (in the dead letters" in d.log() and "over the topic's maximum of 1024" in d.log()
    # All 32 committed upstream, the refused one included.
    assert wait_for(lambda: k.committed("keyed", "g") == 32, timeout=40), k.committed("keyed", "g")
    # --key-field: the payload's JSON field is the key; no field, refused.
    k.msg("json", '{"acct":"a1","v":1}', key="ignored")
    k.msg("json", "plain-text")
    k.msg("json", '{"acct":"a2","v":2}')
    assert wait_for(lambda: source(d, "json")["refused"] == 1, timeout=30)
    assert wait_for(lambda: len(records(rec2)) == 2, timeout=30)
    assert {r[3] for r in records(rec2)} == {"a1", "a2"}
    assert "not a JSON object" in d.log()


def test_kafka_keys_keep_their_order_through_an_ordered_trigger(kafka, spated, functions,
                                                                  tmp_path):
    """Keyed messages (the key picks the partition, which keeps their order)
    through an --ordered trigger: one at a time per key, in produced order,
    keys in parallel."""
    k = kafka("ledger", partitions=3)
    rec = deploy_recorder(spated, functions, tmp_path, sleep_us=3000, max=8)
    status, doc = spated.json("PUT", "/v1/triggers/ledger/rec?ordered=true")
    assert status == 201, doc
    k.produce("ledger", 0, 240, prefix="o", keys=6)
    assert add_source(spated, "ledger", k.url("ledger"), "ledger")[0] == 201
    assert wait_for(lambda: len(records(rec)) == 240, timeout=60), len(records(rec))
    per_key = collections.defaultdict(list)
    for line in open(rec):
        kind, p, _, key, us = line.split()
        per_key[key].append((int(us), kind, int(p[1:])))
    assert sorted(per_key) == [f"k{i}" for i in range(6)]
    for key, events in per_key.items():
        events.sort()
        running, order = 0, []
        for _, kind, n in events:
            running += 1 if kind == "S" else -1
            assert running <= 1, f"two messages of key {key} ran at once"
            if kind == "S":
                order.append(n)
        assert order == sorted(order) and len(order) == 40, key
    starts = sorted((us, key) for key, ev in per_key.items() for us, kind, _ in ev if kind == "S")
    assert any(a[0] < b[0] < a[0] + 2500 and a[1] != b[1] for a, b in zip(starts, starts[1:]))


def producing(k, topic, total, chunk=50, pause=0.02):
    """Produces e0..e{total-1} in chunks from a thread (started; join it)."""
    def run():
        for start in range(0, total, chunk):
            k.produce(topic, start, min(chunk, total - start))
            time.sleep(pause)
    t = threading.Thread(target=run)
    t.start()
    return t


def test_kill_9_mid_stream_loses_nothing(kafka, make_spated, functions, tmp_path):
    k = kafka("jobs", partitions=3)
    d = make_spated()
    rec = deploy_recorder(d, functions, tmp_path)
    add_trigger(d, "jobs", "rec")
    assert add_source(d, "jobs", k.url("jobs", extra=SESSION), "jobs")[0] == 201
    # Produced while the source drains it (once it holds the partitions):
    # the kill lands with the upstream topic partly committed.
    assert wait_for(lambda: "partitions 0,1,2 assigned" in d.log(), timeout=60)
    t = producing(k, "jobs", 3000)
    assert wait_for(lambda: source(d, "jobs")["committed"] > 300, timeout=60)
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    at_kill = k.committed("jobs", "g")
    t.join()
    assert 0 < at_kill < 3000, at_kill  # mid-stream upstream
    k.produce("jobs", 3000, 500)  # while spated is down
    d.start()
    want = {f"e{i}" for i in range(3500)}
    assert wait_for(lambda: want <= set(seen(rec)), timeout=300), len(want - set(seen(rec)))
    assert wait_for(lambda: k.committed("jobs", "g") == 3500, timeout=30)
    assert "kafka jobs (group g): partitions 0,1,2 assigned" in d.log()


def test_rebalance_between_two_nodes_loses_nothing(kafka, make_spated, functions, tmp_path):
    """Two spated nodes (own data directories) run the same source in one
    group and share the partitions; one is killed with -9 mid-stream and the
    other takes its partitions from their last commit; the killed one,
    restarted, runs what it had stored. Every message runs at least once."""
    k = kafka("flow", partitions=4)
    a, b = make_spated(), make_spated()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    os.chmod(tmp_path / "a", 0o1777)
    os.chmod(tmp_path / "b", 0o1777)
    rec_a = deploy_recorder(a, functions, tmp_path / "a")
    rec_b = deploy_recorder(b, functions, tmp_path / "b")
    for d in (a, b):
        add_trigger(d, "flow", "rec")
        assert add_source(d, "flow", k.url("flow", extra=SESSION), "flow")[0] == 201
    # Both hold two partitions each before the stream starts.
    def halves():
        last = [[l for l in d.log().splitlines() if "assigned" in l] for d in (a, b)]
        return all(ls and re.search(r"partitions \d+,\d+ assigned", ls[-1]) for ls in last)
    assert wait_for(halves, timeout=60), a.log() + b.log()

    def both_working():
        return source(a, "flow")["committed"] > 100 and source(b, "flow")["committed"] > 100
    t = producing(k, "flow", 4000, pause=0.03)
    assert wait_for(both_working, timeout=90), (source(a, "flow"), source(b, "flow"))
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait()
    at_kill = k.committed("flow", "g")
    t.join()
    assert at_kill < 4000, at_kill  # mid-stream
    # b takes all four partitions once a's session ran out, and drains them
    # from their last commit: the whole topic is committed upstream.
    assert wait_for(lambda: "partitions 0,1,2,3 assigned" in b.log(), timeout=60)
    assert wait_for(lambda: k.committed("flow", "g") == 4000, timeout=60)
    # What a had committed into its own topic and not yet run waits there:
    # a restarted a runs it (and rejoins the group).
    a.start()
    want = {f"e{i}" for i in range(4000)}
    # Generous: thousands of invocations, slow under ASan on a busy machine.
    assert wait_for(lambda: want <= set(seen(rec_a)) | set(seen(rec_b)), timeout=300), \
        len(want - set(seen(rec_a)) - set(seen(rec_b)))


@pytest.mark.parametrize("url,why", [
    ("kafka://127.0.0.1:9092/t", "missing group"),
    ("kafka://127.0.0.1:9092?group=g", "missing topic"),
    ("kafka://127.0.0.1:9092/a/b?group=g", "topic name"),
    ("kafka://127.0.0.1:9092,127.0.0.1:99999/t?group=g", "port"),
    ("kafka://127.0.0.1:9092,,h:1/t?group=g", "empty"),
    ("kafka://127.0.0.1:9092/t?group=g&colour=red", "unknown URL parameter 'colour'"),
    ("kafka://127.0.0.1:9092/t?group=g&session_timeout_ms=1", "session_timeout_ms"),
    ("kafka://u:p@127.0.0.1:9092/t?group=g&mechanism=NTLM", "mechanism"),
])
def test_bad_url_is_400_naming_the_problem(spated, url, why):
    status, doc = add_source(spated, "bad", url, "t")
    assert status == 400, doc
    assert why in doc["error"], doc
    assert spated.request("GET", "/v1/sources/bad")[0] == 404


def test_unreachable_brokers_back_off_and_say_why(spated):
    status, doc = add_source(spated, "down", "kafka://127.0.0.1:1/t?group=g", "t")
    assert status == 201, doc
    assert wait_for(lambda: source(spated, "down")["last_error"], timeout=30)
    doc = source(spated, "down")
    assert "cannot reach the Kafka brokers 127.0.0.1:1" in doc["last_error"], doc
    assert doc["connected"] is False and doc["lag"] is None


def test_brokers_gone_mid_run_are_reported_and_spated_still_stops(kafka, spated):
    """The cluster goes away under a running source: its status says so (the
    client's "all brokers down"), and spated's stop does not wait on the
    group (the fixture's stop allows 15 s; the group's session is 45 s)."""
    k = kafka("gone")
    assert add_source(spated, "gone", k.url("gone"), "t")[0] == 201
    assert wait_for(lambda: "partitions 0,1,2 assigned" in spated.log(), timeout=30)
    assert source(spated, "gone")["connected"] is True
    k.stop()
    assert wait_for(lambda: "brokers are down" in (source(spated, "gone")["last_error"] or ""),
                    timeout=30), source(spated, "gone")
    assert wait_for(lambda: source(spated, "gone")["connected"] is False, timeout=30)


def test_credentials_never_shown(kafka, spated, functions, tmp_path):
    secret = "s3cr3t-Pa55"
    k = kafka("c")
    url = f"kafka://alice:{secret}@{k.bootstrap}/c?group=g&mechanism=SCRAM-SHA-256"
    status, doc = add_source(spated, "creds", url, "c")
    assert status == 201, doc
    assert doc["url"] == f"kafka://alice:***@{k.bootstrap}/c?group=g&mechanism=SCRAM-SHA-256"
    # The mock cluster speaks no SASL: the source fails, and says so without it.
    assert wait_for(lambda: source(spated, "creds")["last_error"], timeout=60)
    for path in ("/v1/sources", "/v1/sources/creds", "/metrics"):
        assert secret not in spated.request("GET", path)[2].decode()
    r = spated.cli("source", "ls")
    assert r.returncode == 0 and b"creds" in r.stdout and secret.encode() not in r.stdout + r.stderr
    spated.stop()
    assert secret not in spated.log()
    spated.start()  # the fixture stops it
