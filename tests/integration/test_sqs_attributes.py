"""SQS queue and message attributes (issue 18): MessageRetentionPeriod
(60-1,209,600 s, default 345,600; older messages are deleted as receiving
meets them), CreatedTimestamp and LastModifiedTimestamp, and the system
attributes a ReceiveMessage may ask for (SenderId,
ApproximateFirstReceiveTimestamp). Time is checked from below only."""

import time

from conftest import wait_for
from test_sqs import attributes, create, error_of, ok


def test_queue_timestamps_and_retention_bounds(spated):
    before = int(time.time())
    url = create(spated, "stamped")
    a = attributes(spated, url)
    assert a["MessageRetentionPeriod"] == "345600", a
    created = int(a["CreatedTimestamp"])
    assert before - 1 <= created <= int(time.time()) + 1, a
    assert a["LastModifiedTimestamp"] == a["CreatedTimestamp"], a
    for v in ("59", "1209601", "x"):
        status, code, _ = error_of(spated, "SetQueueAttributes", {"QueueUrl": url, "Attributes": {
            "MessageRetentionPeriod": v}})
        assert (status, code) == (400, "InvalidAttributeValue"), v
    time.sleep(1.1)
    ok(spated, "SetQueueAttributes", {"QueueUrl": url, "Attributes": {
        "MessageRetentionPeriod": "1209600"}})
    a = attributes(spated, url)
    assert a["MessageRetentionPeriod"] == "1209600"
    assert a["CreatedTimestamp"] == str(created)
    assert int(a["LastModifiedTimestamp"]) > created, a
    # The same attributes answer the URL; another retention refuses.
    assert create(spated, "stamped", MessageRetentionPeriod=1209600) == url
    status, code, _ = error_of(spated, "CreateQueue", {"QueueName": "stamped", "Attributes": {
        "MessageRetentionPeriod": "60"}})
    assert code == "QueueAlreadyExists", code
    # Kept through a restart.
    spated.stop()
    spated.start()
    a = attributes(spated, f"{spated.url}/000000000000/stamped")
    assert (a["MessageRetentionPeriod"], a["CreatedTimestamp"]) == ("1209600", str(created)), a


def test_system_attributes_of_a_receive(spated):
    url = create(spated, "sysattrs", VisibilityTimeout=1)
    ok(spated, "SendMessage", {"QueueUrl": url, "MessageBody": "m"})
    before = int(time.time() * 1000)
    m = ok(spated, "ReceiveMessage", {"QueueUrl": url, "AttributeNames": ["All"]})["Messages"][0]
    a = m["Attributes"]
    assert a["SenderId"] == "000000000000", a
    assert int(a["ApproximateFirstReceiveTimestamp"]) >= before, a
    assert a["ApproximateReceiveCount"] == "1" and "SentTimestamp" in a, a
    m = ok(spated, "ReceiveMessage", {"QueueUrl": url, "WaitTimeSeconds": 20, "AttributeNames": [
        "ApproximateFirstReceiveTimestamp", "SenderId"]}, timeout=60)["Messages"][0]
    assert set(m["Attributes"]) == {"ApproximateFirstReceiveTimestamp", "SenderId"}, m


def test_messages_older_than_the_retention_expire(spated):
    """The shortest retention SQS allows is a minute: this test waits one."""
    url = create(spated, "brief", MessageRetentionPeriod=60)
    unread = create(spated, "unread", MessageRetentionPeriod=60)
    ok(spated, "SendMessage", {"QueueUrl": url, "MessageBody": "old"})
    ok(spated, "SendMessage", {"QueueUrl": unread, "MessageBody": "old"})
    sent = time.monotonic()
    # Received (and given back) while young: it is not lost early.
    m = ok(spated, "ReceiveMessage", {"QueueUrl": url, "VisibilityTimeout": 0})["Messages"]
    assert [x["Body"] for x in m] == ["old"]
    time.sleep(max(0, 61.5 - (time.monotonic() - sent)))
    ok(spated, "SendMessage", {"QueueUrl": url, "MessageBody": "new"})
    got = ok(spated, "ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 10,
                                        "WaitTimeSeconds": 2})
    assert [x["Body"] for x in got["Messages"]] == ["new"], got
    a = attributes(spated, url)
    assert a["ApproximateNumberOfMessages"] == "0", a
    # A queue nobody reads loses them too (the store's retention, every second).
    assert wait_for(lambda: attributes(spated, unread)["ApproximateNumberOfMessages"] == "0",
                    timeout=30)
    status, doc = spated.json("GET", "/v1/topics/unread")
    assert status == 200 and doc["stored"] == 0, doc
