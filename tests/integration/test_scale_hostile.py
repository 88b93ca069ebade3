"""Issue 20's delivered parts, attacked and mended (zygotes on demand, node
limits, burst sizing, many topics and functions): each test is one defect
found, kept so that it stays fixed."""

import json

import pytest

from conftest import wait_for


def zygote_memory_limit(pid):
    """The memory.limit_in_bytes of the memory cgroup pid is in, or None."""
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if "memory" in controllers.split(","):
                with open(f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes") as g:
                    return int(g.read())
    return None


# Not on the ASan build: there each fork charges the zygote's cgroup the page
# tables of ASan's shadow too, far past the per-fork slack sized for normal
# builds (its zygote is OOM-killed near 100 instances at 16 MB).
@pytest.mark.normal_build
def test_a_zygote_outlives_many_instances_at_a_small_memory_limit(spated, functions):
    # Each fork's kernel memory (~110 KiB and more) is charged to the
    # zygote's memory cgroup while the instance lives: a zygote held to the
    # function's 16 MB alone was OOM-killed, with every instance, before 150
    # instances stood.
    n = 150
    status, doc = spated.deploy("many", functions["probe"], memory=16, min=n, max=n,
                                keep_alive=600000)
    assert status == 201, doc
    assert wait_for(lambda: spated.describe("many")["instances"]["idle"] == n, timeout=60), \
        spated.describe("many")
    doc = spated.describe("many")
    pid = doc["zygote_pid"]
    limit = zygote_memory_limit(pid)
    if limit is not None:  # the cgroup holds n instances' forks beside the function's 16 MB
        assert limit >= (16 << 20) + n * (100 << 10), limit
    # The zygote that forked them all still runs, and so do they.
    status, _, _ = spated.request("POST", "/v1/functions/many/invoke", b"x")
    assert status == 200
    doc = spated.describe("many")
    assert doc["zygote_pid"] == pid and doc["stats"]["crashes"] == 0, doc
    assert doc["instances"]["idle"] + doc["instances"]["busy"] == n, doc


def test_functions_are_listed_in_pages_and_bad_cursors_are_refused(spated, functions):
    # GET /v1/functions answered every function at once (100,000 of them in
    # one answer built on the loop); now a page as /v1/topics gives.
    names = [f"f{i:02d}" for i in range(7)]
    for name in names:
        assert spated.deploy(name, functions["probe"])[0] == 201
    got, after = [], ""
    for _ in range(10):
        status, doc = spated.json("GET", f"/v1/functions?limit=3&after={after}")
        assert status == 200, doc
        assert doc["limit"] == 3 and doc["total"] == 7 and len(doc["functions"]) <= 3, doc
        got += [f["name"] for f in doc["functions"]]
        if doc["next"] is None:
            break
        assert doc["next"] == got[-1]
        after = doc["next"]
    assert got == names
    # A cursor whose function was deleted meanwhile still goes on after it.
    assert spated.request("DELETE", "/v1/functions/f02")[0] == 204
    status, doc = spated.json("GET", "/v1/functions?limit=2&after=f02")
    assert status == 200 and [f["name"] for f in doc["functions"]] == ["f03", "f04"], doc
    assert doc["total"] == 6
    for bad in ("limit=0", "limit=1001", "limit=-1", "limit=abc", "limit=", "after=..%2F",
                "after=" + "x" * 300, "after=a%00b", "page=2", "limit=1&limit=99999999999999"):
        status, doc = spated.json("GET", f"/v1/functions?{bad}")
        assert status == 400 and doc["code"] == "bad_parameter", (bad, status, doc)
    # The CLI follows the pages (it asks 1,000 at a time).
    r = spated.cli("ls", "--json")
    assert r.returncode == 0, r.stderr

    doc = json.loads(r.stdout)
    assert [f["name"] for f in doc["functions"]] == [n for n in names if n != "f02"]


def history_rows(d, name):
    """The function's rows in the newest second of GET /v1/history, or []."""
    status, _, body = d.request("GET", "/v1/history")
    doc = json.loads(body)
    if not doc["samples"]:
        return []
    status, _, body = d.request("GET", f"/v1/history?since={doc['newest_ms'] - 1}")
    samples = json.loads(body)["samples"]
    return [r for r in samples[0]["functions"] if r[0] == name] if samples else []


def test_the_history_samples_busy_functions_and_sees_them_again(spated, functions):
    # The sampler walked (and sorted) every deployed function each second; it
    # now walks those invoked or with instances since they were last quiet.
    # A function that went quiet must leave the rows and come back when
    # invoked again.
    for i in range(300):  # idle ones: never in a row
        assert spated.deploy(f"idle{i}", functions["probe"])[0] == 201
    assert spated.deploy("hot", functions["probe"], keep_alive=300)[0] == 201
    for _ in range(2):
        assert spated.request("POST", "/v1/functions/hot/invoke", b"x")[0] == 200
        # Its idle instance (then none) shows, and goes once it has stopped.
        assert wait_for(lambda: history_rows(spated, "hot"), timeout=10)
        assert wait_for(lambda: spated.describe("hot")["instances"]["idle"] == 0, timeout=10)
        assert wait_for(lambda: not history_rows(spated, "hot"), timeout=10)
    status, _, body = spated.request("GET", "/v1/history")
    doc = json.loads(body)
    full = [s for s in doc["samples"] if s["full"]]
    assert all(not r[0].startswith("idle") for s in doc["samples"] for r in s["functions"])
    assert doc["series"] < 300, doc["series"]
    assert full


def test_triggers_are_listed_in_pages_and_the_cli_follows_them(spated, functions):
    for name in ("fa", "fb"):
        assert spated.deploy(name, functions["probe"])[0] == 201
    want = []
    for topic in ("t1", "t2.x", "t3"):
        for name in ("fb", "fa"):
            status, doc = spated.json("PUT", f"/v1/triggers/{topic}/{name}")
            assert status in (200, 201), doc
            want.append((topic, name))
    want.sort()
    got, after = [], ""
    for _ in range(10):
        status, doc = spated.json("GET", f"/v1/triggers?limit=4&after={after}")
        assert status == 200, doc
        assert doc["limit"] == 4 and doc["total"] == 6 and len(doc["triggers"]) <= 4, doc
        got += [(t["topic"], t["function"]) for t in doc["triggers"]]
        if doc["next"] is None:
            break
        assert doc["next"] == "/".join(got[-1])
        after = doc["next"]
    assert got == want
    # A cursor that names no trigger (removed meanwhile) goes on after it.
    status, doc = spated.json("GET", "/v1/triggers?limit=2&after=t2.x/f")
    assert [(t["topic"], t["function"]) for t in doc["triggers"]] == [("t2.x", "fa"), ("t2.x", "fb")]
    for bad in ("limit=0", "limit=1001", "limit=x", "after=t1", "after=t1/", "after=/fa",
                "after=t1/fa/x", "after=t%00/fa", "after=" + "t" * 300 + "/fa", "sort=asc"):
        status, doc = spated.json("GET", f"/v1/triggers?{bad}")
        assert status == 400 and doc["code"] == "bad_parameter", (bad, status, doc)
    r = spated.cli("trigger", "ls", "--json")
    assert r.returncode == 0, r.stderr
    assert [(t["topic"], t["function"]) for t in json.loads(r.stdout)["triggers"]] == want
    r = spated.cli("trigger", "ls")
    assert r.returncode == 0 and r.stdout.decode().count("\n") == 7, r.stdout


def test_a_zygote_hanging_at_load_is_named_in_the_timeout(make_spated, functions, tmp_path):
    # The deploy's check loaded it; a later zygote (started on demand, after
    # the first stopped idle) hangs in spate_preload. Callers were told "no
    # instance became free within the timeout", as if the function were busy.
    d = make_spated("--zygote-idle", "1")
    marker = tmp_path / "hang"
    status, doc = d.json("PUT", f"/v1/functions/h?timeout=1000&keep_alive=100"
                                f"&env=HANG_IF%3D{marker}", functions["preload_hang"].read_bytes())
    assert status == 201, doc
    assert d.request("POST", "/v1/functions/h/invoke", b"x")[0] == 200
    assert wait_for(lambda: "zygote_pid" not in d.describe("h"), timeout=10)
    marker.touch()
    status, _, body = d.request("POST", "/v1/functions/h/invoke", b"x")
    doc = json.loads(body)
    assert status == 504 and doc["code"] == "function_timeout", (status, doc)
    assert "zygote is still loading" in doc["error"] and "spate_preload" in doc["error"], doc
    # Once it may load again, it serves.
    marker.unlink()
    assert wait_for(lambda: d.request("POST", "/v1/functions/h/invoke", b"x")[0] == 200, timeout=30)


def test_long_pages_are_whole_and_in_order_while_written_over_several_turns(make_spated,
                                                                            functions):
    # A page of 1,000 functions held the loop 4-8 ms in one go; now it is
    # written a slice at a time (api/page.c), each turn resuming after the
    # last name written. What must not change: every item once, in order,
    # the cursor, the total; a client that leaves mid-page harms nothing.
    import sqlite3
    d = make_spated()
    assert d.deploy("f0000", functions["probe"])[0] == 201
    d.stop()
    n = 1500
    db = sqlite3.connect(d.data / "spate.db")
    cols = [r[1] for r in db.execute("PRAGMA table_info(versions)")]
    others = ", ".join(c for c in cols if c != "function")
    with db:
        for i in range(1, n):
            db.execute("INSERT INTO functions SELECT ?, active_version, created_ms, updated_ms "
                       "FROM functions WHERE name = 'f0000'", (f"f{i:04d}",))
            db.execute(f"INSERT INTO versions (function, {others}) SELECT ?, {others} "
                       "FROM versions WHERE function = 'f0000'", (f"f{i:04d}",))
    db.close()
    d.start()
    names = [f"f{i:04d}" for i in range(n)]
    status, doc = d.json("GET", "/v1/functions?limit=1000")
    assert status == 200, doc
    assert [f["name"] for f in doc["functions"]] == names[:1000]
    assert doc["next"] == names[999] and doc["total"] == n and doc["limit"] == 1000
    status, doc = d.json("GET", f"/v1/functions?limit=1000&after={names[999]}")
    assert [f["name"] for f in doc["functions"]] == names[1000:] and doc["next"] is None, doc
    # Clients that leave before their page is written.
    import socket
    for _ in range(20):
        s = socket.create_connection((d.host, d.port))
        s.sendall(b"GET /v1/functions?limit=1000 HTTP/1.1\r\nHost: x\r\n\r\n")
        s.close()
    # Triggers: 300 of them, a page of all and pages of 7.
    for i in range(300):
        status, doc = d.json("PUT", f"/v1/triggers/t{i % 10}/f{i // 10:04d}")
        assert status == 201, doc
    want = sorted((f"t{i % 10}", f"f{i // 10:04d}") for i in range(300))
    status, doc = d.json("GET", "/v1/triggers?limit=1000")
    assert status == 200 and doc["total"] == 300 and doc["next"] is None, doc
    assert [(t["topic"], t["function"]) for t in doc["triggers"]] == want
    got, after = [], ""
    while True:
        status, doc = d.json("GET", f"/v1/triggers?limit=7&after={after}")
        assert status == 200, doc
        got += [(t["topic"], t["function"]) for t in doc["triggers"]]
        if doc["next"] is None:
            break
        after = doc["next"]
    assert got == want
    assert d.request("GET", "/v1/health")[0] == 200
