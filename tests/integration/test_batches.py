"""Trigger batches: --batch-size, --batch-window and the 6 MiB cap, the SQS
and raw batch events, partial batch failures (batchItemFailures) and ordered
batches, through an exec function (a /usr/bin/python3 bootstrap speaking the
Lambda Runtime API)."""

import base64
import hashlib
import json
import os
import time

import pytest

from conftest import deploy_recorder, wait_for, zipped

# Records every event (one JSON line: the event and the request id) to
# $RECORD, then answers: the content of $ANSWER when that file exists, else a
# function error when a message says "crash", else batchItemFailures naming
# the messages whose body or payload starts with "fail".
BOOTSTRAP = b"""#!/usr/bin/python3
import json, os, time, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
record, answer = os.environ["RECORD"], os.environ.get("ANSWER", "")
sleep_s = float(os.environ.get("SLEEP_S", "0"))
def post(path, data):
    urllib.request.urlopen(urllib.request.Request(api + path, data=data, method="POST")).read()
while True:
    with urllib.request.urlopen(api + "next") as r:
        rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(r.read())
    with open(record, "a") as f:
        f.write(json.dumps({"id": rid, "event": event}) + "\\n")
    time.sleep(sleep_s)
    items = event["Records"] if isinstance(event, dict) else event
    texts = [(m.get("body") or m.get("payload") or "", m["messageId"]) for m in items]
    if answer and os.path.exists(answer):
        post(rid + "/response", open(answer, "rb").read())
    elif any(t.startswith("crash") for t, _ in texts):
        post(rid + "/error", json.dumps({"errorMessage": "crashed on purpose",
                                         "errorType": "Crash"}).encode())
    else:
        failed = [{"itemIdentifier": i} for t, i in texts if t.startswith("fail")]
        post(rid + "/response", json.dumps({"batchItemFailures": failed}).encode())
"""


def deploy_batcher(d, tmp_path, name="batcher", **env):
    record = tmp_path / f"{name}.jsonl"
    env = {"RECORD": str(record), **env}
    query = "&".join(["runtime=exec"] + [f"env={k}%3D{v}" for k, v in env.items()])
    status, doc = d.json("PUT", f"/v1/functions/{name}?{query}", zipped({"bootstrap": BOOTSTRAP}))
    assert status == 201, doc
    return record


def events(record):
    if not os.path.exists(record):
        return []
    with open(record) as f:
        return [json.loads(line)["event"] for line in f if line.endswith("\n")]


def records_of(event):
    return event["Records"] if isinstance(event, dict) else event


def add_trigger(d, topic, function, expect=201, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    status, doc = d.json("PUT", f"/v1/triggers/{topic}/{function}?{query}")
    assert status == expect, doc
    return doc


def publish(d, topic, lines=None, body=None, key=None):
    headers = {}
    if lines is not None:
        body = b"".join(line + b"\n" for line in lines)
        headers["Content-Type"] = "application/x-ndjson"
    if key is not None:
        headers["Spate-Key"] = key
    status, _, data = d.request("POST", f"/v1/topics/{topic}/messages", body, headers)
    assert status == 202, data
    return json.loads(data)


def settled(d, topic, function, total):
    def done():
        doc = d.json("GET", f"/v1/triggers/{topic}/{function}")[1]
        return doc["depth"] == 0 and doc["acknowledged"] + doc["dead_lettered"] == total and doc
    return wait_for(done, timeout=60)


def dead_letters(d, topic):
    status, doc = d.json("GET", f"/v1/topics/{topic}/messages?limit=1000")
    return doc["messages"] if status == 200 else []


def test_sqs_event_fields_one_by_one(spated, tmp_path):
    record = deploy_batcher(spated, tmp_path)
    # Published before the trigger: all three are there for one batch.
    text = publish(spated, "orders", body=b'{"n": 1}', key="acct-7")["first_seq"]
    binary = publish(spated, "orders", body=b"\xff\x00\xfe")["first_seq"]
    plain = publish(spated, "orders", body=b'quote " and \\ and \n newline')["first_seq"]
    before = int(time.time() * 1000)
    doc = add_trigger(spated, "orders", "batcher", batch_size=10, event_format="sqs",
                      batch_window=2000)
    assert (doc["batch_size"], doc["batch_window_ms"], doc["event_format"],
            doc["report_batch_item_failures"]) == (10, 2000, "sqs", False)
    assert settled(spated, "orders", "batcher", 3)
    evs = events(record)
    assert len(evs) == 1 and list(evs[0]) == ["Records"]
    recs = {r["messageId"]: r for r in evs[0]["Records"]}
    assert set(recs) == {str(text), str(binary), str(plain)}
    for seq, r in recs.items():
        assert set(r) == {"messageId", "receiptHandle", "body", "attributes", "messageAttributes",
                          "md5OfBody", "eventSource", "eventSourceARN", "awsRegion"}
        assert r["eventSource"] == "aws:sqs"
        assert r["eventSourceARN"] == "arn:aws:sqs:us-east-1:000000000000:orders"
        assert r["awsRegion"] == "us-east-1"
        assert isinstance(r["receiptHandle"], str) and r["receiptHandle"]
        assert r["md5OfBody"] == hashlib.md5(r["body"].encode()).hexdigest()
        a = r["attributes"]
        assert all(isinstance(v, str) for v in a.values()), a
        assert a["ApproximateReceiveCount"] == "1"
        assert a["SenderId"] == "spate"
        assert 0 < int(a["SentTimestamp"]) <= before
        assert a["ApproximateFirstReceiveTimestamp"] == a["SentTimestamp"]
    t = recs[str(text)]
    assert t["body"] == '{"n": 1}' and t["attributes"]["MessageGroupId"] == "acct-7"
    assert t["messageAttributes"] == {}
    p = recs[str(plain)]
    assert p["body"] == 'quote " and \\ and \n newline'
    assert "MessageGroupId" not in p["attributes"]
    # Not UTF-8: base64, and the message attributes say so.
    b = recs[str(binary)]
    assert base64.b64decode(b["body"]) == b"\xff\x00\xfe"
    assert b["messageAttributes"]["spate.body_encoding"]["stringValue"] == "base64"


def test_raw_batch_is_an_array_of_messages(spated, tmp_path):
    record = deploy_batcher(spated, tmp_path)
    publish(spated, "raw", lines=[b"one", b"two"], key="k")
    add_trigger(spated, "raw", "batcher", batch_size=5, batch_window=2000)
    assert settled(spated, "raw", "batcher", 2)
    (ev,) = events(record)
    assert isinstance(ev, list)
    assert [m["payload"] for m in ev] == ["one", "two"]
    for m in ev:
        assert m["messageId"] == str(m["seq"]) and m["key"] == "k" and m["attempt"] == 1
        assert m["published_ms"] > 0


def test_one_raw_message_per_call_by_default(spated, tmp_path):
    record = deploy_batcher(spated, tmp_path)
    doc = add_trigger(spated, "plain", "batcher")
    assert (doc["batch_size"], doc["event_format"]) == (1, "raw")
    publish(spated, "plain", body=b'{"records": []}')
    assert wait_for(lambda: events(record), timeout=30) == [{"records": []}]


def test_window_gathers_a_batch(spated, tmp_path):
    record = deploy_batcher(spated, tmp_path)
    add_trigger(spated, "win", "batcher", batch_size=100, batch_window=4000)
    publish(spated, "win", body=b"first")
    time.sleep(0.5)
    publish(spated, "win", lines=[b"second", b"third"])
    assert settled(spated, "win", "batcher", 3)
    # The window held the first until the others came: one invocation.
    assert [[m["payload"] for m in e] for e in events(record)] == [["first", "second", "third"]]


def test_full_batch_goes_before_its_window(spated, tmp_path):
    record = deploy_batcher(spated, tmp_path)
    add_trigger(spated, "full", "batcher", batch_size=3, batch_window=300000)
    publish(spated, "full", lines=[b"a", b"b", b"c", b"d"])
    # Three go at once (full); the fourth waits for its window, not run.
    assert wait_for(lambda: len(events(record)) == 1, timeout=30)
    time.sleep(1)
    assert [[m["payload"] for m in e] for e in events(record)] == [["a", "b", "c"]]


def test_batch_capped_at_6_mib(spated, tmp_path):
    record = deploy_batcher(spated, tmp_path)
    big = [bytes([ord("a") + i % 26]) * (200 * 1024) for i in range(40)]  # 8 MB in all
    for chunk in range(0, 40, 10):
        publish(spated, "big", lines=big[chunk:chunk + 10])
    add_trigger(spated, "big", "batcher", batch_size=1000, event_format="sqs")
    assert settled(spated, "big", "batcher", 40)
    evs = events(record)
    assert len(evs) >= 2
    for e in evs:
        assert len(json.dumps(e, separators=(",", ":")).encode()) <= 6 * 1024 * 1024
    bodies = [r["body"] for e in evs for r in e["Records"]]
    assert sorted(bodies) == sorted(b.decode() for b in big)


def test_ten_thousand_messages_in_one_batch(spated, tmp_path):
    record = deploy_batcher(spated, tmp_path)
    lines = [b"m%05d" % i for i in range(10000)]
    publish(spated, "tenk", lines=lines)
    add_trigger(spated, "tenk", "batcher", batch_size=10000, batch_window=10000,
                event_format="sqs")
    assert settled(spated, "tenk", "batcher", 10000)
    evs = events(record)
    # Small messages: the count, not the 6 MiB cap, closes the batch.
    assert len(evs) == 1 and len(evs[0]["Records"]) == 10000
    assert [r["body"] for r in evs[0]["Records"]] == [x.decode() for x in lines]


def test_the_autoscaler_counts_batches(spated, tmp_path):
    deploy_batcher(spated, tmp_path, SLEEP_S=2)
    publish(spated, "scale", lines=[b"m%d" % i for i in range(1000)])
    add_trigger(spated, "scale", "batcher", batch_size=100)

    def backlog():
        s = spated.json("GET", "/v1/functions/batcher")[1].get("scaling", {})
        return s.get("backlog", 0) > 0 and s

    # 1,000 messages in batches of 100: ten invocations' worth, not 1,000.
    s = wait_for(backlog, timeout=30)
    assert s and 1 <= s["backlog"] <= 10, s


def test_bounds_and_refusals(spated, functions, tmp_path):
    deploy_batcher(spated, tmp_path)
    deploy_recorder(spated, functions, tmp_path, name="native")
    for params in ({"batch_size": 0}, {"batch_size": 10001}, {"batch_window": 300001},
                   {"event_format": "json"}, {"report_batch_item_failures": "maybe"}):
        status, doc = spated.json("PUT", "/v1/triggers/t/batcher?" +
                                  "&".join(f"{k}={v}" for k, v in params.items()))
        assert status == 400, (params, doc)
    doc = add_trigger(spated, "t", "batcher", batch_size=10000, batch_window=300000)
    assert (doc["batch_size"], doc["batch_window_ms"]) == (10000, 300000)
    # A native function takes one message per invocation.
    status, doc = spated.json("PUT", "/v1/triggers/t/native?batch_size=2")
    assert status == 400 and "native" in json.dumps(doc), doc
    # An SQS-shaped single message is fine for it.
    add_trigger(spated, "t", "native", event_format="sqs")


def test_settings_survive_a_restart_and_show_in_the_cli(spated, tmp_path):
    deploy_batcher(spated, tmp_path)
    r = spated.cli("trigger", "add", "keep", "batcher", "--batch-size", "50", "--batch-window",
                   "250", "--event-format", "sqs", "--report-batch-item-failures")
    assert r.returncode == 0, r.stderr
    assert b"batches of up to 50 (window 250 ms), sqs events" in r.stdout, r.stdout
    assert spated.stop() == 0
    spated.start()
    doc = spated.json("GET", "/v1/triggers/keep/batcher")[1]
    assert (doc["batch_size"], doc["batch_window_ms"], doc["event_format"],
            doc["report_batch_item_failures"]) == (50, 250, "sqs", True)
    # A change keeps what it does not name.
    status, doc = spated.json("PUT", "/v1/triggers/keep/batcher?update=true&batch_size=7")
    assert status == 200 and (doc["batch_size"], doc["event_format"]) == (7, "sqs"), doc
    assert b"batch item failures" in spated.cli("trigger", "ls").stdout


def reporting_batcher(d, tmp_path, topic, lines, answer=None, **trigger):
    """The batcher (answering answer to every batch when given) behind an SQS
    trigger of batches of up to 10 that reports batch item failures, lines
    published to topic first; its record."""
    env = {}
    if answer is not None:
        env["ANSWER"] = tmp_path / "answer"
        env["ANSWER"].write_bytes(answer)
    record = deploy_batcher(d, tmp_path, **env)
    publish(d, topic, lines=lines)
    add_trigger(d, topic, "batcher", batch_size=10, event_format="sqs",
                report_batch_item_failures="true", **trigger)
    return record


def test_partial_failures_retry_only_those_named(spated, tmp_path):
    record = reporting_batcher(spated, tmp_path, "part",
                               [b"ok-1", b"fail-2", b"ok-3", b"fail-4", b"ok-5"], max_attempts=3)
    assert settled(spated, "part", "batcher", 5)
    seen = [(r["body"], r["attributes"]["ApproximateReceiveCount"])
            for e in events(record) for r in e["Records"]]
    # The successes once; each failure three times, its count rising.
    for ok in ("ok-1", "ok-3", "ok-5"):
        assert [c for b, c in seen if b == ok] == ["1"]
    for bad in ("fail-2", "fail-4"):
        assert [c for b, c in seen if b == bad] == ["1", "2", "3"]
    dl = dead_letters(spated, "part.dlq")
    assert sorted(m["payload"] for m in dl) == ["fail-2", "fail-4"]
    assert all(m["attempts"] == 3 and "batchItemFailures" in m["error"] for m in dl)
    doc = spated.json("GET", "/v1/triggers/part/batcher")[1]
    assert (doc["acknowledged"], doc["dead_lettered"]) == (3, 2)


@pytest.mark.parametrize("answer", [b"", b"null", b"{}", b'{"batchItemFailures": []}',
                                    b'{"batchItemFailures": null}'])
def test_empty_answers_are_success(spated, tmp_path, answer):
    record = reporting_batcher(spated, tmp_path, "e", [b"fail-1", b"fail-2"], answer,
                               batch_window=2000)
    doc = settled(spated, "e", "batcher", 2)
    assert doc and doc["acknowledged"] == 2
    assert len(events(record)) == 1


@pytest.mark.parametrize("answer", [
    b"not json",
    b'"ok"',
    b'{"batchItemFailures": "all"}',
    b'{"batchItemFailures": [{"itemIdentifier": "999999"}]}',
    b'{"batchItemFailures": [{"itemIdentifier": ""}]}',
    b'{"batchItemFailures": [{"id": "1"}]}',
    b'{"batchItemFailures": [{"itemIdentifier": 1}]}',
])
def test_malformed_answers_fail_the_whole_batch(spated, tmp_path, answer):
    record = reporting_batcher(spated, tmp_path, "m", [b"a", b"b"], answer, max_attempts=2)
    assert settled(spated, "m", "batcher", 2)
    assert sorted(r["body"] for e in events(record) for r in e["Records"]) == ["a", "a", "b", "b"]
    dl = dead_letters(spated, "m.dlq")
    assert sorted(m["payload"] for m in dl) == ["a", "b"]
    assert all("bad batchItemFailures answer" in m["error"] for m in dl), dl


def test_without_reporting_a_success_acks_all(spated, tmp_path):
    record = deploy_batcher(spated, tmp_path)
    publish(spated, "n", lines=[b"fail-1", b"ok-2"])
    add_trigger(spated, "n", "batcher", batch_size=10, event_format="sqs", batch_window=2000)
    doc = settled(spated, "n", "batcher", 2)
    assert doc["acknowledged"] == 2 and len(events(record)) == 1


def test_function_error_retries_every_message(spated, tmp_path):
    record = deploy_batcher(spated, tmp_path)
    publish(spated, "c", lines=[b"crash", b"innocent"])
    add_trigger(spated, "c", "batcher", batch_size=10, max_attempts=2,
                report_batch_item_failures="true", batch_window=2000)
    assert settled(spated, "c", "batcher", 2)
    evs = events(record)
    assert sorted(m["payload"] for m in evs[0]) == ["crash", "innocent"]
    # Each retried on its own back-off: together again or not, twice each.
    assert sorted(m["payload"] for e in evs for m in e) == ["crash", "crash", "innocent",
                                                            "innocent"]
    dl = dead_letters(spated, "c.dlq")
    assert sorted(m["payload"] for m in dl) == ["crash", "innocent"]
    assert all("crashed on purpose" in m["error"] for m in dl)


def test_ordered_batches_hold_one_message_per_key(spated, tmp_path):
    record = deploy_batcher(spated, tmp_path)
    for key, n in (("a", 3), ("b", 2), ("c", 1)):
        publish(spated, "o", lines=[f"{key}{i}".encode() for i in range(n)], key=key)
    add_trigger(spated, "o", "batcher", batch_size=10, ordered="true", batch_window=1000)
    assert settled(spated, "o", "batcher", 6)
    batches = [[m["payload"] for m in e] for e in events(record)]
    for b in batches:
        assert len({p[0] for p in b}) == len(b), batches  # no key twice in a batch
    flat = [p for b in batches for p in b]
    for key, n in (("a", 3), ("b", 2), ("c", 1)):
        assert [p for p in flat if p[0] == key] == [f"{key}{i}" for i in range(n)]
    assert batches[0] == ["a0", "b0", "c0"]
    assert len(batches) == 3


def test_batches_through_a_cluster(tmp_path_factory, tmp_path):
    """The settings reach every node through the registry; batches, partial
    failures and dead letters work on JetStream's queue as on SQLite's."""
    from natscluster import record_dir, spated_cluster

    with spated_cluster(tmp_path_factory, name="batches", n=2) as (nats, nodes):
        a, b = nodes
        record = record_dir(tmp_path) / "batcher.jsonl"
        query = f"runtime=exec&max=2&env=RECORD%3D{record}"
        status, doc = a.json("PUT", f"/v1/functions/batcher?{query}",
                             zipped({"bootstrap": BOOTSTRAP}))
        assert status == 201, doc
        assert wait_for(lambda: b.json("GET", "/v1/functions/batcher")[0] == 200, timeout=15)
        add_trigger(a, "cq", "batcher", batch_size=5, event_format="sqs",
                    report_batch_item_failures="true", max_attempts=2)

        def shown(d):
            status, t = d.json("GET", "/v1/triggers/cq/batcher")
            return status == 200 and (t["batch_size"], t["event_format"],
                                      t["report_batch_item_failures"]) == (5, "sqs", True)

        assert wait_for(lambda: shown(b), timeout=15)
        time.sleep(1)  # consumers bound on both nodes
        lines = [f"fail-{i}" if i % 4 == 0 else f"ok-{i}" for i in range(20)]
        publish(a, "cq", lines=[x.encode() for x in lines])

        def dead():
            return sorted(m["payload"] for m in dead_letters(a, "cq.dlq"))

        failing = sorted(x for x in lines if x.startswith("fail"))
        assert wait_for(lambda: dead() == failing, timeout=60), dead()

        def recorded():
            return [r["body"] for e in events(record) for r in e["Records"]]

        # The last successes may be recorded after the last dead letter.
        assert wait_for(lambda: set(recorded()) == set(lines), timeout=30), events(record)
        bodies = recorded()
        assert all(len(e["Records"]) <= 5 for e in events(record))
        for x in lines:
            assert bodies.count(x) >= (2 if x.startswith("fail") else 1), (x, bodies)
