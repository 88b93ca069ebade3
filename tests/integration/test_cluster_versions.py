"""Versions, aliases and rollback in cluster mode: a version number means
the same code on every node (the deploying node's number travels with the
function's entry in the registry bucket), aliases with their weights live in
the bucket, and a rollback on one node changes what every node runs."""

import json
import socket
import time

from conftest import wait_for
from natscluster import add_trigger, listed, publish_lines, spated_cluster
from test_versions import by_version, invoke, put_alias


def alias_of(d, name, alias):
    status, doc = d.json("GET", f"/v1/functions/{name}/aliases/{alias}")
    if status != 200:
        return None
    return doc["version"], doc.get("weight_version"), doc.get("weight_percent")


def lambda_version(d, target, query=""):
    """The X-Amz-Executed-Version of a Lambda Invoke of target."""
    status, headers, body = d.request("POST", f"/2015-03-31/functions/{target}/invocations{query}",
                                      b"{}")
    assert status == 200, body
    return {k.lower(): v for k, v in headers.items()}["x-amz-executed-version"]


def test_versions_aliases_and_rollback_across_nodes(tmp_path_factory, functions):
    with spated_cluster(tmp_path_factory, name="versions", n=3) as (_, (a, b, c)):
        assert c.stop() == 0  # joins later
        assert a.deploy("app", functions["hello"])[0] == 201  # v1
        assert wait_for(lambda: listed(b, "app"), timeout=15)
        assert a.deploy("app", functions["probe"], env="TAG=two")[0] == 200  # v2
        assert wait_for(lambda: b.describe("app")["version"] == 2, timeout=15), b.log()
        # The same numbers on b: version 1 is a's version 1, whatever b saw first.
        assert [v["version"] for v in b.describe("app")["versions"]] == [2, 1]
        assert invoke(b, "app:1") == (200, 1, b"hello, x\n")
        assert invoke(b, "app:2", b"env:TAG") == (200, 2, b"two")
        assert invoke(b, "app", query="?qualifier=1") == (200, 1, b"hello, x\n")

        # An alias with a weight set on a resolves alike on b.
        status, doc = put_alias(a, "app", "live", {"version": 1, "weight_version": 2,
                                                   "weight_percent": 50})
        assert status == 201, doc
        assert wait_for(lambda: alias_of(b, "app", "live") == (1, 2, 50), timeout=15)
        assert {invoke(b, "app:live")[1] for _ in range(60)} == {1, 2}
        r = b.cli("alias", "ls", "app")
        assert r.returncode == 0 and b"live" in r.stdout and b"50% to version 2" in r.stdout, \
            r.stdout
        # Moved on b: a follows.
        r = b.cli("alias", "set", "app", "live", "2")
        assert r.returncode == 0, r.stderr
        assert wait_for(lambda: alias_of(a, "app", "live") == (2, None, None), timeout=15)
        assert {invoke(a, "app:live")[1] for _ in range(20)} == {2}
        assert lambda_version(a, "app:live") == "2"
        assert lambda_version(b, "app", "?Qualifier=live") == "2"

        # A rollback on a: every node runs version 1 again (no new version).
        status, doc = a.json("POST", "/v1/functions/app/rollback")
        assert status == 200 and doc["version"] == 1, doc
        assert wait_for(lambda: b.describe("app")["version"] == 1, timeout=15), b.log()
        assert invoke(b, "app") == (200, 1, b"hello, x\n")
        assert lambda_version(b, "app") == "$LATEST"  # unqualified, as Lambda says
        assert [v["version"] for v in b.describe("app")["versions"]] == [2, 1]
        # A deploy on b takes the next number everywhere.
        status, doc = b.deploy("app", functions["probe"], env="TAG=three")
        assert status == 200 and doc["version"] == 3, doc
        assert wait_for(lambda: a.describe("app")["version"] == 3, timeout=15), a.log()
        assert invoke(a, "app:3", b"env:TAG") == (200, 3, b"three")
        # A rollback on b to version 2, then a later node: it gets the
        # active version under its number, then the others.
        status, doc = b.json("POST", "/v1/functions/app/rollback", b'{"version": 2}')
        assert status == 200 and doc["version"] == 2, doc
        assert wait_for(lambda: a.describe("app")["version"] == 2, timeout=15), a.log()
        c.start()
        assert wait_for(lambda: listed(c, "app") and c.describe("app")["version"] == 2,
                        timeout=20), c.log()
        assert invoke(c, "app", b"env:TAG") == (200, 2, b"two")
        # The versions made while it was away come too, under their numbers.
        assert wait_for(lambda: [v["version"] for v in c.describe("app")["versions"]] ==
                        [3, 2, 1], timeout=20), c.log()
        assert invoke(c, "app:3", b"env:TAG") == (200, 3, b"three")
        assert invoke(c, "app:1") == (200, 1, b"hello, x\n")
        assert c.describe("app")["version"] == 2  # still the active one
        assert alias_of(c, "app", "live") == (2, None, None)
        assert invoke(c, "app:live", b"env:TAG") == (200, 2, b"two")
        assert a.json("POST", "/v1/functions/app/rollback", b'{"version": 1}')[0] == 200
        assert wait_for(lambda: c.describe("app")["version"] == 1, timeout=20), c.log()
        assert invoke(c, "app") == (200, 1, b"hello, x\n")
        status, doc = c.deploy("app", functions["probe"])
        assert status == 200 and doc["version"] == 4, doc
        assert wait_for(lambda: a.describe("app")["version"] == 4, timeout=15), a.log()

        # A trigger to app:live, added on a, runs version 2 (where live
        # points) on whichever node takes each message, not the active 4.
        def ran(version):
            return sum(by_version(d, "app", version) for d in (a, b, c))
        before2, before4 = ran(2), ran(4)
        add_trigger(a, (a, b, c), "jobs", "app:live")
        assert b.json("GET", "/v1/triggers/jobs/app")[1]["qualifier"] == "live"
        publish_lines(b, "jobs", [f"m{i}" for i in range(6)])
        assert wait_for(lambda: ran(2) == before2 + 6, timeout=30)
        assert ran(4) == before4

        # Removed on c: gone everywhere.
        assert c.cli("alias", "rm", "app", "live").returncode == 0
        for d in (a, b):
            assert wait_for(lambda: alias_of(d, "app", "live") is None, timeout=15)
            assert invoke(d, "app:live")[0] == 404
        # Deleting the function deletes its aliases on every node.
        assert put_alias(a, "app", "stable", {"version": 4})[0] == 201
        assert wait_for(lambda: alias_of(b, "app", "stable") == (4, None, None), timeout=15)
        assert a.request("DELETE", "/v1/triggers/jobs/app")[0] == 204
        assert wait_for(lambda: a.request("DELETE", "/v1/functions/app")[0] == 204, timeout=15)
        assert wait_for(lambda: not listed(b, "app") and not listed(c, "app"), timeout=15)
        assert b.deploy("app", functions["hello"])[0] == 201
        for d in (a, b, c):
            assert wait_for(lambda: listed(d, "app"), timeout=15)
            assert d.json("GET", "/v1/functions/app/aliases")[1]["aliases"] == []
            assert d.describe("app")["version"] == 1  # a new function: numbered anew
        for d in (a, b, c):  # cleanly: under ASan, nothing leaked
            assert d.stop() == 0, d.log()


def kv_put(nats, key, value):
    """Writes value to the registry bucket's key as a node would (core NATS)."""
    data = json.dumps(value).encode()
    with socket.create_connection((nats.host, nats.client[0]), timeout=10) as s:
        s.recv(4096)  # INFO
        s.sendall(b'CONNECT {"verbose":false}\r\n' +
                  f"PUB $KV.spate-registry.{key} {len(data)}\r\n".encode() + data +
                  b"\r\nPING\r\n")
        got = b""
        while b"PONG" not in got:
            got += s.recv(4096)


def test_a_new_function_does_not_inherit_a_deleted_namesakes_alias(tmp_path_factory, functions):
    # An alias set on one node just as another deleted the function (the
    # alias written after the delete) stayed in the bucket: a new function
    # of that name had it, naming its version 2 once it had one.
    with spated_cluster(tmp_path_factory, name="stale", n=2) as (nats, (a, b)):
        assert a.deploy("app", functions["hello"])[0] == 201
        assert wait_for(lambda: listed(b, "app"), timeout=15)
        assert a.json("DELETE", "/v1/functions/app")[0] in (200, 204)
        assert wait_for(lambda: not listed(b, "app"), timeout=15)
        now = int(time.time() * 1000)
        kv_put(nats, "al.app.live", {"origin": "gone", "function": "app", "name": "live",
                                     "version": 2, "weight_version": 0, "weight_percent": 0,
                                     "created_ms": now, "updated_ms": now})
        time.sleep(1)  # heard by both
        assert a.deploy("app", functions["hello"])[0] == 201  # a new function
        assert wait_for(lambda: listed(b, "app"), timeout=15)
        for d in (a, b):
            assert wait_for(lambda: d.json("GET", "/v1/functions/app/aliases")[1]["aliases"] == [],
                            timeout=15), (d.json("GET", "/v1/functions/app/aliases"), d.log())
        assert a.deploy("app", functions["probe"])[0] == 200  # its version 2
        assert invoke(b, "app:live")[0] == 404
