"""A hostile client's and a producer's view of the SQS API (issue 18's
review): connections that go away in the middle of a long poll, characters
SQS refuses in message attributes, dead-letter queues of the wrong type or
gone, receipt handles from before a restart. Each test failed on the code
before its fix. Nothing here asserts on speed."""

import hashlib
import json
import socket
import struct
import subprocess
import time
import urllib.parse
import xml.dom.minidom

from conftest import deploy_recorder, seen, wait_for
from test_sqs import TARGET, JSON10, create, error_of, ok, sqs


def long_poll(d, url, wait=20):
    """A ReceiveMessage long poll on a raw socket, left waiting."""
    s = socket.create_connection((d.host, d.port), timeout=30)
    body = json.dumps({"QueueUrl": url, "WaitTimeSeconds": wait}).encode()
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: " + TARGET.encode() +
              b"ReceiveMessage\r\nContent-Type: " + JSON10.encode() +
              b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    return s


def test_reset_long_poll_does_not_hold_spated(make_spated):
    """A client that resets its connection in the middle of a long poll: the
    connection was never freed (the waiter was dropped without an answer),
    so memory grew with each one and SIGTERM never ended spated."""
    d = make_spated()
    url = create(d, "rst")
    for _ in range(20):
        s = long_poll(d, url)
        time.sleep(0.02)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # RST
    time.sleep(0.5)
    # The queue still works, and spated stops.
    ok(d, "SendMessage", {"QueueUrl": url, "MessageBody": "after"})
    assert ok(d, "ReceiveMessage", {"QueueUrl": url})["Messages"][0]["Body"] == "after"
    try:
        rc = d.stop(timeout=30)
    except subprocess.TimeoutExpired:
        raise AssertionError("spated did not stop after reset long polls:\n" + d.log())
    assert rc == 0, d.log()


def test_closed_long_poll_takes_no_message(spated):
    """A long poll whose client closed its connection: a message sent after
    went to it and stayed invisible for the visibility timeout (30 s here)
    though nobody could read it; it now goes to the next receive."""
    d = spated
    url = create(d, "gone")
    s = long_poll(d, url)
    time.sleep(0.3)
    s.close()  # FIN: the client is gone
    time.sleep(0.3)
    ok(d, "SendMessage", {"QueueUrl": url, "MessageBody": "for-the-living"})
    got = ok(d, "ReceiveMessage", {"QueueUrl": url, "WaitTimeSeconds": 5})
    assert [m["Body"] for m in got.get("Messages", [])] == ["for-the-living"]


def query(d, form):
    """One query-protocol request: (status, XML text)."""
    status, _, data = d.request("POST", "/", urllib.parse.urlencode(form).encode(),
                                {"Content-Type": "application/x-www-form-urlencoded"})
    return status, data.decode("utf-8", "replace")


def test_attribute_characters_sqs_refuses(spated):
    """A message attribute's string value or data type with a character SQS
    refuses (a control character, U+FFFE) was stored, and every receive of
    it in the query protocol (Debian's aws v2, boto3) answered XML that no
    parser reads: a poison message. Now refused as the body's are."""
    d = spated
    url = create(d, "attrchars")
    for value, kind in (("a\u0001b", "String"), ("\ufffe", "String"), ("v", "String.\u0007"),
                        ("1\u001f", "String.x")):
        status, code, _ = error_of(d, "SendMessage", {
            "QueueUrl": url, "MessageBody": "x",
            "MessageAttributes": {"k": {"DataType": kind, "StringValue": value}}})
        assert (status, code) == (400, "InvalidMessageContents"), (value, kind)
    status, text = query(d, {"Action": "SendMessage", "QueueUrl": url, "MessageBody": "x",
                             "MessageAttribute.1.Name": "k",
                             "MessageAttribute.1.Value.DataType": "String",
                             "MessageAttribute.1.Value.StringValue": "a\u0002"})
    assert status == 400 and "InvalidMessageContents" in text, text
    # What SQS accepts still goes, and reads back as XML.
    ok(d, "SendMessage", {"QueueUrl": url, "MessageBody": "x", "MessageAttributes": {
        "k": {"DataType": "String", "StringValue": "tab\there \U0001F600 \ue000"}}})
    status, text = query(d, {"Action": "ReceiveMessage", "QueueUrl": url,
                             "MessageAttributeName.1": "All"})
    assert status == 200, text
    doc = xml.dom.minidom.parseString(text.encode())
    values = [n.firstChild.data for n in doc.getElementsByTagName("StringValue")]
    assert values == ["tab\there \U0001F600 \ue000"]


def redrive(dlq, count=1):
    return json.dumps({"deadLetterTargetArn": "arn:aws:sqs:us-east-1:000000000000:" + dlq,
                       "maxReceiveCount": count})


def test_dead_letter_queue_of_the_same_type(spated):
    """SQS refuses a FIFO dead-letter queue for a standard queue and the
    other way round; it was taken, and a standard queue's messages went
    into a FIFO queue without a group."""
    d = spated
    std = create(d, "std")
    fifo = create(d, "f.fifo", FifoQueue="true")
    create(d, "std-dlq")
    create(d, "f-dlq.fifo", FifoQueue="true")
    for url, dlq in ((std, "f-dlq.fifo"), (fifo, "std-dlq")):
        status, code, _ = error_of(d, "SetQueueAttributes", {
            "QueueUrl": url, "Attributes": {"RedrivePolicy": redrive(dlq)}})
        assert (status, code) == (400, "InvalidAttributeValue"), (url, dlq)
    status, code, _ = error_of(d, "CreateQueue", {
        "QueueName": "std2", "Attributes": {"RedrivePolicy": redrive("f-dlq.fifo")}})
    assert (status, code) == (400, "InvalidAttributeValue")
    for url, dlq in ((std, "std-dlq"), (fifo, "f-dlq.fifo")):
        ok(d, "SetQueueAttributes", {"QueueUrl": url, "Attributes": {"RedrivePolicy": redrive(dlq)}})


def test_message_stays_when_its_dead_letter_queue_is_gone(spated):
    """A queue whose dead-letter queue was deleted: a message received
    maxReceiveCount times went to a bare topic of that name, which no
    receive reads (the queue showed nothing). It now stays in its queue."""
    d = spated
    dlq = create(d, "gone-dlq")
    url = create(d, "src", RedrivePolicy=redrive("gone-dlq"))
    ok(d, "DeleteQueue", {"QueueUrl": dlq})
    ok(d, "SendMessage", {"QueueUrl": url, "MessageBody": "keep me"})
    first = ok(d, "ReceiveMessage", {"QueueUrl": url, "VisibilityTimeout": 0})
    assert first["Messages"][0]["Body"] == "keep me"
    again = ok(d, "ReceiveMessage", {"QueueUrl": url, "WaitTimeSeconds": 10,
                                     "AttributeNames": ["ApproximateReceiveCount"]})
    assert [m["Body"] for m in again.get("Messages", [])] == ["keep me"]
    assert again["Messages"][0]["Attributes"]["ApproximateReceiveCount"] == "2"


def test_handle_from_before_a_restart_is_stale(spated):
    """docs/api.md: a stale handle, from before a restart too, deletes
    nothing and succeeds. The key that signs handles is drawn at start, so
    such a handle was refused (ReceiptHandleIsInvalid, 404) and a consumer
    busy across a restart failed. It must not delete the message either:
    receives are numbered from 1 again after the restart."""
    d = spated
    url = create(d, "restart")
    ok(d, "SendMessage", {"QueueUrl": url, "MessageBody": "one"})
    old = ok(d, "ReceiveMessage", {"QueueUrl": url})["Messages"][0]["ReceiptHandle"]
    d.stop()
    d.start()
    again = ok(d, "ReceiveMessage", {"QueueUrl": url, "VisibilityTimeout": 60,
                                     "WaitTimeSeconds": 20})["Messages"]
    assert [m["Body"] for m in again] == ["one"]  # delivered again, now held
    ok(d, "DeleteMessage", {"QueueUrl": url, "ReceiptHandle": old})
    status, code, _ = error_of(d, "ChangeMessageVisibility",
                               {"QueueUrl": url, "ReceiptHandle": old, "VisibilityTimeout": 0})
    assert (status, code) == (400, "AWS.SimpleQueueService.MessageNotInflight")
    # The old handle deleted nothing: the new one still holds the message.
    assert ok(d, "GetQueueAttributes", {"QueueUrl": url, "AttributeNames": ["All"]})[
        "Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1"
    ok(d, "ChangeMessageVisibility", {"QueueUrl": url, "ReceiptHandle": again[0]["ReceiptHandle"],
                                      "VisibilityTimeout": 0})
    assert [m["Body"] for m in ok(d, "ReceiveMessage", {"QueueUrl": url, "WaitTimeSeconds": 5})[
        "Messages"]] == ["one"]
    # A handle of this life with a wrong MAC is still refused.
    h = again[0]["ReceiptHandle"]
    forged = h[:-1] + ("0" if h[-1] != "0" else "1")
    assert error_of(d, "DeleteMessage", {"QueueUrl": url, "ReceiptHandle": forged})[:2] == \
        (404, "ReceiptHandleIsInvalid")


def test_native_message_sqs_cannot_carry_is_readable(spated):
    """A message published to a queue's topic through spate's own API with
    bytes SQS bodies cannot hold (a control character, invalid UTF-8, a
    NUL) made each ReceiveMessage holding it unreadable (bad XML, bad JSON)
    with every other message of that answer: now shown with U+FFFD, its
    MD5OfBody that of what is shown (the SDKs check it)."""
    d = spated
    url = create(d, "native")
    for body in (b"good", b"bad\x01\xff\x00end"):
        status, _, _ = d.request("POST", "/v1/topics/native/messages", body)
        assert status == 202
    status, text = query(d, {"Action": "ReceiveMessage", "QueueUrl": url,
                             "MaxNumberOfMessages": "10", "VisibilityTimeout": "0"})
    assert status == 200, text
    doc = xml.dom.minidom.parseString(text.encode())
    bodies = [n.firstChild.data for n in doc.getElementsByTagName("Body")]
    assert bodies == ["good", "bad\ufffd\ufffd\ufffdend"]
    digests = [n.firstChild.data for n in doc.getElementsByTagName("MD5OfBody")]
    assert digests == [hashlib.md5(b.encode()).hexdigest() for b in bodies]
    seen = []
    deadline = time.time() + 30
    while len(seen) < 2 and time.time() < deadline:  # the JSON protocol reads them too
        got = ok(d, "ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 10,
                                       "WaitTimeSeconds": 5})
        seen += [m["Body"] for m in got.get("Messages", [])]
    assert sorted(seen) == sorted(bodies)


def test_batch_limit_counts_attributes(spated):
    """SendMessageBatch's 256 KiB in all counts each message's attributes,
    as a single message's limit does: bodies alone were counted, so a batch
    of 250 KiB of bodies and 10 KiB of attributes was stored."""
    d = spated
    url = create(d, "batchsize")
    entries = [{"Id": f"e{i}", "MessageBody": "b" * (25 * 1024),
                "MessageAttributes": {"pad": {"DataType": "String", "StringValue": "v" * 1024}}}
               for i in range(10)]
    status, code, _ = error_of(d, "SendMessageBatch", {"QueueUrl": url, "Entries": entries})
    assert (status, code) == (400, "AWS.SimpleQueueService.BatchRequestTooLong")
    for e in entries:
        del e["MessageAttributes"]
    assert len(ok(d, "SendMessageBatch", {"QueueUrl": url, "Entries": entries})["Successful"]) == 10
    # Numbers past any integer's range are refused, not cast.
    for value in ("1e999", "-1e999", "1e300"):
        status, _, data = d.request("POST", "/", (
            '{"QueueUrl": "%s", "MaxNumberOfMessages": %s}' % (url, value)).encode(),
            {"X-Amz-Target": TARGET + "ReceiveMessage", "Content-Type": JSON10})
        assert status == 400 and b"InvalidParameterValue" in data, value


def test_fifo_queue_made_again_forgets_old_deduplication_ids(spated):
    """DeleteQueue then CreateQueue of a FIFO queue's name: a send that
    repeated a deduplication id of the deleted queue within 5 minutes was
    answered (200, a MessageId) as a duplicate and never stored: an
    acknowledged message lost. The new queue is another queue."""
    d = spated
    fifo = {"FifoQueue": "true"}
    url = ok(d, "CreateQueue", {"QueueName": "again.fifo", "Attributes": fifo})["QueueUrl"]
    ok(d, "SendMessage", {"QueueUrl": url, "MessageBody": "old", "MessageGroupId": "g",
                          "MessageDeduplicationId": "X"})
    ok(d, "DeleteQueue", {"QueueUrl": url})
    ok(d, "CreateQueue", {"QueueName": "again.fifo", "Attributes": fifo})
    ok(d, "SendMessage", {"QueueUrl": url, "MessageBody": "new", "MessageGroupId": "g",
                          "MessageDeduplicationId": "X"})
    got = ok(d, "ReceiveMessage", {"QueueUrl": url, "WaitTimeSeconds": 5})
    assert [m["Body"] for m in got.get("Messages", [])] == ["new"]
    # Within the same queue the window still holds.
    ok(d, "DeleteMessage", {"QueueUrl": url, "ReceiptHandle": got["Messages"][0]["ReceiptHandle"]})
    ok(d, "SendMessage", {"QueueUrl": url, "MessageBody": "dup", "MessageGroupId": "g",
                          "MessageDeduplicationId": "X"})
    assert "Messages" not in ok(d, "ReceiveMessage", {"QueueUrl": url})


def test_delete_queue_while_a_trigger_holds_its_messages(spated, functions, tmp_path):
    """DeleteQueue while the queue's trigger runs a batch it leased from the
    queue's receiver (which DeleteQueue removes): the batch settles, the
    topic stays the trigger's, and spated stays whole and stops cleanly."""
    d = spated
    record = deploy_recorder(d, functions, tmp_path, name="slow", sleep_us=1500000)
    url = create(d, "held")
    r = d.cli("trigger", "add", "held", "slow", "--event-format", "sqs")
    assert r.returncode == 0, r.stderr
    ok(d, "SendMessage", {"QueueUrl": url, "MessageBody": "in-flight"})
    assert wait_for(lambda: seen(record), timeout=30)
    ok(d, "DeleteQueue", {"QueueUrl": url})
    status, code, _ = error_of(d, "GetQueueAttributes", {"QueueUrl": url})
    assert (status, code) == (400, "AWS.SimpleQueueService.NonExistentQueue")
    time.sleep(2.5)  # the batch ends and settles
    # A queue made again under the name works.
    url = create(d, "held")
    ok(d, "SendMessage", {"QueueUrl": url, "MessageBody": "next"})
    assert d.json("GET", "/v1/topics/held")[0] == 200
    assert d.stop() == 0, d.log()


def test_trigger_added_before_the_queue(spated, functions, tmp_path):
    """A trigger on a topic, then CreateQueue of that name (the receiver
    subscribes after the trigger): each send freed its message block while
    the store still handed it out (the trigger's own subscription settles
    its copy at once), heap corruption that aborted spated."""
    d = spated
    record = deploy_recorder(d, functions, tmp_path, name="early")
    r = d.cli("trigger", "add", "early-q", "early", "--event-format", "sqs")
    assert r.returncode == 0, r.stderr
    url = create(d, "early-q")
    for i in range(20):
        ok(d, "SendMessage", {"QueueUrl": url, "MessageBody": f"m{i}"})
    ok(d, "SendMessageBatch", {"QueueUrl": url, "Entries": [
        {"Id": f"b{i}", "MessageBody": f"b{i}"} for i in range(10)]})
    assert wait_for(lambda: len(seen(record)) >= 30, timeout=60)
    assert d.stop() == 0, d.log()


def test_queue_made_again_does_not_repeat_message_ids(spated):
    """A queue deleted and made again under its name numbers its messages
    from 1 again, and its MessageIds were the deleted queue's: a consumer
    that keeps the MessageIds it processed (SQS's ids are unique) skipped
    the new messages. (SQS itself asks for 60 s before the name is used
    again; a second is enough here.)"""
    d = spated
    url = create(d, "reborn")
    first = ok(d, "SendMessage", {"QueueUrl": url, "MessageBody": "a"})["MessageId"]
    ok(d, "DeleteQueue", {"QueueUrl": url})
    time.sleep(1.1)
    create(d, "reborn")
    second = ok(d, "SendMessage", {"QueueUrl": url, "MessageBody": "b"})["MessageId"]
    assert second != first
    got = ok(d, "ReceiveMessage", {"QueueUrl": url, "WaitTimeSeconds": 5})["Messages"]
    assert [(m["MessageId"], m["Body"]) for m in got] == [(second, "b")]


def test_query_protocol_tags_refused_as_json_ones(spated):
    """CreateQueue with tags (aws v2's --tags, the query protocol's
    Tag.N.Key/Value): the JSON protocol refuses them (not kept yet), the
    query protocol made the queue and dropped them unsaid."""
    d = spated
    status, text = query(d, {"Action": "CreateQueue", "QueueName": "tagged",
                             "Tag.1.Key": "team", "Tag.1.Value": "billing"})
    assert status == 400 and "UnsupportedOperation" in text, text
    status, code, _ = error_of(d, "GetQueueUrl", {"QueueName": "tagged"})
    assert (status, code) == (400, "AWS.SimpleQueueService.NonExistentQueue")


def test_trigger_keeps_message_when_dead_letter_queue_is_gone(spated, tmp_path):
    """A queue's trigger fails a message maxReceiveCount times while the
    queue's dead-letter queue is deleted: the message went to a bare topic
    of that name, where nothing reads it; it now stays in the queue and
    comes back after the visibility timeout, as a ReceiveMessage's does."""
    from test_sqs_triggers import seen as seen_records, trigger_on
    from test_batches import deploy_batcher
    d = spated
    record = deploy_batcher(d, tmp_path)
    dlq = create(d, "tgone-dlq")
    url = create(d, "tjobs", VisibilityTimeout=1, RedrivePolicy=redrive("tgone-dlq"))
    ok(d, "DeleteQueue", {"QueueUrl": dlq})
    trigger_on(d, "tjobs", "batcher")
    ok(d, "SendMessage", {"QueueUrl": url, "MessageBody": "fail-1"})
    assert wait_for(lambda: len([b for b, _, _ in seen_records(record) if b == "fail-1"]) >= 2,
             timeout=60)


def test_number_attribute_must_be_a_number(spated):
    """A Number message attribute whose value is no number was stored (and
    handed to consumers and Lambda events as a Number); SQS refuses it."""
    d = spated
    url = create(d, "numbers")

    def send(value, kind="Number"):
        return sqs(d, "SendMessage", {"QueueUrl": url, "MessageBody": "x", "MessageAttributes": {
            "n": {"DataType": kind, "StringValue": value}}})[0]
    for bad in ("abc", "1.2.3", "--1", "1e", "0x10", " 1", "1 ", "inf", "nan", "1" * 39, "1e200"):
        assert send(bad) == 400, bad
    assert send("12abc", "Number.custom") == 400
    for good in ("42", "-1.5", "+0.25", "1.5e3", "6.02E-23", ".5", "1" * 38, "00012"):
        assert send(good) == 200, good
    assert send("anything", "String") == 200


def test_region_from_the_signature_is_a_region(spated):
    """The region of the signature's credential scope goes into ARNs and
    the RedrivePolicy JSON: one with a quote (any signature passes without
    a token file) made GetQueueAttributes answer a RedrivePolicy that is no
    JSON. Anything but a region's characters now means us-east-1."""
    d = spated
    create(d, "rdlq")
    url = create(d, "rsrc", RedrivePolicy=redrive("rdlq"))
    status, _, data = d.request("POST", "/", json.dumps(
        {"QueueUrl": url, "AttributeNames": ["All"]}).encode(), {
        "X-Amz-Target": TARGET + "GetQueueAttributes", "Content-Type": JSON10,
        "Authorization": 'AWS4-HMAC-SHA256 Credential=AKID/20260101/us"x\\/sqs/aws4_request, '
                         'SignedHeaders=host, Signature=00'})
    assert status == 200, data
    at = json.loads(data)["Attributes"]
    assert json.loads(at["RedrivePolicy"])["deadLetterTargetArn"] == \
        "arn:aws:sqs:us-east-1:000000000000:rdlq"
    assert at["QueueArn"] == "arn:aws:sqs:us-east-1:000000000000:rsrc"


def test_handle_read_exactly_as_written(spated):
    """A receipt handle is GEN.SEQ.MAC with SEQ in plain digits: another
    spelling of the same number ('+5', ' 5', '05') is not the handle spated
    wrote and is refused, though its MAC (over the number) would match (sscanf
    took them all)."""
    d = spated
    url = create(d, "exact")
    ok(d, "SendMessage", {"QueueUrl": url, "MessageBody": "one"})
    h = ok(d, "ReceiveMessage", {"QueueUrl": url, "VisibilityTimeout": 60})["Messages"][0][
        "ReceiptHandle"]
    gen, seq, mac = h.split(".")
    for other in ("+" + seq, " " + seq, "0" + seq, seq + "x"):
        assert error_of(d, "DeleteMessage", {"QueueUrl": url, "ReceiptHandle": f"{gen}.{other}.{mac}"})[:2] == \
            (404, "ReceiptHandleIsInvalid"), other
    ok(d, "DeleteMessage", {"QueueUrl": url, "ReceiptHandle": h})
    assert ok(d, "GetQueueAttributes", {"QueueUrl": url, "AttributeNames": ["All"]})[
        "Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "0"
