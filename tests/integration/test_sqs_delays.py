"""SQS delays (issue 18): DelaySeconds per queue (0-900) and per message
(SendMessage, batch entries), counted in ApproximateNumberOfMessagesDelayed,
kept through kill -9. A delay is checked from below only (a message never
comes before its time); nothing here asserts how soon after it comes."""

import signal
import time

import pytest

from conftest import wait_for
from test_sqs import attributes, cli, create, error_of, ok


def receive_all(d, url, want, timeout=60):
    """Long polls until the bodies in want came: {body: monotonic time}."""
    got = {}
    end = time.monotonic() + timeout
    while set(want) - set(got) and time.monotonic() < end:
        doc = ok(d, "ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 10,
                                       "WaitTimeSeconds": 2, "VisibilityTimeout": 600}, timeout=60)
        for m in doc.get("Messages", []):
            got.setdefault(m["Body"], time.monotonic())
            ok(d, "DeleteMessage", {"QueueUrl": url, "ReceiptHandle": m["ReceiptHandle"]})
    return got


def test_delays_per_queue_and_per_message(spated):
    url = create(spated, "slow", DelaySeconds=3)
    assert attributes(spated, url)["DelaySeconds"] == "3"
    sent = time.monotonic()
    ok(spated, "SendMessage", {"QueueUrl": url, "MessageBody": "now", "DelaySeconds": 0})
    ok(spated, "SendMessage", {"QueueUrl": url, "MessageBody": "queue-delay"})
    cli(spated, "send-message", "--queue-url", url, "--message-body", "cli-5",
        "--delay-seconds", "5")
    doc = ok(spated, "SendMessageBatch", {"QueueUrl": url, "Entries": [
        {"Id": "a", "MessageBody": "batch-4", "DelaySeconds": 4},
        {"Id": "b", "MessageBody": "batch-0", "DelaySeconds": 0}]})
    assert len(doc["Successful"]) == 2, doc
    a = attributes(spated, url)
    # Unless this machine took 3 s to get here, three wait.
    if time.monotonic() - sent < 2.5:
        assert a["ApproximateNumberOfMessagesDelayed"] == "3", a
        assert a["ApproximateNumberOfMessages"] == "2", a
    got = receive_all(spated, url, ["now", "batch-0", "queue-delay", "cli-5", "batch-4"])
    assert set(got) == {"now", "batch-0", "queue-delay", "cli-5", "batch-4"}, got
    # Never before its time (measured from before its send).
    assert got["queue-delay"] - sent >= 3 - 0.05, got
    assert got["cli-5"] - sent >= 5 - 0.05, got
    assert got["batch-4"] - sent >= 4 - 0.05, got
    a = attributes(spated, url)
    assert (a["ApproximateNumberOfMessagesDelayed"], a["ApproximateNumberOfMessages"]) == \
        ("0", "0"), a


def test_delays_bad_input(spated):
    url = create(spated, "bounds")
    for v in (-1, 901, 1.5, "3"):
        status, code, _ = error_of(spated, "SendMessage", {"QueueUrl": url, "MessageBody": "x",
                                                            "DelaySeconds": v})
        assert (status, code) == (400, "InvalidParameterValue"), v
    status, code, _ = error_of(spated, "SetQueueAttributes", {"QueueUrl": url, "Attributes": {
        "DelaySeconds": "901"}})
    assert (status, code) == (400, "InvalidAttributeValue")
    ok(spated, "SetQueueAttributes", {"QueueUrl": url, "Attributes": {"DelaySeconds": "900"}})
    assert attributes(spated, url)["DelaySeconds"] == "900"
    # A bad entry fails alone; nothing of it is stored.
    doc = ok(spated, "SendMessageBatch", {"QueueUrl": url, "Entries": [
        {"Id": "bad", "MessageBody": "x", "DelaySeconds": 1000},
        {"Id": "good", "MessageBody": "y", "DelaySeconds": 0}]})
    assert [f["Id"] for f in doc["Failed"]] == ["bad"]
    assert [m["Body"] for m in ok(spated, "ReceiveMessage", {"QueueUrl": url})["Messages"]] == ["y"]


def test_a_delayed_message_survives_kill_9(spated):
    url = create(spated, "delayed")
    sent = time.monotonic()
    ok(spated, "SendMessage", {"QueueUrl": url, "MessageBody": "plain"})
    ok(spated, "SendMessage", {"QueueUrl": url, "MessageBody": "d4", "DelaySeconds": 4})
    spated.proc.send_signal(signal.SIGKILL)
    spated.proc.wait()
    spated.start()
    got = receive_all(spated, f"{spated.url}/000000000000/delayed", ["plain", "d4"])
    assert set(got) == {"plain", "d4"}, got
    assert got["d4"] - sent >= 4 - 0.05, got
    # And once more after a delay that a clean restart saw committed.
    sent = time.monotonic()
    ok(spated, "SendMessage", {"QueueUrl": url, "MessageBody": "d3", "DelaySeconds": 3})
    wait_for(lambda: attributes(spated, url)["ApproximateNumberOfMessagesDelayed"] == "1",
             timeout=10)
    time.sleep(0.5)
    spated.proc.send_signal(signal.SIGKILL)
    spated.proc.wait()
    spated.start()
    got = receive_all(spated, url, ["d3"])
    assert "d3" in got and got["d3"] - sent >= 3 - 0.05, got


def test_delays_on_the_query_protocol(spated):
    """python3-boto3 (the query protocol): DelaySeconds as a form field of
    CreateQueue's attributes, SendMessage and batch entries."""
    boto3 = pytest.importorskip("boto3")
    from botocore.config import Config
    c = boto3.client("sqs", endpoint_url=spated.url, region_name="us-east-1",
                     aws_access_key_id="x", aws_secret_access_key="y",
                     config=Config(retries={"total_max_attempts": 1}, read_timeout=60))
    url = c.create_queue(QueueName="boto-slow", Attributes={"DelaySeconds": "2"})["QueueUrl"]
    sent = time.monotonic()
    c.send_message(QueueUrl=url, MessageBody="q2")
    c.send_message(QueueUrl=url, MessageBody="q0", DelaySeconds=0)
    r = c.send_message_batch(QueueUrl=url, Entries=[
        {"Id": "a", "MessageBody": "b3", "DelaySeconds": 3}])
    assert len(r["Successful"]) == 1, r
    got = receive_all(spated, url, ["q2", "q0", "b3"])
    assert set(got) == {"q2", "q0", "b3"}, got
    assert got["q2"] - sent >= 2 - 0.05 and got["b3"] - sent >= 3 - 0.05, got
