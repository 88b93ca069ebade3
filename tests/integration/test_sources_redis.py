"""Event sources: a Redis stream drained into a topic (docs/api.md "Sources").

Each test starts its own redis-server (Debian's) on a free loopback port in a
temporary directory, XADDs entries with redis-cli, and checks that a
trigger's function ran for every one: after spated is killed with -9, after
redis-server restarts, with the acknowledgement upstream only after the
commit. Nothing asserts on speed: waits are generous bounds.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import add_source, add_trigger, seen, SPATE, deploy_recorder, topic_stats, wait_for

REDIS = shutil.which("redis-server")
CLI = shutil.which("redis-cli")
pytestmark = pytest.mark.skipif(not REDIS or not CLI,
                                reason="redis-server not installed (scripts/install-deps.sh)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    def __init__(self, workdir, persist=False, password=None):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.persist = persist
        self.password = password
        self.proc = None

    def start(self):
        args = [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--save", ""]
        # A restart that must lose nothing needs the stream on disk.
        args += ["--appendonly", "yes", "--appendfsync", "always"] if self.persist else \
            ["--appendonly", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=open(self.dir / "redis.log", "ab"),
                                     stderr=subprocess.STDOUT)
        assert wait_for(lambda: self.ping(), timeout=10), (self.dir / "redis.log").read_text()
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(15)

    def cli(self, *args):
        env = dict(os.environ)
        if self.password:
            env["REDISCLI_AUTH"] = self.password
        r = subprocess.run([CLI, "-p", str(self.port), *args], capture_output=True, text=True,
                           env=env, timeout=30)
        return r.stdout.strip()

    def ping(self):
        try:
            return self.cli("PING") == "PONG"
        except subprocess.TimeoutExpired:
            return False

    def xadd(self, stream, start, n, field="v"):
        # One pipe of commands: fast enough for thousands of entries.
        cmds = "".join(f"XADD {stream} * {field} e{i}\n" for i in range(start, start + n))
        env = dict(os.environ)
        if self.password:
            env["REDISCLI_AUTH"] = self.password
        r = subprocess.run([CLI, "-p", str(self.port)], input=cmds, capture_output=True,
                           text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr

    def pending(self, stream, group):
        out = self.cli("XPENDING", stream, group).split("\n")
        return int(out[0]) if out and out[0].isdigit() else -1


@pytest.fixture
def redis(tmp_path):
    started = []

    def make(**kw):
        r = Redis(tmp_path / f"redis{len(started)}", **kw).start()
        started.append(r)
        return r

    yield make
    for r in started:
        r.stop()








def test_entries_are_all_processed_and_acked_after_commit(spated, functions, tmp_path, redis):
    r = redis()
    r.xadd("orders", 0, 300)  # already there: a new group drains from the start
    rec = deploy_recorder(spated, functions, tmp_path)
    add_trigger(spated, "orders", "rec")
    status, doc = add_source(spated, "orders-in", f"redis://127.0.0.1:{r.port}/orders?group=spate",
                             "orders")
    assert status == 201, doc
    assert doc["topic"] == "orders" and doc["name"] == "orders-in"
    r.xadd("orders", 300, 200)
    want = {f"e{i}" for i in range(500)}
    assert wait_for(lambda: want <= set(seen(rec)), timeout=60), len(set(seen(rec)))
    assert wait_for(lambda: spated.json("GET", "/v1/sources/orders-in")[1]["committed"] == 500,
                    timeout=30)
    doc = spated.json("GET", "/v1/sources/orders-in")[1]
    assert doc["state"] == "running" and doc["connected"] is True
    assert doc["received"] >= 500 and doc["refused"] == 0
    # Acked upstream: nothing left pending in the group.
    assert wait_for(lambda: r.pending("orders", "spate") == 0, timeout=10)
    assert wait_for(lambda: spated.json("GET", "/v1/sources/orders-in")[1]["lag"] == 0, timeout=10)
    metrics = spated.request("GET", "/metrics")[2].decode()
    assert 'spate_source_committed_total{source="orders-in"} 500' in metrics
    assert 'spate_source_connected{source="orders-in"} 1' in metrics
    assert 'spate_source_received_total{source="orders-in"}' in metrics
    assert 'spate_source_info{source="orders-in",topic="orders",scheme="redis"} 1' in metrics
    assert 'spate_source_lag{source="orders-in",topic="orders"} 0' in metrics
    # The dashboard shows it, read as an operator's browser does.
    from test_observability import dashboard_dom
    html = dashboard_dom(spated.url, tmp_path, "document.querySelector("
                         "'tr[data-source=\"orders-in\"] td:nth-child(5)')?.textContent === '500'")
    row = re.search(r'<tr data-source="orders-in">(.*?)</tr>', html)
    assert row, html[-3000:]
    # The name is a link to the source's page (web/pages.js): its text.
    cells = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))]
    assert cells[:3] == ["orders-in", "orders", "connected (redis)"], cells
    assert cells[4] == "500" and cells[6] == "0", cells
    # Listed, and removed: 204, then 404.
    assert [s["name"] for s in spated.json("GET", "/v1/sources")[1]["sources"]] == ["orders-in"]
    assert spated.request("DELETE", "/v1/sources/orders-in")[0] == 204
    assert spated.request("DELETE", "/v1/sources/orders-in")[0] == 404
    assert spated.request("GET", "/v1/sources/orders-in")[0] == 404


def test_fields_keys_and_refusals(spated, functions, tmp_path, redis):
    r = redis()
    rec = deploy_recorder(spated, functions, tmp_path)
    add_trigger(spated, "t", "rec")
    status, doc = add_source(spated, "s", f"redis://127.0.0.1:{r.port}/st?group=g", "t",
                             key_field="acct")
    assert status == 201, doc
    r.cli("XADD", "st", "*", "acct", "a1", "v", "one")        # key a1, payload "one"
    r.cli("XADD", "st", "*", "acct", "a2", "x", "1", "y", "2")  # key a2, JSON of x and y
    r.cli("XADD", "st", "*", "v", "nokey")                    # no key field: refused, acked
    assert wait_for(lambda: spated.json("GET", "/v1/sources/s")[1]["refused"] == 1, timeout=30)
    assert wait_for(lambda: spated.json("GET", "/v1/sources/s")[1]["committed"] == 2, timeout=30)

    def by_key():
        # At least once: a retried delivery (a slow first start) records twice.
        return {p[3]: p[1] for p in (l.split() for l in open(rec) if l.startswith("S "))}

    assert wait_for(lambda: set(by_key()) == {"a1", "a2"}, timeout=30), open(rec).read()
    by_key = by_key()
    assert by_key["a1"] == "one"
    assert json.loads(by_key["a2"]) == {"x": "1", "y": "2"}
    assert wait_for(lambda: r.pending("st", "g") == 0, timeout=10)
    assert "refused (in the dead letters" in spated.log()
    assert "key field 'acct' is missing" in spated.log()


def test_keys_of_one_batch_stay_apart(spated, functions, tmp_path, redis):
    """Several keyed entries in one fetch: each key ends where it ends (the
    queue reads keys as strings: without their NUL each ran on into the
    next entry's bytes)."""
    r = redis()
    for i in range(5):
        r.cli("XADD", "kb", "*", "acct", f"a{i}", "v", f"p{i}")  # there before the source
    rec = deploy_recorder(spated, functions, tmp_path)
    add_trigger(spated, "kb", "rec")
    assert add_source(spated, "kb", f"redis://127.0.0.1:{r.port}/kb?group=g", "kb",
                      key_field="acct")[0] == 201
    assert wait_for(lambda: len(seen(rec)) == 5, timeout=30)
    by_key = {parts[3]: parts[1] for parts in (line.split() for line in open(rec)
                                                if line.startswith("S "))}
    assert by_key == {f"a{i}": f"p{i}" for i in range(5)}


def test_kill_9_mid_stream_loses_nothing(make_spated, functions, tmp_path, redis):
    r = redis()
    d = make_spated()
    # Two instances of 10 ms each: about 200 entries a second, so the kill at
    # 50 lands mid-stream even on a loaded machine.
    rec = deploy_recorder(d, functions, tmp_path, sleep_us=10000, max=2)
    add_trigger(d, "jobs", "rec")
    assert add_source(d, "jobs", f"redis://127.0.0.1:{r.port}/jobs?group=g", "jobs")[0] == 201
    r.xadd("jobs", 0, 1000)
    assert wait_for(lambda: len(seen(rec)) > 50, timeout=60)
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    assert len(set(seen(rec))) < 1000  # it was killed mid-stream
    r.xadd("jobs", 1000, 500)  # while spated is down
    d.start()
    want = {f"e{i}" for i in range(1500)}
    assert wait_for(lambda: want <= set(seen(rec)), timeout=120), len(want - set(seen(rec)))
    assert wait_for(lambda: r.pending("jobs", "g") == 0, timeout=30)


def test_redis_restart_mid_stream_loses_nothing(spated, functions, tmp_path, redis):
    r = redis(persist=True)
    rec = deploy_recorder(spated, functions, tmp_path, sleep_us=5000, max=2)
    add_trigger(spated, "flow", "rec")
    assert add_source(spated, "flow", f"redis://127.0.0.1:{r.port}/flow?group=g", "flow")[0] == 201
    r.xadd("flow", 0, 800)
    assert wait_for(lambda: len(seen(rec)) > 20, timeout=60)
    r.stop()
    assert wait_for(lambda: spated.json("GET", "/v1/sources/flow")[1]["connected"] is False,
                    timeout=30)
    doc = spated.json("GET", "/v1/sources/flow")[1]
    assert doc["last_error"]
    r.start()
    r.xadd("flow", 800, 200)
    want = {f"e{i}" for i in range(1000)}
    assert wait_for(lambda: want <= set(seen(rec)), timeout=120), len(want - set(seen(rec)))
    assert wait_for(lambda: spated.json("GET", "/v1/sources/flow")[1]["connected"] is True,
                    timeout=30)
    assert wait_for(lambda: r.pending("flow", "g") == 0, timeout=30)


@pytest.mark.parametrize("url,why", [
    ("ftp://h:1/x?group=g", "unknown scheme 'ftp'"),
    ("redis://127.0.0.1:6379?group=g", "missing stream"),
    ("redis://127.0.0.1:6379/s", "missing group"),
    ("redis://127.0.0.1:99999/s?group=g", "port"),
    ("redis://127.0.0.1:6379/s?group=g&colour=red", "unknown URL parameter 'colour'"),
    ("not a url", "malformed URL"),
])
def test_bad_url_is_400_naming_the_problem(spated, url, why):
    status, doc = add_source(spated, "bad", url, "t")
    assert status == 400, doc
    assert why in doc["error"], doc
    assert spated.request("GET", "/v1/sources/bad")[0] == 404


def test_credentials_never_shown(spated, functions, tmp_path, redis):
    secret = "s3cr3t-Pa55"
    r = redis(password=secret)
    deploy_recorder(spated, functions, tmp_path)
    add_trigger(spated, "c", "rec")
    url = f"redis://default:{secret}@127.0.0.1:{r.port}/c?group=g"
    status, doc = add_source(spated, "creds", url, "c")
    assert status == 201, doc
    assert doc["url"] == f"redis://default:***@127.0.0.1:{r.port}/c?group=g"
    r.xadd("c", 0, 5)
    assert wait_for(lambda: spated.json("GET", "/v1/sources/creds")[1]["committed"] == 5, timeout=30)
    # A wrong password: the error is shown, the password is not.
    status, doc = add_source(spated, "wrong", f"redis://default:nope-{secret}@127.0.0.1:{r.port}/c?group=g2", "c")
    assert status == 201
    assert wait_for(lambda: spated.json("GET", "/v1/sources/wrong")[1]["last_error"], timeout=30)
    for path in ("/v1/sources", "/v1/sources/creds", "/v1/sources/wrong", "/metrics"):
        assert secret not in spated.request("GET", path)[2].decode()
    rc, out, err = cli(spated, "source", "ls")
    assert rc == 0 and "creds" in out and secret not in out + err
    spated.stop()
    assert secret not in spated.log()
    # The store keeps it, readable by spated's user only.
    db = spated.data / "spate.db"
    assert (os.stat(db).st_mode & 0o777) == 0o600
    assert (os.stat(spated.data).st_mode & 0o077) in (0, 0o011)
    spated.start()  # the fixture stops it


def cli(d, *args):
    r = d.cli(*args)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def test_source_cli_round_trip(spated, redis):
    r = redis()
    url = f"redis://127.0.0.1:{r.port}/cli?group=g"
    rc, out, err = cli(spated, "source", "add", "from-cli", url, "--to", "cli-topic",
                       "--key-field", "k")
    assert rc == 0, err
    rc, out, err = cli(spated, "source", "ls")
    assert rc == 0 and "from-cli" in out and "cli-topic" in out, out + err
    assert wait_for(lambda: "running" in cli(spated, "source", "status", "from-cli")[1], timeout=30)
    rc, out, err = cli(spated, "--json", "source", "status", "from-cli")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["key_field"] == "k" and doc["topic"] == "cli-topic"
    rc, out, err = cli(spated, "source", "add", "bad", "redis://h:1/s", "--to", "t")
    assert rc != 0 and "missing group" in err, err
    rc, out, err = cli(spated, "source", "rm", "from-cli")
    assert rc == 0, err
    rc, out, err = cli(spated, "source", "status", "from-cli")
    assert rc != 0 and "no source named 'from-cli'" in err, err
    # Kept across a restart.
    assert cli(spated, "source", "add", "kept", url, "--to", "cli-topic")[0] == 0
    spated.stop()
    spated.start()
    assert "kept" in cli(spated, "source", "ls")[1]


def test_sources_need_the_admin_scope(make_spated, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("admin adm1n-token-0123456789\ninvoke inv0ke-token-0123456789\npublish publ1sh-token-0123456789\n")
    d = make_spated("--token-file", str(tokens))
    body = json.dumps({"url": "redis://127.0.0.1:1/s?group=g", "topic": "t"}).encode()
    for token in ("inv0ke-token-0123456789", "publ1sh-token-0123456789"):
        auth = {"Authorization": f"Bearer {token}"}
        assert d.request("PUT", "/v1/sources/s", body, auth)[0] == 403
        assert d.request("GET", "/v1/sources", None, auth)[0] == 403
    assert d.request("GET", "/v1/sources")[0] == 401
    admin = {"Authorization": "Bearer adm1n-token-0123456789"}
    assert d.request("PUT", "/v1/sources/s", body, admin)[0] == 201
    assert d.request("GET", "/v1/sources/s", None, admin)[0] == 200
    assert d.request("DELETE", "/v1/sources/s", None, admin)[0] == 204


def test_deleting_a_topic_a_source_writes_into_is_refused_unless_forced(spated, redis):
    r = redis()
    assert add_source(spated, "s", f"redis://127.0.0.1:{r.port}/st?group=g", "into")[0] == 201
    r.cli("XADD", "st", "*", "v", "one")
    assert wait_for(lambda: spated.json("GET", "/v1/sources/s")[1]["committed"] == 1, timeout=30)
    status, doc = spated.json("DELETE", "/v1/topics/into")
    assert status == 409 and doc["code"] == "topic_in_use", doc
    assert "written by source s" in doc["error"], doc
    assert spated.json("GET", "/v1/topics/into")[0] == 200  # nothing deleted
    status, doc = spated.json("DELETE", "/v1/topics/into?force=true")
    assert status == 200 and doc["written_by_sources"] == ["s"] and doc["messages"] == 1, doc
    # The source stays, and its next batch makes the topic anew.
    r.cli("XADD", "st", "*", "v", "two")
    assert wait_for(lambda: spated.json("GET", "/v1/topics/into")[0] == 200, timeout=30)
