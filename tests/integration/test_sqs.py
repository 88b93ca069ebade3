"""Amazon SQS on spated's port (issue 18), on the AWS JSON 1.0 protocol: the
`aws` v1 CLI on PATH (botocore 1.43 speaks JSON to SQS) for what a user
types, raw JSON requests for the exact shapes (errors, long polls).
Nothing here asserts on speed: a long poll woken by a send is told from one
that timed out by what it answers (the message, not an empty list)."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

from conftest import wait_for

TARGET = "AmazonSQS."
JSON10 = "application/x-amz-json-1.0"


def aws_v1():
    return shutil.which("aws", path=os.environ.get("PATH", "").replace("/usr/bin", "/nonexistent"))


def sqs(d, action, body, timeout=30):
    """One JSON 1.0 request: (status, headers, decoded body)."""
    status, headers, data = d.request(
        "POST", "/", json.dumps(body).encode(),
        {"X-Amz-Target": TARGET + action, "Content-Type": JSON10}, timeout=timeout)
    return status, {k.lower(): v for k, v in headers.items()}, json.loads(data or b"{}")


def ok(d, action, body, timeout=30):
    status, _, doc = sqs(d, action, body, timeout)
    assert status == 200, (action, status, doc)
    return doc


def create(d, name, **attrs):
    body = {"QueueName": name}
    if attrs:
        body["Attributes"] = {k: str(v) for k, v in attrs.items()}
    # 503 is for trying again, as the AWS SDKs do (a cluster's FIFO queue
    # makes 65 JetStream consumers: on a loaded machine one timed out once).
    for _ in range(4):
        status, _, doc = sqs(d, "CreateQueue", body)
        if status != 503:
            break
        time.sleep(1)
    assert status == 200, ("CreateQueue", status, doc)
    return doc["QueueUrl"]


def attributes(d, url):
    return ok(d, "GetQueueAttributes", {"QueueUrl": url, "AttributeNames": ["All"]})["Attributes"]


def error_of(d, action, body):
    status, headers, doc = sqs(d, action, body)
    code = headers.get("x-amzn-query-error", "").split(";")[0]
    return status, code, doc.get("__type", "")


def cli(d, *args, check=True, exe=None):
    exe = exe or aws_v1()
    if not exe:
        pytest.skip("no aws v1 CLI on PATH")
    env = dict(os.environ, AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y",
               AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null",
               AWS_MAX_ATTEMPTS="1", AWS_PAGER="")
    env.pop("AWS_PROFILE", None)
    r = subprocess.run([exe, "sqs", *args, "--endpoint-url", d.url, "--region", "us-east-1",
                        "--output", "json"], capture_output=True, text=True, env=env, timeout=120)
    if check:
        assert r.returncode == 0, r.stderr
    return json.loads(r.stdout) if r.returncode == 0 and r.stdout.strip() else r


# The aws v1 on PATH speaks the JSON protocol, Debian's v2 the query protocol.
CLIS = [c for c in (aws_v1(), "/usr/bin/aws") if c and os.path.exists(c)]


@pytest.mark.parametrize("exe", CLIS or [pytest.param(None, marks=pytest.mark.skip)])
def test_cli_round_trip(spated, exe):
    """create, send (single, batch), receive, delete with the aws CLI on both
    protocols: what a user types against AWS works unchanged, digests
    included (the CLI checks MD5OfMessageBody and fails on a wrong one)."""
    def run(*args, check=True):
        return cli(spated, *args, check=check, exe=exe)
    url = run("create-queue", "--queue-name", "jobs")["QueueUrl"]
    assert url == f"{spated.url}/000000000000/jobs"
    assert run("get-queue-url", "--queue-name", "jobs")["QueueUrl"] == url
    assert url in run("list-queues", "--queue-name-prefix", "jo")["QueueUrls"]
    sent = run("send-message", "--queue-url", url, "--message-body", "héllo <&>")
    assert sent["MD5OfMessageBody"] == hashlib.md5("héllo <&>".encode()).hexdigest()
    batch = run("send-message-batch", "--queue-url", url, "--entries",
                "Id=a,MessageBody=one", "Id=b,MessageBody=two")
    assert [e["Id"] for e in batch["Successful"]] == ["a", "b"] and not batch.get("Failed")
    got = run("receive-message", "--queue-url", url, "--max-number-of-messages", "10",
              "--attribute-names", "All")["Messages"]
    assert [m["Body"] for m in got] == ["héllo <&>", "one", "two"]
    assert got[0]["MessageId"] == sent["MessageId"]
    assert all(m["Attributes"]["ApproximateReceiveCount"] == "1" for m in got)
    for m in got:
        run("delete-message", "--queue-url", url, "--receipt-handle", m["ReceiptHandle"])
    a = run("get-queue-attributes", "--queue-url", url, "--attribute-names", "All")["Attributes"]
    assert a["ApproximateNumberOfMessages"] == "0"
    assert a["ApproximateNumberOfMessagesNotVisible"] == "0"
    assert a["QueueArn"] == "arn:aws:sqs:us-east-1:000000000000:jobs"
    run("delete-queue", "--queue-url", url)
    r = run("get-queue-url", "--queue-name", "jobs", check=False)
    assert "AWS.SimpleQueueService.NonExistentQueue" in r.stderr


def test_a_queue_gives_each_message_to_one_receiver(spated):
    """Unlike a topic's fan-out: two receivers share the messages; what one
    holds the other does not see until its visibility timeout ends."""
    url = create(spated, "shared")
    ok(spated, "SendMessageBatch", {"QueueUrl": url, "Entries": [
        {"Id": str(i), "MessageBody": f"m{i}"} for i in range(4)]})
    first = ok(spated, "ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 2})["Messages"]
    second = ok(spated, "ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 10})["Messages"]
    assert sorted(m["Body"] for m in first + second) == ["m0", "m1", "m2", "m3"]
    assert ok(spated, "ReceiveMessage", {"QueueUrl": url}) == {}
    a = attributes(spated, url)
    assert (a["ApproximateNumberOfMessages"], a["ApproximateNumberOfMessagesNotVisible"]) == \
        ("0", "4")


def test_visibility_expiry_counts_receives(spated):
    url = create(spated, "vis", VisibilityTimeout=1)
    ok(spated, "SendMessage", {"QueueUrl": url, "MessageBody": "again"})
    names = {"AttributeNames": ["ApproximateReceiveCount"]}
    m1 = ok(spated, "ReceiveMessage", {"QueueUrl": url, **names})["Messages"][0]
    assert m1["Attributes"]["ApproximateReceiveCount"] == "1"
    # Visible again after its timeout, counted; woken by the expiry, not polled.
    m2 = ok(spated, "ReceiveMessage", {"QueueUrl": url, "WaitTimeSeconds": 20, **names},
            timeout=60)["Messages"][0]
    assert m2["MessageId"] == m1["MessageId"] and m2["ReceiptHandle"] != m1["ReceiptHandle"]
    assert m2["Attributes"]["ApproximateReceiveCount"] == "2"
    # The stale handle deletes nothing (SQS answers it with success) ...
    ok(spated, "DeleteMessage", {"QueueUrl": url, "ReceiptHandle": m1["ReceiptHandle"]})
    # ... and cannot change a visibility; the live one sets it to 0: back at once.
    assert error_of(spated, "ChangeMessageVisibility", {
        "QueueUrl": url, "ReceiptHandle": m1["ReceiptHandle"], "VisibilityTimeout": 5})[1] == \
        "AWS.SimpleQueueService.MessageNotInflight"
    ok(spated, "ChangeMessageVisibility",
       {"QueueUrl": url, "ReceiptHandle": m2["ReceiptHandle"], "VisibilityTimeout": 0})
    m3 = ok(spated, "ReceiveMessage", {"QueueUrl": url, "VisibilityTimeout": 60, **names})
    assert m3["Messages"][0]["Attributes"]["ApproximateReceiveCount"] == "3"
    ok(spated, "DeleteMessage", {"QueueUrl": url, "ReceiptHandle": m3["Messages"][0]["ReceiptHandle"]})
    assert attributes(spated, url)["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_long_poll_is_woken_by_a_send(spated):
    """A ReceiveMessage that waits gets the message a later send commits: it
    answers with it (a poll that ran out would answer an empty list)."""
    url = create(spated, "lp")
    got = {}

    def receive():
        got["doc"] = ok(spated, "ReceiveMessage", {"QueueUrl": url, "WaitTimeSeconds": 20},
                        timeout=60)
    t = threading.Thread(target=receive)
    t.start()
    time.sleep(0.5)  # let it wait first (were it late, it would still get the message)
    ok(spated, "SendMessage", {"QueueUrl": url, "MessageBody": "wake"})
    t.join(60)
    assert [m["Body"] for m in got["doc"]["Messages"]] == ["wake"]
    # A poll with nothing to take answers an empty object at its end.
    assert ok(spated, "ReceiveMessage", {"QueueUrl": url, "WaitTimeSeconds": 1}) == {}


def test_forged_handles_and_bad_input_refused(spated):
    url = create(spated, "strict")
    ok(spated, "SendMessage", {"QueueUrl": url, "MessageBody": "x"})
    h = ok(spated, "ReceiveMessage", {"QueueUrl": url})["Messages"][0]["ReceiptHandle"]
    forged = h[:-1] + ("0" if h[-1] != "0" else "1")
    assert error_of(spated, "DeleteMessage", {"QueueUrl": url, "ReceiptHandle": forged}) == \
        (404, "ReceiptHandleIsInvalid", "com.amazonaws.sqs#ReceiptHandleIsInvalid")
    other = create(spated, "other")  # a handle is good for its own queue only
    assert error_of(spated, "DeleteMessage", {"QueueUrl": other, "ReceiptHandle": h})[1] == \
        "ReceiptHandleIsInvalid"
    cases = [
        ("SendMessage", {"QueueUrl": url + "x", "MessageBody": "x"},
         "AWS.SimpleQueueService.NonExistentQueue"),
        ("SendMessage", {"QueueUrl": url}, "MissingParameter"),
        ("SendMessage", {"QueueUrl": url, "MessageBody": "bad \u0001"}, "InvalidMessageContents"),
        ("SendMessage", {"QueueUrl": url, "MessageBody": "x" * (256 * 1024 + 1)},
         "InvalidParameterValue"),
        ("SendMessageBatch", {"QueueUrl": url, "Entries": []},
         "AWS.SimpleQueueService.EmptyBatchRequest"),
        ("SendMessageBatch", {"QueueUrl": url, "Entries": [
            {"Id": str(i), "MessageBody": "x"} for i in range(11)]},
         "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"),
        ("SendMessageBatch", {"QueueUrl": url, "Entries": [
            {"Id": "a", "MessageBody": "x"}, {"Id": "a", "MessageBody": "y"}]},
         "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"),
        ("SendMessageBatch", {"QueueUrl": url, "Entries": [{"Id": "a b", "MessageBody": "x"}]},
         "AWS.SimpleQueueService.InvalidBatchEntryId"),
        ("SendMessageBatch", {"QueueUrl": url, "Entries": [
            {"Id": str(i), "MessageBody": "x" * (30 * 1024)} for i in range(10)]},
         "AWS.SimpleQueueService.BatchRequestTooLong"),
        ("ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 11}, "InvalidParameterValue"),
        ("ReceiveMessage", {"QueueUrl": url, "WaitTimeSeconds": 21}, "InvalidParameterValue"),
        ("CreateQueue", {"QueueName": "no.dots"}, "InvalidParameterValue"),
        ("CreateQueue", {"QueueName": "q" * 81}, "InvalidParameterValue"),
        ("CreateQueue", {"QueueName": "v", "Attributes": {"VisibilityTimeout": "43201"}},
         "InvalidAttributeValue"),
        ("CreateQueue", {"QueueName": "w", "Attributes": {"Nonsense": "1"}},
         "InvalidAttributeName"),
        ("CreateQueue", {"QueueName": "strict", "Attributes": {"VisibilityTimeout": "5"}},
         "QueueAlreadyExists"),
        ("NoSuchAction", {}, "InvalidAction"),
    ]
    for action, body, code in cases:
        status, got, _ = error_of(spated, action, body)
        assert (got, status >= 400) == (code, True), (action, body if len(str(body)) < 200 else "")
    # Nothing refused was stored; a bad entry of a batch fails alone.
    assert attributes(spated, url)["ApproximateNumberOfMessages"] == "0"
    doc = ok(spated, "SendMessageBatch", {"QueueUrl": url, "Entries": [
        {"Id": "good", "MessageBody": "fine"}, {"Id": "bad", "MessageBody": "\ufffe"}]})
    assert [e["Id"] for e in doc["Successful"]] == ["good"]
    assert [(e["Id"], e["Code"], e["SenderFault"]) for e in doc["Failed"]] == \
        [("bad", "InvalidMessageContents", True)]
    assert attributes(spated, url)["ApproximateNumberOfMessages"] == "1"
    status, _, data = spated.request("POST", "/", b"{not json",
                                     {"X-Amz-Target": TARGET + "ListQueues"})
    assert status == 400 and b"SerializationException" in data


def test_kill_9_loses_nothing_acknowledged(spated):
    """Every SendMessage answered survives kill -9; a received message not
    deleted comes back after the restart."""
    url = create(spated, "durable")
    for i in range(20):
        ok(spated, "SendMessage", {"QueueUrl": url, "MessageBody": f"m{i}"})
    ok(spated, "SendMessageBatch", {"QueueUrl": url, "Entries": [
        {"Id": str(i), "MessageBody": f"b{i}"} for i in range(10)]})
    taken = ok(spated, "ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 5})["Messages"]
    for m in taken[:2]:
        ok(spated, "DeleteMessage", {"QueueUrl": url, "ReceiptHandle": m["ReceiptHandle"]})
    deleted = {m["Body"] for m in taken[:2]}
    # Deletes are committed with the next group commit; give it one.
    wait_for(lambda: attributes(spated, url)["ApproximateNumberOfMessagesNotVisible"] == "3")
    time.sleep(0.5)
    spated.proc.send_signal(signal.SIGKILL)
    spated.proc.wait()
    spated.start()
    port_url = f"{spated.url}/000000000000/durable"
    bodies = set()
    while True:
        # Long polls: right after a start the queue may still be reading its store.
        doc = ok(spated, "ReceiveMessage", {"QueueUrl": port_url, "MaxNumberOfMessages": 10,
                                            "WaitTimeSeconds": 2, "VisibilityTimeout": 600},
                 timeout=60)
        if not doc:
            break
        bodies |= {m["Body"] for m in doc["Messages"]}
    want = {f"m{i}" for i in range(20)} | {f"b{i}" for i in range(10)}
    assert want - deleted <= bodies  # everything acknowledged and not deleted is back


def test_signatures_and_scopes(make_spated, tmp_path):
    """With tokens on, SQS requests are verified by SigV4 (service sqs): a
    known key with the action's scope passes, a wrong secret is refused in
    the JSON protocol's shape (the CLI names the error), a publish key may
    send but not receive."""
    if not aws_v1():
        pytest.skip("no aws v1 CLI on PATH")
    admin, admin_key = "admin-secret-0123456789abcdef", "AKIDSPATEADMIN0001"
    pub, pub_key = "publish-secret-0123456789abcdef", "AKIDSPATEPUBLISH01"
    tokens = tmp_path / "tokens"
    tokens.write_text(f"admin {admin} {admin_key}\npublish {pub} {pub_key}\n")
    d = make_spated("--token-file", str(tokens))

    def run(key, secret, *args):
        env = dict(os.environ, AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret,
                   AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null",
                   AWS_MAX_ATTEMPTS="1", AWS_PAGER="")
        r = subprocess.run([aws_v1(), "sqs", *args, "--endpoint-url", d.url, "--region",
                            "eu-west-1", "--output", "json"], capture_output=True, text=True,
                           env=env, timeout=120)
        return r.returncode, r.stdout, r.stderr
    rc, out, err = run(admin_key, admin, "create-queue", "--queue-name", "sec")
    assert rc == 0, err
    url = json.loads(out)["QueueUrl"]
    rc, out, err = run(pub_key, pub, "send-message", "--queue-url", url, "--message-body", "p")
    assert rc == 0, err
    rc, _, err = run(pub_key, pub, "receive-message", "--queue-url", url)
    assert rc != 0 and "(AccessDeniedException)" in err, err
    rc, _, err = run(admin_key, "wrong-secret-0123456789", "list-queues")
    assert rc != 0 and "(InvalidSignatureException)" in err, err
    rc, out, err = run(admin_key, admin, "receive-message", "--queue-url", url,
                       "--attribute-names", "All")
    assert rc == 0 and json.loads(out)["Messages"][0]["Body"] == "p", err
    rc, out, err = run(admin_key, admin, "get-queue-attributes", "--queue-url", url,
                       "--attribute-names", "QueueArn")
    assert json.loads(out)["Attributes"]["QueueArn"] == "arn:aws:sqs:eu-west-1:000000000000:sec"
    # Unsigned: refused, nothing created.
    status, _, _ = d.request("POST", "/", json.dumps({"QueueName": "x"}).encode(),
                             {"X-Amz-Target": TARGET + "CreateQueue", "Content-Type": JSON10})
    assert status in (400, 403)


def test_query_protocol_with_boto3(spated):
    """Debian's python3-boto3 speaks the query protocol (form in, XML out):
    the same actions, the same answers, SQS's error codes."""
    boto3 = pytest.importorskip("boto3")
    from botocore.config import Config
    from botocore.exceptions import ClientError
    c = boto3.client("sqs", endpoint_url=spated.url, region_name="us-east-1",
                     aws_access_key_id="x", aws_secret_access_key="y",
                     config=Config(retries={"total_max_attempts": 1}, read_timeout=60))
    url = c.create_queue(QueueName="boto", Attributes={"VisibilityTimeout": "7"})["QueueUrl"]
    assert c.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])[
        "Attributes"] == {"VisibilityTimeout": "7"}
    got = {}

    def receive():
        got["r"] = c.receive_message(QueueUrl=url, WaitTimeSeconds=20, MaxNumberOfMessages=10,
                                     AttributeNames=["ApproximateReceiveCount"])
    t = threading.Thread(target=receive)
    t.start()
    time.sleep(0.5)
    sent = c.send_message_batch(QueueUrl=url, Entries=[
        {"Id": "a", "MessageBody": "x & <y>"}, {"Id": "b", "MessageBody": "\u00e9\r\n"}])
    assert [e["Id"] for e in sent["Successful"]] == ["a", "b"]
    t.join(60)
    msgs = got["r"]["Messages"]
    while len(msgs) < 2:  # the long poll may have answered with the first alone
        msgs += c.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(m["Body"] for m in msgs) == sorted(["x & <y>", "\u00e9\r\n"])
    d = c.delete_message_batch(QueueUrl=url, Entries=[
        {"Id": f"e{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)] +
        [{"Id": "forged", "ReceiptHandle": "1.1.00000000000000000000000000000000"}])
    assert len(d["Successful"]) == 2
    assert [(f["Id"], f["Code"]) for f in d["Failed"]] == [("forged", "ReceiptHandleIsInvalid")]
    with pytest.raises(ClientError) as e:
        c.get_queue_url(QueueName="missing")
    assert e.value.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
    with pytest.raises(ClientError) as e:
        c.send_message_batch(QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "1"}] * 2)
    assert e.value.response["Error"]["Code"] == "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"
    c.delete_queue(QueueUrl=url)
    assert "QueueUrls" not in c.list_queues()


def test_redrive_to_the_dead_letter_queue(spated):
    """RedrivePolicy: a message received maxReceiveCount times and never
    deleted moves to the dead-letter queue, where its receivers get it."""
    dlq = create(spated, "dead")
    arn = attributes(spated, dlq)["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "2"})
    url = create(spated, "work", VisibilityTimeout=1, RedrivePolicy=policy)
    assert json.loads(attributes(spated, url)["RedrivePolicy"]) == \
        {"deadLetterTargetArn": arn, "maxReceiveCount": 2}
    assert ok(spated, "ListDeadLetterSourceQueues", {"QueueUrl": dlq})["queueUrls"] == [url]
    ok(spated, "SendMessage", {"QueueUrl": url, "MessageBody": "poison"})
    for count in ("1", "2"):
        doc = ok(spated, "ReceiveMessage", {"QueueUrl": url, "WaitTimeSeconds": 20,
                                            "AttributeNames": ["ApproximateReceiveCount"]},
                 timeout=60)
        assert doc["Messages"][0]["Attributes"]["ApproximateReceiveCount"] == count
    dead = ok(spated, "ReceiveMessage", {"QueueUrl": dlq, "WaitTimeSeconds": 20}, timeout=60)
    assert [m["Body"] for m in dead["Messages"]] == ["poison"]
    assert ok(spated, "ReceiveMessage", {"QueueUrl": url}) == {}
    # A policy naming no queue, or the queue itself, is refused; "" removes it.
    bad = json.dumps({"deadLetterTargetArn": arn.replace("dead", "nope"), "maxReceiveCount": 2})
    assert error_of(spated, "SetQueueAttributes", {"QueueUrl": url, "Attributes": {
        "RedrivePolicy": bad}})[1] == "InvalidAttributeValue"
    ok(spated, "SetQueueAttributes", {"QueueUrl": url, "Attributes": {
        "RedrivePolicy": "", "VisibilityTimeout": "9"}})
    a = attributes(spated, url)
    assert "RedrivePolicy" not in a and a["VisibilityTimeout"] == "9"


def test_purge_and_visibility_batch(spated):
    url = create(spated, "purged")
    ok(spated, "SendMessageBatch", {"QueueUrl": url, "Entries": [
        {"Id": str(i), "MessageBody": f"m{i}"} for i in range(5)]})
    held = ok(spated, "ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 2})["Messages"]
    doc = ok(spated, "ChangeMessageVisibilityBatch", {"QueueUrl": url, "Entries": [
        {"Id": "a", "ReceiptHandle": held[0]["ReceiptHandle"], "VisibilityTimeout": 0},
        {"Id": "b", "ReceiptHandle": held[1]["ReceiptHandle"], "VisibilityTimeout": 300},
        {"Id": "c", "ReceiptHandle": "1.1." + "0" * 32, "VisibilityTimeout": 1}]})
    assert [e["Id"] for e in doc["Successful"]] == ["a", "b"]
    assert [(e["Id"], e["Code"]) for e in doc["Failed"]] == [("c", "ReceiptHandleIsInvalid")]
    wait_for(lambda: attributes(spated, url)["ApproximateNumberOfMessages"] == "4")
    ok(spated, "PurgeQueue", {"QueueUrl": url})  # in flight too, as SQS
    a = attributes(spated, url)
    assert (a["ApproximateNumberOfMessages"], a["ApproximateNumberOfMessagesNotVisible"]) == \
        ("0", "0")
    assert ok(spated, "ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 10}) == {}
    ok(spated, "SendMessage", {"QueueUrl": url, "MessageBody": "after"})
    assert ok(spated, "ReceiveMessage", {"QueueUrl": url})["Messages"][0]["Body"] == "after"


def test_stop_answers_long_polls(spated):
    """spated stops cleanly with a long poll waiting and messages held: the
    poll is answered, the held message comes back after the restart."""
    url = create(spated, "stopping")
    ok(spated, "SendMessage", {"QueueUrl": url, "MessageBody": "held"})
    ok(spated, "ReceiveMessage", {"QueueUrl": url, "VisibilityTimeout": 600})
    other = create(spated, "idle")
    got = {}

    def receive():
        try:
            got["r"] = sqs(spated, "ReceiveMessage", {"QueueUrl": other, "WaitTimeSeconds": 20},
                           timeout=60)
        except Exception as e:  # the connection closed: answered too
            got["r"] = e
    t = threading.Thread(target=receive)
    t.start()
    time.sleep(0.5)
    assert spated.stop() == 0, spated.log()
    t.join(60)
    assert "r" in got
    spated.start()
    # A long poll: right after a start the queue may still be reading its store.
    assert ok(spated, "ReceiveMessage", {"QueueUrl": url, "WaitTimeSeconds": 20},
              timeout=60)["Messages"][0]["Body"] == "held"


def sqs_attrs_md5(attrs):
    """MD5OfMessageAttributes as SQS documents it, computed here on its own."""
    import base64
    import struct
    out = b""
    for name in sorted(attrs):
        a = attrs[name]
        t = a["DataType"]
        out += struct.pack(">I", len(name)) + name.encode()
        out += struct.pack(">I", len(t)) + t.encode()
        if t.startswith("Binary"):
            v = base64.b64decode(a["BinaryValue"])
            out += b"\x02" + struct.pack(">I", len(v)) + v
        else:
            v = a["StringValue"].encode()
            out += b"\x01" + struct.pack(">I", len(v)) + v
    return hashlib.md5(out).hexdigest()


ATTRS = {"color": {"DataType": "String", "StringValue": "red"},
         "n": {"DataType": "Number", "StringValue": "42"},
         "blob": {"DataType": "Binary", "BinaryValue": "AAECAw=="},
         "app.kind": {"DataType": "String.custom", "StringValue": "x"}}


def test_message_attributes_digest(spated):
    """MD5OfMessageAttributes exactly as SQS computes it (checked against an
    independent implementation of SQS's documented algorithm); none without
    attributes (the Java and JS SDKs verify it and fail on an empty one);
    only the attributes asked for come back, with the digest of those."""
    url = create(spated, "digest")
    # Digests that AWS returned for these, as SQS emulators' test suites pin them.
    for name, value, digest in [
            ("timestamp", "1493147359900", "235c5c510d26fb653d073faed50ae77c"),
            ("timestamp", "1493147359901", "994258b45346a2cc3f9cbb611aa7af30"),
            ("SOME_Valid.attribute-Name", "1493147359900", "36655e7e9d7c0e8479fa3f3f42247ae7")]:
        got = ok(spated, "SendMessage", {"QueueUrl": url, "MessageBody": "t", "MessageAttributes": {
            name: {"DataType": "Number", "StringValue": value}}})
        assert got["MD5OfMessageAttributes"] == digest
    ok(spated, "PurgeQueue", {"QueueUrl": url})
    sent = ok(spated, "SendMessage", {"QueueUrl": url, "MessageBody": "b",
                                      "MessageAttributes": ATTRS})
    assert sent["MD5OfMessageAttributes"] == sqs_attrs_md5(ATTRS)
    assert "MD5OfMessageAttributes" not in ok(spated, "SendMessage", {
        "QueueUrl": url, "MessageBody": "plain"})
    got = ok(spated, "ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 10,
                                        "MessageAttributeNames": ["All"]})["Messages"]
    assert got[0]["MessageAttributes"] == ATTRS
    assert got[0]["MD5OfMessageAttributes"] == sqs_attrs_md5(ATTRS)
    assert "MessageAttributes" not in got[1] and "MD5OfMessageAttributes" not in got[1]
    for m in got:
        ok(spated, "ChangeMessageVisibility", {"QueueUrl": url, "ReceiptHandle": m["ReceiptHandle"],
                                               "VisibilityTimeout": 0})
    wait_for(lambda: attributes(spated, url)["ApproximateNumberOfMessages"] == "2")
    some = ok(spated, "ReceiveMessage", {"QueueUrl": url,
                                         "MessageAttributeNames": ["color", "app.*"]})
    want = {k: ATTRS[k] for k in ("color", "app.kind")}
    assert some["Messages"][0]["MessageAttributes"] == want
    assert some["Messages"][0]["MD5OfMessageAttributes"] == sqs_attrs_md5(want)


@pytest.mark.parametrize("exe", CLIS or [pytest.param(None, marks=pytest.mark.skip)])
def test_message_attributes_cli(spated, exe):
    """Both CLIs (JSON and query protocols) send attributes, get them back as
    sent, and the digest at send and at receive agree (botocore does not
    check it: the digest's own test is test_message_attributes_digest)."""
    def run(*args):
        return cli(spated, *args, exe=exe)
    url = run("create-queue", "--queue-name", "attrs")["QueueUrl"]
    attrs = {k: v for k, v in ATTRS.items() if k != "blob"}  # blobs: each CLI encodes its way
    sent = run("send-message", "--queue-url", url, "--message-body", "b",
               "--message-attributes", json.dumps(attrs))
    assert sent["MD5OfMessageAttributes"] == sqs_attrs_md5(attrs)
    got = run("receive-message", "--queue-url", url, "--message-attribute-names",
              "All")["Messages"][0]
    assert got["MessageAttributes"] == attrs
    assert got["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]


def test_message_attributes_refused(spated):
    url = create(spated, "attrs-bad")
    for attrs, code in [
        ({"AWS.x": {"DataType": "String", "StringValue": "v"}}, "InvalidParameterValue"),
        ({"a..b": {"DataType": "String", "StringValue": "v"}}, "InvalidParameterValue"),
        ({"x": {"DataType": "Float", "StringValue": "1"}}, "InvalidParameterValue"),
        ({"x": {"DataType": "String", "StringValue": ""}}, "InvalidParameterValue"),
        ({"x": {"DataType": "Binary", "BinaryValue": "not base64!"}}, "InvalidParameterValue"),
        ({f"a{i}": {"DataType": "String", "StringValue": "v"} for i in range(11)},
         "InvalidParameterValue"),
        ({"big": {"DataType": "String", "StringValue": "v" * (256 * 1024)}},
         "InvalidParameterValue"),
    ]:
        status, got, _ = error_of(spated, "SendMessage", {
            "QueueUrl": url, "MessageBody": "x", "MessageAttributes": attrs})
        assert (status, got) == (400, code), attrs if len(str(attrs)) < 300 else "big"
    assert attributes(spated, url)["ApproximateNumberOfMessages"] == "0"


def test_aws_sdk_js(spated):
    """@aws-sdk/client-sqs (JSON protocol) against spated: its middleware
    verifies MD5OfMessageBody of every send and MD5OfBody of every receive,
    so a wrong one fails the run; binary attributes come back as sent."""
    import pathlib
    from conftest import ROOT
    d = pathlib.Path(os.environ.get("SPATE_AWS_SDK_JS", "/var/tmp/spate-aws-sdk-js"))
    r = subprocess.run([str(ROOT / "scripts/install-aws-sdk-js.sh"), str(d)], capture_output=True,
                       text=True, timeout=600)
    if r.returncode != 0:
        pytest.skip(f"cannot install @aws-sdk/client-sqs: {r.stderr[-500:]}")
    r = subprocess.run(["/usr/bin/node", str(ROOT / "tests/integration/sqs_node.cjs"), spated.url],
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, NODE_PATH=str(d / "node_modules")))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert "error" not in out, out
    assert out["batch"] == ["a", "b"] and out["bodies"] == ["from js", "ä", "b"]
    assert out["blob"] == [0, 1, 2, 3] and out["count"] == "1" and out["deleted"] == 3
    assert out["missing"] == "QueueDoesNotExist"


def test_list_queues_pages(spated):
    for name in ("p-a", "p-b", "p-c", "q-x"):
        create(spated, name)
    pages, token = [], None
    while True:
        body = {"QueueNamePrefix": "p-", "MaxResults": 2}
        if token:
            body["NextToken"] = token
        doc = ok(spated, "ListQueues", body)
        pages.append([u.rsplit("/", 1)[1] for u in doc.get("QueueUrls", [])])
        token = doc.get("NextToken")
        if not token:
            break
    assert pages == [["p-a", "p-b"], ["p-c"]]
    assert len(ok(spated, "ListQueues", {})["QueueUrls"]) == 4
    assert error_of(spated, "ListQueues", {"MaxResults": 0})[1] == "InvalidParameterValue"


def test_many_deadlines_all_expire(spated):
    """Held receives with deadlines in every order (the receiver keeps them
    in a heap) each come back once, counted once more."""
    url = create(spated, "heap")
    ok(spated, "SendMessageBatch", {"QueueUrl": url, "Entries": [
        {"Id": str(i), "MessageBody": f"m{i}"} for i in range(10)]})
    got = ok(spated, "ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 10,
                                        "VisibilityTimeout": 600})["Messages"]
    assert len(got) == 10
    order = [3, 1, 2, 1, 3, 2, 1, 3, 2, 1]
    doc = ok(spated, "ChangeMessageVisibilityBatch", {"QueueUrl": url, "Entries": [
        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": order[i]}
        for i, m in enumerate(got)]})
    assert len(doc["Successful"]) == 10
    back = {}
    deadline = time.time() + 60
    while len(back) < 10 and time.time() < deadline:
        doc = ok(spated, "ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 10,
                                            "WaitTimeSeconds": 5, "VisibilityTimeout": 600,
                                            "AttributeNames": ["ApproximateReceiveCount"]},
                 timeout=60)
        for m in doc.get("Messages", []):
            assert m["Body"] not in back
            back[m["Body"]] = m["Attributes"]["ApproximateReceiveCount"]
    assert back == {f"m{i}": "2" for i in range(10)}


def test_query_protocol_shapes(spated):
    """The query protocol's XML, raw: the 2012-11-05 namespace, a RequestId,
    flattened lists; errors as ErrorResponse with Type, Code and Message;
    the queue named by the URL posted to; Action given twice refused."""
    import urllib.parse
    import xml.etree.ElementTree as ET
    ns = "{http://queue.amazonaws.com/doc/2012-11-05/}"

    def post(path, form):
        body = urllib.parse.urlencode(form).encode()
        status, headers, data = spated.request(
            "POST", path, body, {"Content-Type": "application/x-www-form-urlencoded"})
        return status, ET.fromstring(data)
    status, x = post("/", {"Action": "CreateQueue", "QueueName": "xml", "Version": "2012-11-05",
                           "Attribute.1.Name": "VisibilityTimeout", "Attribute.1.Value": "9"})
    assert status == 200 and x.tag == ns + "CreateQueueResponse"
    url = x.find(f"{ns}CreateQueueResult/{ns}QueueUrl").text
    assert x.find(f"{ns}ResponseMetadata/{ns}RequestId").text
    path = "/000000000000/xml"
    status, x = post(path, {"Action": "SendMessageBatch",
                            "SendMessageBatchRequestEntry.1.Id": "a",
                            "SendMessageBatchRequestEntry.1.MessageBody": "<one>",
                            "SendMessageBatchRequestEntry.2.Id": "b",
                            "SendMessageBatchRequestEntry.2.MessageBody": "two"})
    entries = x.findall(f"{ns}SendMessageBatchResult/{ns}SendMessageBatchResultEntry")
    assert status == 200 and [e.find(ns + "Id").text for e in entries] == ["a", "b"]
    status, x = post(path, {"Action": "ReceiveMessage", "MaxNumberOfMessages": "10",
                            "AttributeName.1": "All"})
    msgs = x.findall(f"{ns}ReceiveMessageResult/{ns}Message")
    assert [m.find(ns + "Body").text for m in msgs] == ["<one>", "two"]
    names = {a.find(ns + "Name").text for a in msgs[0].findall(ns + "Attribute")}
    assert {"ApproximateReceiveCount", "SentTimestamp"} <= names
    status, x = post("/", {"Action": "GetQueueUrl", "QueueName": "nope"})
    assert status == 400 and x.tag == ns + "ErrorResponse"
    assert x.find(f"{ns}Error/{ns}Code").text == "AWS.SimpleQueueService.NonExistentQueue"
    assert x.find(f"{ns}Error/{ns}Type").text == "Sender" and x.find(ns + "RequestId").text
    status, x = post("/", {"Action": "Nonsense"})
    assert status == 400 and x.find(f"{ns}Error/{ns}Code").text == "InvalidAction"
    body = b"Action=ListQueues&Action=ReceiveMessage&QueueUrl=" + url.encode()
    status, _, data = spated.request("POST", "/", body,
                                     {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400 and b"InvalidParameterValue" in data
