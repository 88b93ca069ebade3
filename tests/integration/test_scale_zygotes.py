"""Zygotes on demand (issue 20, item 1): a version's zygote starts at its
first invocation, stops after --zygote-idle without instances, and all of
them share --max-zygotes (the least recently used idle one goes first; when
none can, 503 zygote_budget). A restart brings every function back without
starting a single zygote."""

import os
import random
import re
import threading
import time

from conftest import wait_for


def zygote_pid(d, name):
    """The function's zygote's pid, 0 when none runs."""
    return d.describe(name).get("zygote_pid", 0)


def node_zygotes(d):
    status, doc = d.json("GET", "/v1/nodes")
    assert status == 200, doc
    return doc["nodes"][0]["zygotes"]


def metric(d, line_start):
    """The value of the /metrics sample starting with line_start."""
    status, _, body = d.request("GET", "/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(line_start + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no {line_start} in /metrics")


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose: spated reaps it soon.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # reaped meanwhile (ESRCH on the read)
        return False


def runners_of(d):
    """The pids of spated's children that are spate-runner (zygotes)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == d.proc.pid and b"spate-runner" in cmd:
            out.append(int(entry))
    return out


def no_instances(d, name):
    """None starting, idle, busy or stopping: a spare (started ahead, which
    never keeps its zygote from stopping) is not counted."""
    doc = d.describe(name)
    return sum(n for state, n in doc["instances"].items() if state != "spare") == 0


def test_zygote_starts_on_first_invoke_and_stops_after_idle(make_spated, functions):
    d = make_spated("--zygote-idle", "1")
    assert node_zygotes(d) == {"running": 0, "max": 128, "idle_s": 1}
    # The deploy loads the object in a zygote (that is its check), kept until idle.
    status, doc = d.deploy("hello", functions["hello"], keep_alive=0)
    assert status == 201, doc
    first = zygote_pid(d, "hello")
    assert first > 0
    assert wait_for(lambda: zygote_pid(d, "hello") == 0, timeout=15), d.log()
    assert wait_for(lambda: not alive(first)), "the idle zygote's process still runs"
    assert node_zygotes(d)["running"] == 0
    assert runners_of(d) == []

    # The first invocation starts it again, and it answers.
    status, body = d.invoke("hello", b"x")
    assert status == 200, body
    second = zygote_pid(d, "hello")
    assert second > 0 and second != first
    assert node_zygotes(d)["running"] == 1
    assert metric(d, "spate_node_zygotes") == 1
    # Its instance leaves at once (keep_alive 0); then the zygote, a second later.
    assert wait_for(lambda: no_instances(d, "hello"))
    assert wait_for(lambda: zygote_pid(d, "hello") == 0, timeout=15), d.log()
    assert wait_for(lambda: not alive(second))
    assert metric(d, 'spate_zygote_stops_total{reason="idle"}') == 2
    assert metric(d, "spate_node_zygotes") == 0
    status, body = d.invoke("hello", b"y")
    assert status == 200, body


def test_a_zygote_with_instances_is_kept_past_its_idle_time(make_spated, functions):
    """Instances die with their zygote: it stays while one runs (idle or busy)."""
    d = make_spated("--zygote-idle", "1")
    status, doc = d.deploy("hello", functions["hello"], keep_alive=4000)
    assert status == 201, doc
    status, body = d.invoke("hello", b"x")
    assert status == 200, body
    pid = zygote_pid(d, "hello")
    time.sleep(2.5)  # past the zygote's idle time, within the instance's keep-alive
    assert zygote_pid(d, "hello") == pid and alive(pid)
    assert d.describe("hello")["instances"]["idle"] == 1
    status, body = d.invoke("hello", b"y")  # the same instance answers
    assert status == 200, body
    assert d.describe("hello")["stats"]["cold_starts"] == 1
    # Once the instance has left, the zygote follows.
    assert wait_for(lambda: zygote_pid(d, "hello") == 0, timeout=20), d.log()


def test_the_budget_stops_the_least_recently_used(make_spated, functions):
    d = make_spated("--max-zygotes", "2", "--zygote-idle", "3600")
    for name in ("a", "b"):
        status, doc = d.deploy(name, functions["hello"], keep_alive=0)
        assert status == 201, doc
    assert node_zygotes(d)["running"] == 2
    a_pid = zygote_pid(d, "a")
    # A third deploy is still checked in a zygote; then the budget holds
    # again: the least recently used (a) stopped.
    status, doc = d.deploy("c", functions["hello"], keep_alive=0)
    assert status == 201, doc
    assert zygote_pid(d, "a") == 0 and zygote_pid(d, "b") > 0 and zygote_pid(d, "c") > 0
    assert wait_for(lambda: not alive(a_pid))
    assert node_zygotes(d)["running"] == 2
    # b is used, so c is now the least recently used: invoking a stops c.
    status, body = d.invoke("b", b"x")
    assert status == 200, body
    assert wait_for(lambda: no_instances(d, "b"))
    status, body = d.invoke("a", b"x")
    assert status == 200, body
    assert zygote_pid(d, "c") == 0, d.log()
    assert zygote_pid(d, "a") > 0 and zygote_pid(d, "b") > 0
    assert node_zygotes(d)["running"] == 2
    assert len(runners_of(d)) == 2
    assert metric(d, 'spate_zygote_stops_total{reason="budget"}') == 2
    # Logged at most once per 10 s (the metric counts every one).
    assert "zygote stopped to make room (--max-zygotes 2): the least recently used fn=a" in d.log()
    assert "least recently used fn=c" not in d.log()


def test_a_full_budget_of_busy_zygotes_answers_503_zygote_budget(make_spated, functions):
    d = make_spated("--max-zygotes", "1", "--zygote-idle", "3600")
    for name in ("slow", "other"):
        status, doc = d.deploy(name, functions["probe"], keep_alive=0)
        assert status == 201, doc
    answers = {}
    t = threading.Thread(target=lambda: answers.update(slow=d.invoke("slow", b"sleep:3000")))
    t.start()
    try:
        assert wait_for(lambda: d.describe("slow")["instances"]["busy"] == 1), d.log()
        # The one zygote has an instance at work: none can stop for other's.
        status, headers, body = d.request("POST", "/v1/functions/other/invoke", b"x")
        assert status == 503, body
        assert b'"code":"zygote_budget"' in body, body
        assert b"--max-zygotes" in body, body
        assert metric(d, "spate_zygote_refusals_total") >= 1
        # The function says why its zygote is not running, and the log says
        # the limit once, as any node limit.
        assert "--max-zygotes 1" in d.describe("other").get("load_error", ""), d.describe("other")
        cli = d.cli("status", "other")
        assert cli.returncode == 0, cli.stderr
        assert "not running: its last start failed" in cli.stdout.decode(), cli.stdout
        assert "next invocation starts it" not in cli.stdout.decode(), cli.stdout
        status, _, body = d.request("POST", "/v1/functions/other/invoke", b"x")
        assert status == 503, body
        warned = [line for line in d.log().splitlines()
                  if "node limit reached" in line and 'limit="zygotes"' in line]
        assert len(warned) == 1, d.log()
        # A deploy is still checked (over the budget for the time of its
        # check), and refused or accepted as always.
        status, doc = d.deploy("bad", functions["no_handler"])
        assert status == 400 and doc["code"] == "bad_artifact", doc
        status, doc = d.deploy("late", functions["probe"], keep_alive=0)
        assert status == 201, doc
        # Its zygote was the only one that could go: stopped once checked.
        assert zygote_pid(d, "late") == 0
        assert node_zygotes(d)["running"] == 1
    finally:
        t.join(30)
    assert answers["slow"][0] == 200, answers
    # The slow one's instance has left: its zygote may go, and other runs.
    assert wait_for(lambda: no_instances(d, "slow"))
    status, body = d.invoke("other", b"x")
    assert status == 200, body
    assert zygote_pid(d, "slow") == 0
    assert "load_error" not in d.describe("other")


def test_restart_with_2000_functions_starts_no_zygote(make_spated, functions):
    n = 2000
    d = make_spated("--max-zygotes", "8")
    art = functions["hello"].read_bytes()
    errors = []

    def deploy_range(lo, hi):
        for i in range(lo, hi):
            status, doc = d.json("PUT", f"/v1/functions/f{i}?keep_alive=0", art)
            if status != 201:
                errors.append((i, status, doc))

    threads = [threading.Thread(target=deploy_range, args=(k * n // 4, (k + 1) * n // 4))
               for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert node_zygotes(d)["running"] <= 8
    assert len(runners_of(d)) <= 8
    assert d.stop() == 0

    d.start()
    # Up: every function is back, and not one zygote started.
    status, _, body = d.request("GET", "/v1/health")
    assert status == 200, body
    assert runners_of(d) == []
    assert node_zygotes(d)["running"] == 0
    assert metric(d, "spate_node_zygotes") == 0
    status, doc = d.json("GET", "/v1/nodes")
    assert doc["nodes"][0]["functions"] == n
    assert not re.search(r"loaded fn=", d.log()), "a zygote loaded at start-up"
    # A sample of them (the first, the last, a few at random) still invokes.
    sample = {0, n - 1, *random.sample(range(n), 10)}
    for i in sorted(sample):
        status, body = d.invoke(f"f{i}", b"x")
        assert status == 200, (i, body)
    assert node_zygotes(d)["running"] <= 8


def test_prewarm_keeps_the_zygote_running_across_idle_and_restarts(make_spated, functions):
    d = make_spated("--zygote-idle", "1", "--max-zygotes", "1")
    status, doc = d.deploy("warm", functions["hello"], prewarm="true", keep_alive=0)
    assert status == 201, doc
    assert doc["config"]["prewarm"] is True
    status, doc = d.deploy("cold", functions["hello"], keep_alive=0)
    assert status == 201, doc
    assert "prewarm" not in doc["config"]
    # Over the budget after cold's check: the zygote that goes is cold's,
    # though warm's was used less recently.
    assert zygote_pid(d, "cold") == 0 and zygote_pid(d, "warm") > 0
    pid = zygote_pid(d, "warm")
    time.sleep(2.5)  # past --zygote-idle
    assert zygote_pid(d, "warm") == pid and alive(pid)
    r = d.cli("status", "warm")
    assert b"prewarm (the zygote is kept running)" in r.stdout, r.stdout
    assert f"running, pid {pid}".encode() in r.stdout, r.stdout
    assert b"not running: the next invocation starts it" in d.cli("status", "cold").stdout

    assert d.stop() == 0
    d.start()
    # A prewarmed version's zygote starts with spated; no other does.
    assert wait_for(lambda: zygote_pid(d, "warm") > 0), d.log()
    assert zygote_pid(d, "cold") == 0
    assert d.invoke("warm", b"x")[0] == 200
    assert wait_for(lambda: no_instances(d, "warm"))
    # The budget is full with a zygote without instances: cold's first
    # invocation stops it (prewarmed ones go last, but they do go).
    status, body = d.invoke("cold", b"x")
    assert status == 200, body
    assert zygote_pid(d, "warm") == 0
    # A change of configuration turns it off: a new version, which idles out.
    status, doc = d.json("PATCH", "/v1/functions/warm?prewarm=false")
    assert status == 200 and doc["changed"] and "prewarm" not in doc["config"], doc
    status, doc = d.json("PATCH", "/v1/functions/warm?prewarm=maybe")
    assert status == 400 and doc["code"] == "bad_parameter", doc
