"""Helpers of the cluster's ordered-trigger tests (test_cluster_ordered.py,
test_cluster_marks.py): a recorder on an ordered trigger, the part a key
hashes to, a message JetStream skips, an attempts bucket that refuses every
write."""

import calendar
import json
import random
import signal
import time
from conftest import wait_for
from natscluster import (NatsClient, add_trigger, deploy_everywhere, ended, js_api, publish_lines,
                         record_dir)


def key_runs(path):
    """key -> its runs as (start us, end us, payload, attempt), in order of
    start; a run that has not ended (or was stopped at its timeout) has end
    None."""
    started, runs = {}, {}
    for line in path.read_text().splitlines() if path.exists() else []:
        kind, payload, attempt, key, us = line.split()[:5]
        run = (key, payload, int(attempt))
        if kind == "S":
            started[run] = started.get(run, []) + [int(us)]
        elif started.get(run):
            runs.setdefault(key, []).append((started[run].pop(0), int(us), payload, int(attempt)))
    for (key, payload, attempt), left in started.items():
        runs.setdefault(key, []).extend((us, None, payload, attempt) for us in left)
    return {k: sorted(v, key=lambda r: r[0]) for k, v in runs.items()}


def ordered_part(function, key):
    """The consumer of an ordered trigger's part that key hashes to
    (common/hash.h's hash_fnv1a, as publish.c takes it)."""
    h = 1469598103934665603
    for byte in key.encode():
        h = (h ^ byte) * 1099511628211 % (1 << 64)
    return f"F_{function}_k{h % 64:02d}"


def jetstream_skips(nats, nodes, stream, part, body, key, deliveries=1):
    """Stores body (key's) on part's subject and has JetStream deliver it
    to a bare client, then give up on it (MaxDeliver deliveries, each past
    its AckWait): never pending, never delivered again, as nats-server
    before 2.11 forgets a delivery at a leader change. The nodes are stopped
    meanwhile; the consumer keeps its MaxDeliver (the trigger must go)."""
    config = dict(nats.consumer_config(stream, part))
    c = NatsClient(nats)
    for d in nodes:
        d.proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(2)  # the nodes' fetches expire: the next one is the bare client's
        config["max_deliver"] = deliveries
        got = c.request(f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{part}",
                        json.dumps({"stream_name": stream, "config": config}).encode())
        assert got and b'"error"' not in got[1], got
        head = (f"NATS/1.0\r\nSpate-Key: {key}\r\nSpate-Published: {int(time.time() * 1000)}"
                "\r\n\r\n").encode()
        c.sock.sendall(f"HPUB {config['filter_subject']} {len(head)} {len(head) + len(body)}\r\n"
                       .encode() + head + body + b"\r\n")
        c.flush()
        for _ in range(deliveries):
            # Pulled until delivered: under make check's load one pull went
            # unanswered (nor a 408 at its expiry) for 10 s.
            deadline, got = time.monotonic() + 60, None
            while not (got and got[1] == body) and time.monotonic() < deadline:
                inbox = f"_INBOX.skip.{random.randrange(1 << 60)}"
                c.subscribe(inbox)
                c.pub(f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{part}",
                      b'{"batch":1,"expires":5000000000}', reply=inbox)
                got = c.next_msg(10)
            assert got and got[1] == body, got  # delivered, and never settled
            time.sleep(8)  # past its AckWait (6 s): the last, and JetStream gives up on it
    finally:
        for d in nodes:
            d.proc.send_signal(signal.SIGCONT)
        c.close()


def ordered_recorder(cluster, functions, tmp_path, request, fn, query="?ordered=true",
                     first=True):
    """fn, a recorder (timeout 1 s), on topic fn + "t"'s ordered trigger,
    removed at the test's end; with first, key K's first message run. Its
    record file."""
    nats, nodes = cluster
    a = nodes[0]
    rec = record_dir(tmp_path) / f"{fn}.txt"
    topic = fn + "t"
    deploy_everywhere(a, nodes, fn, functions["recorder"], max=4, timeout=1000,
                      env=f"RECORD%3D{rec}")
    add_trigger(a, nodes, topic, fn, query)
    # Its 65 consumers deleted, each asked again while JetStream is slow:
    # past the default 30 s under make test's load.
    request.addfinalizer(lambda: a.request("DELETE", f"/v1/triggers/{topic}/{fn}",
                                           timeout=120))
    if first:
        publish_lines(a, topic, ['{"k":"K","n":0}'], key_field="k")
        assert wait_for(lambda: ended(rec) == ['{"k":"K","n":0}'], timeout=30), ended(rec)
    return rec


def attempts_bucket_refuses(nats, refuse):
    """The attempts bucket takes no write (a message size limit of 4 bytes,
    which no record fits), or takes them again."""
    def api(subject, body=b""):  # asked again while JetStream is slow to answer
        return js_api(nats, subject, body)

    config = api("$JS.API.STREAM.INFO.KV_spate-attempts")["config"]
    config["max_msg_size"] = 4 if refuse else -1
    api("$JS.API.STREAM.UPDATE.KV_spate-attempts", json.dumps(config).encode())


def rfc3339_ns(text):
    """A JetStream time (RFC 3339, nanoseconds) as ns since the epoch."""
    whole, frac = text.rstrip("Z").split(".")
    t = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    return t * 10**9 + int((frac + "000000000")[:9])
