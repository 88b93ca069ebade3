"""Amazon SQS in cluster mode (issue 18): spated nodes sharing a NATS
JetStream store serve the same queues. A queue made on one node is used
from another: sends, receives and deletes on any node, a visibility timeout
that ends makes the message visible on every node, long polls are woken by
a send made elsewhere, a trigger on a queue shares its receiver with the
receives; what cluster mode cannot do is refused with a clear error."""

import json
import threading
import time

import pytest

from conftest import wait_for
from natscluster import add_trigger, listed, record_dir, spated_cluster
from test_batches import deploy_batcher, events, records_of
from test_sqs import attributes, create, error_of, ok
from test_sqs import sqs as sqs_call


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with spated_cluster(tmp_path_factory, name="sqs", n=2) as c:
        yield c


def url_on(d, name):
    """The queue's URL through node d, once d knows the queue."""
    assert wait_for(lambda: error_of(d, "GetQueueUrl", {"QueueName": name})[0] == 200,
                    timeout=30), d.log()
    return ok(d, "GetQueueUrl", {"QueueName": name})["QueueUrl"]


def receive(d, url, timeout=60, **kw):
    body = {"QueueUrl": url, "MaxNumberOfMessages": 10, "AttributeNames": ["All"], **kw}
    return ok(d, "ReceiveMessage", body, timeout=timeout).get("Messages", [])


def receive_all(d, url, want, timeout=60, **kw):
    """Receives on d until want messages came (long polls), or the time ends."""
    got = []
    deadline = time.time() + timeout
    while len(got) < want and time.time() < deadline:
        got += receive(d, url, WaitTimeSeconds=2, **kw)
    return got


def test_create_on_one_node_use_on_another(cluster):
    _, (a, b) = cluster
    create(a, "shared")
    url_b = url_on(b, "shared")
    ids = {}
    for i in range(4):
        ids[f"m{i}"] = ok(b, "SendMessage", {"QueueUrl": url_b, "MessageBody": f"m{i}"})[
            "MessageId"]
    doc = ok(a, "SendMessageBatch", {"QueueUrl": url_b, "Entries": [
        {"Id": "x", "MessageBody": "m4"}, {"Id": "y", "MessageBody": "m5"}]})
    ids.update({f"m{4 + k}": e["MessageId"] for k, e in enumerate(
        sorted(doc["Successful"], key=lambda e: e["Id"]))})
    assert len(set(ids.values())) == 6, ids  # each message its own id
    got = receive_all(a, url_on(a, "shared"), 6, VisibilityTimeout=60)
    assert sorted(m["Body"] for m in got) == [f"m{i}" for i in range(6)]
    # A message has the id its send answered, whichever node sent it.
    assert {m["Body"]: m["MessageId"] for m in got} == ids
    for m in got:
        ok(a, "DeleteMessage", {"QueueUrl": url_b, "ReceiptHandle": m["ReceiptHandle"]})
    assert receive(b, url_b, WaitTimeSeconds=2) == []
    # Short polls (WaitTimeSeconds 0) find a message sent through the other
    # node too: each waits for the fetch it asked for (a few may come back
    # empty on a loaded machine, as SQS's short polls may).
    ok(a, "SendMessage", {"QueueUrl": url_b, "MessageBody": "short"})
    found = []
    for _ in range(20):
        found = receive(b, url_b)
        if found:
            break
    assert [m["Body"] for m in found] == ["short"]
    ok(b, "DeleteMessage", {"QueueUrl": url_b, "ReceiptHandle": found[0]["ReceiptHandle"]})


def test_visibility_timeout_ends_on_every_node(cluster):
    _, (a, b) = cluster
    url = create(a, "vis", VisibilityTimeout=2)
    url_b = url_on(b, "vis")
    ok(a, "SendMessage", {"QueueUrl": url, "MessageBody": "once"})
    first = receive_all(a, url, 1)
    assert [m["Body"] for m in first] == ["once"]
    assert first[0]["Attributes"]["ApproximateReceiveCount"] == "1"
    # Not deleted: visible again after 2 s, to the other node too.
    again = receive_all(b, url_b, 1, timeout=60)
    assert [m["Body"] for m in again] == ["once"]
    assert again[0]["Attributes"]["ApproximateReceiveCount"] == "2"
    assert again[0]["MessageId"] == first[0]["MessageId"]
    # The first handle is stale now: deleting with it deletes nothing.
    ok(a, "DeleteMessage", {"QueueUrl": url, "ReceiptHandle": first[0]["ReceiptHandle"]})
    ok(b, "DeleteMessage", {"QueueUrl": url_b, "ReceiptHandle": again[0]["ReceiptHandle"]})
    assert receive(a, url, WaitTimeSeconds=3) == []


def test_a_longer_visibility_timeout_holds_on_every_node(cluster):
    """A receive's VisibilityTimeout longer than the queue's (whose JetStream
    AckWait is the queue's and a margin), and one a ChangeMessageVisibility
    extends: the node holding it keeps telling JetStream, so no other node
    gets the message before it ends."""
    _, (a, b) = cluster
    url = create(a, "longer", VisibilityTimeout=1)
    url_b = url_on(b, "longer")
    ok(a, "SendMessage", {"QueueUrl": url, "MessageBody": "held"})
    ok(a, "SendMessage", {"QueueUrl": url, "MessageBody": "extended"})
    got = {m["Body"]: m for m in receive_all(a, url, 2, VisibilityTimeout=20)}
    assert sorted(got) == ["extended", "held"]
    ok(a, "ChangeMessageVisibility", {"QueueUrl": url, "VisibilityTimeout": 3,
                                      "ReceiptHandle": got["extended"]["ReceiptHandle"]})
    ok(a, "ChangeMessageVisibility", {"QueueUrl": url, "VisibilityTimeout": 20,
                                      "ReceiptHandle": got["extended"]["ReceiptHandle"]})
    # Well past the AckWait (1 s and the 5 s margin): still with a.
    deadline = time.time() + 12
    while time.time() < deadline:
        assert receive(b, url_b, WaitTimeSeconds=2) == []
    for m in got.values():
        ok(a, "DeleteMessage", {"QueueUrl": url, "ReceiptHandle": m["ReceiptHandle"]})
    assert receive(b, url_b, WaitTimeSeconds=3) == []


def test_long_poll_woken_by_a_send_on_the_other_node(cluster):
    _, (a, b) = cluster
    url = create(a, "wake")
    url_b = url_on(b, "wake")
    out = {}

    def poll():
        out["got"] = receive(a, url, WaitTimeSeconds=20, timeout=60)

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(1)
    ok(b, "SendMessage", {"QueueUrl": url_b, "MessageBody": "ping"})
    t.join(60)
    # Answered with the message (not the empty list of a poll that ran out).
    assert [m["Body"] for m in out["got"]] == ["ping"]


def test_redrive_to_the_dead_letter_queue(cluster):
    _, (a, b) = cluster
    dlq = create(a, "grave")
    arn = attributes(a, dlq)["QueueArn"]
    url = create(a, "fragile", VisibilityTimeout=1, RedrivePolicy=json.dumps(
        {"deadLetterTargetArn": arn, "maxReceiveCount": 2}))
    url_b = url_on(b, "fragile")
    assert json.loads(attributes(b, url_b)["RedrivePolicy"])["maxReceiveCount"] == 2
    ok(b, "SendMessage", {"QueueUrl": url_b, "MessageBody": "poison"})
    counts = []
    deadline = time.time() + 60
    while len(counts) < 2 and time.time() < deadline:
        node, u = (a, url) if not counts else (b, url_b)
        counts += [m["Attributes"]["ApproximateReceiveCount"]
                   for m in receive(node, u, WaitTimeSeconds=2)]
    assert counts == ["1", "2"]
    # Its second visibility timeout ended: to the dead-letter queue.
    dead = receive_all(b, url_on(b, "grave"), 1, timeout=60)
    assert [m["Body"] for m in dead] == ["poison"]
    assert receive(a, url, WaitTimeSeconds=2) == []


def test_counts_purge_and_delete(cluster):
    _, (a, b) = cluster
    url = create(a, "counted")
    url_b = url_on(b, "counted")
    ok(a, "SendMessageBatch", {"QueueUrl": url, "Entries": [
        {"Id": str(i), "MessageBody": f"c{i}"} for i in range(6)]})
    assert wait_for(lambda: attributes(b, url_b)["ApproximateNumberOfMessages"] == "6",
                    timeout=30), attributes(b, url_b)
    held = receive_all(b, url_b, 2, MaxNumberOfMessages=2, VisibilityTimeout=60)
    assert len(held) == 2
    assert wait_for(lambda: attributes(b, url_b)["ApproximateNumberOfMessagesNotVisible"] == "2",
                    timeout=30), attributes(b, url_b)
    # Seen from the other node too (JetStream's figures, every second).
    assert wait_for(lambda: attributes(a, url)["ApproximateNumberOfMessagesNotVisible"] == "2" and
                    attributes(a, url)["ApproximateNumberOfMessages"] == "4",
                    timeout=30), attributes(a, url)
    ok(a, "PurgeQueue", {"QueueUrl": url})
    assert wait_for(lambda: attributes(a, url)["ApproximateNumberOfMessages"] == "0", timeout=30)
    assert receive(a, url, WaitTimeSeconds=2) == []
    ok(b, "DeleteQueue", {"QueueUrl": url_b})
    assert wait_for(lambda: error_of(a, "GetQueueUrl", {"QueueName": "counted"})[0] == 400,
                    timeout=30)
    status, code, _ = error_of(a, "SendMessage", {"QueueUrl": url, "MessageBody": "late"})
    assert (status, code) == (400, "AWS.SimpleQueueService.NonExistentQueue")


def test_fifo_across_nodes(cluster):
    _, (a, b) = cluster
    url = create(a, "ledger.fifo", FifoQueue="true", VisibilityTimeout=30)
    url_b = url_on(b, "ledger.fifo")
    for i, g in enumerate("aabab"):
        ok(a if i % 2 else b, "SendMessage", {
            "QueueUrl": url, "MessageBody": f"{g}{i}", "MessageGroupId": g,
            "MessageDeduplicationId": f"id{i}"})
    order = []
    deadline = time.time() + 60
    while len(order) < 5 and time.time() < deadline:
        for node, u in ((a, url), (b, url_b)):
            for m in receive(node, u, WaitTimeSeconds=1):
                order.append(m["Body"])
                ok(node, "DeleteMessage", {"QueueUrl": u, "ReceiptHandle": m["ReceiptHandle"]})
    assert sorted(order) == ["a0", "a1", "a3", "b2", "b4"]
    assert [x for x in order if x[0] == "a"] == ["a0", "a1", "a3"]
    assert [x for x in order if x[0] == "b"] == ["b2", "b4"]


def test_fifo_deduplication_across_nodes(cluster):
    """A send retried through the other node (or after the first restarted)
    is not stored twice: JetStream's duplicate window, keyed by the
    deduplication id, answers the first message's seq."""
    _, (a, b) = cluster
    url = create(a, "pay.fifo", FifoQueue="true", ContentBasedDeduplication="true")
    url_b = url_on(b, "pay.fifo")
    first = ok(a, "SendMessage", {"QueueUrl": url, "MessageBody": "invoice 7",
                                  "MessageGroupId": "g", "MessageDeduplicationId": "inv-7"})
    assert int(first["SequenceNumber"]) > 0
    again = ok(b, "SendMessage", {"QueueUrl": url_b, "MessageBody": "invoice 7",
                                  "MessageGroupId": "g", "MessageDeduplicationId": "inv-7"})
    assert (again["MessageId"], again["SequenceNumber"]) == (
        first["MessageId"], first["SequenceNumber"])
    by_body = ok(a, "SendMessage", {"QueueUrl": url, "MessageBody": "by content",
                                    "MessageGroupId": "g"})
    doc = ok(b, "SendMessageBatch", {"QueueUrl": url_b, "Entries": [
        {"Id": "1", "MessageBody": "by content", "MessageGroupId": "g"},
        {"Id": "2", "MessageBody": "new", "MessageGroupId": "g"}]})
    sent = {e["Id"]: e for e in doc["Successful"]}
    assert sent["1"]["MessageId"] == by_body["MessageId"]
    assert int(sent["2"]["SequenceNumber"]) > int(by_body["SequenceNumber"])
    bodies = []
    deadline = time.time() + 60
    while len(bodies) < 3 and time.time() < deadline:
        for m in receive(b, url_b, WaitTimeSeconds=1):
            bodies.append(m["Body"])
            ok(b, "DeleteMessage", {"QueueUrl": url_b, "ReceiptHandle": m["ReceiptHandle"]})
    assert bodies == ["invoice 7", "by content", "new"]
    assert receive(a, url, WaitTimeSeconds=2) == []


def test_a_trigger_on_a_queue_shares_its_receiver(cluster, tmp_path):
    """The trigger leases from the queue's receiver on every node (each
    node fetches what its function has room for): each message runs once,
    a failing one comes back after the visibility timeout and goes to the
    dead-letter queue after maxReceiveCount receives."""
    _, (a, b) = cluster
    record = deploy_batcher(a, record_dir(tmp_path))
    assert wait_for(lambda: listed(b, "batcher"), timeout=30)
    dlq = create(a, "jobs-dead")
    url = create(a, "jobs", VisibilityTimeout=2, RedrivePolicy=json.dumps(
        {"deadLetterTargetArn": attributes(a, dlq)["QueueArn"], "maxReceiveCount": 2}))
    url_b = url_on(b, "jobs")
    add_trigger(a, (a, b), "jobs", "batcher",
                "?event_format=sqs&report_batch_item_failures=true&batch_size=5")
    for i in range(20):
        ok(b if i % 2 else a, "SendMessage", {"QueueUrl": url_b, "MessageBody": f"ok-{i}"})
    ok(b, "SendMessage", {"QueueUrl": url_b, "MessageBody": "fail-1"})
    dead = receive_all(a, url_on(a, "jobs-dead"), 1, timeout=90)
    assert [m["Body"] for m in dead] == ["fail-1"]

    def seen():
        return [(r["body"], r["attributes"]["ApproximateReceiveCount"])
                for e in events(record) for r in records_of(e)]

    assert wait_for(lambda: len([x for x in seen() if x[0].startswith("ok-")]) >= 20, timeout=60)
    got = seen()
    assert sorted(b for b, _ in got if b.startswith("ok-")) == sorted(f"ok-{i}" for i in range(20))
    assert [c for b, c in got if b == "fail-1"] == ["1", "2"]
    # Nothing is left for a receive: the function had them all.
    assert receive(b, url_b, WaitTimeSeconds=2) == []
    assert receive(a, url, WaitTimeSeconds=2) == []


def test_a_queue_deleted_on_the_other_node(cluster):
    """DeleteQueue through b: a's long poll on it answers (empty), and a
    queue made again under the name starts afresh on a too (its
    deduplication ids forgotten: a send of an old id is stored)."""
    _, (a, b) = cluster
    url = create(a, "again.fifo", FifoQueue="true")
    url_b = url_on(b, "again.fifo")
    ok(a, "SendMessage", {"QueueUrl": url, "MessageBody": "one", "MessageGroupId": "g",
                          "MessageDeduplicationId": "d1"})
    assert [m["Body"] for m in receive_all(a, url, 1)] == ["one"]  # held by a
    out = {}

    def poll():
        out["got"] = receive(a, url, WaitTimeSeconds=20, timeout=60)

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(1)
    ok(b, "DeleteQueue", {"QueueUrl": url_b})
    t.join(60)
    assert out["got"] == []
    assert wait_for(lambda: error_of(a, "GetQueueUrl", {"QueueName": "again.fifo"})[0] == 400,
                    timeout=30)
    url = create(a, "again.fifo", FifoQueue="true")
    ok(a, "SendMessage", {"QueueUrl": url, "MessageBody": "two", "MessageGroupId": "g",
                          "MessageDeduplicationId": "d1"})
    assert [m["Body"] for m in receive_all(a, url, 1)] == ["two"]


def test_a_trigger_on_a_fifo_queue_keeps_each_group_in_order(cluster, tmp_path):
    _, (a, b) = cluster
    record = deploy_batcher(a, record_dir(tmp_path), name="fifofn")
    assert wait_for(lambda: listed(b, "fifofn"), timeout=30)
    url = create(a, "steps.fifo", FifoQueue="true")
    url_on(b, "steps.fifo")
    add_trigger(a, (a, b), "steps.fifo", "fifofn", "?event_format=sqs")
    for i in range(6):
        for g in ("x", "y"):
            ok(a if i % 2 else b, "SendMessage", {
                "QueueUrl": url, "MessageBody": f"{g}{i}", "MessageGroupId": g,
                "MessageDeduplicationId": f"{g}{i}"})

    def bodies():
        return [r["body"] for e in events(record) for r in records_of(e)]

    assert wait_for(lambda: len(bodies()) >= 12, timeout=60), bodies()
    got = bodies()
    assert sorted(got) == sorted(f"{g}{i}" for i in range(6) for g in "xy"), got
    for g in "xy":
        assert [x for x in got if x[0] == g] == [f"{g}{i}" for i in range(6)], got


def test_what_cluster_mode_refuses(cluster):
    _, (a, _) = cluster
    url = create(a, "limits")
    status, code, _ = error_of(a, "SendMessage", {"QueueUrl": url, "MessageBody": "x",
                                                  "DelaySeconds": 5})
    assert (status, code) == (400, "AWS.SimpleQueueService.UnsupportedOperation")
    # A queue's delay, and a retention JetStream would not keep: refused,
    # saying why; what they would be anyway is taken.
    for attrs in ({"DelaySeconds": "5"}, {"MessageRetentionPeriod": "60"}):
        status, _, doc = sqs_call(a, "CreateQueue", {"QueueName": "other", "Attributes": attrs})
        assert status == 400 and doc["__type"].endswith("InvalidAttributeValue"), doc
        assert "not supported in cluster mode" in doc["message"], doc
        status, _, doc = sqs_call(a, "SetQueueAttributes", {"QueueUrl": url, "Attributes": attrs})
        assert status == 400 and "not supported in cluster mode" in doc["message"], doc
    ok(a, "SetQueueAttributes", {"QueueUrl": url, "Attributes": {
        "DelaySeconds": "0", "MessageRetentionPeriod": "345600"}})
    assert attributes(a, url)["MessageRetentionPeriod"] == "345600"
    ok(a, "SendMessage", {"QueueUrl": url, "MessageBody": "x", "DelaySeconds": 0})
    assert [m["Body"] for m in receive_all(a, url, 1)] == ["x"]


def test_a_node_killed_with_9_gives_its_messages_to_the_other(cluster):
    """What a killed node held comes back on the other node once the queue's
    visibility timeout (JetStream's AckWait: it and a 5 s margin) ends;
    every acknowledged send is there."""
    import signal

    _, (a, b) = cluster
    url = create(a, "survivor", VisibilityTimeout=2)
    url_b = url_on(b, "survivor")
    for i in range(3):
        ok(a, "SendMessage", {"QueueUrl": url, "MessageBody": f"s{i}"})
    held = receive_all(a, url, 3)
    assert sorted(m["Body"] for m in held) == ["s0", "s1", "s2"]
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait()
    try:
        back = receive_all(b, url_b, 3, timeout=60)
        assert sorted(m["Body"] for m in back) == ["s0", "s1", "s2"]
        for m in back:
            ok(b, "DeleteMessage", {"QueueUrl": url_b, "ReceiptHandle": m["ReceiptHandle"]})
    finally:
        a.start()
    assert receive(a, url_on(a, "survivor"), WaitTimeSeconds=2) == []
