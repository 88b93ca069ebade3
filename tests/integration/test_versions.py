"""Versions: invoking one by number, aliases with weights, rollback."""

import json
import re

from conftest import wait_for


def invoke(d, target, payload=b"x", query=""):
    """(status, Spate-Version as an int or None, body) of one invocation."""
    status, headers, body = d.request("POST", f"/v1/functions/{target}/invoke{query}", payload)
    version = headers.get("Spate-Version")
    return status, int(version) if version else None, body


def put_alias(d, name, alias, body):
    return d.json("PUT", f"/v1/functions/{name}/aliases/{alias}", json.dumps(body).encode())


def metric(d, name, **labels):
    text = d.request("GET", "/metrics")[2].decode()
    for line in text.splitlines():
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$", line)
        if m and m.group(1) == name and \
                dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or "")) == labels:
            return float(m.group(3))
    return None


def running(d, name):
    """The versions other than the active one that have a pool now."""
    return [v["version"] for v in d.describe(name)["running_versions"]]


def test_invoke_by_number_runs_the_old_code(spated, functions):
    d = spated
    assert d.deploy("app", functions["hello"], keep_alive=300)[0] == 201  # v1: hello
    assert d.deploy("app", functions["probe"])[0] == 200                  # v2: probe (echo)
    assert invoke(d, "app") == (200, 2, b"x")
    assert invoke(d, "app:2") == (200, 2, b"x")
    assert invoke(d, "app:1") == (200, 1, b"hello, x\n")
    assert invoke(d, "app", query="?qualifier=1") == (200, 1, b"hello, x\n")
    assert invoke(d, "app", query="?qualifier=%24LATEST") == (200, 2, b"x")
    # The version's own environment, not the active one's.
    assert invoke(d, "app:2", b"env:SPATE_FUNCTION_VERSION")[2] == b"2"
    # Unknown or malformed qualifiers.
    status, _, body = invoke(d, "app:9")
    assert status == 404 and b"has no version 9" in body
    for bad in ("app:0", "app:01", "app:", "app:a.b"):
        assert invoke(d, bad)[0] == 400, bad
    assert invoke(d, "app:nosuch")[0] == 404
    assert invoke(d, "app:1", query="?qualifier=1")[0] == 400  # named twice
    assert invoke(d, "nope:1")[0] == 404
    # The CLI says NAME:VERSION.
    r = d.cli("invoke", "app:1", "cli")
    assert r.returncode == 0 and r.stdout == b"hello, cli\n", r.stderr
    # Version 1 is not active and nobody invokes it: once its keep-alive
    # (300 ms) has passed, its pool and zygote stop; invoking starts it again.
    assert wait_for(lambda: running(d, "app") == [], timeout=30)
    assert "stopping fn=app version=1" in d.log()
    assert invoke(d, "app:1") == (200, 1, b"hello, x\n")
    assert running(d, "app") == [1]
    # The active version is untouched by all that.
    assert d.describe("app")["version"] == 2
    assert metric(d, "spate_invocations_by_version_total", function="app", version="1",
                  outcome="ok") == 4
    assert metric(d, "spate_invocations_by_version_total", function="app", version="2",
                  outcome="ok") == 4
    # $LATEST in the path, as the CLI sends `spate invoke app:$LATEST`.
    assert invoke(d, "app:%24LATEST") == (200, 2, b"x")
    r = d.cli("invoke", "app:$LATEST", "x")
    assert r.returncode == 0 and r.stdout == b"x", r


def test_alias_weights_moves_and_removal(spated, functions):
    d = spated
    d.deploy("app", functions["probe"])
    d.deploy("app", functions["probe"], env="TAG=two")
    r = d.cli("alias", "set", "app", "live", "1", "--weight", "2=10")
    assert r.returncode == 0, r.stderr
    assert b"live" in r.stdout and b"10% to version 2" in r.stdout
    counts = {1: 0, 2: 0}
    for _ in range(1000):
        status, version, _ = invoke(d, "app:live")
        assert status == 200
        counts[version] += 1
    # 10% of 1000 is 100 with a standard deviation of about 9.5: 50..150 is
    # more than 5 of them either way, so a correct split never fails here,
    # and one that ignores the weight (0 or 500) always does.
    assert 50 <= counts[2] <= 150, counts
    assert counts[1] + counts[2] == 1000
    assert metric(d, "spate_invocations_by_version_total", function="app", version="2",
                  outcome="ok") == counts[2]
    # Moved: every invocation runs the new version.
    status, doc = put_alias(d, "app", "live", {"version": 2})
    assert status == 200 and doc["version"] == 2 and "weight_version" not in doc, doc
    assert {invoke(d, "app:live")[1] for _ in range(20)} == {2}
    status, doc = d.json("GET", "/v1/functions/app/aliases")
    assert status == 200 and [a["name"] for a in doc["aliases"]] == ["live"]
    assert d.describe("app")["aliases"][0]["version"] == 2
    r = d.cli("alias", "ls", "app")
    assert r.returncode == 0 and b"live" in r.stdout and b"version 2" in r.stdout
    r = d.cli("status", "app")
    assert r.returncode == 0 and b"live -> version 2" in r.stdout, r.stdout
    # Refused: a version that does not exist, a weight out of range, the
    # same version twice, a name of digits.
    assert put_alias(d, "app", "x", {"version": 9})[0] == 400
    assert put_alias(d, "app", "x", {"version": 1, "weight_version": 2, "weight_percent": 100})[0] == 400
    assert put_alias(d, "app", "x", {"version": 1, "weight_version": 1, "weight_percent": 5})[0] == 400
    assert put_alias(d, "app", "x", {"version": 1, "weight_version": 7, "weight_percent": 5})[0] == 400
    assert put_alias(d, "app", "123", {"version": 1})[0] == 400
    assert d.cli("alias", "set", "app", "x", "1", "--weight", "2=0").returncode == 2
    assert d.json("GET", "/v1/functions/app/aliases/x")[0] == 404
    # Removed: the alias no longer resolves.
    r = d.cli("alias", "rm", "app", "live")
    assert r.returncode == 0, r.stderr
    assert invoke(d, "app:live")[0] == 404
    assert d.cli("alias", "rm", "app", "live").returncode == 3


def test_a_nul_in_an_alias_or_rollback_body_is_refused(spated, functions):
    """cJSON ends a string at an escaped NUL: "version\\u0000x" was read as
    "version" (the alias was set, the rollback done, without a word)."""
    d = spated
    d.deploy("app", functions["probe"])
    d.deploy("app", functions["probe"], env="TAG=two")
    status, doc = d.json("PUT", "/v1/functions/app/aliases/live", b'{"version\\u0000x": 1}')
    assert status == 400 and doc["code"] == "bad_alias" and "NUL" in doc["error"], doc
    assert d.json("GET", "/v1/functions/app/aliases/live")[0] == 404
    status, doc = d.json("POST", "/v1/functions/app/rollback", b'{"version\\u0000x": 1}')
    assert status == 400 and "NUL" in doc["error"], doc
    assert d.describe("app")["version"] == 2
    # An escaped backslash before u0000 is text, not a NUL.
    status, doc = d.json("PUT", "/v1/functions/app/aliases/live", b'{"version": 1, "n": "\\\\u0000"}')
    assert status == 201, doc


def test_rollback(spated, functions):
    d = spated
    d.deploy("app", functions["hello"], timeout=7000)   # v1
    d.deploy("app", functions["probe"], env="TAG=two")  # v2
    d.deploy("app", functions["probe"], env="TAG=three")  # v3
    # Default: the version before the active one, with its configuration.
    r = d.cli("rollback", "app")
    assert r.returncode == 0, r.stderr
    assert b"rolled back app to version 2" in r.stdout
    assert invoke(d, "app", b"env:TAG") == (200, 2, b"two")
    # Explicit: version 1's code and configuration, no new version.
    status, doc = d.json("POST", "/v1/functions/app/rollback", b'{"version": 1}')
    assert status == 200 and doc["version"] == 1, doc
    assert invoke(d, "app") == (200, 1, b"hello, x\n")
    desc = d.describe("app")
    assert desc["version"] == 1 and desc["config"]["timeout_ms"] == 7000
    assert [v["version"] for v in desc["versions"]] == [3, 2, 1]
    # Nothing before version 1; version 1 is active already; no version 9.
    assert d.json("POST", "/v1/functions/app/rollback")[0] == 404
    assert d.json("POST", "/v1/functions/app/rollback", b'{"version": 1}')[0] == 409
    assert d.cli("rollback", "app", "9").returncode == 3
    assert d.cli("rollback", "app", "x").returncode == 2
    # A later deploy takes the next number, after every existing one.
    assert d.deploy("app", functions["probe"])[1]["version"] == 4
    # Invoking the version rolled away from still works (its own pool).
    assert invoke(d, "app:3", b"env:TAG") == (200, 3, b"three")


def test_aliases_and_rollback_survive_a_restart(make_spated, functions):
    d = make_spated()
    d.deploy("app", functions["hello"])
    d.deploy("app", functions["probe"])
    assert put_alias(d, "app", "stable", {"version": 1, "weight_version": 2,
                                           "weight_percent": 50})[0] == 201
    assert d.json("POST", "/v1/functions/app/rollback")[0] == 200
    assert d.stop() == 0
    d.start()
    assert d.describe("app")["version"] == 1
    status, doc = d.json("GET", "/v1/functions/app/aliases/stable")
    assert status == 200, doc
    assert (doc["version"], doc["weight_version"], doc["weight_percent"]) == (1, 2, 50)
    assert {invoke(d, "app:stable")[1] for _ in range(60)} == {1, 2}


def test_deleting_a_function_deletes_its_aliases(spated, functions):
    d = spated
    d.deploy("app", functions["hello"])
    assert put_alias(d, "app", "live", {"version": 1})[0] == 201
    assert d.json("DELETE", "/v1/functions/app")[0] in (200, 204)
    d.deploy("app", functions["hello"])
    assert d.json("GET", "/v1/functions/app/aliases")[1]["aliases"] == []
    assert invoke(d, "app:live")[0] == 404


def test_at_most_four_other_versions_run_at_once(spated, functions):
    d = spated
    for _ in range(6):
        d.deploy("app", functions["hello"])
    for v in (1, 2, 3, 4):
        assert invoke(d, f"app:{v}")[:2] == (200, v)
    status, _, body = invoke(d, "app:5")
    assert status == 429 and b"4 versions of this function" in body, body
    assert invoke(d, "app")[:2] == (200, 6)  # the active version is not one of them
    assert sorted(running(d, "app")) == [1, 2, 3, 4]


def test_an_exec_function_runs_an_old_version_and_rolls_back(spated):
    """Exec functions (and the runtimes built on them) have versions too:
    each one's own bootstrap, in its own pool."""
    from test_exec import SHELL_BOOTSTRAP, deploy_exec
    d = spated
    assert deploy_exec(d, "sh", SHELL_BOOTSTRAP)[0] == 201
    assert deploy_exec(d, "sh", SHELL_BOOTSTRAP.replace(b"shell says", b"v2 says"))[0] == 200
    assert invoke(d, "sh", b"hi") == (200, 2, b"v2 says: hi")
    assert invoke(d, "sh:1", b"hi") == (200, 1, b"shell says: hi")
    assert d.json("POST", "/v1/functions/sh/rollback")[0] == 200
    assert invoke(d, "sh", b"hi") == (200, 1, b"shell says: hi")
    assert invoke(d, "sh:2", b"hi") == (200, 2, b"v2 says: hi")


def test_scopes(make_spated, tmp_path, functions):
    """Invoking a version or an alias is invoking; setting an alias or
    rolling back is the admin's; reading aliases is anyone's."""
    tokens = tmp_path / "tokens"
    tokens.write_text("admin adm-0123456789abcdef\ninvoke inv-0123456789abcdef\n")
    d = make_spated("--token-file", str(tokens))
    adm = {"Authorization": "Bearer adm-0123456789abcdef"}
    inv = {"Authorization": "Bearer inv-0123456789abcdef"}
    hello = functions["hello"].read_bytes()
    assert d.request("PUT", "/v1/functions/app", hello, adm)[0] == 201
    assert d.request("PUT", "/v1/functions/app", hello, adm)[0] == 200
    alias = json.dumps({"version": 1}).encode()
    assert d.request("PUT", "/v1/functions/app/aliases/live", alias, inv)[0] == 403
    assert d.request("PUT", "/v1/functions/app/aliases/live", alias, adm)[0] == 201
    assert d.request("DELETE", "/v1/functions/app/aliases/live", None, inv)[0] == 403
    assert d.request("POST", "/v1/functions/app/rollback", None, inv)[0] == 403
    assert d.request("GET", "/v1/functions/app/aliases", None, inv)[0] == 200
    assert d.request("GET", "/v1/functions/app/aliases/live", None)[0] == 401
    for target in ("app:1", "app:live"):
        status, headers, _ = d.request("POST", f"/v1/functions/{target}/invoke", b"x", inv)
        assert status == 200 and headers["Spate-Version"] == "1"
    assert d.request("POST", "/v1/functions/app/rollback", None, adm)[0] == 200


def publish(d, topic, n):
    body = b"".join(b"m%d\n" % i for i in range(n))
    status, _, out = d.request("POST", f"/v1/topics/{topic}/messages", body,
                               {"Content-Type": "application/x-ndjson"})
    assert status == 202, out


def by_version(d, name, version):
    return metric(d, "spate_invocations_by_version_total", function=name, version=str(version),
                  outcome="ok") or 0


def test_a_trigger_invokes_through_an_alias(spated, functions):
    """spate trigger add TOPIC NAME:ALIAS: each message runs the version the
    alias names when it runs; a removed alias holds the messages back until
    it is set again; NAME:3 names a version."""
    d = spated
    d.deploy("app", functions["probe"])                # v1
    d.deploy("app", functions["probe"], env="TAG=two")  # v2, active
    assert put_alias(d, "app", "live", {"version": 1})[0] == 201
    r = d.cli("trigger", "add", "jobs", "app:live")
    assert r.returncode == 0, r.stderr
    status, doc = d.json("GET", "/v1/triggers/jobs/app")
    assert status == 200 and doc["qualifier"] == "live", doc
    r = d.cli("trigger", "ls")
    assert r.returncode == 0 and b"app:live" in r.stdout, r.stdout
    publish(d, "jobs", 5)
    assert wait_for(lambda: by_version(d, "app", 1) == 5, timeout=30)
    assert by_version(d, "app", 2) == 0
    # The alias moves: the next messages run version 2.
    assert put_alias(d, "app", "live", {"version": 2})[0] == 200
    publish(d, "jobs", 3)
    assert wait_for(lambda: by_version(d, "app", 2) == 3, timeout=30)
    # Removed: messages wait (not dead-lettered), and run once it is back.
    assert d.json("DELETE", "/v1/functions/app/aliases/live")[0] == 204
    publish(d, "jobs", 4)
    assert wait_for(lambda: "has no version or alias 'live'" in d.log(), timeout=30)
    assert by_version(d, "app", 1) + by_version(d, "app", 2) == 8
    assert put_alias(d, "app", "live", {"version": 1})[0] == 201
    assert wait_for(lambda: by_version(d, "app", 1) == 9, timeout=30)
    # A version's number; refused: no such alias or version, a bad qualifier.
    status, doc = d.json("PUT", "/v1/triggers/jobs/app:2?update=true")
    assert status == 200 and doc["qualifier"] == "2", doc
    assert d.stop() == 0  # kept with the trigger
    d.start()
    assert d.json("GET", "/v1/triggers/jobs/app")[1]["qualifier"] == "2"
    publish(d, "jobs", 2)
    assert wait_for(lambda: by_version(d, "app", 2) == 2, timeout=30)  # counted anew
    assert by_version(d, "app", 1) == 0
    assert d.json("PUT", "/v1/triggers/other/app:nope")[0] == 404
    assert d.json("PUT", "/v1/triggers/other/app:7")[0] == 404
    assert d.json("PUT", "/v1/triggers/other/app:a.b")[0] == 400
    # $LATEST: the active version again (the qualifier is gone).
    status, doc = d.json("PUT", "/v1/triggers/jobs/app:%24LATEST?update=true")
    assert status == 200 and "qualifier" not in doc, doc


def test_trigger_set_moves_a_trigger_to_another_qualifier(spated, functions):
    """spate trigger set TOPIC NAME:QUALIFIER alone changes what the trigger
    invokes (it was refused: 'trigger set needs an option to change')."""
    d = spated
    d.deploy("app", functions["probe"])  # v1
    d.deploy("app", functions["probe"])  # v2, active
    assert d.cli("trigger", "add", "jobs", "app:1").returncode == 0
    r = d.cli("trigger", "set", "jobs", "app:2")
    assert r.returncode == 0, r.stderr
    assert d.json("GET", "/v1/triggers/jobs/app")[1]["qualifier"] == "2"
    r = d.cli("trigger", "set", "jobs", "app:$LATEST")
    assert r.returncode == 0, r.stderr
    assert "qualifier" not in d.json("GET", "/v1/triggers/jobs/app")[1]
    r = d.cli("trigger", "set", "jobs", "app")  # nothing to change
    assert r.returncode == 2 and b"needs an option" in r.stderr, r.stderr
