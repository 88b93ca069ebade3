"""An adversarial pass over SQS triggers and event source mappings from
INSIDE a function (issue 18): the function behind a queue's trigger calls
the SQS API on its own queue with what its event shows, crashes or hangs
mid-batch, answers batchItemFailures that are hostile, and is handed
messages of the largest size. Each test pins down what SQS and Lambda do:
only this batch's named messages come back, nothing is lost, spated stays
up. The function is a python3 handler (runtime=python3) whose behaviour each
message's body chooses."""

import json
import os
import time

import pytest

from conftest import wait_for, zipped

boto3 = pytest.importorskip("boto3")

# Each record's body chooses what the handler does with it; every record is
# written to $RECORD as one JSON line {"body", "count", "id", "result"}
# first (the result of an SQS call the body asked for, after it).
#   delete        DeleteMessage with the record's receiptHandle
#   visible0      ChangeMessageVisibility 0 with it, then fail it
#   purge         PurgeQueue of its own queue
#   fail*         named in batchItemFailures
#   segv, abort, exit   the process dies
#   hang          sleeps past the function's timeout
#   slow          sleeps $SLOW_S seconds on its first receive
APP = b"""import json, os, signal, time
import boto3, botocore.config, botocore.exceptions
SQS = boto3.client("sqs", endpoint_url=os.environ["SPATE"], region_name="us-east-1",
                   aws_access_key_id=os.environ["KEY"], aws_secret_access_key=os.environ["SECRET"],
                   config=botocore.config.Config(retries={"max_attempts": 1}))

def sqs(action, **kw):
    try:
        getattr(SQS, action)(**kw)
        return "ok"
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]

def note(line):
    with open(os.environ["RECORD"], "a") as f:
        f.write(json.dumps(line) + "\\n")

def handler(event, context):
    failed = []
    for r in event["Records"]:
        body, count = r["body"], r["attributes"]["ApproximateReceiveCount"]
        queue = os.environ["SPATE"] + "/000000000000/" + r["eventSourceARN"].split(":")[-1]
        line = {"body": body[:64], "count": count, "id": r["messageId"], "start": time.time(),
                "len": len(body), "records": len(event["Records"])}
        note(line)
        if body == "delete":
            line["result"] = sqs("delete_message", QueueUrl=queue, ReceiptHandle=r["receiptHandle"])
        elif body == "visible0":
            line["result"] = sqs("change_message_visibility", QueueUrl=queue,
                                 ReceiptHandle=r["receiptHandle"], VisibilityTimeout=0)
            failed.append(r["messageId"])
        elif body == "forged":
            h = r["receiptHandle"]
            line["result"] = sqs("delete_message", QueueUrl=queue,
                                 ReceiptHandle=h[:-1] + ("0" if h[-1] != "0" else "1"))
            failed.append(r["messageId"])
        elif body == "purge":
            line["result"] = sqs("purge_queue", QueueUrl=queue)
        elif body == "deletequeue":
            line["result"] = sqs("delete_queue", QueueUrl=queue)
        elif body.startswith("fail"):
            failed.append(r["messageId"])
        elif body == "dup100k":
            failed += [r["messageId"]] * 100000
        elif body == "bigid":
            failed.append("x" * (5 << 20))
        elif body == "nested":
            failed.append({"itemIdentifier": [r["messageId"]], "n": None})
        elif body == "nullid":
            failed.append(None)
        elif body == "overlimit":
            failed += [r["messageId"] + " " * 100] * 60000
        elif body == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        elif body == "abort":
            os.abort()
        elif body == "exit":
            os._exit(3)
        elif body == "flood":
            chunk = "y" * (1 << 20) + "\\n"
            for _ in range(int(os.environ.get("FLOOD_MB", "0"))):
                os.write(1, chunk.encode())
                os.write(2, chunk.encode())
        elif body == "loop":
            line["result"] = sqs("send_message", QueueUrl=queue, MessageBody="loop")
            line["trace"] = os.environ.get("_X_AMZN_TRACE_ID", "")
        elif body == "unmap":
            import urllib.request
            q = r["eventSourceARN"].split(":")[-1]
            req = urllib.request.Request(
                os.environ["SPATE"] + "/v1/triggers/%s/%s" % (q, context.function_name),
                method="DELETE", headers={"Authorization": "Bearer " + os.environ["SECRET"]})
            with urllib.request.urlopen(req) as resp:
                line["result"] = resp.status
        elif body == "hang":
            time.sleep(3600)
        elif body == "slow" and count == "1":
            time.sleep(float(os.environ.get("SLOW_S", "0")))
        line["end"] = time.time()
        note(dict(line, done=True))
    return {"batchItemFailures": [i if isinstance(i, dict) else {"itemIdentifier": i}
                                  for i in failed]}
"""

ADMIN, ADMIN_KEY = "admin-secret-0123456789abcdef", "AKIDSPATEADMIN0001"


@pytest.fixture
def secured(make_spated, tmp_path):
    """spated with a token file: function code may use the API only with a
    token (docs/security.md), so the function signs with the admin key."""
    tokens = tmp_path / "tokens"
    tokens.write_text(f"admin {ADMIN} {ADMIN_KEY}\n")
    return make_spated("--token-file", str(tokens))


def call(d, method, path, body=None):
    status, _, data = d.request(method, path, body, {"Authorization": f"Bearer {ADMIN}"})
    return status, json.loads(data or b"{}")


def client(d):
    return boto3.client("sqs", endpoint_url=d.url, region_name="us-east-1",
                        aws_access_key_id=ADMIN_KEY, aws_secret_access_key=ADMIN)


def deploy(d, tmp_path, name="hostile", **params):
    # boto3's import takes ~100 MB, more under ASan: the default 128 MB
    # killed the runtime while importing the module (bad_artifact).
    params.setdefault("memory", 512)
    record = tmp_path / f"{name}.jsonl"
    env = {"RECORD": record, "SPATE": d.url, "KEY": ADMIN_KEY, "SECRET": ADMIN,
           **params.pop("env", {})}
    query = "&".join(["runtime=python3", "handler=app.handler"] +
                     [f"env={k}%3D{v}" for k, v in env.items()] +
                     [f"{k}={v}" for k, v in params.items()])
    status, doc = call(d, "PUT", f"/v1/functions/{name}?{query}", zipped({"app.py": APP}))
    assert status == 201, doc
    return record


def lines(record):
    if not os.path.exists(record):
        return []
    with open(record) as f:
        return [json.loads(x) for x in f if x.endswith("\n")]


def started(record, body=None):
    return [x for x in lines(record) if "done" not in x and (body is None or x["body"] == body)]


def finished(record, body=None):
    return [x for x in lines(record) if "done" in x and (body is None or x["body"] == body)]


def trigger_on(d, queue, function, **params):
    query = "&".join(f"{k}={v}" for k, v in dict(event_format="sqs", report_batch_item_failures="true",
                                                  **params).items())
    status, doc = call(d, "PUT", f"/v1/triggers/{queue}/{function}?{query}")
    assert status == 201, doc


def unpause(d, queue, function):
    """Lets a trigger added paused run what was sent meanwhile (one batch)."""
    status, doc = call(d, "PUT", f"/v1/triggers/{queue}/{function}?update=true&paused=false")
    assert status == 200, doc


def counts(c, url):
    a = c.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])


def send(c, url, *bodies):
    c.send_message_batch(QueueUrl=url, Entries=[
        {"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies)])


def test_the_events_receipt_handle_deletes_and_changes_visibility(secured, tmp_path):
    """A Lambda function may settle its own messages with the receipt handle
    its event shows (the pattern from before ReportBatchItemFailures: delete
    what succeeded, then fail the invocation): DeleteMessage and
    ChangeMessageVisibility accept it, a forged one is refused. Before the
    fix the handle was TOPIC:SEQ:ATTEMPT, which every DeleteMessage refused
    (ReceiptHandleIsInvalid): a function that deleted its messages failed on
    every one, and its batch came back until its dead-letter queue."""
    d, c = secured, client(secured)
    record = deploy(d, tmp_path)
    url = c.create_queue(QueueName="own", Attributes={"VisibilityTimeout": "600"})["QueueUrl"]
    trigger_on(d, "own", "hostile", batch_size=10, batch_window=1000)
    send(c, url, "delete", "visible0", "forged")
    assert wait_for(lambda: len(finished(record)) >= 3, timeout=60), lines(record)
    by = {x["body"]: x for x in finished(record)}
    assert by["delete"]["result"] == "ok", by
    assert by["visible0"]["result"] == "ok", by
    assert by["forged"]["result"] == "ReceiptHandleIsInvalid", by
    # visible0 comes back at once (its visibility set to 0), not after
    # 600 s; forged after the queue's 600 s; delete never.
    assert wait_for(lambda: len(started(record, "visible0")) >= 2, timeout=30), lines(record)
    assert len(started(record, "delete")) == 1 and len(started(record, "forged")) == 1
    assert counts(c, url)[1] >= 1  # forged, invisible


def queue_with_dlq(c, name, visibility=1, max_receives=2):
    dlq = c.create_queue(QueueName=name + "-dead")["QueueUrl"]
    arn = c.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = c.create_queue(QueueName=name, Attributes={
        "VisibilityTimeout": str(visibility),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn,
                                     "maxReceiveCount": max_receives})})["QueueUrl"]
    return url, dlq


def dead(c, dlq, n):
    """The bodies of the n messages of the dead-letter queue, once they are there."""
    got = []

    def more():
        for m in c.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10,
                                   VisibilityTimeout=600).get("Messages", []):
            got.append(m["Body"])
        return len(got) >= n
    assert wait_for(more, timeout=60), got
    return sorted(got)


@pytest.mark.parametrize("mode,whole", [("dup100k", False), ("bigid", True), ("nested", True),
                                        ("nullid", True), ("overlimit", True)])
def test_hostile_batch_item_failures(secured, tmp_path, mode, whole):
    """100,000 entries naming one message fail that message alone; a 5 MiB
    itemIdentifier, a nested or null one, an answer over the 6 MiB limit
    fail the whole batch (Lambda's rule), with a short logged reason; each
    message ends in the dead-letter queue after its second receive, spated
    stays up."""
    d, c = secured, client(secured)
    record = deploy(d, tmp_path, timeout=20000)
    url, dlq = queue_with_dlq(c, "answers")
    trigger_on(d, "answers", "hostile", batch_size=10, batch_window=1000, paused="true")
    send(c, url, mode, "plain")
    unpause(d, "answers", "hostile")
    assert dead(c, dlq, 2 if whole else 1) == sorted([mode, "plain"] if whole else [mode])
    assert len(started(record, mode)) == 2
    assert len(started(record, "plain")) == (2 if whole else 1), lines(record)
    assert wait_for(lambda: counts(c, url) == (0, 0), timeout=30)
    log = d.log()
    assert max(len(x) for x in log.splitlines()) < 8192
    if whole:
        assert "bad batchItemFailures answer" in log or "too large" in log or "limit" in log, log[-3000:]


@pytest.mark.parametrize("mode", ["segv", "abort", "exit", "hang"])
def test_a_function_that_dies_or_hangs_mid_batch(secured, tmp_path, mode):
    """A crash (SIGSEGV, abort, exit) or a hang past the function's timeout
    mid-batch fails the whole batch: each message comes back after the
    visibility timeout with its receive count one higher, and goes to the
    dead-letter queue after maxReceiveCount; nothing is lost, spated stays up
    and runs the next batch."""
    d, c = secured, client(secured)
    record = deploy(d, tmp_path, timeout=2000)
    url, dlq = queue_with_dlq(c, "dies")
    trigger_on(d, "dies", "hostile", batch_size=10, batch_window=1000, paused="true")
    send(c, url, "before", mode)
    unpause(d, "dies", "hostile")
    assert dead(c, dlq, 2) == sorted(["before", mode])
    assert [x["count"] for x in started(record, "before")] == ["1", "2"], lines(record)
    # The function runs again afterwards.
    send(c, url, "after")
    assert wait_for(lambda: finished(record, "after"), timeout=60), lines(record)
    assert wait_for(lambda: counts(c, url) == (0, 0), timeout=30)


def test_a_timeout_longer_than_the_visibility_timeout_runs_once(secured, tmp_path):
    """Lambda refuses a mapping whose queue's visibility timeout is shorter
    than the function's timeout, because SQS would show the message again
    while the function still runs. spate holds a trigger's lease until the
    invocation ends (a cluster touches it meanwhile), so the function runs
    its message once, however long past the visibility timeout it takes."""
    d, c = secured, client(secured)
    record = deploy(d, tmp_path, timeout=10000, env={"SLOW_S": 4})
    url, dlq = queue_with_dlq(c, "slow", visibility=1)
    trigger_on(d, "slow", "hostile", batch_size=1)
    send(c, url, "slow")
    assert wait_for(lambda: finished(record, "slow"), timeout=60), lines(record)
    assert wait_for(lambda: counts(c, url) == (0, 0), timeout=30)
    time.sleep(2)
    assert len(started(record, "slow")) == 1, lines(record)
    assert c.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages") is None


@pytest.mark.parametrize("mode", ["purge", "deletequeue"])
def test_a_function_purges_or_deletes_its_own_queue_mid_batch(secured, tmp_path, mode):
    """PurgeQueue or DeleteQueue from inside the batch: the messages the
    trigger holds go with the queue (SQS purges in-flight messages too), the
    batch's end settles nothing twice, spated stays up; a queue made again
    under the name feeds the trigger again."""
    d, c = secured, client(secured)
    record = deploy(d, tmp_path)
    url = c.create_queue(QueueName="doomed", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    trigger_on(d, "doomed", "hostile", batch_size=10, batch_window=1000, paused="true")
    send(c, url, "fail-1", mode, "fail-2", "ok")
    unpause(d, "doomed", "hostile")
    assert wait_for(lambda: finished(record, mode), timeout=60), lines(record)
    assert finished(record, mode)[0]["result"] == "ok", lines(record)
    time.sleep(3)  # past the visibility timeout: nothing comes back
    assert len(started(record, "fail-1")) == 1, lines(record)
    if mode == "deletequeue":
        url = c.create_queue(QueueName="doomed")["QueueUrl"]
    send(c, url, "again")
    assert wait_for(lambda: finished(record, "again"), timeout=60), lines(record)
    assert wait_for(lambda: counts(c, url) == (0, 0), timeout=30)
    assert len(started(record, "fail-1")) == 1, lines(record)
    assert d.proc.poll() is None


def test_a_native_function_behind_a_batch_mapping(secured, tmp_path, functions):
    """A native function takes one message per invocation: a mapping with a
    BatchSize over 1 (Lambda's default is 10) is refused for one, and so is
    the deploy that would make a function behind such a mapping native
    (before, it was taken, and each batch's SQS event went to spate_request
    as one message). With BatchSize 1 it runs each message."""
    d, c = secured, client(secured)
    deploy(d, tmp_path, name="conv")
    url = c.create_queue(QueueName="nat")["QueueUrl"]
    arn = c.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    lam = boto3.client("lambda", endpoint_url=d.url, region_name="us-east-1",
                       aws_access_key_id=ADMIN_KEY, aws_secret_access_key=ADMIN)
    m = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName="conv")
    assert m["BatchSize"] == 10
    native = functions["hello"].read_bytes()
    status, doc = call(d, "PUT", "/v1/functions/conv?runtime=native", native)
    assert status == 400 and "batch_size 10" in doc["error"] and "'nat'" in doc["error"], doc
    lam.update_event_source_mapping(UUID=m["UUID"], BatchSize=1)
    status, doc = call(d, "PUT", "/v1/functions/conv?runtime=native", native)
    assert status == 200 and doc["config"]["runtime"] == "native", doc
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.update_event_source_mapping(UUID=m["UUID"], BatchSize=2)
    send(c, url, "a", "b", "c")
    assert wait_for(lambda: counts(c, url) == (0, 0), timeout=60)
    doc = call(d, "GET", "/v1/triggers/nat/conv")[1]
    assert doc["acknowledged"] == 3, doc


def test_largest_messages_in_a_batch_of_ten(secured, tmp_path):
    """Ten messages of 256 KiB whose JSON escaping grows them to 1.5 MiB
    each (newlines, written \\u000a) would make a 15 MiB event, over a
    function's 6 MiB input: the trigger splits them into batches under the
    limit, each message runs once, nothing is lost."""
    d, c = secured, client(secured)
    record = deploy(d, tmp_path, timeout=20000)
    url = c.create_queue(QueueName="big", Attributes={"VisibilityTimeout": "600"})["QueueUrl"]
    trigger_on(d, "big", "hostile", batch_size=10, batch_window=2000, paused="true")
    bodies = [(f"{i}" + ("\n" if i % 2 else '"') * (256 * 1024))[:256 * 1024] for i in range(10)]
    for b in bodies:
        c.send_message(QueueUrl=url, MessageBody=b)
    unpause(d, "big", "hostile")
    assert wait_for(lambda: len(finished(record)) == 10, timeout=120), len(lines(record))
    assert wait_for(lambda: counts(c, url) == (0, 0), timeout=30)
    got = started(record)
    assert sorted(x["body"][0] for x in got) == [str(i) for i in range(10)], got
    assert all(x["len"] == 256 * 1024 and x["count"] == "1" for x in got)
    assert max(x["records"] for x in got) < 10  # split by the 6 MiB limit


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    return 0


def test_a_function_that_floods_its_output_mid_batch(secured, tmp_path):
    """A function writing 64 MiB to each of stdout and stderr mid-batch is
    made to wait (its log's rate limit, docs/functions.md) until its timeout
    ends it: the batch fails as any timeout does (to the dead-letter queue
    after maxReceiveCount), spated's memory does not grow with the flood,
    and the function runs the next batch."""
    d, c = secured, client(secured)
    record = deploy(d, tmp_path, timeout=3000, env={"FLOOD_MB": 64})
    url, dlq = queue_with_dlq(c, "loud", max_receives=1)
    trigger_on(d, "loud", "hostile", batch_size=10, batch_window=1000, paused="true")
    before = peak_rss_mb(d.proc.pid)
    send(c, url, "flood", "quiet")
    unpause(d, "loud", "hostile")
    assert dead(c, dlq, 2) == ["flood", "quiet"]
    assert not finished(record, "flood"), lines(record)
    assert peak_rss_mb(d.proc.pid) < before + 100, (before, peak_rss_mb(d.proc.pid))
    send(c, url, "after")
    assert wait_for(lambda: finished(record, "after"), timeout=60), lines(record)
    assert wait_for(lambda: counts(c, url) == (0, 0), timeout=30)


def test_a_function_sending_to_its_own_queue_is_stopped(secured, tmp_path):
    """A function that sends a message to the queue that triggers it, on
    every invocation, loops without end. As Lambda's recursive loop
    detection: the invocations of one chain carry its length in their trace
    header (Lineage=HASH:N, which boto3 sends back as X-Amzn-Trace-Id), the
    message a 16th invocation sends is not run but fails (to the dead-letter
    queue), and the loop ends. The message keeps no visible attribute for it."""
    d, c = secured, client(secured)
    # Exec instances carry the trace: python3 here as one (the zygote's
    # native ABI has no trace header yet).
    record = deploy(d, tmp_path, timeout=30000, env={"SPATE_PYTHON_ZYGOTE": 0})
    url, dlq = queue_with_dlq(c, "echo", max_receives=1)
    trigger_on(d, "echo", "hostile", batch_size=1)
    c.send_message(QueueUrl=url, MessageBody="loop")
    assert wait_for(lambda: counts(c, dlq) == (1, 0), timeout=60), counts(c, dlq)
    assert wait_for(lambda: len(finished(record, "loop")) == 16, timeout=60), len(lines(record))
    time.sleep(2)
    runs = finished(record, "loop")
    assert len(runs) == 16 and all(r["result"] == "ok" for r in runs), runs
    assert runs[0]["trace"].endswith(":1") and runs[15]["trace"].endswith(":16"), runs
    assert "recursive loop stopped" in d.log()
    # What the dead-letter queue keeps shows no attribute of spate's own.
    m = c.receive_message(QueueUrl=dlq, MessageAttributeNames=["All"],
                          WaitTimeSeconds=2)["Messages"][0]
    assert m["Body"] == "loop" and counts(c, url) == (0, 0)
    assert "MessageAttributes" not in m and "MD5OfMessageAttributes" not in m, m


def test_a_function_deletes_its_own_mapping_mid_batch(secured, tmp_path):
    """The function removes the trigger that runs it, mid-batch: the batch
    still settles (its failed message visible again for ReceiveMessage, the
    others deleted), nothing runs after, spated stays up and stops cleanly."""
    d, c = secured, client(secured)
    record = deploy(d, tmp_path)
    url = c.create_queue(QueueName="unmapped", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    trigger_on(d, "unmapped", "hostile", batch_size=10, batch_window=1000, paused="true")
    send(c, url, "unmap", "fail-1", "ok")
    unpause(d, "unmapped", "hostile")
    assert wait_for(lambda: len(finished(record)) == 3, timeout=60), lines(record)
    assert finished(record, "unmap")[0]["result"] == 204
    got = wait_for(lambda: c.receive_message(QueueUrl=url, WaitTimeSeconds=2).get("Messages"),
                   timeout=30)
    assert [m["Body"] for m in got] == ["fail-1"], got
    send(c, url, "later")
    time.sleep(2)
    assert len(started(record)) == 3 and d.proc.poll() is None
    assert call(d, "GET", "/v1/triggers/unmapped/hostile")[0] == 404


def test_a_stopped_loop_on_a_queue_without_visibility_timeout(secured, tmp_path):
    """The same loop on a queue whose visibility timeout is 0 and that has
    no dead-letter queue: the stopped message is back at once, every time;
    spated does not spin on it (it tries again at its next tick) and keeps
    answering, and says so once, not per try."""
    d, c = secured, client(secured)
    record = deploy(d, tmp_path, timeout=30000, env={"SPATE_PYTHON_ZYGOTE": 0})
    url = c.create_queue(QueueName="spin", Attributes={"VisibilityTimeout": "0"})["QueueUrl"]
    trigger_on(d, "spin", "hostile", batch_size=1)
    c.send_message(QueueUrl=url, MessageBody="loop")
    assert wait_for(lambda: len(finished(record, "loop")) == 16, timeout=60), len(lines(record))
    for _ in range(20):
        counts(c, url)  # answered at once each time (the test's timeout says otherwise)
        time.sleep(0.1)
    assert len(finished(record, "loop")) == 16
    assert d.log().count("recursive loop stopped") == 1
    c.purge_queue(QueueUrl=url)
    assert wait_for(lambda: counts(c, url) == (0, 0), timeout=30)


NODE_APP = b"""const fs = require('fs');
exports.handler = async (event) => {
  for (const r of event.Records) {
    fs.appendFileSync(process.env.RECORD, JSON.stringify({
      body: r.body, count: r.attributes.ApproximateReceiveCount}) + '\\n');
    if (r.body === 'exit') process.exit(3);
    if (r.body === 'abort') process.abort();
    if (r.body === 'throw') throw new Error('thrown on purpose');
    // A timer: a promise alone that never settles empties the event loop,
    // which ends the invocation with null, as Lambda's runtime does.
    if (r.body === 'hang') await new Promise((ok) => setTimeout(ok, 3600e3));
  }
  return {batchItemFailures: []};
};
"""


@pytest.mark.skipif(not os.access("/usr/bin/node", os.X_OK), reason="no /usr/bin/node")
@pytest.mark.parametrize("mode", ["exit", "abort", "throw", "hang"])
def test_a_nodejs_function_that_dies_or_hangs_mid_batch(secured, tmp_path, mode):
    """The same with a Node.js handler (runtime nodejs, an exec instance):
    the whole batch comes back and goes to the dead-letter queue after its
    second receive; the function runs the next batch. (hang: the instance
    killed at its timeout had its pids.max set to 0 first; its slot, empty by
    its release, was kept with that limit, and every next instance failed
    with 'bootstrap: Cannot fork'.)"""
    d, c = secured, client(secured)
    record = tmp_path / "node.jsonl"
    status, doc = call(d, "PUT", f"/v1/functions/nd?runtime=nodejs&handler=index.handler"
                       f"&timeout=2000&env=RECORD%3D{record}", zipped({"index.js": NODE_APP}))
    assert status == 201, doc
    url, dlq = queue_with_dlq(c, "nodedies")
    trigger_on(d, "nodedies", "nd", batch_size=10, batch_window=1000, paused="true")
    send(c, url, "before", mode)
    unpause(d, "nodedies", "nd")
    assert dead(c, dlq, 2) == sorted(["before", mode])
    assert [x["count"] for x in lines(record) if x["body"] == "before"] == ["1", "2"]
    send(c, url, "after")
    assert wait_for(lambda: any(x["body"] == "after" for x in lines(record)), timeout=60)
    assert wait_for(lambda: counts(c, url) == (0, 0), timeout=30)
