"""SQS FIFO queues (issue 18): names ending in .fifo with FifoQueue true;
MessageGroupId is the message's key on an ordered receiver, so one message
of a group is in flight at a time, in send order; deduplication by
MessageDeduplicationId or ContentBasedDeduplication within SQS's 5-minute
window (kept in spated's memory)."""

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
