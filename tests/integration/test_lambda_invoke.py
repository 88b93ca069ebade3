"""Lambda's Invoke API on spated's port (POST /2015-03-31/functions/NAME/invocations)
and async invocations with destinations, driven by real AWS clients: the aws CLI v1
on PATH, Debian's awscli v2 (/usr/bin/aws), Debian's boto3 (/usr/bin/python3) and
npm's @aws-sdk/client-lambda (node 20). The function is an exec function whose
bootstrap speaks the Runtime API with /usr/bin/python3's standard library."""

import base64
import json
import os
import pathlib
import shutil
import signal
import time
import subprocess

import pytest

from conftest import BUILD, ROOT, wait_for, zipped

# The event decides: {"fail": MSG} posts an error (until "ok_after" attempts
# recorded in "record"), {"wait": PATH} waits for PATH to exist, {"print": TEXT}
# prints TEXT; each invocation appends "REQUEST_ID PAYLOAD" to "record" if given;
# a destination record is answered with its request id only.
BOOTSTRAP = b"""#!/usr/bin/python3
import json, os, time, urllib.request
API = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"

def post(path, body):
    req = urllib.request.Request(API + path, data=body, method="POST")
    urllib.request.urlopen(req).read()

while True:
    with urllib.request.urlopen(API + "next") as r:
        rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
        raw = r.read()
    event = json.loads(raw) if raw else None
    ev = event if isinstance(event, dict) else {}
    if ev.get("print"):
        print(ev["print"], flush=True)
    if ev.get("wait"):
        while not os.path.exists(ev["wait"]):
            time.sleep(0.05)
    attempts = 0
    if ev.get("record"):
        with open(ev["record"], "a") as f:
            f.write(rid + " " + json.dumps(event, sort_keys=True) + "\\n")
        attempts = sum(1 for line in open(ev["record"]) if line.startswith(rid + " "))
    if ev.get("fail") and attempts < ev.get("ok_after", 1 << 30):
        post(rid + "/error", json.dumps({"errorMessage": ev["fail"], "errorType": "TestError"}).encode())
        continue
    if "requestContext" in ev:  # a destination record: not echoed, or chains would double
        event = {"record_of": ev["requestContext"]["requestId"]}
    post(rid + "/response", json.dumps({"echo": event, "request_id": rid,
                                        "version": os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")}).encode())
"""

AWS_ENV = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true", "AWS_PAGER": ""}


def artifact():
    return zipped({"bootstrap": BOOTSTRAP})


def deploy(d, name="fn", **params):
    status, doc = d.deploy(name, artifact(), runtime="exec", **params)
    assert status in (200, 201), doc
    return doc


def invoke(d, name, payload, headers=None, query=""):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return d.request("POST", f"/2015-03-31/functions/{name}/invocations{query}", body,
                     headers=headers or {})


def lower(headers):
    return {k.lower(): v for k, v in headers.items()}


def messages(d, topic):
    status, doc = d.json("GET", f"/v1/topics/{topic}/messages?limit=1000")
    return doc["messages"] if status == 200 else []


def records(path):
    if not os.path.exists(path):
        return []
    return [(line.split(" ", 1)[0], json.loads(line.split(" ", 1)[1])) for line in open(path)]


# --- The wire, with a plain HTTP client ----------------------------------------------------


def test_request_response_and_function_error(spated):
    deploy(spated)
    status, h, body = invoke(spated, "fn", {"a": 1})
    h = lower(h)
    assert status == 200, body
    doc = json.loads(body)
    assert doc["echo"] == {"a": 1}
    assert h["x-amz-executed-version"] == "$LATEST"
    assert h["x-amzn-requestid"] == doc["request_id"]
    assert "x-amz-function-error" not in h

    status, h, body = invoke(spated, "fn", {"fail": "it broke"})
    assert status == 200
    assert lower(h)["x-amz-function-error"] == "Unhandled"
    assert json.loads(body) == {"errorMessage": "it broke", "errorType": "TestError"}

    # A version number, and the function's ARN with a qualifier.
    status, h, body = invoke(spated, "fn", {"b": 2}, query="?Qualifier=1")
    assert status == 200 and lower(h)["x-amz-executed-version"] == "1", body
    arn = "arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Afn%3A1"
    status, h, body = invoke(spated, arn, {"c": 3})
    assert status == 200 and json.loads(body)["echo"] == {"c": 3}, body
    status, _, body = invoke(spated, "000000000000:function:fn", {"d": 4})
    assert status == 200, body


def test_timeout_is_a_function_error(spated, tmp_path):
    deploy(spated, timeout=300)
    status, h, body = invoke(spated, "fn", {"wait": str(tmp_path / "never")})
    assert status == 200, body
    assert lower(h)["x-amz-function-error"] == "Unhandled"
    doc = json.loads(body)
    assert doc["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 0.30 seconds" in doc["errorMessage"]


def test_timeout_while_waiting_for_an_instance_names_the_timeout(spated, tmp_path):
    # One instance, held by a call that never ends: the second call times out
    # in the wait queue, before any instance took it, and says the timeout.
    # 3 s, not 0.3: the first call is busy only that long, and a loaded
    # machine's polls of /v1/functions missed a 0.3 s window (1 run in 3).
    import threading
    deploy(spated, timeout=3000, max=1)
    first = threading.Thread(target=invoke, args=(spated, "fn", {"wait": str(tmp_path / "never")}))
    first.start()
    try:
        assert wait_for(lambda: spated.json("GET", "/v1/functions/fn")[1]["instances"]["busy"] == 1,
                        timeout=30), spated.log()
        status, h, body = invoke(spated, "fn", {"x": 1})
        assert status == 200, body
        doc = json.loads(body)
        assert doc["errorType"] == "Sandbox.Timedout", doc
        assert "Task timed out after 3.00 seconds" in doc["errorMessage"], doc
    finally:
        first.join(timeout=30)


def test_dry_run_and_tail(spated):
    deploy(spated)
    status, h, body = invoke(spated, "fn", {"x": 1}, {"X-Amz-Invocation-Type": "DryRun"})
    assert status == 204 and body == b""
    status, h, body = invoke(spated, "fn", {"print": "hello from the handler"},
                             {"X-Amz-Log-Type": "Tail"})
    assert status == 200, body
    tail = base64.b64decode(lower(h)["x-amz-log-result"]).decode()
    assert "hello from the handler" in tail
    # Only the last 4 KiB.
    status, h, body = invoke(spated, "fn", {"print": "y" * 6000}, {"X-Amz-Log-Type": "Tail"})
    tail = base64.b64decode(lower(h)["x-amz-log-result"])
    assert 0 < len(tail) <= 4096


def error_of(resp):
    status, h, body = resp
    doc = json.loads(body)
    assert set(doc) == {"Type", "message"}, doc
    return status, lower(h)["x-amzn-errortype"], doc["message"]


def test_qualifiers_run_versions_and_aliases(spated):
    """Qualifier (or NAME:Q) names a version or an alias: the one resolution
    /v1 uses, and the version that ran in X-Amz-Executed-Version."""
    deploy(spated)
    deploy(spated, timeout=20000)  # version 2, active
    for target, query, want in (("fn", "?Qualifier=1", "1"), ("fn:1", "", "1"),
                                ("fn", "", "2"), ("fn", "?Qualifier=%24LATEST", "2")):
        status, h, body = invoke(spated, target, {}, query=query)
        assert status == 200, body
        assert json.loads(body)["version"] == want, (target, query, body)
    status, doc = spated.json("PUT", "/v1/functions/fn/aliases/live",
                              json.dumps({"version": 1}).encode())
    assert status == 201, doc
    status, h, body = invoke(spated, "fn:live", {})
    assert status == 200 and json.loads(body)["version"] == "1", body
    assert lower(h)["x-amz-executed-version"] == "1"
    assert error_of(invoke(spated, "fn:nolive", {}))[:2] == (404, "ResourceNotFoundException")
    assert error_of(invoke(spated, "fn", {}, query="?Qualifier=9"))[:2] == \
        (404, "ResourceNotFoundException")
    status, h, body = invoke(spated, "fn:1", {}, {"X-Amz-Invocation-Type": "Event"})
    assert status == 202, body


def test_error_shapes(spated):
    deploy(spated, max=1, queue=1)
    status, etype, msg = error_of(invoke(spated, "nope", {}))
    assert (status, etype) == (404, "ResourceNotFoundException")
    assert "function:nope" in msg
    assert error_of(invoke(spated, "fn", {}, query="?Qualifier=7"))[:2] == \
        (404, "ResourceNotFoundException")
    assert error_of(invoke(spated, "fn", b"{not json"))[:2] == \
        (400, "InvalidRequestContentException")
    assert error_of(invoke(spated, "fn", b"x" * (6 * 1024 * 1024 + 10)))[:2] == \
        (413, "RequestTooLargeException")
    assert error_of(invoke(spated, "fn", {}, {"X-Amz-Invocation-Type": "Sometimes"}))[:2] == \
        (400, "InvalidParameterValueException")
    assert error_of(invoke(spated, "bad%2Fname", {}))[:2] == (400, "InvalidParameterValueException")
    assert error_of(invoke(spated, "fn:1", {}, query="?Qualifier=2"))[:2] == \
        (400, "InvalidParameterValueException")

    # One instance, a wait queue of one: a third concurrent call is refused.
    import concurrent.futures
    gate = pathlib.Path(spated.workdir) / "gate"
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        futs = [ex.submit(invoke, spated, "fn", {"wait": str(gate)}) for _ in range(6)]
        refused = wait_for(lambda: [f for f in futs if f.done()], timeout=30)
        gate.touch()
        results = [f.result() for f in futs]
    assert refused
    throttled = [r for r in results if r[0] == 429]
    assert throttled, [r[0] for r in results]
    assert error_of(throttled[0])[1] == "TooManyRequestsException"


# --- Async invocations ---------------------------------------------------------------------


def test_event_retries_then_on_failure_destination(spated, tmp_path):
    deploy(spated, on_failure="failed", on_success="succeeded")
    rec = tmp_path / "fail.rec"
    status, h, body = invoke(spated, "fn", {"fail": "always", "record": str(rec)},
                             {"X-Amz-Invocation-Type": "Event"})
    assert status == 202 and body == b""
    rid = lower(h)["x-amzn-requestid"]
    # Three attempts (Lambda's two retries), each under the request id the 202 gave.
    assert wait_for(lambda: len(records(rec)) >= 3, timeout=60), records(rec)
    recs = wait_for(lambda: messages(spated, "failed"), timeout=30)
    assert len(recs) == 1, recs
    dest = json.loads(recs[0]["payload"])
    assert [r[0] for r in records(rec)] == [rid] * 3
    assert dest["version"] == "1.0" and dest["timestamp"].endswith("Z")
    assert dest["requestContext"] == {
        "requestId": rid, "condition": "RetriesExhausted", "approximateInvokeCount": 3,
        "functionArn": "arn:aws:lambda:us-east-1:000000000000:function:fn:$LATEST"}
    assert dest["requestPayload"] == {"fail": "always", "record": str(rec)}
    assert dest["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST",
                                       "functionError": "Unhandled"}
    assert dest["responsePayload"] == {"errorMessage": "always", "errorType": "TestError"}
    # The dead letter is kept too.
    assert len(messages(spated, "spate.async.fn.dlq")) == 1

    # Fails once, then succeeds on the retry: the on-success destination.
    rec2 = tmp_path / "ok.rec"
    status, h, _ = invoke(spated, "fn", {"fail": "once", "ok_after": 2, "record": str(rec2)},
                          {"X-Amz-Invocation-Type": "Event"})
    assert status == 202
    recs = wait_for(lambda: messages(spated, "succeeded"), timeout=60)
    dest = json.loads(recs[0]["payload"])
    assert dest["requestContext"]["condition"] == "Success"
    assert dest["requestContext"]["approximateInvokeCount"] == 2
    assert dest["responsePayload"]["echo"]["fail"] == "once"
    assert "functionError" not in dest["responseContext"]
    # The function with its async trigger deletes without --force.
    status, doc = spated.json("DELETE", "/v1/functions/fn")
    assert status in (200, 204), doc
    assert spated.json("GET", "/v1/triggers/spate.async.fn/fn")[0] == 404


def test_v1_async_and_cli(spated, tmp_path):
    deploy(spated)
    rec = tmp_path / "v1.rec"
    status, h, body = spated.request("POST", "/v1/functions/fn/invoke?async=1",
                                     json.dumps({"record": str(rec), "n": 1}).encode())
    assert status == 202, body
    rid = json.loads(body)["request_id"]
    assert h.get("Spate-Request-Id") == rid
    assert wait_for(lambda: [r for r in records(rec) if r[0] == rid], timeout=30)
    r = spated.cli("invoke", "fn", json.dumps({"record": str(rec), "n": 2}), "--async")
    assert r.returncode == 0, r.stderr
    rid2 = r.stdout.decode().strip()
    assert len(rid2) == 36
    assert wait_for(lambda: [x for x in records(rec) if x[0] == rid2], timeout=30)
    # Destinations through the CLI's deploy options, shown by describe.
    r = spated.cli("config", "fn", "--on-failure", "oops")
    assert r.returncode == 0, r.stderr
    assert spated.describe("fn")["config"]["on_failure"] == "oops"
    assert spated.json("PUT", "/v1/functions/fn?runtime=exec&on_failure=bad%2Ftopic",
                       artifact())[0] == 400


def test_event_invocations_survive_kill_9(make_spated, tmp_path):
    d = make_spated()
    deploy(d, max=1)
    gate = tmp_path / "gate"
    rec = tmp_path / "k.rec"
    rids = []
    for i in range(5):
        status, h, _ = invoke(d, "fn", {"wait": str(gate), "record": str(rec), "i": i},
                              {"X-Amz-Invocation-Type": "Event"})
        assert status == 202
        rids.append(lower(h)["x-amzn-requestid"])
    d.stop(signal.SIGKILL)
    d.start()
    gate.touch()
    done = wait_for(lambda: {r[0] for r in records(rec)} >= set(rids), timeout=60)
    assert done, (rids, records(rec))
    assert sorted({r[1]["i"] for r in records(rec)}) == list(range(5))
    assert d.stop() == 0


# --- Real clients --------------------------------------------------------------------------


def run(args, env=None, **kw):
    e = dict(os.environ, **AWS_ENV)
    e.update(env or {})
    return subprocess.run(args, capture_output=True, env=e, timeout=120, **kw)


@pytest.mark.parametrize("cli", ["v1", "v2"])
def test_aws_cli(spated, tmp_path, cli):
    if cli == "v1":
        aws = shutil.which("aws")
        if not aws or aws == "/usr/bin/aws":
            pytest.skip("no aws v1 on PATH")
        binary = []
    else:
        aws = "/usr/bin/aws"
        if not os.path.exists(aws):
            pytest.skip("Debian's awscli is not installed (scripts/install-deps.sh)")
        binary = ["--cli-binary-format", "raw-in-base64-out"]
    deploy(spated)
    base = [aws, "lambda", "invoke", "--endpoint-url", spated.url, "--function-name"]
    out = tmp_path / "out.json"
    r = run(base + ["fn", *binary, "--payload", '{"k": "v"}', "--log-type", "Tail", str(out)])
    assert r.returncode == 0, r.stderr
    meta = json.loads(r.stdout)
    assert meta["StatusCode"] == 200 and meta["ExecutedVersion"] == "$LATEST"
    assert "LogResult" in meta
    assert json.loads(out.read_text())["echo"] == {"k": "v"}
    r = run(base + ["fn", *binary, "--payload", '{"fail": "bad"}', str(out)])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["FunctionError"] == "Unhandled"
    assert json.loads(out.read_text())["errorType"] == "TestError"
    r = run(base + ["fn", "--invocation-type", "Event", *binary, "--payload", "{}", str(out)])
    assert r.returncode == 0 and json.loads(r.stdout)["StatusCode"] == 202, r.stderr
    r = run(base + ["nope", str(out)])
    assert r.returncode != 0 and b"ResourceNotFoundException" in r.stderr, r.stderr


BOTO = """
import json, sys, boto3, botocore.exceptions
c = boto3.client("lambda", endpoint_url=sys.argv[1])
out = {}
r = c.invoke(FunctionName="fn", Payload=b'{"k": 1}', LogType="Tail")
out["ok"] = [r["StatusCode"], json.loads(r["Payload"].read()), r["ExecutedVersion"], "LogResult" in r]
r = c.invoke(FunctionName="arn:aws:lambda:us-east-1:000000000000:function:fn", Qualifier="1", Payload=b'{"fail": "x"}')
out["err"] = [r["StatusCode"], r["FunctionError"], json.loads(r["Payload"].read())]
out["event"] = c.invoke(FunctionName="fn", InvocationType="Event", Payload=b"{}")["StatusCode"]
out["dry"] = c.invoke(FunctionName="fn", InvocationType="DryRun")["StatusCode"]
for name, payload in (("nope", b"{}"), ("fn", b"{bad")):
    try:
        c.invoke(FunctionName=name, Payload=payload)
    except c.exceptions.ResourceNotFoundException as e:
        out["missing"] = e.response["Error"]["Code"]
    except c.exceptions.InvalidRequestContentException as e:
        out["badjson"] = e.response["Error"]["Code"]
print(json.dumps(out))
"""


def test_boto3(spated):
    r = run(["/usr/bin/python3", "-c", "import boto3"])
    if r.returncode != 0:
        pytest.skip("python3-boto3 is not installed")
    deploy(spated)
    r = run(["/usr/bin/python3", "-c", BOTO, spated.url])
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ok"][0] == 200 and out["ok"][1]["echo"] == {"k": 1}
    assert out["ok"][2:] == ["$LATEST", True]
    assert out["err"] == [200, "Unhandled", {"errorMessage": "x", "errorType": "TestError"}]
    assert out["event"] == 202 and out["dry"] == 204
    assert out["missing"] == "ResourceNotFoundException"
    assert out["badjson"] == "InvalidRequestContentException"


NODE = """
const { LambdaClient, InvokeCommand, ResourceNotFoundException } = require("@aws-sdk/client-lambda");
(async () => {
  const c = new LambdaClient({ endpoint: process.argv[2], region: "us-east-1",
    credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "secret" } });
  const out = {};
  let r = await c.send(new InvokeCommand({ FunctionName: "fn", Payload: Buffer.from('{"k": 2, "print": "from node"}'), LogType: "Tail" }));
  out.ok = [r.StatusCode, JSON.parse(Buffer.from(r.Payload).toString()), r.ExecutedVersion,
            Buffer.from(r.LogResult, "base64").toString().includes("from node")];
  r = await c.send(new InvokeCommand({ FunctionName: "fn", Payload: Buffer.from('{"fail": "y"}') }));
  out.err = [r.StatusCode, r.FunctionError, JSON.parse(Buffer.from(r.Payload).toString())];
  r = await c.send(new InvokeCommand({ FunctionName: "fn", InvocationType: "Event", Payload: Buffer.from("{}") }));
  out.event = r.StatusCode;
  try { await c.send(new InvokeCommand({ FunctionName: "nope" })); }
  catch (e) { out.missing = [e.name, e instanceof ResourceNotFoundException, e.$metadata.httpStatusCode]; }
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
"""


@pytest.fixture(scope="session")
def aws_sdk_js():
    """npm's @aws-sdk/client-lambda, installed once into the build directory
    by scripts/npm-test-deps.sh (the npm registry is reachable)."""
    prefix = BUILD / "npm"
    if not (prefix / "node_modules/@aws-sdk/client-lambda").exists():
        r = subprocess.run([str(ROOT / "scripts/npm-test-deps.sh"), str(prefix)],
                           capture_output=True, timeout=600)
        if r.returncode != 0:
            pytest.skip(f"cannot install @aws-sdk/client-lambda: {r.stderr.decode()[-300:]}")
    return prefix


def test_aws_sdk_js(spated, aws_sdk_js, tmp_path):
    deploy(spated)
    script = tmp_path / "invoke.js"
    script.write_text(NODE)
    r = run(["/usr/bin/node", str(script), spated.url],
            env={"NODE_PATH": str(aws_sdk_js / "node_modules")})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ok"][0] == 200 and out["ok"][1]["echo"]["k"] == 2
    assert out["ok"][2:] == ["$LATEST", True]
    assert out["err"] == [200, "Unhandled", {"errorMessage": "y", "errorType": "TestError"}]
    assert out["event"] == 202
    assert out["missing"] == ["ResourceNotFoundException", True, 404]


def test_destination_of_its_own_async_topic_does_not_loop(spated, tmp_path):
    # A destination that is the function's own async topic would turn every
    # settled invocation into a new one, forever: refused at deploy and by
    # PATCH, with the reason.
    status, doc = spated.json("PUT", "/v1/functions/fn?runtime=exec&on_success=spate.async.fn",
                              artifact())
    assert status == 400, doc
    assert "spate.async.fn" in json.dumps(doc), doc
    deploy(spated)
    status, doc = spated.json("PATCH", "/v1/functions/fn?on_failure=spate.async.fn")
    assert status == 400, doc
    # Another function's async topic stays a destination (a chain).
    deploy(spated, on_success="spate.async.other")
    assert spated.describe("fn")["config"]["on_success"] == "spate.async.other"


def test_a_deleted_functions_async_invocations_go_with_it(spated, tmp_path):
    # Event invocations not run when the function is deleted are discarded,
    # as in Lambda: a function deployed later under the name never runs them.
    deploy(spated, max=1)
    gate = tmp_path / "gate"
    rec = tmp_path / "r.rec"
    try:
        for i in range(3):
            status, _, _ = invoke(spated, "fn", {"wait": str(gate), "record": str(rec), "i": i},
                                  {"X-Amz-Invocation-Type": "Event"})
            assert status == 202
        # The first one runs (it waits for the gate), the others are queued.
        assert wait_for(lambda: spated.json("GET", "/v1/topics/spate.async.fn")[1]
                        .get("in_flight") == 1, timeout=30)
        assert spated.request("DELETE", "/v1/functions/fn")[0] == 204
        assert spated.json("GET", "/v1/topics/spate.async.fn")[0] == 404
    finally:
        gate.touch()
    deploy(spated, max=1)
    status, _, _ = invoke(spated, "fn", {"record": str(rec), "i": 99},
                          {"X-Amz-Invocation-Type": "Event"})
    assert status == 202
    assert wait_for(lambda: 99 in [r[1]["i"] for r in records(rec)], timeout=30)
    time.sleep(1)  # what would follow it: the old invocations, which must not run
    ran = [r[1]["i"] for r in records(rec)]
    assert 1 not in ran and 2 not in ran, ran


def test_an_async_invocation_through_a_weighted_alias_is_refused_every_time(spated, tmp_path):
    # An async invocation through an alias that routes a share elsewhere is
    # refused (it was refused only when the pick landed there, here half of
    # the time, else run on the active version); an alias of one version runs.
    deploy(spated)
    deploy(spated)  # version 2, active
    assert spated.cli("alias", "set", "fn", "live", "2", "--weight", "1=50").returncode == 0
    assert spated.cli("alias", "set", "fn", "cur", "2").returncode == 0
    event = {"X-Amz-Invocation-Type": "Event"}
    lam = {invoke(spated, "fn", {}, event, "?Qualifier=live")[0] for _ in range(20)}
    v1 = {spated.request("POST", "/v1/functions/fn:live/invoke?async=1", b"{}")[0]
          for _ in range(20)}
    assert lam == {400} and v1 == {400}, (lam, v1)
    assert invoke(spated, "fn", {}, event, "?Qualifier=cur")[0] == 202
    assert spated.request("POST", "/v1/functions/fn:cur/invoke?async=1", b"{}")[0] == 202


def test_a_stored_destination_of_its_own_async_topic_sends_no_record(make_spated):
    # A version stored before the deploy refused such a destination (made
    # here in the registry), active again by a rollback: its records are not
    # sent, so that one Event invocation stays one.
    import sqlite3
    d = make_spated()
    deploy(d)
    d.stop()
    with sqlite3.connect(d.data / "spate.db") as db:
        db.execute("UPDATE versions SET on_success = 'spate.async.fn' WHERE function = 'fn'")
    d.start()
    assert invoke(d, "fn", {"x": 1}, {"X-Amz-Invocation-Type": "Event"})[0] == 202

    def settled():
        status, doc = d.json("GET", "/v1/topics/spate.async.fn")
        return status == 200 and doc["acknowledged"] >= 1
    assert wait_for(settled, timeout=30)
    time.sleep(2)  # a record would be invoked (and settled) by now
    assert d.json("GET", "/v1/topics/spate.async.fn")[1]["published"] == 1
    assert "own async topic" in d.log()


def test_event_invocation_of_a_version_runs_that_version(spated, tmp_path):
    # NAME:1, Qualifier=1 and an alias of version 1 run version 1 in the
    # background, even with version 2 active; the record says which ran.
    deploy(spated, on_success="succeeded")
    deploy(spated, on_success="succeeded")  # version 2, active
    assert spated.cli("alias", "set", "fn", "old", "1").returncode == 0
    event = {"X-Amz-Invocation-Type": "Event"}
    for target, query in (("fn:1", ""), ("fn", "?Qualifier=1"), ("fn:old", ""), ("fn", "")):
        assert invoke(spated, target, {"t": target + query}, event, query)[0] == 202
    assert spated.request("POST", "/v1/functions/fn:1/invoke?async=1", b'{"t": "v1"}')[0] == 202
    recs = wait_for(lambda: len(messages(spated, "succeeded")) >= 5 and messages(spated, "succeeded"),
                    timeout=60)
    ran = {}
    for m in recs:
        dest = json.loads(m["payload"])
        ran[dest["requestPayload"]["t"]] = (dest["responsePayload"]["version"],
                                            dest["responseContext"]["executedVersion"],
                                            dest["requestContext"]["functionArn"].rsplit(":", 1)[1])
    assert ran == {"fn:1": ("1", "1", "1"), "fn?Qualifier=1": ("1", "1", "1"),
                   "fn:old": ("1", "1", "1"), "v1": ("1", "1", "1"),
                   "fn": ("2", "$LATEST", "$LATEST")}, ran


def test_async_destinations_that_invoke_each_other_stop_after_16(spated, tmp_path):
    # a's success invokes b, b's a: without a count the two ran for ever.
    # The 16th record of the chain goes to the dead letters of the topic it
    # was for, with the reason, counted in /metrics and logged.
    for name in ("a", "b"):
        deploy(spated, name)
        assert invoke(spated, name, {}, {"X-Amz-Invocation-Type": "Event"})[0] == 202
    for name in ("a", "b"):
        assert wait_for(lambda: spated.json("GET", f"/v1/topics/spate.async.{name}")[1]
                        .get("acknowledged") == 1, timeout=30)
    assert spated.json("PATCH", "/v1/functions/a?on_success=spate.async.b")[0] == 200
    assert spated.json("PATCH", "/v1/functions/b?on_success=spate.async.a")[0] == 200
    assert invoke(spated, "a", {"start": 1}, {"X-Amz-Invocation-Type": "Event"})[0] == 202
    dead = wait_for(lambda: messages(spated, "spate.async.a.dlq"), timeout=120)
    assert len(dead) == 1, dead
    assert "recursive loop" in json.dumps(dead[0]), dead
    time.sleep(2)  # a loop still going would publish more by now
    published = {n: spated.json("GET", f"/v1/topics/spate.async.{n}")[1]["published"]
                 for n in ("a", "b")}
    # One call each before, then 16 invocations: a (the client's), b, a, ... b.
    assert published == {"a": 1 + 8, "b": 1 + 8}, published
    assert messages(spated, "spate.async.b.dlq") == []
    status, _, body = spated.request("GET", "/metrics")
    assert "spate_async_loops_stopped_total 1" in body.decode()
    assert "recursive loop stopped" in spated.log() and "fn=b next=a" in spated.log()


def test_a_pinned_version_runs_only_on_its_own_functions_trigger(spated):
    # The version an async invocation of x:1 carries is x's: another
    # function's trigger on spate.async.x ran that function's version 1 too
    # (a client reached a version of y that y's trigger does not name).
    for name in ("x", "y"):
        deploy(spated, name)
        deploy(spated, name)  # version 2, active
    assert spated.request("PUT", "/v1/triggers/spate.async.x/y")[0] == 201
    assert invoke(spated, "x:1", {}, {"X-Amz-Invocation-Type": "Event"})[0] == 202

    def ran(name):
        body = spated.request("GET", "/metrics")[2].decode()
        return {v for v in ("1", "2")
                if f'spate_invocations_by_version_total{{function="{name}",version="{v}",'
                   f'outcome="ok"}} 1' in body}
    assert wait_for(lambda: ran("x") and ran("y"), timeout=60)
    assert (ran("x"), ran("y")) == ({"1"}, {"2"})


def test_a_record_to_an_async_topic_invokes_a_function_never_invoked_async(spated):
    # a's on_success is spate.async.b (docs/api.md: "the record is then an
    # async invocation of b"); b's trigger was made by b's first async
    # invocation only, so the record waited in the topic and b never ran.
    deploy(spated, "b")
    deploy(spated, "a", on_success="spate.async.b")
    assert invoke(spated, "a", {"n": 1}, {"X-Amz-Invocation-Type": "Event"})[0] == 202
    assert wait_for(lambda: spated.json("GET", "/v1/topics/spate.async.b")[1]
                    .get("acknowledged") == 1, timeout=60), \
        spated.json("GET", "/v1/topics/spate.async.b")
