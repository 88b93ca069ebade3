"""Deploying: validation, versions, delete, and what survives a restart."""

import json
import os

import pytest


def artifacts_in(spated):
    root = spated.data / "artifacts"
    return sorted(p.name for p in root.rglob("*") if p.is_file())


def test_bad_artifacts_fail_the_deploy_with_the_loader_message(spated, functions, tmp_path):
    hello = functions["hello"].read_bytes()
    truncated = hello[:1000]
    cases = [
        (functions["preload_fail"].read_bytes(), "spate_preload returned 5"),
        (functions["no_handler"].read_bytes(), "does not export spate_handler"),
        (truncated, "cannot load shared object"),
        (b"echo this is not a shared object\n" * 10, "invalid ELF header"),
        # A script is known before the loader tries it: the runtime it needs is named.
        (b"#!/bin/sh\n" + b"echo this is not a shared object\n" * 10,
         "is a script, not a shared object"),
    ]
    for body, text in cases:
        status, doc = spated.json("PUT", "/v1/functions/broken", body)
        assert status == 400, doc
        assert doc["code"] == "bad_artifact" and text in doc["error"], doc
    status, doc = spated.json("PUT", "/v1/functions/broken", b"")
    assert status == 400 and "empty" in doc["error"]
    # Nothing is left behind: no function, no stored artifact.
    assert spated.json("GET", "/v1/functions")[1]["functions"] == []
    assert spated.json("GET", "/v1/functions/broken")[0] == 404
    assert artifacts_in(spated) == []
    # A good deploy afterwards works.
    assert spated.deploy("broken", functions["hello"])[0] == 201


def test_a_failed_redeploy_keeps_the_running_version(spated, functions):
    spated.deploy("hello", functions["hello"])
    status, doc = spated.deploy("hello", functions["no_handler"])
    assert status == 400
    assert spated.describe("hello")["version"] == 1
    assert spated.invoke("hello", b"x") == (200, b"hello, x\n")
    assert len(artifacts_in(spated)) == 1


@pytest.mark.parametrize("name", ["bad.name", "-dash", "_under", "a" * 65, "sp%20ace", "caf%C3%A9"])
def test_invalid_names(spated, functions, name):
    status, doc = spated.json("PUT", f"/v1/functions/{name}", functions["hello"].read_bytes())
    assert status == 400 and doc["code"] == "bad_name", doc
    status, _, body = spated.request("POST", f"/v1/functions/{name}/invoke", b"")
    assert status == 400


@pytest.mark.parametrize("query,text", [
    ("min=abc", "'min' must be an integer from 0 to 10000"),
    ("min=-1", "'min' must be an integer"),
    ("max=0", "'max' must be an integer from 1"),
    ("timeout=0", "'timeout' must be an integer from 1 to 900000"),
    ("timeout=99999999999999999999999", "'timeout'"),
    ("memory=1", "'memory' must be an integer from 16"),
    ("keep_alive=x", "'keep_alive'"),
    ("queue=0", "'queue'"),
    ("runtime=python", "'runtime' must be 'native', 'exec', 'python3' or 'nodejs'"),
    ("env=NOEQUALS", "KEY=VALUE"),
    ("env=1BAD%3Dv", "'1BAD'"),
    ("min=5&max=2", "min (5) is larger than max (2)"),
    ("bogus=1", "unknown parameter 'bogus'"),
    ("min=%zz", "malformed query string"),
])
def test_malformed_parameters(spated, functions, query, text):
    status, doc = spated.json("PUT", f"/v1/functions/f?{query}", functions["hello"].read_bytes())
    assert status == 400, doc
    assert doc["code"] == "bad_parameter" and text in doc["error"], doc
    assert spated.json("GET", "/v1/health") == (200, {"status": "ok"})


def test_routes_and_methods(spated):
    assert spated.json("GET", "/v1/nothing")[0] == 404
    assert spated.json("POST", "/v1/health")[0] == 405
    status, headers, _ = spated.request("POST", "/v1/functions/x")
    assert status == 405 and "PUT" in headers["Allow"] and "PATCH" in headers["Allow"]
    status, doc = spated.json("POST", "/v1/functions/ghost/invoke", b"")
    assert status == 404 and doc["error"] == "function 'ghost' does not exist"
    assert spated.json("DELETE", "/v1/functions/ghost")[0] == 404


def test_oversized_headers_and_artifacts(spated, functions):
    status, _, body = spated.request("GET", "/v1/health", headers={"X-Big": "a" * 20000})
    assert status == 431 and json.loads(body)["code"] == "headers_too_large"
    big = os.urandom(64 * 1024 * 1024 + 1)
    status, _, body = spated.request("PUT", "/v1/functions/huge", big)
    assert status == 413 and json.loads(body)["code"] == "payload_too_large"
    assert spated.json("GET", "/v1/health")[0] == 200


def test_versions_are_immutable_and_listed(spated, functions):
    assert spated.deploy("probe", functions["probe"], env="V%3Done")[0] == 201
    first = spated.describe("probe")
    status, doc = spated.deploy("probe", functions["probe"], env="V%3Dtwo", timeout=1234)
    assert status == 200 and doc["version"] == 2
    status, headers, body = spated.request("POST", "/v1/functions/probe/invoke", b"env:V")
    assert (status, body, headers["Spate-Version"]) == (200, b"two", "2")
    doc = spated.describe("probe")
    assert [v["version"] for v in doc["versions"]] == [2, 1]
    assert doc["versions"][1]["config"]["env"] == {"V": "one"}
    assert doc["versions"][0]["config"]["timeout_ms"] == 1234
    assert doc["created_ms"] == first["created_ms"]
    # Same bytes, one stored artifact.
    assert doc["versions"][0]["sha256"] == doc["versions"][1]["sha256"]
    assert len(artifacts_in(spated)) == 1


def test_new_version_retires_old_instances(spated, functions):
    spated.deploy("probe", functions["probe"])
    old_pid = spated.invoke("probe", b"pid")[1]
    spated.deploy("probe", functions["probe"])
    new_pid = spated.invoke("probe", b"pid")[1]
    assert old_pid != new_pid
    os.kill(int(old_pid), 0) if False else None
    for _ in range(100):
        if not os.path.exists(f"/proc/{int(old_pid)}"):
            break
        import time
        time.sleep(0.02)
    assert not os.path.exists(f"/proc/{int(old_pid)}"), "the old version's instance still runs"


def test_delete(spated, functions):
    spated.deploy("hello", functions["hello"])
    spated.deploy("other", functions["hello"])
    pid = spated.describe("hello")["zygote_pid"]
    status, _, _ = spated.request("DELETE", "/v1/functions/hello")
    assert status == 204
    assert spated.invoke("hello")[0] == 404
    assert [f["name"] for f in spated.json("GET", "/v1/functions")[1]["functions"]] == ["other"]
    # The artifact is shared with 'other', so it stays; the zygote goes.
    assert len(artifacts_in(spated)) == 1
    import time
    for _ in range(100):
        if not os.path.exists(f"/proc/{pid}"):
            break
        time.sleep(0.02)
    assert not os.path.exists(f"/proc/{pid}")
    spated.request("DELETE", "/v1/functions/other")
    assert artifacts_in(spated) == []


def test_restart_keeps_functions(spated, functions):
    spated.deploy("hello", functions["hello"])
    spated.deploy("probe", functions["probe"], env="K%3Dv1", max=7)
    spated.deploy("probe", functions["probe"], env="K%3Dv2", max=9)
    assert spated.stop() == 0
    spated.start()
    names = [f["name"] for f in spated.json("GET", "/v1/functions")[1]["functions"]]
    assert names == ["hello", "probe"]
    doc = spated.describe("probe")
    assert doc["version"] == 2 and doc["config"]["max"] == 9
    assert [v["version"] for v in doc["versions"]] == [2, 1]
    assert spated.invoke("probe", b"env:K") == (200, b"v2")
    assert spated.invoke("hello", b"again") == (200, b"hello, again\n")
    # Numbering goes on from where it was.
    assert spated.deploy("probe", functions["probe"])[1]["version"] == 3


def test_restart_after_kill_keeps_functions(spated, functions):
    import signal
    spated.deploy("hello", functions["hello"])
    spated.stop(signal.SIGKILL)
    spated.start()
    assert spated.invoke("hello", b"x") == (200, b"hello, x\n")
