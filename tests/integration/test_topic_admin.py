"""Administering topics through the CLI (issue 14, items 5 and 6): topic ls,
rm (refused while triggers use it, --force removes them), purge, retention
for topics nobody consumes, publish with a terminal and no payload, counters
that stay true after trigger rm, and dead letters found through the
trigger's own --dlq."""

import json
import os
import pty
import subprocess
import time

from conftest import SPATE, deploy_recorder, topic_stats, wait_for


def publish(d, topic, *bodies):
    body = "".join(b + "\n" for b in bodies).encode()
    status, _, data = d.request("POST", f"/v1/topics/{topic}/messages", body,
                                {"Content-Type": "application/x-ndjson"})
    assert status == 202, data



def payloads(d, name):
    status, doc = d.json("GET", f"/v1/topics/{name}/messages?limit=1000")
    assert status == 200, doc
    return [m["payload"] for m in doc["messages"]]



def ended(path):
    if not os.path.exists(path):
        return []
    return [line.split()[1] for line in open(path) if line.startswith("E ")]


def ok(r):
    assert r.returncode == 0, (r.stdout, r.stderr)
    return r.stdout.decode()


def test_topic_ls_rm_refused_then_forced(spated, functions, tmp_path):
    deploy_recorder(spated, functions, tmp_path)
    ok(spated.cli("trigger", "add", "orders", "rec", "--dlq", "orders-dead"))
    publish(spated, "loose", "a", "b")
    out = ok(spated.cli("topic", "ls"))
    lines = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert set(lines) == {"orders", "loose"}, out
    assert lines["loose"][1] == "2" and lines["orders"][8] == "1", out  # depth, triggers
    doc = json.loads(ok(spated.cli("--json", "topic", "ls")))
    assert {t["name"] for t in doc["topics"]} == {"orders", "loose"}

    # Refused while a trigger reads it: the message names the trigger.
    r = spated.cli("topic", "rm", "orders")
    assert r.returncode == 4 and b"orders -> rec" in r.stderr and b"--force" in r.stderr, r.stderr
    assert spated.json("GET", "/v1/topics/orders")[0] == 200
    assert len(spated.json("GET", "/v1/triggers")[1]["triggers"]) == 1
    # A trigger's dead-letter topic is in use too (its dead letters would go).
    publish(spated, "orders-dead", "kept")
    r = spated.cli("topic", "rm", "orders-dead")
    assert r.returncode == 4 and b"dead-letter topic of trigger orders -> rec" in r.stderr, r.stderr
    assert payloads(spated, "orders-dead") == ["kept"]

    # --force removes the triggers that read it, and says which.
    publish(spated, "orders", "fail-1")  # dead-lettered, or still stored: both go
    out = ok(spated.cli("topic", "rm", "orders", "--force"))
    assert "removed trigger orders -> rec" in out and "removed topic orders" in out, out
    assert spated.json("GET", "/v1/triggers")[1]["triggers"] == []
    assert spated.json("GET", "/v1/topics/orders")[0] == 404
    assert "orders" not in ok(spated.cli("topic", "ls")).split()
    # Unused now, so a plain rm goes through; an unknown topic is a clear error.
    out = ok(spated.cli("topic", "rm", "loose"))
    assert "removed topic loose and its 2 messages" in out
    r = spated.cli("topic", "rm", "loose")
    assert r.returncode == 3 and b"topic 'loose' does not exist" in r.stderr
    # Gone for good, also after a restart; the name can be used again afresh.
    spated.stop()
    spated.start()
    assert spated.json("GET", "/v1/topics/loose")[0] == 404
    publish(spated, "loose", "again")
    doc = topic_stats(spated, "loose")
    assert doc["published"] == 1 and payloads(spated, "loose") == ["again"], doc


def test_purge_empties_and_counts_but_spares_in_flight(spated, functions, tmp_path):
    publish(spated, "idle", *[f"i{i}" for i in range(7)])
    out = ok(spated.cli("topic", "purge", "idle"))
    assert "purged 7 messages from idle" in out, out
    assert payloads(spated, "idle") == [] and topic_stats(spated, "idle")["stored"] == 0
    assert json.loads(ok(spated.cli("--json", "topic", "purge", "idle"))) == {"purged": 0}

    # With a trigger: what waits goes, what runs finishes and is settled.
    rec = deploy_recorder(spated, functions, tmp_path, sleep_us=1500000, max=1)
    ok(spated.cli("trigger", "add", "busy", "rec"))
    publish(spated, "busy", *[f"b{i}" for i in range(5)])
    assert wait_for(lambda: topic_stats(spated, "busy")["in_flight"] == 1)
    out = ok(spated.cli("topic", "purge", "busy"))
    assert "purged 4 messages from busy" in out, out
    assert wait_for(lambda: topic_stats(spated, "busy")["acknowledged"] == 1, timeout=15)
    time.sleep(2)  # nothing purged runs
    assert ended(rec) == ["b0"]
    doc = topic_stats(spated, "busy")
    assert doc["depth"] == 0 and doc["in_flight"] == 0, doc
    # The trigger goes on with what comes next, also after a restart.
    publish(spated, "busy", "after")
    assert wait_for(lambda: ended(rec) == ["b0", "after"], timeout=15), ended(rec)
    spated.stop()
    spated.start()
    publish(spated, "busy", "later")
    assert wait_for(lambda: ended(rec) == ["b0", "after", "later"], timeout=15), ended(rec)
    r = spated.cli("topic", "purge", "nope")
    assert r.returncode == 3 and b"topic 'nope' does not exist" in r.stderr


def test_retention_of_an_unconsumed_topic_also_after_a_restart(spated):
    publish(spated, "audit", *[f"a{i}" for i in range(10)])
    out = ok(spated.cli("topic", "set", "audit", "--max-messages", "4"))
    assert "topic audit keeps: 4 messages" in out, out
    assert wait_for(lambda: payloads(spated, "audit") == ["a6", "a7", "a8", "a9"], timeout=5)
    # Size: the newest that fit (2 bytes each).
    out = ok(spated.cli("topic", "set", "audit", "--max-bytes", "5"))
    assert "4 messages" in out and "5 bytes" in out, out  # a limit not given stays
    assert wait_for(lambda: payloads(spated, "audit") == ["a8", "a9"], timeout=5)
    doc = topic_stats(spated, "audit")
    assert doc["stored"] == 2 and doc["bytes"] == 4, doc
    assert doc["retention"] == {"max_age_ms": 0, "max_bytes": 5, "max_messages": 4}
    # Age: what is older than 2 s goes, also while spated was down.
    ok(spated.cli("topic", "set", "audit", "--max-age", "2s", "--max-bytes", "0",
                  "--max-messages", "0"))
    publish(spated, "audit", "fresh")
    spated.stop()
    time.sleep(2.5)
    spated.start()
    assert wait_for(lambda: payloads(spated, "audit") == [], timeout=5), payloads(spated, "audit")
    assert topic_stats(spated, "audit")["retention"]["max_age_ms"] == 2000
    assert "2s" in ok(spated.cli("topic", "stats", "audit"))
    # Bad values are the user's to fix, and said so.
    r = spated.cli("topic", "set", "audit", "--max-age", "10")
    assert r.returncode == 2 and b"--max-age takes a duration" in r.stderr
    status, doc = spated.json("PUT", "/v1/topics/audit?max_bytes=-1")
    assert status == 400 and "max_bytes" in doc["error"], doc


def test_retention_never_drops_what_a_trigger_has_not_settled(spated, functions, tmp_path):
    rec = deploy_recorder(spated, functions, tmp_path, sleep_us=300000, max=1)
    ok(spated.cli("topic", "set", "work", "--max-messages", "1", "--max-age", "1s"))
    ok(spated.cli("trigger", "add", "work", "rec"))
    bodies = [f"w{i}" for i in range(6)]
    publish(spated, "work", *bodies)
    out = ok(spated.cli("topic", "stats", "work"))
    assert "paused" in out, out
    # Each message runs, though the topic is over both limits all along.
    assert wait_for(lambda: sorted(ended(rec)) == bodies, timeout=30), ended(rec)
    # Without its trigger, the topic is held to its limits again: the count
    # (with an age far off, so that a slow check cannot see x3 aged out too),
    # then the age.
    ok(spated.cli("trigger", "rm", "work", "rec"))
    ok(spated.cli("topic", "set", "work", "--max-age", "1h"))
    publish(spated, "work", "x1", "x2", "x3")
    assert wait_for(lambda: payloads(spated, "work") == ["x3"], timeout=10), payloads(spated, "work")
    ok(spated.cli("topic", "set", "work", "--max-age", "1s"))
    assert wait_for(lambda: payloads(spated, "work") == [], timeout=10), payloads(spated, "work")


def test_publish_with_a_terminal_and_no_payload_says_what_it_wants(spated):
    master, slave = pty.openpty()
    try:
        r = subprocess.run([str(SPATE), "--url", spated.url, "publish", "typed"], stdin=slave,
                           capture_output=True, timeout=30)
    finally:
        os.close(slave)
        os.close(master)
    assert r.returncode == 2, r
    assert b"publish needs a PAYLOAD" in r.stderr and b"'-'" in r.stderr, r.stderr
    assert spated.json("GET", "/v1/topics/typed")[0] == 404  # nothing published
    # Asked for explicitly, an empty message is still possible.
    assert ok(spated.cli("publish", "typed", "")).startswith("published 1 message")


def test_counters_stay_true_after_trigger_rm(spated, functions, tmp_path):
    slow = deploy_recorder(spated, functions, tmp_path, name="slow", sleep_us=4000000, max=1)
    deploy_recorder(spated, functions, tmp_path, name="fast")
    ok(spated.cli("trigger", "add", "ticks", "fast", "--max-attempts", "1"))
    ok(spated.cli("trigger", "add", "ticks", "slow"))
    publish(spated, "ticks", "t0", "fail-t1")
    time.sleep(1.2)
    publish(spated, "ticks", "t2", "t3")
    assert wait_for(lambda: topic_stats(spated, "ticks")["acknowledged"] == 3 and
                    topic_stats(spated, "ticks")["dead_lettered"] == 1, timeout=10)
    stored = topic_stats(spated, "ticks")["stored"]
    assert stored == 4, stored  # slow has not settled any
    # slow goes: what only it held back leaves the store; the counts of what
    # was done stay (they are the topic's, not the trigger's).
    ok(spated.cli("trigger", "rm", "ticks", "slow"))
    assert wait_for(lambda: topic_stats(spated, "ticks")["stored"] == 0, timeout=5), topic_stats(spated, "ticks")
    doc = topic_stats(spated, "ticks")
    assert doc["acknowledged"] == 3 and doc["dead_lettered"] == 1 and doc["published"] == 4, doc
    # slow's invocation that was running finishes, and counts.
    assert wait_for(lambda: ended(slow) == ["t0"], timeout=10)
    assert wait_for(lambda: topic_stats(spated, "ticks")["acknowledged"] == 4, timeout=5)
    # Without triggers: depth and age are those of what is stored.
    ok(spated.cli("trigger", "rm", "ticks", "fast"))
    publish(spated, "ticks", "u0")
    time.sleep(1.5)
    publish(spated, "ticks", "u1")
    doc = topic_stats(spated, "ticks")
    assert doc["depth"] == 2 and doc["in_flight"] == 0 and 1.4 < doc["oldest_age_s"] < 10, doc
    assert doc["acknowledged"] == 4 and doc["dead_lettered"] == 1, doc
    metrics = spated.request("GET", "/metrics")[2].decode()
    assert 'spate_topic_dead_lettered_total{topic="ticks"} 1' in metrics
    spated.stop()
    spated.start()
    doc = topic_stats(spated, "ticks")
    assert doc["acknowledged"] == 4 and doc["dead_lettered"] == 1 and doc["depth"] == 2, doc


def test_oldest_age_after_trigger_rm_is_that_of_what_is_left(spated, functions, tmp_path):
    rec = deploy_recorder(spated, functions, tmp_path, sleep_us=2000000, max=1)
    ok(spated.cli("trigger", "add", "q", "rec"))
    publish(spated, "q", "first")
    time.sleep(1.0)
    publish(spated, "q", "second")
    # first done and gone from the store; second waits or runs.
    assert wait_for(lambda: ended(rec) == ["first"] and topic_stats(spated, "q")["stored"] == 1,
                    timeout=10)
    ok(spated.cli("trigger", "rm", "q", "rec"))
    doc = topic_stats(spated, "q")
    # The age of second (published ~2 s ago), not of first (~3 s ago and gone).
    first_age = doc["oldest_age_s"]
    time.sleep(0.01)
    assert payloads(spated, "q") == ["second"]
    status, msgs = spated.json("GET", "/v1/topics/q/messages")
    age_second = time.time() - msgs["messages"][0]["published_ms"] / 1000
    assert abs(first_age - age_second) < 0.5, (first_age, age_second)


def test_dlq_ls_and_redrive_find_the_triggers_own_dead_letter_topic(spated, functions, tmp_path):
    rec = deploy_recorder(spated, functions, tmp_path)
    ok(spated.cli("trigger", "add", "payments", "rec", "--max-attempts", "1", "--dlq", "morgue"))
    ok(spated.cli("publish", "payments", "fail-card"))
    assert wait_for(lambda: topic_stats(spated, "payments")["dead_lettered"] == 1)
    # Through the source topic: the CLI asks which topic its trigger uses.
    out = ok(spated.cli("dlq", "ls", "payments"))
    assert "morgue" in out and "payments -> rec" in out and "fail-card" in out, out
    assert spated.json("GET", "/v1/topics/payments.dlq")[0] == 404  # no guess
    doc = json.loads(ok(spated.cli("--json", "dlq", "ls", "payments")))
    [dlq] = doc["dead_letter_topics"]
    assert dlq["topic"] == "morgue" and dlq["messages"][0]["payload"] == "fail-card", doc
    # And through the dead-letter topic itself.
    assert "fail-card" in ok(spated.cli("dlq", "ls", "morgue"))
    out = ok(spated.cli("dlq", "redrive", "payments"))
    assert "redrove 1 message from morgue" in out and "payments -> rec" in out, out
    assert wait_for(lambda: ended(rec).count("fail-card") == 2, timeout=10)
    assert wait_for(lambda: topic_stats(spated, "payments")["dead_lettered"] == 2)
    out = ok(spated.cli("dlq", "redrive", "morgue"))
    assert "redrove 1 message from morgue" in out, out
    # A trigger whose dead-letter topic holds nothing yet: said, not an error.
    ok(spated.cli("trigger", "add", "quiet", "rec", "--dlq", "quiet-dead"))
    out = ok(spated.cli("dlq", "ls", "quiet"))
    assert "quiet-dead" in out and "0 dead letters" in out, out


def test_redrive_of_an_ordinary_topic_is_refused_with_a_message(spated, functions, tmp_path):
    publish(spated, "plain", "p1", "p2")
    r = spated.cli("dlq", "redrive", "plain")
    assert r.returncode == 4, r
    assert b"not the dead-letter topic of any trigger" in r.stderr, r.stderr
    assert payloads(spated, "plain") == ["p1", "p2"]  # nothing deleted
    out = ok(spated.cli("dlq", "ls", "plain"))
    assert "0 dead letters" in out and "no trigger reads it" in out, out
    # A topic with a trigger: its trigger's dead-letter topic, not the topic.
    deploy_recorder(spated, functions, tmp_path)
    ok(spated.cli("trigger", "add", "plain", "rec"))
    assert wait_for(lambda: topic_stats(spated, "plain")["acknowledged"] == 2)
    out = ok(spated.cli("dlq", "redrive", "plain"))
    assert "no dead letters in plain.dlq" in out, out
