"""SQS FIFO queues (issue 18): names ending in .fifo with FifoQueue true;
MessageGroupId is the message's key on an ordered receiver, so one message
of a group is in flight at a time, in send order; deduplication by
MessageDeduplicationId or ContentBasedDeduplication within SQS's 5-minute
window (kept with the messages in the store: a retry across kill -9 is
answered with the first message)."""

import pytest

from test_sqs import attributes, create, error_of, ok


def send(d, url, body, group, dedup=None):
    req = {"QueueUrl": url, "MessageBody": body, "MessageGroupId": group}
    if dedup:
        req["MessageDeduplicationId"] = dedup
    return ok(d, "SendMessage", req)


def receive(d, url, **kw):
    return ok(d, "ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 10,
                                    "AttributeNames": ["All"], **kw}).get("Messages", [])


def test_fifo_names_and_attributes(spated):
    status, code, _ = error_of(spated, "CreateQueue", {"QueueName": "x.fifo"})
    assert (status, code) == (400, "InvalidParameterValue")
    status, code, _ = error_of(spated, "CreateQueue", {"QueueName": "plain", "Attributes": {
        "FifoQueue": "true"}})
    assert (status, code) == (400, "InvalidAttributeValue")
    status, code, _ = error_of(spated, "CreateQueue", {"QueueName": "plain", "Attributes": {
        "ContentBasedDeduplication": "true"}})
    assert (status, code) == (400, "InvalidAttributeValue")
    url = create(spated, "jobs.fifo", FifoQueue="true")
    assert url.endswith("/000000000000/jobs.fifo")
    a = attributes(spated, url)
    assert (a["FifoQueue"], a["ContentBasedDeduplication"]) == ("true", "false"), a
    assert ok(spated, "GetQueueUrl", {"QueueName": "jobs.fifo"})["QueueUrl"] == url
    # A group is required, and a deduplication id without content-based deduplication.
    status, code, _ = error_of(spated, "SendMessage", {"QueueUrl": url, "MessageBody": "m",
                                                       "MessageDeduplicationId": "d"})
    assert (status, code) == (400, "MissingParameter")
    status, code, _ = error_of(spated, "SendMessage", {"QueueUrl": url, "MessageBody": "m",
                                                       "MessageGroupId": "g"})
    assert (status, code) == (400, "InvalidParameterValue")
    status, code, _ = error_of(spated, "SendMessage", {
        "QueueUrl": url, "MessageBody": "m", "MessageGroupId": "g", "MessageDeduplicationId": "d",
        "DelaySeconds": 5})
    assert (status, code) == (400, "InvalidParameterValue")
    status, code, _ = error_of(spated, "SendMessage", {
        "QueueUrl": url, "MessageBody": "m", "MessageGroupId": "g" * 129,
        "MessageDeduplicationId": "d"})
    assert (status, code) == (400, "InvalidParameterValue")
    # A standard queue refuses the FIFO members.
    plain = create(spated, "plain")
    status, code, _ = error_of(spated, "SendMessage", {"QueueUrl": plain, "MessageBody": "m",
                                                       "MessageGroupId": "g"})
    assert (status, code) == (400, "InvalidParameterValue")
    # And a FIFO queue delays nothing yet.
    status, code, _ = error_of(spated, "SetQueueAttributes", {"QueueUrl": url, "Attributes": {
        "DelaySeconds": "5"}})
    assert (status, code) == (400, "InvalidAttributeValue")


def test_one_in_flight_per_group_in_order(spated):
    url = create(spated, "orders.fifo", FifoQueue="true", VisibilityTimeout=60)
    seqs = []
    for body, group in (("a1", "a"), ("a2", "a"), ("b1", "b"), ("a3", "a"), ("b2", "b")):
        r = send(spated, url, body, group, dedup=body)
        seqs.append(int(r["SequenceNumber"]))
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    first = receive(spated, url)
    assert sorted(m["Body"] for m in first) == ["a1", "b1"], first
    groups = {m["Attributes"]["MessageGroupId"] for m in first}
    assert groups == {"a", "b"}
    # Both groups are in flight: nothing more until one is settled.
    assert receive(spated, url) == []
    by_body = {m["Body"]: m for m in first}
    ok(spated, "DeleteMessage", {"QueueUrl": url, "ReceiptHandle": by_body["a1"]["ReceiptHandle"]})
    assert [m["Body"] for m in receive(spated, url)] == ["a2"]
    # b1 made visible again comes back before b2 (its group's order holds).
    ok(spated, "ChangeMessageVisibility", {"QueueUrl": url, "VisibilityTimeout": 0,
                                           "ReceiptHandle": by_body["b1"]["ReceiptHandle"]})
    again = receive(spated, url, WaitTimeSeconds=5)
    assert [m["Body"] for m in again] == ["b1"], again
    assert again[0]["Attributes"]["ApproximateReceiveCount"] == "2"


def test_deduplication(spated):
    url = create(spated, "dedup.fifo", FifoQueue="true")
    one = send(spated, url, "x", "g", dedup="id-1")
    two = send(spated, url, "another body", "g", dedup="id-1")
    assert one["MessageId"] == two["MessageId"], (one, two)
    assert two["MD5OfMessageBody"] != one["MD5OfMessageBody"]  # each its own body's digest
    # Content-based: the body's SHA-256 is the id.
    ok(spated, "SetQueueAttributes", {"QueueUrl": url, "Attributes": {
        "ContentBasedDeduplication": "true"}})
    assert attributes(spated, url)["ContentBasedDeduplication"] == "true"
    c1 = send(spated, url, "same", "g")
    c2 = send(spated, url, "same", "h")
    assert c1["MessageId"] == c2["MessageId"]
    # In one batch: the repeat answers the first's id, and is stored once.
    doc = ok(spated, "SendMessageBatch", {"QueueUrl": url, "Entries": [
        {"Id": "1", "MessageBody": "b", "MessageGroupId": "g", "MessageDeduplicationId": "z"},
        {"Id": "2", "MessageBody": "b2", "MessageGroupId": "g", "MessageDeduplicationId": "z"},
        {"Id": "3", "MessageBody": "c", "MessageGroupId": "k"}]})
    ids = {e["Id"]: e["MessageId"] for e in doc["Successful"]}
    assert ids["1"] == ids["2"] and ids["3"] != ids["1"], doc
    assert attributes(spated, url)["ApproximateNumberOfMessages"] == "4"  # x, same, b, c


def test_fifo_with_boto3(spated):
    """The query protocol's form carries the FIFO members too."""
    boto3 = pytest.importorskip("boto3")
    from botocore.config import Config
    c = boto3.client("sqs", endpoint_url=spated.url, region_name="us-east-1",
                     aws_access_key_id="x", aws_secret_access_key="y",
                     config=Config(retries={"total_max_attempts": 1}, read_timeout=60))
    url = c.create_queue(QueueName="boto.fifo", Attributes={
        "FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
    r1 = c.send_message(QueueUrl=url, MessageBody="one", MessageGroupId="g")
    r2 = c.send_message(QueueUrl=url, MessageBody="one", MessageGroupId="g")
    assert r1["MessageId"] == r2["MessageId"] and "SequenceNumber" in r1
    c.send_message(QueueUrl=url, MessageBody="two", MessageGroupId="g")
    got = c.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])
    assert [m["Body"] for m in got["Messages"]] == ["one"]
    assert got["Messages"][0]["Attributes"]["MessageGroupId"] == "g"


def test_deduplication_survives_kill_9(spated):
    """A send retried across a crash (what deduplication is for) is not
    stored twice: the id was kept with the first message, in its commit,
    and the retry is answered with the first MessageId and SequenceNumber."""
    import signal

    url = create(spated, "retry.fifo", FifoQueue="true", ContentBasedDeduplication="true")
    first = send(spated, url, "pay invoice 7", "g", dedup="invoice-7")
    by_content = send(spated, url, "content-based", "g")
    spated.proc.send_signal(signal.SIGKILL)
    spated.proc.wait()
    spated.start()
    url = f"{spated.url}/000000000000/retry.fifo"
    again = send(spated, url, "pay invoice 7", "g", dedup="invoice-7")
    assert (again["MessageId"], again["SequenceNumber"]) == (
        first["MessageId"], first["SequenceNumber"])
    again = send(spated, url, "content-based", "g")
    assert again["MessageId"] == by_content["MessageId"]
    fresh = send(spated, url, "pay invoice 8", "g", dedup="invoice-8")
    assert int(fresh["SequenceNumber"]) > int(first["SequenceNumber"])
    bodies = []
    for _ in range(3):  # one of the group at a time
        got = receive(spated, url, VisibilityTimeout=60, WaitTimeSeconds=2)
        bodies += [m["Body"] for m in got]
        for m in got:
            ok(spated, "DeleteMessage", {"QueueUrl": url, "ReceiptHandle": m["ReceiptHandle"]})
    assert bodies == ["pay invoice 7", "content-based", "pay invoice 8"]
    # The ids go with their queue: created again, it starts afresh (the
    # send is stored, not answered as a duplicate), after a restart too.
    ok(spated, "DeleteQueue", {"QueueUrl": url})
    url = create(spated, "retry.fifo", FifoQueue="true", ContentBasedDeduplication="true")
    send(spated, url, "pay invoice 7", "g", dedup="invoice-7")
    assert [m["Body"] for m in receive(spated, url)] == ["pay invoice 7"]


def test_deduplicated_id_accepted_after_the_window(make_spated, monkeypatch):
    """SPATE_TEST_SQS_DEDUP_WINDOW_MS shortens SQS's 5 minutes (tests only):
    an id is deduplicated within the window, after a restart too, and taken
    as new once the window has ended."""
    import time

    monkeypatch.setenv("SPATE_TEST_SQS_DEDUP_WINDOW_MS", "3000")
    d = make_spated()
    url = create(d, "window.fifo", FifoQueue="true")
    first = send(d, url, "a", "g", dedup="same")
    d.stop()
    d.start()
    url = f"{d.url}/000000000000/window.fifo"
    assert send(d, url, "a", "g", dedup="same")["MessageId"] == first["MessageId"]
    time.sleep(3.5)
    later = send(d, url, "a", "g", dedup="same")
    assert later["MessageId"] != first["MessageId"]
    assert int(later["SequenceNumber"]) > int(first["SequenceNumber"])
    # Known again from then on, after a restart as well.
    d.stop()
    d.start()
    url = f"{d.url}/000000000000/window.fifo"
    assert send(d, url, "a", "g", dedup="same")["MessageId"] == later["MessageId"]
    # A long poll: right after a restart the queue may still be reading its
    # stored messages, and a short poll may answer empty then (as SQS's may);
    # it failed so once in a whole run under load.
    got = receive(d, url, WaitTimeSeconds=5)
    assert [m["Body"] for m in got] == ["a"]
