"""An adversarial pass over SQS in cluster mode (issue 18): receipt handles
used on the node that did not receive the message, and triggers (event
source mappings) whose batch gathers or runs longer than the queue's
visibility timeout. Each test failed before its fix."""

import time

import pytest

from conftest import wait_for
from natscluster import add_trigger, listed, record_dir, spated_cluster
from test_batches import deploy_batcher, events, records_of
from test_sqs import create, error_of, ok, sqs
from test_sqs_cluster import receive, receive_all, url_on


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with spated_cluster(tmp_path_factory, name="sqsrev", n=2) as c:
        yield c


def test_a_handle_used_on_the_other_node_is_refused_not_dropped(cluster):
    """Only the node that received a message holds its lease. Its handle used
    on the other node was taken for one of an earlier run: DeleteMessage
    answered success, deleted nothing, and the message came back after the
    visibility timeout. Now it is refused, saying where the message is; the
    node that received it deletes it."""
    _, (a, b) = cluster
    url = create(a, "handles", VisibilityTimeout=60)
    url_b = url_on(b, "handles")
    ok(a, "SendMessage", {"QueueUrl": url, "MessageBody": "one"})
    ok(a, "SendMessage", {"QueueUrl": url, "MessageBody": "two"})
    got = receive_all(a, url, 2)
    assert sorted(m["Body"] for m in got) == ["one", "two"]
    h = got[0]["ReceiptHandle"]
    status, code, doc = error_of(b, "DeleteMessage", {"QueueUrl": url_b, "ReceiptHandle": h})
    assert (status, code) == (404, "ReceiptHandleIsInvalid"), (status, code, doc)
    _, _, full = sqs(b, "DeleteMessage", {"QueueUrl": url_b, "ReceiptHandle": h})
    assert "another node" in full["message"], full
    status, code, _ = error_of(b, "ChangeMessageVisibility", {
        "QueueUrl": url_b, "ReceiptHandle": h, "VisibilityTimeout": 0})
    assert (status, code) == (404, "ReceiptHandleIsInvalid")
    doc = ok(b, "DeleteMessageBatch", {"QueueUrl": url_b, "Entries": [
        {"Id": "x", "ReceiptHandle": got[1]["ReceiptHandle"]}]})
    assert doc["Successful"] == [] and doc["Failed"][0]["Code"] == "ReceiptHandleIsInvalid", doc
    # Still held by a, which deletes them.
    for m in got:
        ok(a, "DeleteMessage", {"QueueUrl": url, "ReceiptHandle": m["ReceiptHandle"]})
    assert receive(b, url_b, WaitTimeSeconds=2) == []
    # A handle of this node's own still works on it, and a forged one is
    # still invalid.
    ok(b, "SendMessage", {"QueueUrl": url_b, "MessageBody": "three"})
    [m] = receive_all(b, url_b, 1)
    forged = m["ReceiptHandle"][:-1] + ("0" if m["ReceiptHandle"][-1] != "0" else "1")
    assert error_of(b, "DeleteMessage", {"QueueUrl": url_b, "ReceiptHandle": forged})[1] == \
        "ReceiptHandleIsInvalid"
    ok(b, "DeleteMessage", {"QueueUrl": url_b, "ReceiptHandle": m["ReceiptHandle"]})
    assert receive(a, url, WaitTimeSeconds=2) == []


def test_a_mapping_longer_than_the_visibility_timeout_runs_each_message_once(cluster, tmp_path):
    """The receiver's AckWait is the queue's VisibilityTimeout and 5 s. A
    function that ran longer, or a batch that gathered longer (its window),
    let JetStream give the message to the other node, whose trigger ran it
    too. The node holding it now renews the AckWait while it gathers and
    runs."""
    _, (a, b) = cluster
    records = record_dir(tmp_path)
    slow = deploy_batcher(a, records, name="slowfn", SLEEP_S=14)
    windowed = deploy_batcher(a, records, name="winfn")
    assert wait_for(lambda: listed(b, "slowfn") and listed(b, "winfn"), timeout=30)
    for q in ("slowq", "winq"):
        create(a, q, VisibilityTimeout=1)
        url_on(b, q)
    add_trigger(a, (a, b), "slowq", "slowfn", "?event_format=sqs&batch_size=1")
    add_trigger(a, (a, b), "winq", "winfn",
                "?event_format=sqs&batch_size=5&batch_window_ms=14000")
    ok(a, "SendMessage", {"QueueUrl": url_on(a, "slowq"), "MessageBody": "slow"})
    ok(b, "SendMessage", {"QueueUrl": url_on(b, "winq"), "MessageBody": "gathered"})

    def bodies(record):
        return [r["body"] for e in events(record) for r in records_of(e)]

    assert wait_for(lambda: bodies(slow) == ["slow"], timeout=30)
    assert wait_for(lambda: bodies(windowed) == ["gathered"], timeout=40)
    # Well past the AckWait (1 s and the 5 s margin) and the run's end.
    time.sleep(16)
    assert bodies(slow) == ["slow"] and bodies(windowed) == ["gathered"]
    for q, d in (("slowq", a), ("winq", b)):
        assert receive(d, url_on(d, q), WaitTimeSeconds=2) == []


def test_fifo_order_holds_when_a_receive_on_one_node_times_out(cluster):
    """a receives a group's first message and lets its visibility timeout
    end: b gets that message again before the group's next."""
    _, (a, b) = cluster
    url = create(a, "turns.fifo", FifoQueue="true", VisibilityTimeout=2)
    url_b = url_on(b, "turns.fifo")
    for i in range(3):
        ok(a, "SendMessage", {"QueueUrl": url, "MessageBody": f"t{i}", "MessageGroupId": "g",
                              "MessageDeduplicationId": f"t{i}"})
    first = receive_all(a, url, 1)
    assert [m["Body"] for m in first] == ["t0"]
    order = []
    deadline = time.time() + 60
    while len(order) < 3 and time.time() < deadline:
        for m in receive(b, url_b, WaitTimeSeconds=2):
            order.append((m["Body"], m["Attributes"]["ApproximateReceiveCount"]))
            ok(b, "DeleteMessage", {"QueueUrl": url_b, "ReceiptHandle": m["ReceiptHandle"]})
    assert order == [("t0", "2"), ("t1", "1"), ("t2", "1")], order


def test_create_queue_on_both_nodes_at_once_agrees(cluster):
    """Two CreateQueue calls of one name with different attributes, one on
    each node at the same moment: the nodes end with the same attributes."""
    import threading
    _, (a, b) = cluster
    out = {}

    def make(d, vis):
        out[vis] = sqs(d, "CreateQueue", {"QueueName": "race",
                                         "Attributes": {"VisibilityTimeout": str(vis)}})[0]

    ts = [threading.Thread(target=make, args=(d, v)) for d, v in ((a, 10), (b, 20))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)

    def vis(d):
        return ok(d, "GetQueueAttributes", {"QueueUrl": url_on(d, "race"),
                                            "AttributeNames": ["All"]})["Attributes"]

    time.sleep(3)
    assert wait_for(lambda: vis(a)["VisibilityTimeout"] == vis(b)["VisibilityTimeout"],
                    timeout=20), (out, vis(a), vis(b))
    assert vis(a)["CreatedTimestamp"] == vis(b)["CreatedTimestamp"], (vis(a), vis(b))


def test_delete_queue_while_a_mapping_runs_on_the_other_node(cluster, tmp_path):
    """DeleteQueue through one node while the other's trigger runs a batch of
    the queue, its leases being touched: the run ends and settles into
    nothing, both nodes stay up, and a queue made again under the name
    starts empty."""
    _, (a, b) = cluster
    record = deploy_batcher(a, record_dir(tmp_path), name="lingerfn", SLEEP_S=6)
    assert wait_for(lambda: listed(b, "lingerfn"), timeout=30)
    url = create(a, "linger", VisibilityTimeout=1)
    url_b = url_on(b, "linger")
    add_trigger(a, (a, b), "linger", "lingerfn", "?event_format=sqs&batch_size=1")
    ok(a, "SendMessage", {"QueueUrl": url, "MessageBody": "in flight"})
    assert wait_for(lambda: len(events(record)) == 1, timeout=30)
    time.sleep(2)  # touched at least once
    ok(b, "DeleteQueue", {"QueueUrl": url_b})
    time.sleep(8)  # the run ends (6 s) and settles
    assert len(events(record)) == 1
    for d in (a, b):
        assert d.proc.poll() is None, d.log()
        assert d.json("GET", "/v1/nodes")[0] == 200
    url = create(a, "linger", VisibilityTimeout=1)
    assert receive(b, url_on(b, "linger"), WaitTimeSeconds=2) == []
