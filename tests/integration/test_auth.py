"""API authentication: bearer tokens with scopes, on every endpoint."""

import http.client
import json
import subprocess

import pytest

from conftest import SPATED

ADMIN = "admin-token-0123456789abcdef"
INVOKE = "invoke-token-0123456789abcdef"
PUBLISH = "publish-token-0123456789abcdef"


@pytest.fixture
def secured(make_spated, tmp_path, functions):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# scope token\nadmin {ADMIN}\n\ninvoke {INVOKE}\npublish {PUBLISH}\n")
    d = make_spated("--token-file", str(tokens))
    d.tokens = tokens
    status, _, _ = d.request("PUT", "/v1/functions/hello", functions["hello"].read_bytes(),
                             {"Authorization": f"Bearer {ADMIN}"})
    assert status == 201
    return d


def call(d, method, path, token=None, body=None, headers=None):
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    status, _, data = d.request(method, path, body, h)
    return status, data


# (method, path, body, the scope it needs: None for no token at all)
ENDPOINTS = [
    ("GET", "/v1/functions", None, "any"),
    ("GET", "/v1/functions/hello", None, "any"),
    ("POST", "/v1/functions/hello/invoke", b"x", "invoke"),
    ("GET", "/v1/topics", None, "any"),
    ("POST", "/v1/topics/t/messages", b"m", "publish"),
    ("GET", "/v1/topics/t", None, "any"),
    ("GET", "/v1/topics/t/messages", None, "admin"),
    ("POST", "/v1/topics/t.dlq/redrive", None, "admin"),
    ("PUT", "/v1/triggers/t/hello", None, "admin"),
    ("GET", "/v1/triggers", None, "any"),
    ("GET", "/v1/triggers/t/hello", None, "any"),
    ("DELETE", "/v1/triggers/t/hello", None, "admin"),
    ("PUT", "/v1/functions/other", "artifact", "admin"),
    ("DELETE", "/v1/functions/other", None, "admin"),
]

TOKENS = {"admin": ADMIN, "invoke": INVOKE, "publish": PUBLISH}


def test_every_endpoint_needs_the_right_token(secured, functions):
    d = secured
    # Health needs none.
    assert call(d, "GET", "/v1/health")[0] == 200
    for method, path, body, scope in ENDPOINTS:
        if body == "artifact":
            body = functions["hello"].read_bytes()
        status, data = call(d, method, path, None, body)
        assert status == 401, (method, path, status, data)
        assert json.loads(data)["code"] == "unauthorized"
        status, _ = call(d, method, path, "not-a-real-token-but-long-enough", body)
        assert status == 401, (method, path)
        if scope != "any":
            for other, token in TOKENS.items():
                if other in (scope, "admin"):
                    continue
                status, data = call(d, method, path, token, body)
                assert status == 403, (method, path, other, status)
                assert json.loads(data)["code"] == "forbidden"
                assert scope in json.loads(data)["error"]
        right = TOKENS[scope] if scope != "any" else INVOKE
        status, data = call(d, method, path, right, body)
        assert status < 400 or status == 404, (method, path, status, data)
        # admin may do everything.
        status, data = call(d, method, path, ADMIN, body)
        assert status not in (401, 403), (method, path, status, data)


def test_unauthenticated_bodies_are_never_read(secured):
    # A 50 MiB upload without a token is refused from its headers: 401, not 413.
    conn = http.client.HTTPConnection("127.0.0.1", secured.port, timeout=10)
    conn.putrequest("PUT", "/v1/functions/big")
    conn.putheader("Content-Length", str(50 * 1024 * 1024))
    conn.endheaders()
    assert conn.getresponse().status == 401


def test_stricter_header_limit_before_authentication(secured):
    big = {"X-Padding": "p" * 5000}
    status, _, data = secured.request("GET", "/v1/functions", None,
                                      {**big, "Authorization": f"Bearer {INVOKE}"})
    assert status == 431  # a fresh connection has not proved itself yet
    conn = http.client.HTTPConnection("127.0.0.1", secured.port, timeout=10)
    conn.request("GET", "/v1/functions", headers={"Authorization": f"Bearer {INVOKE}"})
    r = conn.getresponse()
    assert r.status == 200
    r.read()
    # Once it has, the same connection gets the full limit.
    conn.request("GET", "/v1/functions", headers={**big, "Authorization": f"Bearer {INVOKE}"})
    assert conn.getresponse().status == 200
    conn.close()


def test_cli_sends_spate_token(secured):
    r = secured.cli("ls")
    assert r.returncode == 1 and b"401" in r.stderr and b"token" in r.stderr
    r = secured.cli("ls", env={"SPATE_TOKEN": INVOKE})
    assert r.returncode == 0 and b"hello" in r.stdout
    r = secured.cli("invoke", "hello", "x", env={"SPATE_TOKEN": PUBLISH})
    assert r.returncode == 1 and b"403" in r.stderr
    r = secured.cli("invoke", "hello", "x", env={"SPATE_TOKEN": INVOKE})
    assert (r.returncode, r.stdout) == (0, b"hello, x\n")


@pytest.mark.parametrize("content,text", [
    ("root abcdefghijklmnopqrstuvwxyz\n", "unknown scope 'root'"),
    ("admin short\n", "16 to 255 characters"),
    ("admin\n", "expected 'SCOPE TOKEN [ACCESS_KEY_ID]'"),
    ("admin a-perfectly-long-token-here AKID1 extra\n", "expected 'SCOPE TOKEN [ACCESS_KEY_ID]'"),
    ("admin a-perfectly-long-token-here AKID/1\n", "an access key id must have"),
    ("# nothing\n\n", "no token"),
])
def test_bad_token_files(tmp_path, content, text):
    f = tmp_path / "tokens"
    f.write_text(content)
    r = subprocess.run([str(SPATED), "--data", str(tmp_path / "d"), "--listen", "127.0.0.1:0",
                        "--token-file", str(f)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and text in r.stderr and str(f) in r.stderr, r.stderr


def test_no_token_file_on_a_non_loopback_address_is_refused(tmp_path):
    r = subprocess.run([str(SPATED), "--data", str(tmp_path / "d"), "--listen", "0.0.0.0:0"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "--token-file" in r.stderr and "--insecure" in r.stderr
