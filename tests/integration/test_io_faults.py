"""spated with its store's disk failing (issue 21, item 2): the SQLite files
through the failing VFS (src/store/faultvfs.c) and the artifact files
(src/store/artifacts.c) fail the writes, fsyncs or renames a control file
names (SPATE_FAIL_IO, src/common/failio.h), changed while spated runs.

A publish whose commit fails answers 503 store_unavailable; /v1/status says
the store is unhealthy and /metrics counts the failures; once the fault is
cleared spated commits again by itself (no restart); every acknowledged
message runs, after the fault and after a kill -9 and a restart. A deploy
whose artifact cannot be written answers 503 and leaves no file behind.

Needs spated built with -DSPATE_FAILPOINTS=ON (the ASan build of make
sanitize); skipped otherwise."""

import hashlib
import json
import os
import re
import signal
import time

import pytest

from conftest import BUILD, Spated, add_trigger, deploy_recorder, seen, topic_stats, wait_for


def failpoints_built():
    cache = BUILD / "CMakeCache.txt"
    return cache.exists() and re.search(r"^SPATE_FAILPOINTS:BOOL=ON$", cache.read_text(), re.M)


pytestmark = [pytest.mark.skipif(not failpoints_built(),
                                 reason="spated built without -DSPATE_FAILPOINTS=ON"),
              pytest.mark.usefixtures("no_spated_left")]

TOPIC = "iofaults"


def faulty(tmp_path):
    """A spated (not started) whose store's files fail as tmp_path/faults
    says, and a function that sets what it says (None: nothing fails)."""
    ctl = tmp_path / "faults"

    def set_faults(rules):
        # A new file renamed over the old one: spated never reads half of it.
        tmp = tmp_path / "faults.new"
        tmp.write_text(rules or "")
        os.replace(tmp, ctl)
        time.sleep(0.2)  # spated looks at it at most every 50 ms

    set_faults(None)
    return Spated(tmp_path, prefix=["env", f"SPATE_FAIL_IO={ctl}"]), set_faults


def status_store(d):
    status, doc = d.json("GET", "/v1/status")
    assert status == 200, doc
    return doc["store"]


def store_errors(d, op):
    _, _, body = d.request("GET", "/metrics")
    m = re.search(rf'^spate_store_errors_total{{op="{op}"}} (\d+)$', body.decode(), re.M)
    assert m, body.decode()[-2000:]
    return int(m.group(1))


def publish(d, payload):
    status, _, body = d.request("POST", f"/v1/topics/{TOPIC}/messages", payload.encode(),
                                timeout=20)
    return status, body


@pytest.mark.parametrize("rule, says", [("sync wal", "input/output error"),
                                        ("write wal", "input/output error"),
                                        ("full wal", "no space left on the store's disk")])
def test_publishes_while_the_store_fails(functions, tmp_path, rule, says):
    d, set_faults = faulty(tmp_path)
    d.start()
    rec = deploy_recorder(d, functions, tmp_path)
    add_trigger(d, TOPIC, "rec")
    # A second trigger: each publish fans out to both.
    rec2 = deploy_recorder(d, functions, tmp_path, name="rec2")
    add_trigger(d, TOPIC, "rec2")
    acknowledged = []
    for i in range(5):
        assert publish(d, f"before{i}")[0] == 202
        acknowledged.append(f"before{i}")
    assert status_store(d)["healthy"] is True

    set_faults(rule)
    for i in range(5):
        status, body = publish(d, f"during{i}")
        assert status == 503, (rule, status, body)
        assert b'"store_unavailable"' in body and says.encode() in body, body
    st = status_store(d)
    assert st["healthy"] is False and st["error"] and st["since_ms"] > 0, st
    assert st["errors"]["commit"] >= 5, st
    assert store_errors(d, "commit") >= 5
    out = d.cli("status").stdout.decode()
    assert re.search(r"^store +FAILING: commit: ", out, re.M), out
    # Rate-limited: one line a second at most (and the count of the others).
    lines = re.findall(r"store: transaction of \d+ operations failed", d.log())
    assert 1 <= len(lines) <= 10, d.log()[-3000:]
    assert re.search(r"failio: injected: " + rule, d.log()), d.log()[-3000:]

    # The fault clears: spated commits again by itself (its probe), no restart.
    set_faults(None)
    assert wait_for(lambda: status_store(d)["healthy"], timeout=10), status_store(d)
    assert re.search(r"store: commits again after \d+ failed transactions", d.log()), d.log()
    assert re.search(r"^store +healthy; ", d.cli("status").stdout.decode(), re.M)
    for i in range(5):
        assert publish(d, f"after{i}")[0] == 202
        acknowledged.append(f"after{i}")
    assert wait_for(lambda: set(acknowledged) <= set(seen(rec)), timeout=30), (
        sorted(set(acknowledged) - set(seen(rec))), d.log()[-4000:])
    assert wait_for(lambda: set(acknowledged) <= set(seen(rec2)), timeout=30), (
        sorted(set(acknowledged) - set(seen(rec2))), d.log()[-4000:])
    assert not (set(seen(rec)) | set(seen(rec2))) & {f"during{i}" for i in range(5)}, \
        "a refused message ran"
    assert wait_for(lambda: topic_stats(d, TOPIC)["depth"] == 0, timeout=30), topic_stats(d, TOPIC)

    # A fault with work in flight, then a crash: nothing acknowledged lost.
    for i in range(5):
        assert publish(d, f"sleep:300:{rule[0]}{i}")[0] == 202
        acknowledged.append(f"sleep:300:{rule[0]}{i}")
    wait_for(lambda: any(p.startswith("sleep:") for p in seen(rec)), timeout=10)
    set_faults(rule)  # the acknowledgements and snapshots fail now
    time.sleep(1)
    d.stop(sig=signal.SIGKILL)

    d = Spated(tmp_path).start()  # without faults
    try:
        for r in (rec, rec2):
            assert wait_for(lambda: set(acknowledged) <= set(seen(r)), timeout=30), (
                r, sorted(set(acknowledged) - set(seen(r))), d.log()[-4000:])
        assert wait_for(lambda: topic_stats(d, TOPIC)["depth"] == 0, timeout=30)
    finally:
        assert d.stop() == 0, d.log()[-4000:]


def dead_letters(d, topic):
    status, _, body = d.request("GET", f"/v1/topics/{topic}/messages?limit=1000")
    return re.findall(r'"payload":\s*"([^"]*)"', body.decode()) if status == 200 else []


def test_retries_and_acks_while_the_store_fails(functions, tmp_path):
    """Messages failing (retried, then dead-lettered) and succeeding
    (acknowledged) while the disk fails, then a crash: every message comes
    back and settles, the failing ones in the dead-letter topic."""
    d, set_faults = faulty(tmp_path)
    d.start()
    rec = deploy_recorder(d, functions, tmp_path, sleep_us=20000)
    status, doc = d.json("PUT", f"/v1/triggers/{TOPIC}/rec?max_attempts=3")
    assert status == 201, doc
    fails = [f"fail{i}" for i in range(4)]
    sent = fails + [f"ok{i}" for i in range(8)]
    for p in sent:
        assert publish(d, p)[0] == 202
    set_faults("sync wal")
    # The failures' retries, the dead letters and the acknowledgements are
    # written (and fail) while the disk fails.
    assert wait_for(lambda: set(sent) <= set(seen(rec)), timeout=30), seen(rec)
    time.sleep(1.5)
    set_faults(None)
    assert wait_for(lambda: status_store(d)["healthy"], timeout=10), status_store(d)
    time.sleep(0.3)
    d.stop(sig=signal.SIGKILL)

    d = Spated(tmp_path).start()
    try:
        assert wait_for(lambda: topic_stats(d, TOPIC)["depth"] == 0, timeout=30), (
            topic_stats(d, TOPIC), d.log()[-4000:])
        assert wait_for(lambda: set(fails) <= set(dead_letters(d, f"{TOPIC}.dlq")), timeout=10), (
            dead_letters(d, f"{TOPIC}.dlq"), d.log()[-4000:])
        assert not {p for p in dead_letters(d, f"{TOPIC}.dlq") if p.startswith("ok")}
    finally:
        assert d.stop() == 0, d.log()[-4000:]


def sqs(d, action, doc):
    headers = {"X-Amz-Target": "AmazonSQS." + action,
               "Content-Type": "application/x-amz-json-1.0"}
    status, _, body = d.request("POST", "/", json.dumps(doc).encode(), headers, timeout=20)
    return status, json.loads(body) if body else {}


def test_sqs_sends_while_the_store_fails(tmp_path):
    """SendMessage whose commit fails answers 503 ServiceUnavailable; every
    send answered 200 is received after the fault and a kill -9."""
    d, set_faults = faulty(tmp_path)
    d.start()
    status, doc = sqs(d, "CreateQueue", {"QueueName": "q"})
    assert status == 200, doc
    url = doc["QueueUrl"]
    sent = set()
    for rule in ("sync wal", "full wal"):
        for i in range(3):
            status, doc = sqs(d, "SendMessage", {"QueueUrl": url, "MessageBody": f"{rule}-ok{i}"})
            assert status == 200, doc
            sent.add(f"{rule}-ok{i}")
        set_faults(rule)
        for i in range(3):
            status, doc = sqs(d, "SendMessage", {"QueueUrl": url, "MessageBody": f"{rule}-no{i}"})
            assert status == 503, doc
            assert "ServiceUnavailable" in json.dumps(doc) and "nothing was stored" in \
                json.dumps(doc), doc
        set_faults(None)
        assert wait_for(lambda: status_store(d)["healthy"], timeout=10), status_store(d)
    d.stop(sig=signal.SIGKILL)

    d = Spated(tmp_path).start()
    try:
        got = set()
        deadline = time.time() + 30
        while not sent <= got and time.time() < deadline:
            status, doc = sqs(d, "ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 10,
                                                    "WaitTimeSeconds": 1})
            assert status == 200, doc
            for m in doc.get("Messages", []):
                got.add(m["Body"])
                assert sqs(d, "DeleteMessage", {"QueueUrl": url,
                                                "ReceiptHandle": m["ReceiptHandle"]})[0] == 200
        assert sent <= got, sorted(sent - got)
        assert not {b for b in got if "-no" in b}, got
    finally:
        assert d.stop() == 0, d.log()[-4000:]


def artifact_files(data):
    return sorted(str(p.relative_to(data)) for p in (data / "artifacts").rglob("*") if p.is_file())


@pytest.mark.parametrize("rule", ["write artifact", "sync artifact", "full artifact",
                                  "rename artifact"])
def test_deploy_while_artifact_files_fail(functions, tmp_path, rule):
    d, set_faults = faulty(tmp_path)
    d.start()
    body = functions["recorder"].read_bytes()
    sha = hashlib.sha256(body).hexdigest()
    set_faults(rule)
    status, doc = d.json("PUT", f"/v1/functions/rec?env=RECORD%3D{tmp_path}/rec.log", body)
    assert status == 503, doc
    assert doc["code"] == "store_unavailable", doc
    # Nothing left behind: no artifact, no partial file, no function.
    assert artifact_files(d.data) == [], artifact_files(d.data)
    assert list((d.data / "tmp").iterdir()) == []
    assert d.json("GET", "/v1/functions/rec")[0] == 404
    st = status_store(d)
    assert not st["healthy"] and st["errors"]["artifact"] >= 1, st
    assert store_errors(d, "artifact") >= 1

    set_faults(None)
    deploy_recorder(d, functions, tmp_path)  # asserts 200/201
    assert status_store(d)["healthy"], status_store(d)
    assert artifact_files(d.data) == [f"artifacts/{sha[:2]}/{sha}"]
    d.stop(sig=signal.SIGKILL)
    d = Spated(tmp_path).start()
    try:
        status, out = d.invoke("rec", b"after-restart")
        assert status == 200, out
        assert "after-restart" in seen(tmp_path / "rec.log")
    finally:
        assert d.stop() == 0, d.log()[-4000:]


def test_stop_while_the_store_fails(functions, tmp_path):
    """SIGTERM while every commit fails: spated stops (a few tries, then what
    is left fails) rather than hang, and a clean start loses nothing."""
    d, set_faults = faulty(tmp_path)
    d.start()
    rec = deploy_recorder(d, functions, tmp_path, sleep_us=200000)
    add_trigger(d, TOPIC, "rec")
    sent = [f"s{i}" for i in range(6)]
    for p in sent:
        assert publish(d, p)[0] == 202
    wait_for(lambda: seen(rec), timeout=10)
    set_faults("sync wal")
    assert publish(d, "refused")[0] == 503
    assert d.stop(timeout=30) == 0, d.log()[-4000:]
    assert re.search(r"store: stopped with the store failing", d.log()), d.log()[-4000:]

    d = Spated(tmp_path).start()
    try:
        assert wait_for(lambda: set(sent) <= set(seen(rec)), timeout=30), (
            sorted(set(sent) - set(seen(rec))), d.log()[-4000:])
        assert wait_for(lambda: topic_stats(d, TOPIC)["depth"] == 0, timeout=30)
        assert "refused" not in seen(rec)
    finally:
        assert d.stop() == 0, d.log()[-4000:]
