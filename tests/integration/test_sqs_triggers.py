"""A trigger on an SQS queue (issue 18): what Lambda's event source mapping
is. It shares the queue's one receiver with the ReceiveMessage callers, so
each message goes to one of them or to the function, never both; a failed
message comes back after the queue's visibility timeout and moves to the
queue's dead-letter queue after its maxReceiveCount-th receive; the SQS
event carries the message's attributes in Lambda's shape. Messages are
sent with the aws CLI (the v1 on PATH speaks the JSON protocol); the
function is a python3 bootstrap (test_batches.BOOTSTRAP)."""

import base64
import json
import signal
import threading
import time

from conftest import wait_for, zipped
from test_batches import BOOTSTRAP, deploy_batcher, events, records_of
from test_sqs import attributes, cli, create, ok


def trigger_on(d, queue, function, *extra):
    r = d.cli("trigger", "add", queue, function, "--event-format", "sqs",
              "--report-batch-item-failures", *extra)
    assert r.returncode == 0, r.stderr


def seen(record):
    """(body, ApproximateReceiveCount, the record) of every record the
    function got, in order."""
    return [(r["body"], r["attributes"]["ApproximateReceiveCount"], r)
            for e in events(record) for r in records_of(e)]


def test_trigger_shares_the_receiver_with_redrive_and_attributes(spated, tmp_path):
    record = deploy_batcher(spated, tmp_path)
    dlq = create(spated, "jobs-dead")
    arn = attributes(spated, dlq)["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 2})
    url = create(spated, "jobs", VisibilityTimeout=1, RedrivePolicy=policy)
    trigger_on(spated, "jobs", "batcher", "--batch-size", "10")
    cli(spated, "send-message", "--queue-url", url, "--message-body", "ok-1",
        "--message-attributes",
        json.dumps({"colour": {"DataType": "String", "StringValue": "blue\n\"x\""},
                    "blob": {"DataType": "Binary", "BinaryValue": "AAEC/w=="},
                    "n": {"DataType": "Number.int", "StringValue": "42"}}))
    cli(spated, "send-message", "--queue-url", url, "--message-body", "fail-1")

    # fail-1 fails twice (each receive after the visibility timeout), then
    # moves to the dead-letter queue; ok-1 runs once and is deleted.
    dead = wait_for(lambda: ok(spated, "ReceiveMessage", {"QueueUrl": dlq}).get("Messages"),
                    timeout=60)
    assert [m["Body"] for m in dead] == ["fail-1"]
    got = seen(record)
    assert [(b, c) for b, c, _ in got if b == "fail-1"] == [("fail-1", "1"), ("fail-1", "2")]
    oks = [r for b, _, r in got if b == "ok-1"]
    assert len(oks) == 1, got
    assert oks[0]["attributes"]["ApproximateReceiveCount"] == "1"
    assert oks[0]["eventSourceARN"].endswith(":jobs")
    assert oks[0]["messageAttributes"] == {
        "colour": {"stringValue": "blue\n\"x\"", "stringListValues": [], "binaryListValues": [],
                   "dataType": "String"},
        # The aws v1 CLI sends a blob argument's text as its bytes.
        "blob": {"binaryValue": base64.b64encode(b"AAEC/w==").decode(), "stringListValues": [], "binaryListValues": [],
                 "dataType": "Binary"},
        "n": {"stringValue": "42", "stringListValues": [], "binaryListValues": [],
              "dataType": "Number.int"}}
    fails = [r for b, _, r in got if b == "fail-1"]
    assert fails[0]["messageAttributes"] == {}

    # Nothing is left for a ReceiveMessage caller: the function had them all.
    assert ok(spated, "ReceiveMessage", {"QueueUrl": url, "WaitTimeSeconds": 2}) == {}
    wait_for(lambda: attributes(spated, url)["ApproximateNumberOfMessages"] == "0" and
             attributes(spated, url)["ApproximateNumberOfMessagesNotVisible"] == "0", timeout=30)
    # The trigger shows the queue's figures.
    doc = spated.json("GET", "/v1/triggers/jobs/batcher")[1]
    assert doc["depth"] == 0, doc


def test_each_message_goes_to_the_function_or_a_receiver(spated, tmp_path):
    """A ReceiveMessage caller and the function take from one receiver: no
    message reaches both (with a plain topic trigger, the function saw every
    message and the caller too)."""
    record = deploy_batcher(spated, tmp_path)
    url = create(spated, "shared", VisibilityTimeout=600)
    trigger_on(spated, "shared", "batcher")
    sent = {f"m{i}" for i in range(40)}
    received = set()
    stop = threading.Event()

    def consume():
        while not stop.is_set():
            doc = ok(spated, "ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 10,
                                                "WaitTimeSeconds": 1}, timeout=60)
            for m in doc.get("Messages", []):
                received.add(m["Body"])
                ok(spated, "DeleteMessage", {"QueueUrl": url, "ReceiptHandle": m["ReceiptHandle"]})

    consumer = threading.Thread(target=consume)
    consumer.start()
    try:
        for i in range(0, 40, 10):
            ok(spated, "SendMessageBatch", {"QueueUrl": url, "Entries": [
                {"Id": str(j), "MessageBody": f"m{j}"} for j in range(i, i + 10)]})
        ran = lambda: {b for b, _, _ in seen(record)}  # noqa: E731
        assert wait_for(lambda: ran() | received == sent, timeout=60), (ran(), received)
        # Settled everywhere (the function's batches too), so that a message
        # the function would run as well has run by now.
        assert wait_for(lambda: spated.json("GET", "/v1/triggers/shared/batcher")[1]["depth"] == 0
                        and attributes(spated, url)["ApproximateNumberOfMessagesNotVisible"] == "0",
                        timeout=60)
        time.sleep(1)
    finally:
        stop.set()
        consumer.join()
    assert not ran() & received, ran() & received
    # And every message ran once: the function deletes what it does not name.
    bodies = [b for b, _, _ in seen(record)]
    assert len(bodies) == len(set(bodies)), bodies
    assert attributes(spated, url)["ApproximateNumberOfMessages"] == "0"


def test_a_queue_with_a_trigger_loses_nothing_on_kill_9(spated, tmp_path):
    """kill -9 while the function holds a batch and more wait: after the
    restart every message runs (those it held again), and none is left on
    the queue for a ReceiveMessage caller."""
    record = deploy_batcher(spated, tmp_path, SLEEP_S=3)
    url = create(spated, "later")
    trigger_on(spated, "later", "batcher", "--batch-size", "5")
    for i in range(0, 20, 10):
        ok(spated, "SendMessageBatch", {"QueueUrl": url, "Entries": [
            {"Id": str(j), "MessageBody": f"k{j}"} for j in range(i, i + 10)]})
    assert wait_for(lambda: seen(record), timeout=60)
    spated.proc.send_signal(signal.SIGKILL)
    spated.proc.wait()
    spated.start()
    status, doc = spated.json("PUT", "/v1/functions/batcher?runtime=exec&env=RECORD%3D" +
                              str(record), zipped({"bootstrap": BOOTSTRAP}))
    assert status in (200, 201), doc
    want = {f"k{i}" for i in range(20)}
    assert wait_for(lambda: {b for b, _, _ in seen(record)} == want, timeout=60), seen(record)
    wait_for(lambda: attributes(spated, url)["ApproximateNumberOfMessages"] == "0" and
             attributes(spated, url)["ApproximateNumberOfMessagesNotVisible"] == "0", timeout=30)
    assert ok(spated, "ReceiveMessage", {"QueueUrl": url, "WaitTimeSeconds": 1}) == {}


def test_a_trigger_on_a_fifo_queue_keeps_each_group_in_order(spated, tmp_path):
    """The trigger leases from the FIFO queue's ordered receiver: a batch has
    at most one message of a group, and a group's messages run in send
    order, a failed one (retried after the visibility timeout) before the
    next of its group."""
    record = deploy_batcher(spated, tmp_path)
    url = create(spated, "steps.fifo", FifoQueue="true", VisibilityTimeout=1)
    trigger_on(spated, "steps.fifo", "batcher", "--batch-size", "10")
    sent = {"a": ["a1", "fail-a2", "a3"], "b": ["b1", "b2"]}
    entries = []
    for group, bodies in sent.items():
        for body in bodies:
            entries.append({"Id": body, "MessageBody": body, "MessageGroupId": group,
                            "MessageDeduplicationId": body})
    ok(spated, "SendMessageBatch", {"QueueUrl": url, "Entries": entries})

    # fail-a2 fails for ever (no redrive policy): a3 never runs after it.
    def ran():
        return [b for b, _, _ in seen(record)]
    assert wait_for(lambda: ran().count("fail-a2") >= 3 and "b2" in ran(), timeout=60), ran()
    order = ran()
    assert "a3" not in order, order
    assert order.index("a1") < order.index("fail-a2")
    assert order.index("b1") < order.index("b2")
    for e in events(record):
        groups = [r["attributes"]["MessageGroupId"] for r in records_of(e)]
        assert len(groups) == len(set(groups)), e
