"""A full node makes room for work (issue 20's new-user pass): a zygote kept
only by idle instances or a spare gives way to another function's first
invocation under --max-zygotes, and another function's idle instance gives
way to a start at --max-instances, instead of the waiting work being refused
until a keep-alive runs out."""

import signal
import threading
import time

from conftest import deploy_recorder, seen, topic_stats, wait_for


def zygote_pid(d, name):
    return d.describe(name).get("zygote_pid", 0)


def test_idle_instances_give_their_zygote_to_a_trigger(make_spated, functions, tmp_path):
    d = make_spated("--max-zygotes", "2", "--zygote-idle", "5")
    # hello keeps an idle instance for 60 s, hello2 a spare: both zygotes held.
    for name in ("hello", "hello2"):
        status, doc = d.deploy(name, functions["hello"], keep_alive=60000)
        assert status == 201, doc
        status, body = d.invoke(name, b"x")
        assert status == 200, body
    rec = deploy_recorder(d, functions, tmp_path, name="report")
    status, doc = d.json("PUT", "/v1/triggers/trades/report")
    assert status == 201, doc
    status, _, body = d.request("POST", "/v1/topics/trades/messages", b"t1\nt2\nt3\n",
                                {"Content-Type": "application/x-ndjson"})
    assert status == 202, body
    # Runs within seconds, not after hello's keep-alive (60 s).
    assert wait_for(lambda: len(seen(rec)) == 3, timeout=15), d.log()
    assert topic_stats(d, "trades")["depth"] == 0
    # hello's or hello2's zygote made room, and the log says which.
    assert zygote_pid(d, "report") > 0
    assert "zygote stopped to make room" in d.log(), d.log()
    # The one that gave way serves again when invoked (it takes the room back).
    for name in ("hello", "hello2"):
        status, body = d.invoke(name, b"x")
        assert status == 200, (name, body)


def test_an_idle_instance_of_another_function_gives_way_at_max_instances(make_spated, functions):
    d = make_spated("--max-instances", "1", "--spare-idle", "0")
    for name in ("a", "b"):
        status, doc = d.deploy(name, functions["hello"], keep_alive=60000)
        assert status == 201, doc
    status, body = d.invoke("a", b"x")
    assert status == 200, body
    assert d.describe("a")["instances"]["idle"] == 1
    status, body = d.invoke("b", b"x")
    assert status == 200, (body, d.log())
    assert wait_for(lambda: d.describe("a")["instances"]["idle"] == 0)


def node_status(d):
    status, doc = d.json("GET", "/v1/status")
    assert status == 200, doc
    return doc["limits"]


def test_lowered_limits_stop_what_only_waits_at_once(make_spated, functions, tmp_path):
    # Three functions, each with an idle instance (keep-alive 60 s) and its
    # zygote; a reload lowers both budgets to 1: what only waits stops now,
    # not after the keep-alive and --zygote-idle (300 s).
    conf = tmp_path / "spated.conf"
    conf.write_text("max-zygotes = 4\nmax-instances = 8\n")
    d = make_spated("--config", str(conf), "--spare-idle", "0")
    for name in ("a", "b", "c"):
        status, doc = d.deploy(name, functions["hello"])
        assert status == 201, doc
        status, body = d.invoke(name, b"x")
        assert status == 200, body
    assert node_status(d)["instances"]["used"] == 3
    conf.write_text("max-zygotes = 1\nmax-instances = 1\n")
    d.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: node_status(d)["instances"]["used"] == 1, timeout=5), node_status(d)
    assert wait_for(lambda: d.json("GET", "/v1/nodes")[1]["nodes"][0]["zygotes"]["running"] == 1,
                    timeout=5), (d.json("GET", "/v1/nodes"), d.log())
    # And every function still runs, in turn.
    for name in ("a", "b", "c", "a"):
        status, body = d.invoke(name, b"x")
        assert status == 200, (name, body)


def test_a_prewarmed_zygote_stopped_for_room_comes_back_when_there_is(make_spated, functions):
    d = make_spated("--max-zygotes", "1", "--spare-idle", "0")
    # M's minimum of one instance keeps its zygote: P's (prewarm) cannot
    # stay once its deploy's check is done.
    status, doc = d.deploy("m", functions["hello"], min=1)
    assert status == 201, doc
    assert wait_for(lambda: d.describe("m")["instances"]["idle"] == 1)
    status, doc = d.deploy("p", functions["hello"], prewarm="true")
    assert status == 201, doc
    assert wait_for(lambda: zygote_pid(d, "p") == 0)
    # M's minimum goes (a new version; the old one's instance and zygote
    # stop): the room goes to P, prewarmed, without an invocation.
    status, doc = d.json("PATCH", "/v1/functions/m?min=0")
    assert status == 200, doc
    assert wait_for(lambda: zygote_pid(d, "p") > 0, timeout=10), (d.describe("m"), d.log())
    status, body = d.invoke("p", b"x")
    assert status == 200, body


def test_prewarmed_functions_waiting_for_room_take_none_from_callers(make_spated, functions):
    # One room, two prewarmed functions waiting for it, and callers of two
    # others taking turns: a zygote stopped for a caller's room is the
    # caller's (it waits for it), never handed to a prewarmed one, and a
    # prewarmed one takes no room kept warm by an idle instance.
    d = make_spated("--max-zygotes", "1", "--spare-idle", "0")
    for name in ("p1", "p2"):
        status, doc = d.deploy(name, functions["hello"], prewarm="true")
        assert status == 201, doc
    for name in ("h", "c"):
        status, doc = d.deploy(name, functions["hello"])
        assert status == 201, doc
    answers = []
    for i in range(12):
        status, body = d.invoke("h" if i % 2 else "c", b"x")
        answers.append(status)
        time.sleep(0.3 if i % 3 == 0 else 0.05)
    assert answers == [200] * 12, (answers, d.log())
    # The last caller's idle instance keeps its zygote past the prewarm's looks.
    time.sleep(2.5)
    assert zygote_pid(d, "h") > 0 and zygote_pid(d, "p1") == 0 and zygote_pid(d, "p2") == 0
    # Waiting prewarms are not refusals: nobody asked.
    status, _, body = d.request("GET", "/metrics")
    line = [x for x in body.decode().splitlines() if x.startswith("spate_zygote_refusals_total ")]
    assert line == ["spate_zygote_refusals_total 0"], line
    assert "node limit reached" not in d.log(), d.log()


def test_a_budget_lowered_while_zygotes_work_is_met_as_the_work_ends(make_spated, functions,
                                                                    tmp_path):
    conf = tmp_path / "spated.conf"
    conf.write_text("max-zygotes = 4\n")
    d = make_spated("--config", str(conf), "--spare-idle", "0")
    for name in ("a", "b", "c"):
        status, doc = d.deploy(name, functions["probe"], keep_alive=0)
        assert status == 201, doc
    threads = [threading.Thread(target=d.invoke, args=(n, b"sleep:1500")) for n in ("a", "b", "c")]
    for t in threads:
        t.start()
    assert wait_for(lambda: all(d.describe(n)["instances"]["busy"] == 1 for n in ("a", "b", "c")))
    conf.write_text("max-zygotes = 1\n")
    d.proc.send_signal(signal.SIGHUP)
    for t in threads:
        t.join()
    zygotes = lambda: d.json("GET", "/v1/nodes")[1]["nodes"][0]["zygotes"]["running"]
    assert wait_for(lambda: zygotes() == 1, timeout=5), (zygotes(), d.log())
