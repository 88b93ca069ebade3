"""Lambda's management API on spated's port (CreateFunction, Get..., List...,
Update..., DeleteFunction, PublishVersion, ListVersionsByFunction, aliases),
driven by real AWS clients: the aws CLI v1 on PATH, Debian's awscli v2
(/usr/bin/aws) and Debian's boto3 (/usr/bin/python3, which runs these tests);
and on the wire with a plain HTTP client where the shape matters."""

import base64
import json
import os
import shutil
import subprocess

import pytest

from conftest import wait_for, zipped

AWS_ENV = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
           "AWS_EC2_METADATA_DISABLED": "true", "AWS_PAGER": ""}

APP = """import os
def handler(event, context):
    return {"tag": %r, "event": event, "greeting": os.environ.get("GREETING")}
"""

# A provided runtime's bootstrap: the Runtime API with python's standard library.
BOOTSTRAP = b"""#!/usr/bin/python3
import json, os, urllib.request
API = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
while True:
    with urllib.request.urlopen(API + "next") as r:
        rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(r.read() or b"null")
    body = json.dumps({"bootstrap": True, "event": event}).encode()
    urllib.request.urlopen(urllib.request.Request(API + rid + "/response", data=body, method="POST")).read()
"""


def app_zip(tag):
    return zipped({"app.py": APP % tag})


def run(args, env=None):
    e = dict(os.environ, **AWS_ENV)
    e.update(env or {})
    return subprocess.run(args, capture_output=True, env=e, timeout=120)


def aws_cli(which):
    """The aws command of a CLI (v1 on PATH, v2 Debian's) and what it needs
    to send a raw JSON payload, or skips."""
    if which == "v1":
        aws = shutil.which("aws")
        if not aws or aws == "/usr/bin/aws":
            pytest.skip("no aws v1 on PATH")
        return aws, []
    if not os.path.exists("/usr/bin/aws"):
        pytest.skip("Debian's awscli is not installed (scripts/install-deps.sh)")
    return "/usr/bin/aws", ["--cli-binary-format", "raw-in-base64-out"]


def lower(headers):
    return {k.lower(): v for k, v in headers.items()}


def request(d, method, path, doc=None):
    """(status, headers, parsed body) of a request with a JSON body."""
    body = json.dumps(doc).encode() if doc is not None else None
    status, h, data = d.request(method, path, body, {"Content-Type": "application/json"})
    return status, lower(h), (json.loads(data) if data else None)


def create_doc(name, tag="v1", **extra):
    doc = {"FunctionName": name, "Runtime": "python3.11", "Handler": "app.handler",
           "Role": "arn:aws:iam::123456789012:role/ignored",
           "Code": {"ZipFile": base64.b64encode(app_zip(tag)).decode()}}
    doc.update(extra)
    return doc


# --- The CLIs: a function's whole life ----------------------------------------------------


@pytest.mark.parametrize("cli", ["v1", "v2"])
def test_cli_lifecycle(spated, tmp_path, cli):
    aws, binary = aws_cli(cli)
    e = ["--endpoint-url", spated.url]

    def lam(*args, ok=True):
        r = run([aws, "lambda", *args, *e])
        if ok:
            assert r.returncode == 0, (args, r.stderr.decode())
            return json.loads(r.stdout) if r.stdout.strip() else None
        assert r.returncode != 0, (args, r.stdout)
        return r.stderr.decode()

    def invoke(name, payload):
        out = tmp_path / "out.json"
        meta = lam("invoke", "--function-name", name, *binary, "--payload", json.dumps(payload),
                   str(out))
        return meta, json.loads(out.read_text())

    code = tmp_path / "code.zip"
    code.write_bytes(app_zip("one"))
    conf = lam("create-function", "--function-name", "hello", "--runtime", "python3.12",
               "--handler", "app.handler", "--role", "arn:aws:iam::1:role/r",
               "--zip-file", f"fileb://{code}", "--description", "the first",
               "--timeout", "7", "--memory-size", "256",
               "--environment", "Variables={GREETING=hi,OTHER=x}")
    assert conf["FunctionName"] == "hello" and conf["Version"] == "$LATEST"
    assert conf["State"] == "Active" and conf["LastUpdateStatus"] == "Successful"
    assert conf["Description"] == "the first" and conf["Timeout"] == 7
    assert conf["MemorySize"] == 256 and conf["Handler"] == "app.handler"
    assert conf["Environment"]["Variables"] == {"GREETING": "hi", "OTHER": "x"}
    assert conf["FunctionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:hello"
    # The CLI's waiter reads State (and LastUpdateStatus for function-updated).
    lam("wait", "function-active", "--function-name", "hello")
    meta, out = invoke("hello", {"n": 1})
    assert meta["StatusCode"] == 200 and out == {"tag": "one", "event": {"n": 1}, "greeting": "hi"}
    # spate's own view: runtime python3, 7 s, 256 MB, the description.
    d = spated.describe("hello")
    assert d["config"]["runtime"] == "python3" and d["config"]["timeout_ms"] == 7000
    assert d["config"]["memory_mb"] == 256 and d["config"]["description"] == "the first"

    # The configuration: Environment replaces the whole map, as Lambda's does.
    conf = lam("update-function-configuration", "--function-name", "hello",
               "--environment", "Variables={GREETING=yo}", "--timeout", "9")
    assert conf["Environment"]["Variables"] == {"GREETING": "yo"} and conf["Timeout"] == 9
    lam("wait", "function-updated", "--function-name", "hello")
    assert invoke("hello", {})[1]["greeting"] == "yo"

    # New code, published: the answer names its number; PublishVersion names it again.
    code.write_bytes(app_zip("two"))
    conf = lam("update-function-code", "--function-name", "hello", "--zip-file",
               f"fileb://{code}", "--publish")
    v = conf["Version"]
    assert v.isdigit() and int(v) >= 3, conf
    assert lam("publish-version", "--function-name", "hello")["Version"] == v
    versions = lam("list-versions-by-function", "--function-name", "hello")["Versions"]
    assert [x["Version"] for x in versions] == ["$LATEST"] + [str(i) for i in range(1, int(v) + 1)]
    assert invoke("hello", {})[1]["tag"] == "two"
    assert invoke("hello:1", {})[1]["tag"] == "one"

    # An alias with a weighted second version.
    alias = lam("create-alias", "--function-name", "hello", "--name", "live",
                "--function-version", "1", "--routing-config",
                '{"AdditionalVersionWeights": {"%s": 0.25}}' % v)
    assert alias["FunctionVersion"] == "1"
    assert alias["RoutingConfig"]["AdditionalVersionWeights"] == {v: 0.25}
    assert alias["AliasArn"].endswith(":function:hello:live")
    assert spated.json("GET", "/v1/functions/hello/aliases/live")[1]["weight_percent"] == 25
    # Through the alias (on the wire: 40 CLI processes would take a minute).
    tags = {json.loads(spated.request("POST", "/2015-03-31/functions/hello:live/invocations",
                                      b"{}")[2])["tag"] for _ in range(40)}
    assert tags == {"one", "two"}  # 0.75 ** 40 and 0.25 ** 40: never by chance
    alias = lam("update-alias", "--function-name", "hello", "--name", "live",
                "--function-version", v, "--routing-config", '{"AdditionalVersionWeights": {}}')
    assert alias["FunctionVersion"] == v and "RoutingConfig" not in alias
    assert lam("get-alias", "--function-name", "hello", "--name", "live")["FunctionVersion"] == v
    assert [a["Name"] for a in lam("list-aliases", "--function-name", "hello")["Aliases"]] == ["live"]
    assert lam("get-function", "--function-name", "hello:live")["Configuration"]["Version"] == v
    lam("delete-alias", "--function-name", "hello", "--name", "live")
    assert "ResourceNotFoundException" in lam("get-alias", "--function-name", "hello", "--name",
                                              "live", ok=False)

    # Lists page: --page-size 1 makes the CLI follow NextMarker through every page.
    for name in ("a-fn", "b-fn"):
        lam("create-function", "--function-name", name, "--runtime", "python3.11", "--handler",
            "app.handler", "--role", "r", "--zip-file", f"fileb://{code}")
    names = [f["FunctionName"] for f in
             lam("list-functions", "--page-size", "1")["Functions"]]
    assert names == ["a-fn", "b-fn", "hello"]
    versions = lam("list-versions-by-function", "--function-name", "hello", "--page-size", "2")
    assert len(versions["Versions"]) == int(v) + 1

    lam("delete-function", "--function-name", "hello")
    assert "ResourceNotFoundException" in lam("get-function", "--function-name", "hello", ok=False)
    assert spated.json("GET", "/v1/functions/hello")[0] == 404


def test_provided_runtime_from_a_zip(spated, tmp_path):
    aws, binary = aws_cli("v1")
    code = tmp_path / "code.zip"
    code.write_bytes(zipped({"bootstrap": BOOTSTRAP}))
    e = ["--endpoint-url", spated.url]
    r = run([aws, "lambda", "create-function", *e, "--function-name", "boot", "--runtime",
             "provided.al2023", "--handler", "unused", "--role", "r",
             "--zip-file", f"fileb://{code}"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["Runtime"].startswith("provided")
    assert spated.describe("boot")["config"]["runtime"] == "exec"
    out = tmp_path / "out.json"
    r = run([aws, "lambda", "invoke", *e, "--function-name", "boot", *binary,
             "--payload", '{"x": 1}', str(out)])
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text()) == {"bootstrap": True, "event": {"x": 1}}


# --- boto3: errors, and what they leave ----------------------------------------------------


def client(d, key="AKIDEXAMPLE", secret="secret"):
    boto3 = pytest.importorskip("boto3")
    from botocore.config import Config
    return boto3.client("lambda", endpoint_url=d.url, region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key=secret,
                        config=Config(retries={"total_max_attempts": 1}))


def error_of(call):
    from botocore.exceptions import ClientError
    try:
        call()
    except ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"], \
            e.response["Error"]["Message"]
    raise AssertionError("no error")


def test_boto3_refusals_store_nothing(spated):
    c = client(spated)
    zip_of = {"ZipFile": zipped({"app.py": "import not_a_module_anywhere\n"})}
    base = {"Role": "r", "Handler": "app.handler", "Runtime": "python3.11"}
    # spate's deploy check: the handler cannot be imported.
    st, code, msg = error_of(lambda: c.create_function(FunctionName="bad", Code=zip_of, **base))
    assert (st, code) == (400, "InvalidParameterValueException")
    assert "not_a_module_anywhere" in msg
    good = {"ZipFile": app_zip("x")}
    for kw, what in (({"Runtime": "java17"}, "unsupported runtime"),
                     ({"Layers": ["arn:aws:lambda:us-east-1:1:layer:l:1"]}, "Layers"),
                     ({"PackageType": "Image"}, "PackageType"),
                     ({"Timeout": 901}, "Timeout"),
                     ({"Description": "x" * 257}, "description")):
        st, code, msg = error_of(lambda: c.create_function(FunctionName="bad", Code=good,
                                                           **dict(base, **kw)))
        assert (st, code) == (400, "InvalidParameterValueException") and what in msg, (kw, msg)
    st, code, _ = error_of(lambda: c.create_function(
        FunctionName="bad", Code={"S3Bucket": "bucket", "S3Key": "key"}, **base))
    assert (st, code) == (400, "InvalidParameterValueException")
    assert c.list_functions()["Functions"] == []
    assert spated.json("GET", "/v1/functions")[1]["functions"] == []

    c.create_function(FunctionName="fn", Code=good, **base)
    st, code, _ = error_of(lambda: c.create_function(FunctionName="fn", Code=good, **base))
    assert (st, code) == (409, "ResourceConflictException")
    # Optimistic locking by RevisionId.
    rev = c.get_function_configuration(FunctionName="fn")["RevisionId"]
    st, code, _ = error_of(lambda: c.update_function_configuration(
        FunctionName="fn", Timeout=5, RevisionId="1-0"))
    assert (st, code) == (412, "PreconditionFailedException")
    assert c.update_function_configuration(FunctionName="fn", Timeout=5,
                                           RevisionId=rev)["Timeout"] == 5
    # The runtime belongs to the code: not changed by configuration.
    st, code, _ = error_of(lambda: c.update_function_configuration(FunctionName="fn",
                                                                   Runtime="nodejs20.x"))
    assert (st, code) == (400, "InvalidParameterValueException")
    # A code update whose handler cannot import leaves the version as it was.
    before = c.get_function(FunctionName="fn")["Configuration"]
    st, code, _ = error_of(lambda: c.update_function_code(FunctionName="fn", **zip_of))
    assert (st, code) == (400, "InvalidParameterValueException")
    assert c.get_function(FunctionName="fn")["Configuration"]["CodeSha256"] == before["CodeSha256"]
    # PublishVersion with the wrong code hash.
    st, code, _ = error_of(lambda: c.publish_version(FunctionName="fn", CodeSha256="AAAA"))
    assert (st, code) == (412, "PreconditionFailedException")
    # Aliases spate's cannot hold are refused.
    num = c.publish_version(FunctionName="fn", Description="pub")["Version"]
    assert c.get_function(FunctionName="fn", Qualifier=num)["Configuration"]["Description"] == "pub"
    for kw in ({"FunctionVersion": "$LATEST"},
               {"FunctionVersion": num, "RoutingConfig": {"AdditionalVersionWeights": {"1": 0.125}}},
               {"FunctionVersion": num, "Description": "no place for it"},
               {"FunctionVersion": "99"}):
        st, code, msg = error_of(lambda: c.create_alias(FunctionName="fn", Name="a", **kw))
        assert (st, code) == (400, "InvalidParameterValueException"), (kw, msg)
    assert c.list_aliases(FunctionName="fn")["Aliases"] == []
    c.create_alias(FunctionName="fn", Name="a", FunctionVersion=num)
    st, code, _ = error_of(lambda: c.create_alias(FunctionName="fn", Name="a", FunctionVersion=num))
    assert (st, code) == (409, "ResourceConflictException")
    for call in (lambda: c.get_function(FunctionName="nope"),
                 lambda: c.get_function(FunctionName="fn", Qualifier="77"),
                 lambda: c.get_alias(FunctionName="fn", Name="nope"),
                 lambda: c.delete_function(FunctionName="nope"),
                 lambda: c.update_function_code(FunctionName="nope", ZipFile=b"x")):
        assert error_of(call)[:2] == (404, "ResourceNotFoundException")
    # Versions go only with their function.
    st, code, _ = error_of(lambda: c.delete_function(FunctionName="fn", Qualifier="1"))
    assert (st, code) == (400, "InvalidParameterValueException")


def test_boto3_paginators_and_triggers(spated):
    c = client(spated)
    base = {"Role": "r", "Handler": "app.handler", "Runtime": "python3.11",
            "Code": {"ZipFile": app_zip("p")}}
    for i in range(5):
        c.create_function(FunctionName=f"p{i}", **base)
    pages = list(c.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 2}))
    assert [len(p["Functions"]) for p in pages] == [2, 2, 1]
    assert [f["FunctionName"] for p in pages for f in p["Functions"]] == [f"p{i}" for i in range(5)]
    assert "NextMarker" in pages[0] and "NextMarker" not in pages[-1]
    for n in range(3):
        c.update_function_configuration(FunctionName="p0", Description=f"d{n}")
    pages = list(c.get_paginator("list_versions_by_function").paginate(
        FunctionName="p0", PaginationConfig={"PageSize": 3}))
    assert [v["Version"] for p in pages for v in p["Versions"]] == ["$LATEST", "1", "2", "3", "4"]
    # FunctionVersion=ALL: each function's $LATEST and versions, paged across functions.
    pages = list(c.get_paginator("list_functions").paginate(
        FunctionVersion="ALL", PaginationConfig={"PageSize": 2}))
    got = [(f["FunctionName"], f["Version"]) for p in pages for f in p["Functions"]]
    assert got == [("p0", v) for v in ("$LATEST", "1", "2", "3", "4")] + \
        [(f"p{i}", v) for i in range(1, 5) for v in ("$LATEST", "1")], got
    for a in ("x", "y", "z"):
        c.create_alias(FunctionName="p0", Name=a, FunctionVersion="1" if a != "z" else "2")
    pages = list(c.get_paginator("list_aliases").paginate(FunctionName="p0",
                                                          PaginationConfig={"PageSize": 1}))
    assert [a["Name"] for p in pages for a in p["Aliases"]] == ["x", "y", "z"]
    assert [a["Name"] for a in c.list_aliases(FunctionName="p0", FunctionVersion="2")["Aliases"]] \
        == ["z"]

    # A function that a topic triggers is not deleted (spate's rule), and says why.
    st, _ = spated.json("PUT", "/v1/triggers/orders/p1")
    assert st in (200, 201)
    st, code, msg = error_of(lambda: c.delete_function(FunctionName="p1"))
    assert (st, code) == (409, "ResourceConflictException") and "orders" in msg
    assert c.get_function(FunctionName="p1")["Configuration"]["FunctionName"] == "p1"
    # An ARN names the function too.
    c.delete_function(FunctionName="arn:aws:lambda:us-east-1:000000000000:function:p2")
    assert error_of(lambda: c.get_function(FunctionName="p2"))[1] == "ResourceNotFoundException"


# --- The wire ------------------------------------------------------------------------------


def test_wire_shapes_and_description_survives_restart(spated):
    st, h, doc = request(spated, "POST", "/2015-03-31/functions",
                         create_doc("wire", Description="kept", Publish=True))
    assert st == 201 and doc["Version"] == "1", doc
    st, h, doc = request(spated, "POST", "/2015-03-31/functions", {"FunctionName": "x"})
    assert st == 400 and h["x-amzn-errortype"] == "InvalidParameterValueException"
    assert doc["Type"] == "User" and "Runtime" in doc["message"]
    st, h, _ = spated.request("POST", "/2015-03-31/functions", b"{not json")
    assert st == 400 and lower(h)["x-amzn-errortype"] == "InvalidRequestContentException"
    st, h, _ = request(spated, "PATCH", "/2015-03-31/functions/wire")
    assert st == 405 and h["x-amzn-errortype"] == "MethodNotAllowedException"
    st, _, doc = request(spated, "POST", "/2015-03-31/functions",
                         dict(create_doc("bad64"), Code={"ZipFile": "not base64!"}))
    assert st == 400 and "base64" in doc["message"]
    spated.stop()
    spated.start()
    st, _, doc = request(spated, "GET", "/2015-03-31/functions/wire/configuration")
    assert st == 200 and doc["Description"] == "kept" and doc["Version"] == "$LATEST"
    st, _, _ = request(spated, "DELETE", "/2015-03-31/functions/wire")
    assert st == 204


def test_zip_over_the_artifact_limit(make_spated):
    d = make_spated("--artifact-max", "4096")
    big = create_doc("big")
    big["Code"]["ZipFile"] = base64.b64encode(os.urandom(6000)).decode()
    st, h, doc = request(d, "POST", "/2015-03-31/functions", big)
    assert st == 413 and h["x-amzn-errortype"] == "RequestEntityTooLargeException", doc
    assert "4096" in doc["message"]
    # Far over: the server's own limit of the route (the artifact in base64 and 64 KiB).
    big["Code"]["ZipFile"] = base64.b64encode(os.urandom(200_000)).decode()
    st, _, _ = d.request("POST", "/2015-03-31/functions", json.dumps(big).encode())
    assert st == 413
    assert d.json("GET", "/v1/functions")[1]["functions"] == []


# --- Signatures ----------------------------------------------------------------------------

ADMIN, ADMIN_KEY = "admin-secret-0123456789abcdef", "AKIDSPATEADMIN0001"
INVOKE, INVOKE_KEY = "invoke-secret-0123456789abcdef", "AKIDSPATEINVOKE001"


def test_signed_requests_when_tokens_are_on(make_spated, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"admin {ADMIN} {ADMIN_KEY}\ninvoke {INVOKE} {INVOKE_KEY}\n")
    d = make_spated("--token-file", str(tokens))
    base = {"Role": "r", "Handler": "app.handler", "Runtime": "python3.11",
            "Code": {"ZipFile": app_zip("s")}, "Environment": {"Variables": {"K": "secret-ish"}}}
    # Unsigned, unknown key, wrong secret, too small a scope: refused, nothing made.
    st, h, _ = request(d, "POST", "/2015-03-31/functions", {"FunctionName": "s", **base,
                                                            "Code": {"ZipFile": "AAAA"}})
    assert st == 403 and h["x-amzn-errortype"] == "MissingAuthenticationTokenException"
    for key, secret, want in (("AKIDNOPE0000000001", ADMIN, "UnrecognizedClientException"),
                              (ADMIN_KEY, ADMIN + "x", "InvalidSignatureException"),
                              (INVOKE_KEY, INVOKE, "AccessDeniedException")):
        st, code, _ = error_of(lambda: client(d, key, secret).create_function(FunctionName="s",
                                                                             **base))
        assert code == want and st in (401, 403), (key, code)
    assert d.json("GET", "/v1/functions")[0] == 401  # bearer tokens still needed there
    admin = client(d, ADMIN_KEY, ADMIN)
    assert admin.create_function(FunctionName="s", **base)["State"] == "Active"
    assert admin.get_function(FunctionName="s")["Configuration"]["Environment"] == \
        {"Variables": {"K": "secret-ish"}}
    # Reading is any key's, but environment values are the admin's alone.
    conf = client(d, INVOKE_KEY, INVOKE).get_function_configuration(FunctionName="s")
    assert conf["FunctionName"] == "s" and "Environment" not in conf
    st, code, _ = error_of(lambda: client(d, INVOKE_KEY, INVOKE).delete_function(FunctionName="s"))
    assert code == "AccessDeniedException"
    st, code, _ = error_of(lambda: client(d, INVOKE_KEY, INVOKE).create_alias(
        FunctionName="s", Name="a", FunctionVersion="1"))
    assert code == "AccessDeniedException"
    admin.delete_function(FunctionName="s")
    assert wait_for(lambda: error_of(lambda: admin.get_function(FunctionName="s"))[0] == 404)


# --- A cluster -----------------------------------------------------------------------------


def test_cluster_nodes_agree(tmp_path_factory):
    from natscluster import listed, spated_cluster
    with spated_cluster(tmp_path_factory, name="lmgmt", n=2) as (_, (a, b)):
        st, _, doc = request(a, "POST", "/2015-03-31/functions",
                             create_doc("cl", Description="from a", Publish=True))
        assert st == 201 and doc["Version"] == "1", doc
        assert wait_for(lambda: listed(b, "cl"), timeout=15), b.log()
        # The description travels with the version, through the cluster's registry.
        st, _, doc = request(b, "GET", "/2015-03-31/functions/cl/configuration")
        assert st == 200 and doc["Description"] == "from a", doc
        st, _, doc = request(b, "PUT", "/2015-03-31/functions/cl/configuration",
                             {"Description": "from b"})
        assert st == 200, doc
        assert wait_for(lambda: request(a, "GET", "/2015-03-31/functions/cl/configuration")[2]
                        ["Description"] == "from b", timeout=15), a.log()
        st, _, doc = request(a, "POST", "/2015-03-31/functions/cl/aliases",
                             {"Name": "live", "FunctionVersion": "1"})
        assert st == 201, doc
        assert wait_for(lambda: request(b, "GET", "/2015-03-31/functions/cl/aliases/live")[0]
                        == 200, timeout=15)


# --- npm's @aws-sdk/client-lambda ----------------------------------------------------------

NODE = """
const L = require("@aws-sdk/client-lambda");
(async () => {
  const c = new L.LambdaClient({ endpoint: process.argv[2], region: "us-east-1",
    credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "secret" } });
  const zip = (tag) => Buffer.from(process.argv[tag === "one" ? 3 : 4], "base64");
  const out = {};
  let r = await c.send(new L.CreateFunctionCommand({ FunctionName: "js", Runtime: "python3.11",
    Handler: "app.handler", Role: "arn:aws:iam::1:role/r", Code: { ZipFile: zip("one") } }));
  out.created = [r.State, r.Version];
  out.waited = (await L.waitUntilFunctionActiveV2({ client: c, maxWaitTime: 30 },
                                                  { FunctionName: "js" })).state;
  const call = async (name) => JSON.parse(Buffer.from((await c.send(new L.InvokeCommand(
    { FunctionName: name, Payload: Buffer.from("{}") }))).Payload).toString()).tag;
  out.first = await call("js");
  r = await c.send(new L.UpdateFunctionCodeCommand({ FunctionName: "js", ZipFile: zip("two") }));
  out.updated = (await L.waitUntilFunctionUpdatedV2({ client: c, maxWaitTime: 30 },
                                                    { FunctionName: "js" })).state;
  const v = (await c.send(new L.PublishVersionCommand({ FunctionName: "js" }))).Version;
  out.published = v;
  r = await c.send(new L.CreateAliasCommand({ FunctionName: "js", Name: "live", FunctionVersion: "1",
    RoutingConfig: { AdditionalVersionWeights: { [v]: 0.5 } } }));
  out.alias = r.RoutingConfig.AdditionalVersionWeights;
  const tags = new Set();
  for (let i = 0; i < 40; i++) tags.add(await call("js:live"));
  out.tags = [...tags].sort();
  const names = [];
  for await (const page of L.paginateListFunctions({ client: c, pageSize: 1 }, {}))
    for (const f of page.Functions) names.push(f.FunctionName);
  out.names = names;
  await c.send(new L.DeleteFunctionCommand({ FunctionName: "js" }));
  try { await c.send(new L.GetFunctionCommand({ FunctionName: "js" })); }
  catch (e) { out.gone = [e.name, e instanceof L.ResourceNotFoundException]; }
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
"""


def test_aws_sdk_js(spated, tmp_path):
    from conftest import BUILD, ROOT
    prefix = BUILD / "npm"
    if not (prefix / "node_modules/@aws-sdk/client-lambda").exists():
        r = subprocess.run([str(ROOT / "scripts/npm-test-deps.sh"), str(prefix)],
                           capture_output=True, timeout=600)
        if r.returncode != 0:
            pytest.skip(f"cannot install @aws-sdk/client-lambda: {r.stderr.decode()[-300:]}")
    c = client(spated)
    c.create_function(FunctionName="other", Role="r", Handler="app.handler", Runtime="python3.11",
                      Code={"ZipFile": app_zip("o")})
    script = tmp_path / "mgmt.js"
    script.write_text(NODE)
    r = run(["/usr/bin/node", str(script), spated.url,
             base64.b64encode(app_zip("one")).decode(), base64.b64encode(app_zip("two")).decode()],
            env={"NODE_PATH": str(prefix / "node_modules")})
    assert r.returncode == 0, r.stderr.decode()
    out = json.loads(r.stdout)
    assert out["created"] == ["Active", "$LATEST"]
    assert out["waited"] == "SUCCESS" and out["updated"] == "SUCCESS"
    assert out["first"] == "one"
    assert out["published"] == "2" and out["alias"] == {"2": 0.5}
    assert out["tags"] == ["one", "two"]
    assert out["names"] == ["js", "other"]
    assert out["gone"] == ["ResourceNotFoundException", True]
