"""An adversarial pass over Lambda's event source mappings of SQS queues
(issue 18): a mapping whose queue is deleted, hostile UpdateEventSourceMapping
values, and a FIFO mapping whose function fails one group's message. The
first failed before its fix; the others pin down what was right."""

import json
import time

from conftest import wait_for
from test_lambda_esm import ESM, arn_of, deploy, records, send
from test_lambda_mgmt import client, error_of, request
from test_sqs import create, ok


def test_a_mapping_outlives_its_queue_and_can_be_deleted(spated, tmp_path):
    """DeleteQueue leaves the queue's triggers on its topic. The mapping
    vanished from Get, List and Delete (404), so neither it nor its function
    (DeleteFunction: it has a trigger) could be removed through Lambda's
    API, and a queue made again under the name was consumed by it with its
    old settings. As Lambda keeps such a mapping, it stays found, says its
    queue is gone, and deletes."""
    c = client(spated)
    deploy(c, tmp_path)
    url = create(spated, "esm-gone")
    arn = arn_of(spated, url)
    m = c.create_event_source_mapping(EventSourceArn=arn, FunctionName="rec", BatchSize=3)
    ok(spated, "DeleteQueue", {"QueueUrl": url})
    got = c.get_event_source_mapping(UUID=m["UUID"])
    assert got["UUID"] == m["UUID"] and got["EventSourceArn"] == arn, got
    assert got["LastProcessingResult"].startswith("PROBLEM"), got
    listed = c.list_event_source_mappings(FunctionName="rec")["EventSourceMappings"]
    assert [x["UUID"] for x in listed] == [m["UUID"]]
    assert c.delete_event_source_mapping(UUID=m["UUID"])["State"] == "Deleting"
    st, code, _ = error_of(lambda: c.get_event_source_mapping(UUID=m["UUID"]))
    assert (st, code) == (404, "ResourceNotFoundException")
    c.delete_function(FunctionName="rec")
    # The queue made again has no mapping from before.
    url = create(spated, "esm-gone")
    assert c.list_event_source_mappings(EventSourceArn=arn)["EventSourceMappings"] == []
    assert spated.json("GET", "/v1/triggers/esm-gone/rec")[0] == 404


def test_hostile_updates_change_nothing(spated, tmp_path):
    c = client(spated)
    deploy(c, tmp_path)
    deploy(c, tmp_path, "other")
    arn = arn_of(spated, create(spated, "esm-hostile"))
    m = c.create_event_source_mapping(EventSourceArn=arn, FunctionName="rec", BatchSize=4)
    u = m["UUID"]
    for body in ({"BatchSize": 0}, {"BatchSize": 10001}, {"BatchSize": -1},
                 {"BatchSize": 1e300}, {"BatchSize": 2.5}, {"BatchSize": "4"},
                 {"BatchSize": 20},  # over 10 without a window
                 {"MaximumBatchingWindowInSeconds": 301},
                 {"MaximumBatchingWindowInSeconds": -1},
                 {"ScalingConfig": {"MaximumConcurrency": 1}},
                 {"ScalingConfig": {"MaximumConcurrency": 1001}},
                 {"ScalingConfig": {"MaximumConcurrency": -3}},
                 {"ScalingConfig": 5}, {"Enabled": "false"},
                 {"FunctionResponseTypes": ["ReportBatchItemFailures", "x"]},
                 {"FilterCriteria": {"Filters": []}}):
        st, _, doc = request(spated, "PUT", f"{ESM}/{u}", body)
        assert st == 400, (body, st, doc)
    for body, want in (({"FunctionName": "other"}, 400), ({"FunctionName": "rec:nope"}, 404),
                       ({"FunctionName": "rec:999"}, 404)):
        st, _, doc = request(spated, "PUT", f"{ESM}/{u}", body)
        assert st == want, (body, st, doc)
    # Forged and malformed UUIDs, a Marker that is no UUID.
    for bad in ("00000000-0000-4000-8000-000000000000", u.upper(), u + "0", "x", u[:-1]):
        assert request(spated, "GET", f"{ESM}/{bad}")[0] == 404, bad
    st, _, doc = request(spated, "GET", f"{ESM}?Marker=not-a-uuid")
    assert st == 200, doc
    st, _, doc = request(spated, "GET", f"{ESM}?Marker={'z' * 300}")
    assert st == 400, doc
    # Unknown members are ignored, as Lambda does; nothing changed.
    st, _, doc = request(spated, "PUT", f"{ESM}/{u}", {"Bogus": 1})
    assert st == 202, doc
    got = c.get_event_source_mapping(UUID=u)
    assert (got["BatchSize"], got["State"], got["FunctionArn"].split(":")[-1]) == (4, "Enabled",
                                                                                  "rec")
    assert "ScalingConfig" not in got


def test_a_fifo_mapping_keeps_a_failing_group_in_order(spated, tmp_path):
    """A message its function fails holds its group (it comes back first,
    after the visibility timeout) until it goes to the dead-letter queue;
    the other groups go on meanwhile."""
    c = client(spated)
    record = deploy(c, tmp_path)
    dlq = create(spated, "esm-dead.fifo", FifoQueue="true")
    policy = json.dumps({"deadLetterTargetArn": arn_of(spated, dlq), "maxReceiveCount": 2})
    url = create(spated, "esm-order.fifo", FifoQueue="true", ContentBasedDeduplication="true",
                 VisibilityTimeout=2, RedrivePolicy=policy)
    c.create_event_source_mapping(EventSourceArn=arn_of(spated, url), FunctionName="rec",
                                  BatchSize=10, FunctionResponseTypes=["ReportBatchItemFailures"])
    for body, group in (("fail-a1", "a"), ("a2", "a"), ("a3", "a"), ("b1", "b"), ("b2", "b")):
        ok(spated, "SendMessage", {"QueueUrl": url, "MessageBody": body, "MessageGroupId": group})
    assert wait_for(lambda: len(records(record)) >= 6, timeout=60)
    got = [(r["body"], r["attributes"]["ApproximateReceiveCount"]) for r in records(record)]
    a = [x for x in got if x[0] != "b1" and x[0] != "b2"]
    assert a == [("fail-a1", "1"), ("fail-a1", "2"), ("a2", "1"), ("a3", "1")], got
    assert [x[0] for x in got if x[0].startswith("b")] == ["b1", "b2"], got
    # b went on while a waited for its failed message's visibility timeout.
    assert got.index(("b2", "1")) < got.index(("fail-a1", "2")), got
    dead = wait_for(lambda: ok(spated, "ReceiveMessage", {"QueueUrl": dlq}).get("Messages"),
                    timeout=30)
    assert [x["Body"] for x in dead] == ["fail-a1"]


def test_send_and_receive_beside_a_mapping_lose_nothing(spated, tmp_path):
    """Sends, ReceiveMessage callers and a mapping toggled on and off at
    once: each message goes to the function or to a receive, never both,
    and none is lost."""
    c = client(spated)
    record = deploy(c, tmp_path)
    url = create(spated, "esm-race", VisibilityTimeout=600)
    m = c.create_event_source_mapping(EventSourceArn=arn_of(spated, url), FunctionName="rec",
                                      BatchSize=5)
    sent = set()
    received = []
    for i in range(60):
        sent.add(send(spated, url, f"m{i}"))
        if i % 10 == 0:
            c.update_event_source_mapping(UUID=m["UUID"], Enabled=(i // 10) % 2 == 1)
        if i % 3 == 0:
            doc = ok(spated, "ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 3})
            for x in doc.get("Messages", []):
                received.append(x["MessageId"])
                ok(spated, "DeleteMessage", {"QueueUrl": url, "ReceiptHandle": x["ReceiptHandle"]})
    c.update_event_source_mapping(UUID=m["UUID"], Enabled=True)

    def ran():
        return [r["messageId"] for r in records(record)]

    assert wait_for(lambda: len(set(ran()) | set(received)) == len(sent), timeout=90), \
        (len(ran()), len(received), len(sent))
    assert ran() and received, (len(ran()), len(received))  # both took some
    assert len(ran()) == len(set(ran())), "a message ran twice"
    assert not set(ran()) & set(received), "a message went to both"
    assert set(ran()) | set(received) == sent


def test_kill_9_mid_batch_loses_nothing(spated, tmp_path):
    """spated killed while a mapping's batch runs: after the restart the
    batch's messages run again (they were never acknowledged), those
    acknowledged before do not, and the queue ends empty."""
    import signal
    from natscluster import record_dir
    from test_batches import deploy_batcher, events, records_of
    record = deploy_batcher(spated, record_dir(tmp_path), name="slowesm", SLEEP_S=4)
    url = create(spated, "esm-kill", VisibilityTimeout=60)
    c = client(spated)
    c.create_event_source_mapping(EventSourceArn=arn_of(spated, url), FunctionName="slowesm",
                                  BatchSize=1)

    def bodies():
        return [r["body"] for e in events(record) for r in records_of(e)]

    def counts():
        a = ok(spated, "GetQueueAttributes", {"QueueUrl": url, "AttributeNames": ["All"]})
        return (a["Attributes"]["ApproximateNumberOfMessages"],
                a["Attributes"]["ApproximateNumberOfMessagesNotVisible"])

    send(spated, url, "first")
    assert wait_for(lambda: bodies() == ["first"], timeout=30)
    # While it runs the message is in flight (it was counted nowhere).
    assert counts() == ("0", "1")
    # first ends (4 s) and is acknowledged; second starts, then the kill.
    assert wait_for(lambda: counts() == ("0", "0"), timeout=30)
    send(spated, url, "second")
    assert wait_for(lambda: bodies() == ["first", "second"], timeout=30)
    time.sleep(1)
    spated.stop(signal.SIGKILL)
    spated.start()
    assert wait_for(lambda: bodies() == ["first", "second", "second"], timeout=60), (
        [(r["body"], r["attributes"]["ApproximateReceiveCount"]) for e in events(record)
         for r in records_of(e)], spated.log()[-3000:])
    assert wait_for(lambda: counts() == ("0", "0"), timeout=30)
    time.sleep(6)
    assert bodies() == ["first", "second", "second"]


def test_batch_item_failures_that_name_no_message_of_the_batch(spated, tmp_path):
    """batchItemFailures naming one message 10,000 times fails that message
    alone; naming another queue's MessageId, or the seq in decimal, is no
    id of the batch: the whole batch fails (Lambda's rule), each message
    comes back with its receive count one higher."""
    from natscluster import record_dir
    from test_batches import deploy_batcher, events, records_of
    answer = tmp_path / "answer.json"
    record = deploy_batcher(spated, record_dir(tmp_path), name="answers", ANSWER=str(answer))
    c = client(spated)
    other = send(spated, create(spated, "esm-other"), "elsewhere")
    dlq = create(spated, "esm-ans-dead")
    policy = json.dumps({"deadLetterTargetArn": arn_of(spated, dlq), "maxReceiveCount": 2})
    url = create(spated, "esm-answers", VisibilityTimeout=1, RedrivePolicy=policy)
    m = c.create_event_source_mapping(EventSourceArn=arn_of(spated, url), FunctionName="answers",
                                      BatchSize=2, FunctionResponseTypes=["ReportBatchItemFailures"],
                                      Enabled=False)
    x, y = send(spated, url, "x"), send(spated, url, "y")
    answer.write_text(json.dumps({"batchItemFailures": [{"itemIdentifier": y}] * 10000}))
    c.update_event_source_mapping(UUID=m["UUID"], Enabled=True)

    def seen():
        return [(r["body"], r["attributes"]["ApproximateReceiveCount"])
                for e in events(record) for r in records_of(e)]

    dead = wait_for(lambda: ok(spated, "ReceiveMessage", {
        "QueueUrl": dlq, "VisibilityTimeout": 0}).get("Messages"), timeout=60)
    assert [d["Body"] for d in dead] == ["y"] and sorted(seen()) == [("x", "1"), ("y", "1"),
                                                                  ("y", "2")], seen()
    for bad in (other, "3"):  # a seq in decimal (the first z's)
        c.update_event_source_mapping(UUID=m["UUID"], Enabled=False)
        answer.write_text(json.dumps({"batchItemFailures": [{"itemIdentifier": bad}]}))
        before = len(seen())
        send(spated, url, f"z-{bad}")
        c.update_event_source_mapping(UUID=m["UUID"], Enabled=True)
        assert wait_for(lambda: [n for b, n in seen()[before:]] == ["1", "2"], timeout=60), seen()
    assert x and wait_for(lambda: len(ok(spated, "ReceiveMessage", {
        "QueueUrl": dlq, "MaxNumberOfMessages": 10, "VisibilityTimeout": 0}).get(
            "Messages", [])) == 3, timeout=30)


def test_a_graceful_restart_mid_batch_runs_it_once(spated, tmp_path):
    """spated stopped (SIGTERM) while a mapping's batch runs: the run
    finishes and is acknowledged before spated exits, so it does not run
    again after the start; a message sent meanwhile runs after it."""
    from natscluster import record_dir
    from test_batches import deploy_batcher, events, records_of
    record = deploy_batcher(spated, record_dir(tmp_path), name="drainesm", SLEEP_S=3)
    url = create(spated, "esm-drain")
    client(spated).create_event_source_mapping(EventSourceArn=arn_of(spated, url),
                                               FunctionName="drainesm", BatchSize=1)

    def bodies():
        return [r["body"] for e in events(record) for r in records_of(e)]

    send(spated, url, "running")
    assert wait_for(lambda: bodies() == ["running"], timeout=30)
    assert spated.stop() == 0
    spated.start()
    send(spated, url, "after")
    assert wait_for(lambda: "after" in bodies(), timeout=30)
    time.sleep(5)
    assert bodies() == ["running", "after"]


def test_mappings_made_and_deleted_under_sends_and_receives(spated, tmp_path):
    """A mapping created and deleted again and again while one thread sends
    and another receives and deletes: each message runs once or is received
    once, never both, none lost (a batch gathering when its mapping goes
    is given back, one running settles)."""
    import threading
    c = client(spated)
    record = deploy(c, tmp_path)
    url = create(spated, "esm-churn", VisibilityTimeout=600)
    arn = arn_of(spated, url)
    sent, received, stop = [], [], threading.Event()

    def sender():
        for i in range(150):
            sent.append(send(spated, url, f"c{i}"))
            time.sleep(0.02)
        stop.set()

    def receiver():
        while not stop.is_set() or len(set(received) | {r["messageId"] for r in records(record)}) \
                < len(sent):
            # Short polls, spaced: the mapping (which long polls would
            # always come after) gets its share.
            time.sleep(0.15)
            doc = ok(spated, "ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 4})
            for x in doc.get("Messages", []):
                received.append(x["MessageId"])
                ok(spated, "DeleteMessage", {"QueueUrl": url, "ReceiptHandle": x["ReceiptHandle"]})
            if stop.is_set() and not doc.get("Messages"):
                break

    ts = [threading.Thread(target=sender), threading.Thread(target=receiver)]
    for t in ts:
        t.start()
    while not stop.is_set():
        # Windows of 0 and 1 s: batches run and batches gathering alike.
        m = c.create_event_source_mapping(EventSourceArn=arn, FunctionName="rec", BatchSize=3,
                                          MaximumBatchingWindowInSeconds=len(sent) % 2)
        time.sleep(0.5)
        c.delete_event_source_mapping(UUID=m["UUID"])
    for t in ts:
        t.join(120)

    def ran():
        return [r["messageId"] for r in records(record)]

    def drained():
        # What the last mapping left (a batch gathering when it went is
        # given back) is the receives'.
        doc = ok(spated, "ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 10})
        for x in doc.get("Messages", []):
            received.append(x["MessageId"])
            ok(spated, "DeleteMessage", {"QueueUrl": url, "ReceiptHandle": x["ReceiptHandle"]})
        return set(ran()) | set(received) == set(sent)

    assert wait_for(drained, timeout=60), (len(ran()), len(received), len(sent))
    assert len(ran()) == len(set(ran())), "a message ran twice"
    assert len(received) == len(set(received)), "a message was received twice"
    assert not set(ran()) & set(received), "a message went to both"
