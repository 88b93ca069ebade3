"""Lambda's event source mappings of SQS queues (issue 18): Create, Get,
List, Update and DeleteEventSourceMapping on spated's port, a mapping being
a trigger on the queue in the SQS event shape that shares the queue's
receiver with ReceiveMessage. Driven by the aws v1 CLI on PATH, Debian's
aws v2, boto3 and @aws-sdk/client-lambda; the function is a python3
handler (Lambda's CreateFunction) that records each event to a file."""

import base64
import json
import os
import subprocess
import time

import pytest

from conftest import wait_for, zipped
from test_lambda_mgmt import AWS_ENV, aws_cli, client, error_of, request, run
from test_sqs import attributes, create, ok

# Records each event as one JSON line to $RECORD, then names in
# batchItemFailures the messages whose body starts with "fail".
APP = """import json, os
def handler(event, context):
    with open(os.environ["RECORD"], "a") as f:
        f.write(json.dumps(event) + "\\n")
    return {"batchItemFailures": [{"itemIdentifier": r["messageId"]}
                                  for r in event["Records"] if r["body"].startswith("fail")]}
"""

ESM = "/2015-03-31/event-source-mappings"


def deploy(c, tmp_path, name="rec"):
    record = tmp_path / f"{name}.jsonl"
    c.create_function(FunctionName=name, Runtime="python3.11", Handler="app.handler", Role="r",
                      Code={"ZipFile": zipped({"app.py": APP})},
                      Environment={"Variables": {"RECORD": str(record)}})
    return record


def records(record):
    if not os.path.exists(record):
        return []
    with open(record) as f:
        return [r for line in f if line.endswith("\n") for r in json.loads(line)["Records"]]


def arn_of(d, url):
    return attributes(d, url)["QueueArn"]


def send(d, url, body):
    return ok(d, "SendMessage", {"QueueUrl": url, "MessageBody": body})["MessageId"]


def lam(d, aws, *args, ok_=True):
    r = run([aws, "lambda", *args, "--endpoint-url", d.url, "--output", "json"])
    if ok_:
        assert r.returncode == 0, (args, r.stderr.decode())
        return json.loads(r.stdout) if r.stdout.strip() else None
    assert r.returncode != 0, (args, r.stdout)
    return r.stderr.decode()


def test_mapping_runs_sqs_events_with_partial_failures(spated, tmp_path):
    aws, _ = aws_cli("v1")
    c = client(spated)
    record = deploy(c, tmp_path)
    dlq = create(spated, "esm-dead")
    policy = json.dumps({"deadLetterTargetArn": arn_of(spated, dlq), "maxReceiveCount": 2})
    url = create(spated, "esm-jobs", VisibilityTimeout=1, RedrivePolicy=policy)
    arn = arn_of(spated, url)
    m = lam(spated, aws, "create-event-source-mapping", "--event-source-arn", arn,
            "--function-name", "rec", "--batch-size", "5",
            "--function-response-types", "ReportBatchItemFailures")
    assert m["State"] == "Enabled" and m["BatchSize"] == 5, m
    assert m["EventSourceArn"] == arn and m["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert m["FunctionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:rec"
    assert len(m["UUID"]) == 36 and m["UUID"][14] == "4"
    # The raw answer: 202, LastModified a number of epoch seconds.
    st, _, raw = request(spated, "GET", f"{ESM}/{m['UUID']}")
    assert st == 200 and isinstance(raw["LastModified"], (int, float)), raw
    assert abs(raw["LastModified"] - time.time()) < 3600, raw

    ids = {send(spated, url, b): b for b in ("ok-1", "ok-2", "fail-1", "ok-3")}
    # fail-1 fails on both of its receives, then is in the dead-letter queue;
    # the others run once and are deleted.
    dead = wait_for(lambda: ok(spated, "ReceiveMessage", {"QueueUrl": dlq}).get("Messages"),
                    timeout=90)
    assert [x["Body"] for x in dead] == ["fail-1"]
    got = records(record)
    for r in got:
        # The event names each message as SendMessage answered.
        assert ids[r["messageId"]] == r["body"], r
        assert r["eventSource"] == "aws:sqs" and r["eventSourceARN"] == arn, r
        a = r["attributes"]
        assert a["SenderId"] == "000000000000" and int(a["SentTimestamp"]) > 0, a
        assert int(a["ApproximateFirstReceiveTimestamp"]) >= int(a["SentTimestamp"]), a
    assert sorted(r["body"] for r in got if r["body"].startswith("ok")) == ["ok-1", "ok-2", "ok-3"]
    assert [r["attributes"]["ApproximateReceiveCount"] for r in got if r["body"] == "fail-1"] \
        == ["1", "2"]
    assert wait_for(lambda: attributes(spated, url)["ApproximateNumberOfMessages"] == "0" and
                    attributes(spated, url)["ApproximateNumberOfMessagesNotVisible"] == "0",
                    timeout=30)

    # Disabled: nothing runs, the message stays for ReceiveMessage.
    m = lam(spated, aws, "update-event-source-mapping", "--uuid", m["UUID"], "--no-enabled")
    assert m["State"] == "Disabled", m
    assert spated.json("GET", "/v1/triggers/esm-jobs/rec")[1]["paused"] is True
    held = send(spated, url, "held")
    time.sleep(2)
    assert [r for r in records(record) if r["body"] == "held"] == []
    doc = ok(spated, "ReceiveMessage", {"QueueUrl": url, "AttributeNames": ["All"],
                                        "VisibilityTimeout": 600, "WaitTimeSeconds": 5})
    [msg] = doc["Messages"]
    assert msg["MessageId"] == held
    ok(spated, "ChangeMessageVisibility", {"QueueUrl": url, "ReceiptHandle": msg["ReceiptHandle"],
                                           "VisibilityTimeout": 0})
    # Enabled again: the function gets it, as ReceiveMessage showed it.
    m = lam(spated, aws, "update-event-source-mapping", "--uuid", m["UUID"], "--enabled")
    assert m["State"] == "Enabled", m
    [r] = wait_for(lambda: [r for r in records(record) if r["body"] == "held"], timeout=30)
    assert r["messageId"] == msg["MessageId"]
    for k in ("SentTimestamp", "SenderId"):
        assert r["attributes"][k] == msg["Attributes"][k], (r, msg)
    assert r["attributes"]["ApproximateReceiveCount"] == "2"
    assert r["attributes"]["ApproximateFirstReceiveTimestamp"] == msg["Attributes"]["SentTimestamp"]

    # Deleted: no more invocations; messages wait for ReceiveMessage.
    gone = lam(spated, aws, "delete-event-source-mapping", "--uuid", m["UUID"])
    assert gone["State"] == "Deleting" and gone["UUID"] == m["UUID"]
    assert spated.json("GET", "/v1/triggers/esm-jobs/rec")[0] == 404
    after = send(spated, url, "after")
    doc = ok(spated, "ReceiveMessage", {"QueueUrl": url, "WaitTimeSeconds": 5})
    assert [x["MessageId"] for x in doc["Messages"]] == [after]
    assert [r for r in records(record) if r["body"] == "after"] == []
    err = lam(spated, aws, "get-event-source-mapping", "--uuid", m["UUID"], ok_=False)
    assert "ResourceNotFoundException" in err


def test_fifo_mapping_shows_group_and_sequence(spated, tmp_path):
    c = client(spated)
    record = deploy(c, tmp_path)
    url = create(spated, "esm.fifo", FifoQueue="true", ContentBasedDeduplication="true")
    arn = arn_of(spated, url)
    st, code, _ = error_of(lambda: c.create_event_source_mapping(
        EventSourceArn=arn, FunctionName="rec", BatchSize=11))
    assert (st, code) == (400, "InvalidParameterValueException")
    c.create_event_source_mapping(EventSourceArn=arn, FunctionName="rec", BatchSize=10)
    sent = ok(spated, "SendMessage", {"QueueUrl": url, "MessageBody": "g1",
                                      "MessageGroupId": "grp"})
    [r] = wait_for(lambda: records(record), timeout=30)
    assert r["messageId"] == sent["MessageId"]
    assert r["attributes"]["MessageGroupId"] == "grp"
    assert r["attributes"]["SequenceNumber"] == sent["SequenceNumber"]


def test_get_list_update_delete_and_refusals(spated, tmp_path):
    c = client(spated)
    for name in ("f1", "f2"):
        deploy(c, tmp_path, name)
    qa, qb = (arn_of(spated, create(spated, n)) for n in ("esm-a", "esm-b"))
    made = [c.create_event_source_mapping(EventSourceArn=q, FunctionName=f)
            for q, f in ((qa, "f1"), (qa, "f2"), (qb, "f1"))]
    assert all(m["State"] == "Enabled" and m["BatchSize"] == 10 for m in made)
    uuids = sorted(m["UUID"] for m in made)
    assert len(set(uuids)) == 3

    # Paged by Marker, in UUID order; filtered by queue and function.
    pages, marker = [], None
    while True:
        kw = {"Marker": marker} if marker else {}
        page = c.list_event_source_mappings(MaxItems=1, **kw)
        pages.append([m["UUID"] for m in page["EventSourceMappings"]])
        marker = page.get("NextMarker")
        if not marker:
            break
    assert pages == [[u] for u in uuids]
    listed = lambda **kw: sorted((m["EventSourceArn"], m["FunctionArn"].split(":")[-1])  # noqa
                                 for m in c.list_event_source_mappings(**kw)["EventSourceMappings"])
    assert listed(EventSourceArn=qa) == [(qa, "f1"), (qa, "f2")]
    assert listed(FunctionName="f1") == [(qa, "f1"), (qb, "f1")]
    assert listed(EventSourceArn=qb, FunctionName="f1") == [(qb, "f1")]
    # A trigger of spate's own (raw events) on a plain topic is no mapping.
    assert spated.json("PUT", "/v1/triggers/plain/f1?event_format=raw")[0] == 201
    assert len(c.list_event_source_mappings()["EventSourceMappings"]) == 3

    u = made[0]["UUID"]
    got = c.get_event_source_mapping(UUID=u)
    assert got["UUID"] == u and got["EventSourceArn"] == qa
    # Update: what the body names; over 10 needs a batching window.
    st, code, _ = error_of(lambda: c.update_event_source_mapping(UUID=u, BatchSize=20))
    assert (st, code) == (400, "InvalidParameterValueException")
    up = c.update_event_source_mapping(UUID=u, BatchSize=20, MaximumBatchingWindowInSeconds=2,
                                       FunctionResponseTypes=["ReportBatchItemFailures"])
    assert (up["BatchSize"], up["MaximumBatchingWindowInSeconds"]) == (20, 2)
    assert up["FunctionResponseTypes"] == ["ReportBatchItemFailures"] and up["UUID"] == u
    trig = spated.json("GET", "/v1/triggers/esm-a/f1")[1]
    assert (trig["batch_size"], trig["batch_window_ms"], trig["report_batch_item_failures"]) == \
        (20, 2000, True)
    # ScalingConfig on the wire (older SDKs do not know it).
    st, _, doc = request(spated, "PUT", f"{ESM}/{u}", {"ScalingConfig": {"MaximumConcurrency": 5}})
    assert st == 202 and doc["ScalingConfig"] == {"MaximumConcurrency": 5}, doc
    assert spated.json("GET", "/v1/triggers/esm-a/f1")[1]["max_concurrency"] == 5
    st, _, doc = request(spated, "PUT", f"{ESM}/{u}", {"ScalingConfig": {"MaximumConcurrency": 1}})
    assert st == 400, doc
    # A version or alias of the same function; another function is refused.
    up = c.update_event_source_mapping(UUID=u, FunctionName="f1:1")
    assert up["FunctionArn"].endswith(":function:f1:1") and up["UUID"] == u
    st, code, _ = error_of(lambda: c.update_event_source_mapping(UUID=u, FunctionName="f2"))
    assert (st, code) == (400, "InvalidParameterValueException")

    # Refusals.
    st, code, _ = error_of(lambda: c.create_event_source_mapping(EventSourceArn=qa,
                                                                 FunctionName="f1"))
    assert (st, code) == (409, "ResourceConflictException")
    for bad in ("arn:aws:sqs:us-east-1:000000000000:nope", "arn:aws:kinesis:us-east-1:0:stream/x",
                "arn:aws:sqs:us-east-1:000000000000:plain"):
        st, code, _ = error_of(lambda: c.create_event_source_mapping(EventSourceArn=bad,
                                                                     FunctionName="f1"))
        assert (st, code) == (400, "InvalidParameterValueException"), bad
    st, code, _ = error_of(lambda: c.create_event_source_mapping(EventSourceArn=qb,
                                                                 FunctionName="nobody"))
    assert (st, code) == (404, "ResourceNotFoundException")
    st, code, _ = error_of(lambda: c.create_event_source_mapping(
        EventSourceArn=qb, FunctionName="f2", FilterCriteria={"Filters": [{"Pattern": "{}"}]}))
    assert (st, code) == (400, "InvalidParameterValueException")
    unknown = "00000000-0000-4000-8000-000000000000"
    for call in (lambda: c.get_event_source_mapping(UUID=unknown),
                 lambda: c.update_event_source_mapping(UUID=unknown, BatchSize=1),
                 lambda: c.delete_event_source_mapping(UUID=unknown)):
        st, code, _ = error_of(call)
        assert (st, code) == (404, "ResourceNotFoundException")

    # Delete: 202 Deleting, then gone from Get and List; the others stay.
    d = c.delete_event_source_mapping(UUID=u)
    assert d["State"] == "Deleting"
    st, code, _ = error_of(lambda: c.get_event_source_mapping(UUID=u))
    assert (st, code) == (404, "ResourceNotFoundException")
    assert len(c.list_event_source_mappings()["EventSourceMappings"]) == 2


def test_disabled_survives_a_restart(spated, tmp_path):
    c = client(spated)
    record = deploy(c, tmp_path)
    url = create(spated, "esm-keep")
    m = c.create_event_source_mapping(EventSourceArn=arn_of(spated, url), FunctionName="rec",
                                      Enabled=False)
    assert m["State"] == "Disabled"
    before = c.get_event_source_mapping(UUID=m["UUID"])["LastModified"]
    assert spated.stop() == 0
    spated.start()
    c = client(spated)  # another port
    got = c.get_event_source_mapping(UUID=m["UUID"])
    assert got["State"] == "Disabled" and got["LastModified"] == before
    send(spated, url, "stay")
    time.sleep(2)
    assert records(record) == []
    assert attributes(spated, url)["ApproximateNumberOfMessages"] == "1"
    # spate's CLI shows and lifts the pause: the mapping is enabled, the message runs.
    r = spated.cli("trigger", "ls")
    assert r.returncode == 0 and b", paused" in r.stdout, r
    r = spated.cli("trigger", "set", "esm-keep", "rec", "--no-paused")
    assert r.returncode == 0, r.stderr
    assert c.get_event_source_mapping(UUID=m["UUID"])["State"] == "Enabled"
    assert wait_for(lambda: [x["body"] for x in records(record)] == ["stay"], timeout=30)


def test_cli_v2(spated, tmp_path):
    aws, _ = aws_cli("v2")
    deploy(client(spated), tmp_path)
    url = create(spated, "esm-v2")
    arn = arn_of(spated, url)
    m = lam(spated, aws, "create-event-source-mapping", "--event-source-arn", arn,
            "--function-name", "rec", "--batch-size", "3")
    assert m["State"] == "Enabled" and m["BatchSize"] == 3
    listed = lam(spated, aws, "list-event-source-mappings", "--event-source-arn", arn)
    assert [x["UUID"] for x in listed["EventSourceMappings"]] == [m["UUID"]]
    assert lam(spated, aws, "get-event-source-mapping", "--uuid", m["UUID"])["BatchSize"] == 3
    assert lam(spated, aws, "delete-event-source-mapping", "--uuid", m["UUID"])["State"] == \
        "Deleting"


def test_signatures_and_scopes(make_spated, tmp_path):
    admin_s, admin_k = "admin-secret-0123456789abcdef", "AKIDSPATEADMIN0001"
    inv_s, inv_k = "invoke-secret-0123456789abcdef", "AKIDSPATEINVOKE001"
    tokens = tmp_path / "tokens"
    tokens.write_text(f"admin {admin_s} {admin_k}\ninvoke {inv_s} {inv_k}\n")
    d = make_spated("--token-file", str(tokens))
    admin = client(d, admin_k, admin_s)
    deploy(admin, tmp_path)
    # The queue, through SQS signed by the admin key.
    boto3 = pytest.importorskip("boto3")
    q = boto3.client("sqs", endpoint_url=d.url, region_name="us-east-1",
                     aws_access_key_id=admin_k, aws_secret_access_key=admin_s)
    url = q.create_queue(QueueName="esm-auth")["QueueUrl"]
    arn = q.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    body = {"EventSourceArn": arn, "FunctionName": "rec"}
    st, h, _ = request(d, "POST", ESM, body)
    assert st == 403 and h["x-amzn-errortype"] == "MissingAuthenticationTokenException"
    st, code, _ = error_of(lambda: client(d, admin_k, admin_s + "x")
                           .create_event_source_mapping(**body))
    assert code == "InvalidSignatureException"
    st, code, _ = error_of(lambda: client(d, inv_k, inv_s).create_event_source_mapping(**body))
    assert code == "AccessDeniedException"
    m = admin.create_event_source_mapping(**body)
    # Reading is any key's; changing the admin's.
    assert client(d, inv_k, inv_s).get_event_source_mapping(UUID=m["UUID"])["UUID"] == m["UUID"]
    st, code, _ = error_of(lambda: client(d, inv_k, inv_s).delete_event_source_mapping(
        UUID=m["UUID"]))
    assert code == "AccessDeniedException"
    assert request(d, "GET", ESM)[0] == 403
    admin.delete_event_source_mapping(UUID=m["UUID"])


NODE = r"""
const L = require("@aws-sdk/client-lambda");
const S = require("@aws-sdk/client-sqs");
const [endpoint, record] = process.argv.slice(2);
const cfg = { endpoint, region: "us-east-1",
              credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "secret" } };
const lam = new L.LambdaClient(cfg), sqs = new S.SQSClient(cfg);
const fs = require("fs");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
  const out = {};
  const { QueueUrl } = await sqs.send(new S.CreateQueueCommand({ QueueName: "esm-js" }));
  const a = await sqs.send(new S.GetQueueAttributesCommand({ QueueUrl, AttributeNames: ["QueueArn"] }));
  const m = await lam.send(new L.CreateEventSourceMappingCommand({
    EventSourceArn: a.Attributes.QueueArn, FunctionName: "rec", BatchSize: 2,
    FunctionResponseTypes: ["ReportBatchItemFailures"] }));
  out.created = [m.State, m.BatchSize, m.LastModified instanceof Date];
  const sent = await sqs.send(new S.SendMessageCommand({ QueueUrl, MessageBody: "from js" }));
  for (let i = 0; i < 300 && !(fs.existsSync(record) && fs.readFileSync(record, "utf8")); i++)
    await sleep(100);
  const ev = JSON.parse(fs.readFileSync(record, "utf8").split("\n")[0]);
  out.same = ev.Records[0].messageId === sent.MessageId;
  const l = await lam.send(new L.ListEventSourceMappingsCommand({ FunctionName: "rec" }));
  out.listed = l.EventSourceMappings.map((x) => x.UUID === m.UUID);
  await lam.send(new L.DeleteEventSourceMappingCommand({ UUID: m.UUID }));
  try { await lam.send(new L.GetEventSourceMappingCommand({ UUID: m.UUID })); }
  catch (e) { out.gone = [e.name, e instanceof L.ResourceNotFoundException]; }
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
"""


def test_aws_sdk_js(spated, tmp_path):
    import pathlib
    from conftest import ROOT
    d = pathlib.Path(os.environ.get("SPATE_AWS_SDK_JS", "/var/tmp/spate-aws-sdk-js"))
    r = subprocess.run([str(ROOT / "scripts/install-aws-sdk-js.sh"), str(d)], capture_output=True,
                       text=True, timeout=600)
    if r.returncode != 0:
        pytest.skip(f"cannot install the AWS SDK for JavaScript: {r.stderr[-500:]}")
    record = deploy(client(spated), tmp_path)
    script = tmp_path / "esm.js"
    script.write_text(NODE)
    r = subprocess.run(["/usr/bin/node", str(script), spated.url, str(record)],
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, NODE_PATH=str(d / "node_modules"), **AWS_ENV))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out == {"created": ["Enabled", 2, True], "same": True, "listed": [True],
                   "gone": ["ResourceNotFoundException", True]}, out


def test_cluster_nodes_agree(tmp_path_factory, tmp_path):
    """Every node derives the same UUID; a change made on one (disabling it)
    reaches the others through the registry."""
    from natscluster import listed, spated_cluster
    with spated_cluster(tmp_path_factory, name="esm", n=2) as (_, (a, b)):
        deploy(client(a), tmp_path)
        assert wait_for(lambda: listed(b, "rec"), timeout=15), b.log()
        # A queue's receiver is each node's own (api/sqs.h): made on both.
        url = create(a, "esm-cl")
        create(b, "esm-cl")
        arn = arn_of(a, url)
        m = client(a).create_event_source_mapping(EventSourceArn=arn, FunctionName="rec")
        on_b = lambda: client(b).list_event_source_mappings()["EventSourceMappings"]  # noqa
        assert wait_for(lambda: [x["UUID"] for x in on_b()] == [m["UUID"]], timeout=15)
        assert client(b).update_event_source_mapping(UUID=m["UUID"], Enabled=False)["State"] \
            == "Disabled"
        assert wait_for(lambda: client(a).get_event_source_mapping(UUID=m["UUID"])["State"]
                        == "Disabled", timeout=15)
