"""Message attributes from an event source, and upstream entries that cannot
be messages (docs/api.md "Message attributes", "Sources").

A Redis stream (redis-server started by the test, as in test_sources_redis)
feeds a topic: each message keeps the source's name, the entry's stream id,
the id's time (the upstream timestamp) and whether Redis delivered it
before; they are shown by GET /v1/topics/T/messages, survive a restart of
spated, and follow a message into its dead letters. Entries that cannot be
messages land in the topic's dead letters (T.dlq) with the reason before
Redis is told they are done.
"""

import json
import time

from conftest import wait_for
from test_sources_redis import add_source, add_trigger, redis, seen  # noqa: F401 (fixture)
from conftest import deploy_recorder


def messages(d, topic):
    """The topic's stored messages; none while it does not exist yet."""
    status, doc = d.json("GET", f"/v1/topics/{topic}/messages")
    if status == 404:
        return []
    assert status == 200, doc
    return doc["messages"]


def test_small_explicit_redis_ids_are_not_taken_as_times(make_spated, redis):
    """XADD st 1-0 is a sequence number: as a time it would make the entry 56
    years old (and its deadline long missed)."""
    r = redis()
    d = make_spated()
    r.cli("XADD", "st", "1-0", "v", "seq")
    assert add_source(d, "s", f"redis://127.0.0.1:{r.port}/st?group=g", "t")[0] == 201
    assert wait_for(lambda: len(messages(d, "t")) == 1, timeout=30)
    a = messages(d, "t")[0]["attributes"]
    assert a["upstream_id"] == "1-0" and "upstream_ts" not in a, a


def test_attributes_are_kept_shown_and_survive_a_restart(make_spated, redis):
    r = redis()
    d = make_spated()
    # An explicit id: its time part is the upstream timestamp.
    r.cli("XADD", "st", "1700000000000-1", "v", "one")
    assert add_source(d, "s", f"redis://127.0.0.1:{r.port}/st?group=g", "t")[0] == 201
    status, doc = d.json("POST", "/v1/topics/t/messages", b"plain")  # no attributes
    assert status in (200, 201, 202), doc
    assert wait_for(lambda: len(messages(d, "t")) == 2, timeout=30)
    for attempt in range(2):
        ms = messages(d, "t")
        by_payload = {m["payload"]: m for m in ms}
        a = by_payload["one"]["attributes"]
        assert a == {"source": "s", "upstream_id": "1700000000000-1",
                     "upstream_ts": 1700000000000, "redelivered": False}, a
        assert "attributes" not in by_payload["plain"]
        if attempt == 0:  # kept in the store: the same after a restart
            assert d.stop() == 0
            d.start()


def test_refused_entries_land_in_the_dead_letters_and_later_ones_flow(make_spated, functions,
                                                                       tmp_path, redis):
    r = redis()
    d = make_spated("--message-max", "1024")
    rec = deploy_recorder(d, functions, tmp_path)
    add_trigger(d, "t", "rec")
    assert add_source(d, "s", f"redis://127.0.0.1:{r.port}/st?group=g", "t",
                      key_field="acct")[0] == 201
    big_id = r.cli("XADD", "st", "*", "acct", "a1", "v", "x" * 2000)  # over --message-max
    nokey_id = r.cli("XADD", "st", "*", "v", "nokey")  # no key field
    r.cli("XADD", "st", "*", "acct", "a2", "v", "after")
    assert wait_for(lambda: "after" in seen(rec), timeout=30)
    # The counts follow the ack upstream, which may come after the
    # function saw the message.
    assert wait_for(lambda: d.json("GET", "/v1/sources/s")[1]["committed"] == 1, timeout=30)
    doc = d.json("GET", "/v1/sources/s")[1]
    assert doc["refused"] == 2 and doc["dead_lettered"] == 2 and doc["committed"] == 1, doc
    dead = {m["attributes"]["upstream_id"]: m for m in messages(d, "t.dlq")}
    assert set(dead) == {big_id, nokey_id}, dead
    big, nokey = dead[big_id], dead[nokey_id]
    assert big["source"] == "t" and big["attempts"] == 0
    assert "over the topic's maximum of 1024 bytes" in big["error"] and big["payload"] == ""
    assert big["attributes"]["source"] == "s"
    assert nokey["error"] == "the key field 'acct' is missing" and nokey["payload"] == "nokey"
    assert "nokey" not in seen(rec)  # never a message of t
    # Done upstream only once stored here.
    assert wait_for(lambda: r.pending("st", "g") == 0, timeout=10)
    metrics = d.request("GET", "/metrics")[2].decode()
    assert 'spate_source_dead_lettered_total{source="s"} 2' in metrics
    # The CLI shows them with where they came from.
    r = d.cli("dlq", "ls", "t")
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode()
    assert f"from source s, upstream id {nokey_id}, upstream time" in text, text
    assert "(empty)" in text and "the key field 'acct' is missing" in text, text


def scaling(d, name):
    status, doc = d.json("GET", f"/v1/functions/{name}")
    assert status == 200, doc
    return doc["scaling"]


def test_the_deadline_counts_from_the_upstream_timestamp(spated, functions, tmp_path, redis):
    r = redis()
    rec = deploy_recorder(spated, functions, tmp_path, max=1)
    status, doc = spated.json("PUT", "/v1/triggers/t/rec?deadline=60000")
    assert status == 201, doc
    assert add_source(spated, "s", f"redis://127.0.0.1:{r.port}/st?group=g", "t")[0] == 201
    # Produced an hour ago upstream (the stream id's time part), published
    # here just now: a deadline of 60 s is past at once. Each call takes 3 s
    # (one instance), so the second waits while the first runs.
    old = int(time.time() * 1000) - 3600 * 1000
    r.cli("XADD", "st", f"{old}-1", "v", "sleep:3000:a")
    r.cli("XADD", "st", f"{old}-2", "v", "sleep:3000:b")
    assert wait_for(lambda: "sleep:3000:a" in seen(rec), timeout=30)
    assert wait_for(lambda: scaling(spated, "rec").get("time_left_s", 60) < -3000, timeout=10), \
        scaling(spated, "rec")
    assert scaling(spated, "rec")["oldest_age_s"] > 3500
    # Once a call's time is known, the backlog is at risk (it already missed).
    assert wait_for(lambda: scaling(spated, "rec")["deadline_at_risk"] is True, timeout=20), \
        scaling(spated, "rec")


def test_an_upstream_clock_ahead_does_not_extend_the_deadline(spated, functions, tmp_path,
                                                              redis):
    r = redis()
    rec = deploy_recorder(spated, functions, tmp_path, max=1)
    assert spated.json("PUT", "/v1/triggers/t/rec?deadline=60000")[0] == 201
    assert add_source(spated, "s", f"redis://127.0.0.1:{r.port}/st?group=g", "t")[0] == 201
    ahead = int(time.time() * 1000) + 3600 * 1000
    r.cli("XADD", "st", f"{ahead}-1", "v", "sleep:3000:a")
    assert wait_for(lambda: "sleep:3000:a" in seen(rec), timeout=30)
    assert wait_for(lambda: "time_left_s" in scaling(spated, "rec"), timeout=10)
    sc = scaling(spated, "rec")
    assert 0 <= sc["oldest_age_s"] < 60 and sc["time_left_s"] <= 60, sc


def deploy_attrs(d, functions, tmp_path):
    path = tmp_path / "attrs.log"
    status, doc = d.json("PUT", f"/v1/functions/attrs?env=RECORD%3D{path}",
                         functions["attrs"].read_bytes())
    assert status == 201, doc
    return path


def lines(path):
    return open(path).read().splitlines() if path.exists() else []


def test_a_native_function_is_given_the_attributes(spated, functions, tmp_path, redis):
    r = redis()
    out = deploy_attrs(spated, functions, tmp_path)
    add_trigger(spated, "t", "attrs")
    assert add_source(spated, "s", f"redis://127.0.0.1:{r.port}/st?group=g", "t")[0] == 201
    r.cli("XADD", "st", "1700000000000-7", "v", "one")
    spated.request("POST", "/v1/topics/t/messages", b"plain")
    assert wait_for(lambda: len(lines(out)) == 2, timeout=30), lines(out)
    got = sorted(lines(out))
    assert got[0] == ("one abi=2 source=s id=1700000000000-7 ts=1700000000000 redelivered=0 "
                      "headers=-"), got
    # A message published to spate directly has none; a direct invoke neither.
    assert got[1] == "plain abi=2 source=- id=- ts=0 redelivered=0 headers=-", got
    assert spated.invoke("attrs", b"direct") == (200, b"ok")
    assert lines(out)[-1] == "direct abi=2 source=- id=- ts=0 redelivered=0 headers=-"


EXEC_ATTRS = b"""#!/bin/sh
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  H="$(mktemp)"
  E=$(curl -sS -LD "$H" "$API/invocation/next")
  ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$H" | tr -d '[:space:]' | cut -d: -f2)
  { echo "event $E"; grep -i '^Spate-' "$H" | tr -d '\\r' | sort; } >> "$OUT"
  rm -f "$H"
  curl -sS -X POST "$API/invocation/$ID/response" -d ok > /dev/null
done
"""


def test_an_exec_function_gets_them_as_runtime_api_headers(spated, tmp_path, redis):
    r = redis()
    out = tmp_path / "exec.log"
    status, doc = spated.json("PUT", f"/v1/functions/shattrs?runtime=exec&env=OUT%3D{out}",
                              EXEC_ATTRS)
    assert status == 201, doc
    add_trigger(spated, "t", "shattrs")
    assert add_source(spated, "s", f"redis://127.0.0.1:{r.port}/st?group=g", "t")[0] == 201
    r.cli("XADD", "st", "1700000000000-9", "v", "one")
    assert wait_for(lambda: "Spate-Redelivered: false" in (out.read_text() if out.exists()
                                                           else ""), timeout=30)
    text = out.read_text()
    assert "event one" in text
    assert "Spate-Source: s" in text
    assert "Spate-Upstream-Id: 1700000000000-9" in text
    assert "Spate-Upstream-Timestamp: 1700000000000" in text
    # A message without attributes: no Spate- header at all.
    spated.request("POST", "/v1/topics/t/messages", b"plain")
    assert wait_for(lambda: "event plain" in out.read_text(), timeout=30)
    assert out.read_text().split("event plain")[1].strip() == ""


def test_a_refused_publish_stops_the_source_and_loses_nothing(functions, tmp_path, redis):
    """The store refuses for real (its disk is full): the source takes no
    more and acks nothing upstream; once there is room again every entry
    flows."""
    from conftest import fill_disk, spated_on_small_disk
    r = redis()
    with spated_on_small_disk(tmp_path) as (d, filler):
        rec = deploy_recorder(d, functions, tmp_path)
        add_trigger(d, "t", "rec")
        assert add_source(d, "s", f"redis://127.0.0.1:{r.port}/st?group=g", "t")[0] == 201
        r.xadd("st", 0, 10)
        assert wait_for(lambda: {f"e{i}" for i in range(10)} <= set(seen(rec)), timeout=30)
        fill_disk(filler)
        r.xadd("st", 10, 300, field="v")
        assert wait_for(lambda: d.json("GET", "/v1/sources/s")[1]["publish_failures"] > 0,
                        timeout=30), d.json("GET", "/v1/sources/s")[1]
        doc = d.json("GET", "/v1/sources/s")[1]
        assert "cannot publish into the topic" in doc["last_error"], doc
        # Taken upstream but not acked: pending there; nothing past the first batch taken.
        assert r.pending("st", "g") > 0
        assert doc["committed"] == 10, doc
        time.sleep(1)
        assert d.json("GET", "/v1/sources/s")[1]["committed"] == 10
        filler.unlink()  # room again: the same batch goes, then the rest
        want = {f"e{i}" for i in range(310)}
        assert wait_for(lambda: want <= set(seen(rec)), timeout=90), len(want - set(seen(rec)))
        assert wait_for(lambda: r.pending("st", "g") == 0, timeout=30)
        assert wait_for(lambda: d.json("GET", "/v1/sources/s")[1]["committed"] == 310, timeout=30)
        assert d.json("GET", "/v1/sources/s")[1]["state"] == "running"


def test_keyed_entries_keep_order_per_key_and_run_keys_in_parallel(spated, functions, tmp_path,
                                                                   redis):
    import collections
    r = redis()
    # Six instances from the start: keys can run side by side at once,
    # whatever the autoscaler would have made of a loaded machine.
    rec = deploy_recorder(spated, functions, tmp_path, sleep_us=5000, min=6, max=8)
    status, doc = spated.json("PUT", "/v1/triggers/ledger/rec?ordered=true")
    assert status == 201, doc
    assert add_source(spated, "s", f"redis://127.0.0.1:{r.port}/st?group=g", "ledger",
                      key_field="acct")[0] == 201
    cmds = "".join(f"XADD st * acct k{k} n {i}\n" for i in range(40) for k in range(6))
    import subprocess
    from test_sources_redis import CLI
    subprocess.run([CLI, "-p", str(r.port)], input=cmds, text=True, capture_output=True,
                   check=True, timeout=60)
    assert wait_for(lambda: len([l for l in open(rec) if l.startswith("E ")]) == 240
                    if rec.exists() else False, timeout=60)
    per_key = collections.defaultdict(list)
    for line in open(rec):
        kind, p, _, key, us = line.split()
        per_key[key].append((int(us), kind, int(p)))
    assert sorted(per_key) == [f"k{k}" for k in range(6)]
    for key, events in per_key.items():
        events.sort(key=lambda e: (e[0], e[1] == "S"))
        running, order = 0, []
        for _, kind, n in events:
            running += 1 if kind == "S" else -1
            assert running <= 1, f"two entries of key {key} ran at once"
            if kind == "S":
                order.append(n)
        assert order == list(range(40)), (key, order)
    # Different keys did run at the same time.
    spans = {}
    for key, events in per_key.items():
        starts = [us for us, kind, _ in events if kind == "S"]
        ends = [us for us, kind, _ in events if kind == "E"]
        spans[key] = list(zip(sorted(starts), sorted(ends)))
    overlap = any(a0 < b1 and b0 < a1
                  for ka, sa in spans.items() for kb, sb in spans.items() if ka < kb
                  for a0, a1 in sa for b0, b1 in sb)
    assert overlap


def test_an_entry_read_again_is_marked_redelivered(spated, redis):
    r = redis()
    r.cli("XADD", "st", "1700000000000-1", "v", "taken")
    r.cli("XADD", "st", "1700000000000-2", "v", "fresh")
    # Consumer c1 took the first before (and never acked it): it is pending.
    assert r.cli("XGROUP", "CREATE", "st", "g", "0") == "OK"
    r.cli("XREADGROUP", "GROUP", "g", "c1", "COUNT", "1", "STREAMS", "st", ">")
    assert r.pending("st", "g") == 1
    assert add_source(spated, "s", f"redis://127.0.0.1:{r.port}/st?group=g&consumer=c1",
                      "t")[0] == 201
    assert wait_for(lambda: len(messages(spated, "t")) == 2, timeout=30)
    got = {m["payload"]: m["attributes"]["redelivered"] for m in messages(spated, "t")}
    assert got == {"taken": True, "fresh": False}, got
    assert wait_for(lambda: r.pending("st", "g") == 0, timeout=10)
