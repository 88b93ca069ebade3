"""Cluster mode, the marks of ordered parts: an ack whose mark is refused for
long is not sent without it, parts without a mark, topics made again and
deleted, marks far behind (split from test_cluster.py)."""

import json
import time

import pytest

from conftest import wait_for
from natscluster import (NatsClient, add_trigger, deploy_everywhere, ended, js_api, publish_lines,
                         record_dir, spated_cluster)
from ordered_cluster import attempts_bucket_refuses, ordered_part, ordered_recorder, rfc3339_ns


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with spated_cluster(tmp_path_factory) as c:
        yield c


def test_an_ordered_ack_whose_mark_is_refused_for_long_is_not_sent_without_it(cluster, functions,
                                                                             tmp_path, request):
    """The same, when the attempts bucket refuses the mark for longer than
    the 30 s it is tried for: the ack went without it (its "+ACK" record,
    refused too, was not looked at), and the message was published again
    and ran after the key's next one. Without mark or record it is handed
    back, and runs again in its place."""
    nats, (a, b, c) = cluster
    rec = record_dir(tmp_path) / "marklong.txt"
    deploy_everywhere(a, (a, b, c), "marklong", functions["recorder"], max=2, timeout=1000,
                      env=f"RECORD%3D{rec}")
    add_trigger(a, (a, b, c), "marklongt", "marklong", "?ordered=true")
    request.addfinalizer(lambda: a.request("DELETE", "/v1/triggers/marklongt/marklong",
                                           timeout=120))
    publish_lines(a, "marklongt", ['{"k":"K","n":0}'], key_field="k")
    assert wait_for(lambda: ended(rec) == ['{"k":"K","n":0}'], timeout=30), ended(rec)
    time.sleep(1)  # its mark written
    attempts_bucket_refuses(nats, True)
    try:
        publish_lines(a, "marklongt", ['{"k":"K","n":1}'], key_field="k")
        assert wait_for(lambda: len(ended(rec)) == 2, timeout=20), ended(rec)
        time.sleep(35)  # past the mark's 30 s of tries
    finally:
        attempts_bucket_refuses(nats, False)
    publish_lines(b, "marklongt", ['{"k":"K","n":2}'], key_field="k")
    assert wait_for(lambda: len(set(ended(rec))) == 3, timeout=30), ended(rec)
    time.sleep(10)  # a run again, or a copy published again, has ended
    order = [json.loads(x)["n"] for x in ended(rec)]
    assert order == sorted(order), order


def test_an_ordered_part_without_a_mark_leaves_what_was_stored_before_marks(cluster, functions,
                                                                           tmp_path):
    """A part without a mark looks for skipped messages from the stream's
    start (test_an_ordered_parts_first_message_...), but a cluster upgraded
    from a spated that kept no marks has parts that settled messages
    without one, some still stored (another consumer of the stream has not
    read them): each was published again and ran twice. Only what was
    stored since the nodes began to keep marks ("marks-since" in the
    attempts bucket, read at a node's start) is looked at. Made here with
    the part's mark taken away, marks-since moved past the settled message,
    the nodes restarted, and a bare consumer that keeps it stored."""
    nats, nodes = cluster
    a = nodes[0]
    rec = record_dir(tmp_path) / "upgrade.txt"
    deploy_everywhere(a, nodes, "upg", functions["recorder"], max=4, timeout=1000,
                      env=f"RECORD%3D{rec}")
    add_trigger(a, nodes, "upgt", "upg", "?ordered=true")
    c = NatsClient(nats)
    try:
        js_api(nats, "$JS.API.CONSUMER.DURABLE.CREATE.SPATE_T_upgt.HOLD", json.dumps(
            {"stream_name": "SPATE_T_upgt",
             "config": {"durable_name": "HOLD", "ack_policy": "explicit"}}).encode())
        publish_lines(a, "upgt", ['{"k":"K","n":0}'], key_field="k")
        assert wait_for(lambda: ended(rec) == ['{"k":"K","n":0}'], timeout=30), ended(rec)
        time.sleep(1)  # its mark written
        for d in nodes:
            assert d.stop() == 0, d.log()[-3000:]
        part = ordered_part("upg", "K")
        # No mark (as an older spated left it), and marks kept from now on.
        c.pub(f"$KV.spate-attempts.SPATE_T_upgt.{part}.settled", b"0 1")
        c.pub("$KV.spate-attempts.marks-since", str(time.time_ns()).encode())
        c.flush()
        time.sleep(1)
        for d in nodes:
            d.start()
        for d in nodes:
            assert wait_for(lambda: len([x for x in d.json("GET", "/v1/nodes")[1]["nodes"]
                                         if x["state"] == "up"]) == 3, timeout=20), d.log()
        time.sleep(2)  # pullers started
        publish_lines(a, "upgt", ['{"k":"K","n":1}'], key_field="k")
        assert wait_for(lambda: '{"k":"K","n":1}' in ended(rec), timeout=30), ended(rec)
        time.sleep(5)  # a copy published again has run too
        order = [json.loads(x)["n"] for x in ended(rec)]
        assert order == [0, 1], order
    finally:
        c.request("$JS.API.CONSUMER.DELETE.SPATE_T_upgt.HOLD", b"")
        c.close()
        a.request("DELETE", "/v1/triggers/upgt/upg")


def test_ordered_acks_waiting_for_their_marks_stay_in_progress(cluster, functions, tmp_path,
                                                              request):
    """While the attempts bucket takes no write, every ordered ack waits for
    its mark, its message kept in progress (+WPI) by the confirm thread.
    It tried one mark a round (the first refusal ends a round) and kept in
    progress only that one: with many parts waiting, each was seen every
    many rounds, past its AckWait (6 s here), and JetStream gave it to
    another node, which ran it again. Every waiting one is kept."""
    nats, (a, b, c) = cluster
    rec = record_dir(tmp_path) / "wpi.txt"
    deploy_everywhere(a, (a, b, c), "wpi", functions["recorder"], max=8, timeout=1000,
                      env=f"RECORD%3D{rec}")
    add_trigger(a, (a, b, c), "wpit", "wpi", "?ordered=true")
    request.addfinalizer(lambda: a.request("DELETE", "/v1/triggers/wpit/wpi",
                                           timeout=120))
    parts = {}  # keys of distinct parts: each waits for its own mark only
    for i in range(1000):
        parts.setdefault(ordered_part("wpi", f"k{i}"), f"k{i}")
    keys = list(parts.values())[:40]
    attempts_bucket_refuses(nats, True)
    try:
        publish_lines(a, "wpit", [json.dumps({"k": k}).replace(" ", "") for k in keys],
                      key_field="k")
        assert wait_for(lambda: len(set(ended(rec))) == len(keys), timeout=30), ended(rec)
        time.sleep(15)  # past AckWait, within the marks' 30 s of tries
        runs = ended(rec)
    finally:
        attempts_bucket_refuses(nats, False)
    twice = sorted({x for x in runs if runs.count(x) > 1})
    assert not twice, twice


def test_a_topic_made_again_is_not_settled_by_its_predecessors_mark(cluster, functions, tmp_path,
                                                                    request):
    """A part's mark names its stream's creation, and a mark counted as the
    stream's when it named that time or a later one. A topic deleted and
    made again through another nats-server, whose clock is behind the one
    that made the deleted stream, has an earlier creation than its
    predecessor: the predecessor's mark counted as its own, and the new
    stream's messages up to its seq were settled without running (lost).
    Made here with the deleted stream's mark stamped an hour ahead. A mark
    is the stream's only when it names the stream's very creation (which
    every server reports alike)."""
    nats, nodes = cluster
    a = nodes[0]
    rec = ordered_recorder(cluster, functions, tmp_path, request, "remade")
    part = ordered_part("remade", "K")
    status, _, out = a.request("DELETE", "/v1/topics/remadet?force=true")  # and its trigger
    assert status == 200, out
    ahead = time.time_ns() + 3600 * 10**9
    js_api(nats, f"$KV.spate-attempts.SPATE_T_remadet.{part}.settled", f"5 {ahead}".encode())
    add_trigger(a, nodes, "remadet", "remade", "?ordered=true")
    publish_lines(a, "remadet", [f'{{"k":"K","n":{n}}}' for n in (1, 2, 3)], key_field="k")
    assert wait_for(lambda: len(ended(rec)) == 4, timeout=20), ended(rec)
    assert [json.loads(x)["n"] for x in ended(rec)] == [0, 1, 2, 3]


def test_a_deleted_topics_late_ack_leaves_the_new_topics_mark(cluster, functions, tmp_path):
    """An ordered message still running when its trigger and topic were
    removed is acked once it ends: its mark, refused (the topic made again
    meanwhile has its own), was raised by reading and comparing, and a
    mark of another stream was overwritten with the deleted stream's seq
    and creation. The new stream's parts then had no mark of theirs, and
    the key's next delivery took every settled message below it, still
    stored (another consumer reads them), for one JetStream skipped: each
    ran again. A deleted stream's ack raises no mark."""
    nats, nodes = cluster
    a = nodes[0]
    rec = record_dir(tmp_path) / "lateack.txt"
    deploy_everywhere(a, nodes, "lateack", functions["recorder"], max=4, timeout=70000,
                      env=f"RECORD%3D{rec}")
    add_trigger(a, nodes, "lateackt", "lateack", "?ordered=true")
    publish_lines(a, "lateackt", [f'{{"k":"K","n":{n}}}' for n in range(5)], key_field="k")
    assert wait_for(lambda: len(ended(rec)) == 5, timeout=30), ended(rec)
    status, _, out = a.request("POST", "/v1/topics/lateackt/messages", b"sleep:50000:old\n",
                               {"Content-Type": "application/x-ndjson", "Spate-Key": "K"})
    assert status == 202, out
    assert wait_for(lambda: "S sleep:50000:old" in rec.read_text(), timeout=20)
    status, _, out = a.request("DELETE", "/v1/topics/lateackt?force=true")  # and its trigger
    assert status == 200, out
    c = NatsClient(nats)
    try:
        add_trigger(a, nodes, "lateackt", "lateack", "?ordered=true")
        js_api(nats, "$JS.API.CONSUMER.DURABLE.CREATE.SPATE_T_lateackt.HOLD", json.dumps(
            {"stream_name": "SPATE_T_lateackt",
             "config": {"durable_name": "HOLD", "ack_policy": "explicit"}}).encode())
        publish_lines(a, "lateackt", ['{"k":"K","n":10}', '{"k":"K","n":11}'], key_field="k")
        assert wait_for(lambda: {'{"k":"K","n":10}', '{"k":"K","n":11}'} <= set(ended(rec)),
                        timeout=60), ended(rec)  # 20 s fell short at load 20 (session 49)
        # The new stream's mark is written first (50 s: make check's load once
        # took the 25 s of an earlier version to add the trigger again).
        assert "sleep:50000:old" not in ended(rec)
        assert wait_for(lambda: "sleep:50000:old" in ended(rec), timeout=60), ended(rec)
        time.sleep(3)  # the old one's ack and its mark
        publish_lines(a, "lateackt", ['{"k":"K","n":12}'], key_field="k")
        assert wait_for(lambda: '{"k":"K","n":12}' in ended(rec), timeout=30), ended(rec)
        time.sleep(5)  # a copy published again has run too
        new = [json.loads(x)["n"] for x in ended(rec) if x.startswith("{")][5:]
        assert new == [10, 11, 12], ended(rec)
    finally:
        c.request("$JS.API.CONSUMER.DELETE.SPATE_T_lateackt.HOLD", b"")
        c.close()
        a.request("DELETE", "/v1/triggers/lateackt/lateack")


def test_a_mark_far_behind_publishes_nothing_again(cluster, functions, tmp_path, request):
    """More than SPATE_JS_SKIPPED_MAX (8) messages of a part between its
    mark and a delivery means the mark is wrong (JetStream forgets one
    delivery at a leader change), e.g. nodes of a spated without marks
    settled them during a rolling upgrade: publishing them again would run
    settled messages again. The look gave up only at the ninth, after it
    had published the first eight again, each of which ran twice. Made here
    with the mark set back by hand, a bare consumer keeping the messages
    stored."""
    nats, nodes = cluster
    a = nodes[0]
    rec = ordered_recorder(cluster, functions, tmp_path, request, "behind")
    c = NatsClient(nats)
    try:
        js_api(nats, "$JS.API.CONSUMER.DURABLE.CREATE.SPATE_T_behindt.HOLD", json.dumps(
            {"stream_name": "SPATE_T_behindt",
             "config": {"durable_name": "HOLD", "ack_policy": "explicit"}}).encode())
        publish_lines(a, "behindt", [f'{{"k":"K","n":{n}}}' for n in range(1, 11)],
                      key_field="k")
        assert wait_for(lambda: len(ended(rec)) == 11, timeout=30), ended(rec)
        time.sleep(1)  # the last one's mark written
        created = rfc3339_ns(js_api(nats, "$JS.API.STREAM.INFO.SPATE_T_behindt")["created"])
        js_api(nats, f"$KV.spate-attempts.SPATE_T_behindt.{ordered_part('behind', 'K')}.settled",
               f"1 {created}".encode())
        publish_lines(a, "behindt", ['{"k":"K","n":11}'], key_field="k")
        assert wait_for(lambda: '{"k":"K","n":11}' in ended(rec), timeout=30), ended(rec)
        time.sleep(5)  # a copy published again has run too
        assert [json.loads(x)["n"] for x in ended(rec)] == list(range(12)), ended(rec)
        assert "not published again" in "".join(d.log() for d in nodes)
    finally:
        c.request("$JS.API.CONSUMER.DELETE.SPATE_T_behindt.HOLD", b"")
        c.close()
