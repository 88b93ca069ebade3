"""AWS Signature Version 4 on the AWS routes (/2015-03-31/...) when tokens are
on, against real signers: boto3/botocore (Debian's), the AWS CLI v1 (on PATH)
and v2 (Debian's /usr/bin/aws), and the AWS SDK for JavaScript v3
(scripts/install-aws-sdk-js.sh). A request signed with the right key gets
past authentication (the Lambda routes answer it: until Invoke is served, a
404 is fine, a 403 is not); a wrong secret, an unknown key id, a clock 10
minutes off or a request changed after signing gets 403 in Lambda's shape
(x-amzn-ErrorType, {"message"}), which the client names."""

import contextlib
import datetime
import importlib
import json
import os
import pathlib
import shutil
import subprocess
import types
import urllib.error
import urllib.request
from unittest import mock

import pytest

from conftest import ROOT

ADMIN, ADMIN_KEY = "admin-secret-0123456789abcdef", "AKIDSPATEADMIN0001"
INVOKE, INVOKE_KEY = "invoke-secret-0123456789abcdef", "AKIDSPATEINVOKE001"
PUBLISH, PUBLISH_KEY = "publish-secret-0123456789abcdef", "AKIDSPATEPUBLISH01"
BEARER_ONLY = "bearer-only-0123456789abcdef"

# What a refusal by authentication is called; an accepted request is never
# answered with one of these.
AUTH_ERRORS = {"InvalidSignatureException", "UnrecognizedClientException",
               "MissingAuthenticationTokenException", "IncompleteSignatureException",
               "AccessDeniedException"}

boto3 = pytest.importorskip("boto3")
import botocore.auth  # noqa: E402
import botocore.awsrequest  # noqa: E402
import botocore.credentials  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402


@pytest.fixture
def secured(make_spated, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# scope token [access key id]\nadmin {ADMIN} {ADMIN_KEY}\n"
                      f"invoke {INVOKE} {INVOKE_KEY}\npublish {PUBLISH} {PUBLISH_KEY}\n"
                      f"invoke {BEARER_ONLY}\n")
    return make_spated("--token-file", str(tokens))


def lambda_client(d, key, secret):
    return boto3.client("lambda", endpoint_url=d.url, region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key=secret,
                        config=Config(retries={"total_max_attempts": 1}))


def outcome(call):
    """(HTTP status, error code or None) of a botocore call."""
    try:
        r = call()
        return r["ResponseMetadata"]["HTTPStatusCode"], None
    except ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"]


def accepted(status, code):
    return status not in (401, 403) and code not in AUTH_ERRORS


def invoke(client):
    return lambda: client.invoke(FunctionName="hello", InvocationType="RequestResponse",
                                 Payload=b'{"from":"boto3"}')


def test_boto3_right_key_gets_past_authentication(secured):
    for key, secret in ((INVOKE_KEY, INVOKE), (ADMIN_KEY, ADMIN)):
        status, code = outcome(invoke(lambda_client(secured, key, secret)))
        assert accepted(status, code), (key, status, code)
    # A qualifier in the query ('$' encoded), a name with ':' in the path.
    client = lambda_client(secured, INVOKE_KEY, INVOKE)
    status, code = outcome(lambda: client.invoke(FunctionName="hello:prod", Qualifier="$LATEST",
                                                 Payload=b"{}"))
    assert accepted(status, code), (status, code)
    # Reading is any key's; a path with a name to encode twice.
    status, code = outcome(lambda: lambda_client(secured, PUBLISH_KEY, PUBLISH).get_function(
        FunctionName="my-fn:prod"))
    assert accepted(status, code), (status, code)


def test_boto3_refusals_are_named(secured):
    cases = [
        (lambda_client(secured, INVOKE_KEY, INVOKE + "x"), "InvalidSignatureException"),
        (lambda_client(secured, "AKIDNOTKNOWN00001", INVOKE), "UnrecognizedClientException"),
        # A key's secret is its own line's token, not another's.
        (lambda_client(secured, INVOKE_KEY, ADMIN), "InvalidSignatureException"),
        # The scopes of the native API: publish may not invoke.
        (lambda_client(secured, PUBLISH_KEY, PUBLISH), "AccessDeniedException"),
    ]
    for client, want in cases:
        status, code = outcome(invoke(client))
        assert (status, code) == (403, want)
    # invoke may not manage functions; admin may.
    delete = lambda c: lambda: c.delete_function(FunctionName="hello")  # noqa: E731
    assert outcome(delete(lambda_client(secured, INVOKE_KEY, INVOKE))) == \
        (403, "AccessDeniedException")
    assert accepted(*outcome(delete(lambda_client(secured, ADMIN_KEY, ADMIN))))


class _Behind(datetime.datetime):
    @classmethod
    def utcnow(cls):
        return datetime.datetime.utcnow() - datetime.timedelta(minutes=10)


class _Ahead(datetime.datetime):
    @classmethod
    def utcnow(cls):
        return datetime.datetime.utcnow() + datetime.timedelta(minutes=10)


@contextlib.contextmanager
def clock(cls):
    """botocore's signers (its own, and the AWS CRT's when python3-awscrt is
    installed, as Debian's awscli brings it) read the time through this."""
    fake = types.SimpleNamespace(datetime=cls, timezone=datetime.timezone)
    with contextlib.ExitStack() as stack:
        for module in ("botocore.auth", "botocore.crt.auth"):
            try:
                importlib.import_module(module)
            except ImportError:
                continue
            stack.enter_context(mock.patch(module + ".datetime", fake))
        yield


def test_boto3_skewed_clock_is_refused(secured):
    client = lambda_client(secured, INVOKE_KEY, INVOKE)
    for skewed in (_Behind, _Ahead):
        with clock(skewed):
            status, code = outcome(invoke(client))
        assert (status, code) == (403, "InvalidSignatureException"), skewed
    # Four minutes off is within the five AWS allows.
    class _Near(datetime.datetime):
        @classmethod
        def utcnow(cls):
            return datetime.datetime.utcnow() - datetime.timedelta(minutes=4)
    with clock(_Near):
        assert accepted(*outcome(invoke(client)))


def test_boto3_tampered_body_or_header_is_refused(secured):
    def tamper(what):
        client = lambda_client(secured, INVOKE_KEY, INVOKE)

        def before_send(request, **_):
            if what == "body":
                request.body = b'{"from":"mallory"}'
                request.headers["Content-Length"] = str(len(request.body))
            else:
                request.headers["X-Amz-Invocation-Type"] = "Event"
        client.meta.events.register("before-send.lambda.Invoke", before_send)
        return outcome(invoke(client))
    assert tamper("body") == (403, "InvalidSignatureException")
    assert tamper("header") == (403, "InvalidSignatureException")


def test_unsigned_amz_header_is_refused(secured):
    """Every x-amz-* header sent must be in SignedHeaders: else a captured
    request could be replayed within the clock skew as an Event call."""
    path = "/2015-03-31/functions/hello/invocations"
    creds = botocore.credentials.Credentials(INVOKE_KEY, INVOKE)
    req = botocore.awsrequest.AWSRequest(method="POST", url=secured.url + path, data=b"{}")
    botocore.auth.SigV4Auth(creds, "lambda", "us-east-1").add_auth(req)
    signed = dict(req.headers.items())
    assert "x-amz-invocation-type" not in signed["Authorization"].lower()
    status, h, body = raw(secured, "POST", path, signed, b"{}")
    assert h.get("x-amzn-ErrorType") not in AUTH_ERRORS, (status, body)
    for name in ("X-Amz-Invocation-Type", "x-amz-log-type"):
        status, h, body = raw(secured, "POST", path, {**signed, name: "Event"}, b"{}")
        assert (status, h.get("x-amzn-ErrorType")) == (403, "InvalidSignatureException"), body
        assert f"'{name.lower()}'" in json.loads(body)["message"], body


def raw(d, method, path, headers=None, body=None):
    req = urllib.request.Request(d.url + path, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_the_refusal_has_lambdas_shape(secured):
    path = "/2015-03-31/functions/hello/invocations"
    for headers, want in (({}, "MissingAuthenticationTokenException"),
                          ({"Authorization": f"Bearer {INVOKE}"}, "IncompleteSignatureException"),
                          ({"Authorization": "AWS4-HMAC-SHA256 Credential=x"},
                           "IncompleteSignatureException")):
        status, h, body = raw(secured, "POST", path, headers, b"{}")
        assert status == 403
        assert h.get("x-amzn-ErrorType") == want, h
        assert json.loads(body)["message"]
    # A stranger's large body is not read in full: its refusal comes first
    # (at most the small body limit is read), or the connection is cut.
    try:
        status, h, _ = raw(secured, "POST", path, {}, b"x" * (1 << 20))
        assert status in (403, 413)
    except (ConnectionError, urllib.error.URLError):
        pass
    # The native API still takes bearer tokens, and a line without an access
    # key id keeps working.
    status, _, _ = raw(secured, "GET", "/v1/functions", {"Authorization": f"Bearer {BEARER_ONLY}"})
    assert status == 200


def presign(d, key, secret, path, expires=60):
    creds = botocore.credentials.Credentials(key, secret)
    req = botocore.awsrequest.AWSRequest(method="GET", url=d.url + path)
    botocore.auth.SigV4QueryAuth(creds, "lambda", "us-east-1", expires=expires).add_auth(req)
    return req.prepare().url[len(d.url):]


def test_presigned_query(secured):
    path = presign(secured, INVOKE_KEY, INVOKE, "/2015-03-31/functions?MaxItems=5")
    assert "X-Amz-Signature=" in path
    status, h, body = raw(secured, "GET", path)
    assert status not in (401, 403), (status, body)
    bad = path.replace("X-Amz-Signature=", "X-Amz-Signature=0")[:-1]
    status, h, _ = raw(secured, "GET", bad)
    assert (status, h.get("x-amzn-ErrorType")) == (403, "InvalidSignatureException")
    # Expired: signed 10 minutes ago for 60 seconds.
    with clock(_Behind):
        old = presign(secured, INVOKE_KEY, INVOKE, "/2015-03-31/functions")
    status, h, _ = raw(secured, "GET", old)
    assert (status, h.get("x-amzn-ErrorType")) == (403, "InvalidSignatureException")


def test_without_tokens_any_signature_passes(spated):
    status, code = outcome(invoke(lambda_client(spated, "AKIDANY", "any-secret")))
    assert accepted(status, code), (status, code)


def test_token_file_access_key_ids_are_checked(make_spated, tmp_path):
    for text, why in ((f"invoke {INVOKE} AKID-BAD\n", "access key id"),
                      (f"invoke {INVOKE} AKID1\nadmin {ADMIN} AKID1\n", "earlier line"),
                      (f"invoke {INVOKE} AKID1 extra\n", "expected")):
        tokens = tmp_path / "bad-tokens"
        tokens.write_text(text)
        d = make_spated("--token-file", str(tokens), start=False)
        with pytest.raises(RuntimeError, match=why):
            d.start()


# --- The AWS CLI, v1 and v2 ------------------------------------------------------------

def aws_clis():
    found = []
    v1 = shutil.which("aws", path=os.environ.get("PATH", "").replace("/usr/bin", "/nonexistent"))
    for path in (v1, "/usr/bin/aws"):
        if path and os.path.exists(path):
            found.append(path)
    return found


@pytest.mark.parametrize("cli", aws_clis() or [pytest.param(None, marks=pytest.mark.skip)])
def test_aws_cli(secured, tmp_path, cli):
    version = subprocess.run([cli, "--version"], capture_output=True, text=True).stdout + \
        subprocess.run([cli, "--version"], capture_output=True, text=True).stderr

    def run(key, secret):
        env = dict(os.environ, AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret,
                   AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null",
                   AWS_MAX_ATTEMPTS="1", AWS_PAGER="")
        env.pop("AWS_PROFILE", None)
        args = [cli, "lambda", "invoke", "--function-name", "hello", "--endpoint-url",
                secured.url, "--region", "us-east-1", "--payload", '{"from":"cli"}']
        if version.startswith("aws-cli/2"):
            args += ["--cli-binary-format", "raw-in-base64-out"]
        r = subprocess.run(args + [str(tmp_path / "out.json")], capture_output=True, text=True,
                           env=env, timeout=120)
        return r.returncode, r.stderr
    rc, err = run(INVOKE_KEY, INVOKE)
    assert not any(name in err for name in AUTH_ERRORS) and "403" not in err, (version, err)
    for key, secret, want in ((INVOKE_KEY, "wrong-secret-0123456789", "InvalidSignatureException"),
                              ("AKIDNOTKNOWN00001", INVOKE, "UnrecognizedClientException")):
        rc, err = run(key, secret)
        assert rc != 0 and f"({want})" in err, (version, err)


# --- The AWS SDK for JavaScript v3 -----------------------------------------------------

@pytest.fixture(scope="module")
def sdk_js():
    d = pathlib.Path(os.environ.get("SPATE_AWS_SDK_JS", "/var/tmp/spate-aws-sdk-js"))
    r = subprocess.run([str(ROOT / "scripts/install-aws-sdk-js.sh"), str(d)], capture_output=True,
                       text=True, timeout=600)
    if r.returncode != 0:
        pytest.skip(f"cannot install @aws-sdk/client-lambda: {r.stderr[-500:]}")
    return d / "node_modules"


def node(sdk_js, d, key, secret, case):
    r = subprocess.run(["/usr/bin/node", str(ROOT / "tests/integration/sigv4_node.cjs"), d.url,
                        key, secret, case], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, NODE_PATH=str(sdk_js)))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_aws_sdk_js(secured, sdk_js):
    for case in ("ok", "ok-qualified"):
        ok = node(sdk_js, secured, INVOKE_KEY, INVOKE, case)
        assert ok.get("status") not in (401, 403) and ok.get("name") not in AUTH_ERRORS, ok
    for key, secret, case, want in (
            (INVOKE_KEY, "wrong-secret-0123456789", "ok", "InvalidSignatureException"),
            ("AKIDNOTKNOWN00001", INVOKE, "ok", "UnrecognizedClientException"),
            (INVOKE_KEY, INVOKE, "skew", "InvalidSignatureException"),
            (INVOKE_KEY, INVOKE, "tamper-body", "InvalidSignatureException"),
            (INVOKE_KEY, INVOKE, "tamper-header", "InvalidSignatureException")):
        out = node(sdk_js, secured, key, secret, case)
        assert (out["ok"], out["status"], out["name"]) == (False, 403, want), (case, out)
    # With retries the SDK sets its clock by the refusal's Date header and
    # the second attempt gets through.
    out = node(sdk_js, secured, INVOKE_KEY, INVOKE, "skew-retry")
    assert out.get("status") not in (401, 403) and out.get("name") not in AUTH_ERRORS, out
