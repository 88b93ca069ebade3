"""An adversarial pass over issue 22 (security across the network): one test
per finding, each of which failed against the code before its fix."""

import http.client
import os
import pathlib
import ssl

from conftest import wait_for
from tlsutil import TestCA

ADMIN = "admin-token-0123456789abcdef"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def asan_build():
    cache = pathlib.Path(os.environ.get("SPATE_BUILD", "build")) / "CMakeCache.txt"
    return cache.exists() and "SPATE_ASAN:BOOL=ON" in cache.read_text()


def test_tls_connection_lets_go_of_a_large_answer(make_spated, tmp_path, functions):
    """Each TLS connection's OpenSSL write buffer grew to its largest answer
    (a memory BIO keeps its allocation on reset, and zeroes all of it at
    each later answer): 40 idle keep-alive connections that had each read a
    4 MB answer held about 40 x 4 MB in spated."""
    ca = TestCA(tmp_path / "ca")
    cert, key = ca.server("srv")
    d = make_spated("--tls-cert", str(cert), "--tls-key", str(key))
    ctx = ssl.create_default_context(cafile=str(ca.cert))
    c0 = http.client.HTTPSConnection("127.0.0.1", d.port, context=ctx, timeout=60)

    def big(c):
        c.request("POST", "/v1/functions/probe/invoke", body=b"big:4000000")
        r = c.getresponse()
        body = r.read()
        assert r.status == 200 and len(body) == 4000000, (r.status, body[:200])

    # 512 MB: a 4 MB answer's copies outgrew 128 MB in the ASan build's instance.
    c0.request("PUT", "/v1/functions/probe?memory=512", body=open(functions["probe"], "rb").read())
    r = c0.getresponse()
    assert r.status == 201, r.read()
    r.read()
    big(c0)  # the first instance, the allocator's arenas: before the baseline
    big(c0)
    base = rss_kib(d.proc.pid)
    conns = []
    for _ in range(40):
        c = http.client.HTTPSConnection("127.0.0.1", d.port, context=ctx, timeout=60)
        big(c)
        conns.append(c)  # kept open and idle
    grown = rss_kib(d.proc.pid) - base
    for c in conns + [c0]:
        c.close()
    if asan_build():
        return  # ASan's quarantine keeps what was freed: RSS says nothing here
    # Before the fix: about 160 MB (40 x 4 MB) and more.
    assert grown < 60 * 1024, f"spated grew by {grown} KiB holding 40 idle TLS connections"


def ini_blocks(path):
    blocks, cur = [], None
    for line in path.read_text().splitlines():
        if line.startswith("```ini"):
            cur = []
        elif line.startswith("```") and cur is not None:
            blocks.append(cur)
            cur = None
        elif cur is not None:
            cur.append(line)
    return blocks


def test_the_docs_config_examples_have_no_comment_after_a_value(tmp_path):
    """docs/operations.md's node configuration for a secure NATS had
    'cluster-creds = /etc/spate/nats.nk   # the seed ...': spated reads the
    comment as part of the path (a URL's password may hold '#'), and a user
    who copied it got "cannot read --cluster-creds '/etc/spate/nats.nk   #
    the seed and public key: ...'"."""
    from conftest import ROOT, SPATED
    import subprocess
    # What spated does with such a line (why the docs must not have one).
    creds = tmp_path / "nats.nk"
    conf = tmp_path / "spated.conf"
    conf.write_text(f"cluster = nats://127.0.0.1:1\ncluster-creds = {creds}   # a comment\n")
    r = subprocess.run([str(SPATED), "--config", str(conf), "--check-config"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "# a comment'" in r.stderr, r
    for doc in sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]:
        for block in ini_blocks(doc):
            for line in block:
                if "=" in line and not line.lstrip().startswith(("#", ";")):
                    assert " #" not in line and "\t#" not in line, f"{doc.name}: {line}"


def test_replayed_heartbeats_do_not_keep_a_stopped_node_up(tmp_path_factory):
    """A NATS client without the key recorded a node's sealed heartbeats and
    published them again after the node stopped: each was within the 5
    minutes the seal allows, so the others showed the stopped node "up" (and
    routed invocations to it) for as long as the replays went on."""
    import time
    from natscluster import NatsClient, node_id, spated_cluster
    key = tmp_path_factory.mktemp("key") / "cluster.key"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, b"a cluster key of more than thirty-two bytes, for the review\n")
    os.close(fd)
    with spated_cluster(tmp_path_factory, name="hbreplay", n=2,
                        args=["--cluster-key", str(key)]) as (nats, (a, b)):
        victim = node_id(b)
        cl = NatsClient(nats)
        try:
            cl.subscribe("spate.node.hb")
            recorded = []
            deadline = time.monotonic() + 10
            while len(recorded) < 3 and time.monotonic() < deadline:
                got = cl.next_msg(2)
                if got and victim.encode() in got[1]:
                    recorded.append(got)
            assert len(recorded) == 3
            assert b.stop() == 0

            def state():
                return {n["id"]: n["state"] for n in a.json("GET", "/v1/nodes")[1]["nodes"]}

            # Replayed, newest last, for twice the time a node takes to go down.
            end = time.monotonic() + 12
            while time.monotonic() < end:
                for hdr, data in recorded:
                    cl.sock.sendall(f"HPUB spate.node.hb {len(hdr)} {len(hdr) + len(data)}\r\n"
                                    .encode() + hdr + data + b"\r\n")
                cl.flush()
                time.sleep(0.5)
            assert state()[victim] == "down", a.log()
        finally:
            cl.close()


def test_a_source_cannot_use_spateds_own_secret_files(make_spated, tmp_path, functions):
    """Sources are read by spated (root): an admin who may add one named
    spated's own TLS key as its client key, or its token file or NATS NKey as
    a NATS source's creds/seed, and spated used them towards a broker the
    admin chose (a broker of theirs relays a real NATS server's challenge,
    signed with the node's key: the node's NATS identity, and every secret in
    the registry). Now refused, by the file itself (a link to it too), with
    the reason as the source's last_error."""
    import json
    ca = TestCA(tmp_path / "ca")
    cert, key = ca.server("srv")
    tokens = tmp_path / "tokens"
    tokens.write_text(f"admin {ADMIN}\n")
    link = tmp_path / "innocent.pem"
    link.symlink_to(key)
    d = make_spated("--tls-cert", str(cert), "--tls-key", str(key), "--token-file", str(tokens))
    ctx = ssl.create_default_context(cafile=str(ca.cert))
    auth = {"Authorization": f"Bearer {ADMIN}"}

    def call(method, path, body=None):
        c = http.client.HTTPSConnection("127.0.0.1", d.port, context=ctx, timeout=30)
        try:
            c.request(method, path, body=body, headers=auth)
            r = c.getresponse()
            data = r.read()
            return r.status, json.loads(data) if data else None
        finally:
            c.close()

    urls = {
        "rkey": f"rediss://127.0.0.1:1/s?group=g&cert={cert}&key={key}",
        "rlink": f"rediss://127.0.0.1:1/s?group=g&cert={cert}&key={link}",
        "ncreds": f"nats://127.0.0.1:1/subj?creds={tokens}",
    }
    for name, url in urls.items():
        status, doc = call("PUT", f"/v1/sources/{name}",
                           json.dumps({"url": url, "topic": "t"}).encode())
        assert status in (200, 201), doc
    for name in urls:
        assert wait_for(lambda: "spated's own secrets" in
                        (call("GET", f"/v1/sources/{name}")[1].get("last_error") or ""),
                        timeout=20), (name, call("GET", f"/v1/sources/{name}")[1], d.log())


def test_a_replayed_invocation_does_not_answer_the_replayer(tmp_path_factory, functions):
    """NATS's reply subject was outside an invocation's seal: a client
    without the key that recorded a routed invocation published it again
    with its own inbox as the reply subject, and the node ran the function
    and sent the answer (its output, computed with its environment) to the
    replayer. The subject answers go to is sealed now; a replay to another
    is refused, and nothing is answered."""
    import json
    import threading
    from natscluster import NatsClient, spated_cluster
    key = tmp_path_factory.mktemp("key") / "cluster.key"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, b"a cluster key of more than thirty-two bytes, for the review\n")
    os.close(fd)
    with spated_cluster(tmp_path_factory, name="invreplay", n=2,
                        args=["--cluster-key", str(key)]) as (nats, (a, b)):
        assert a.deploy("single", functions["probe"], max=1, queue=1,
                        env="GREETING%3Dthe-secret-answer")[0] == 201
        from natscluster import listed, node_id
        assert wait_for(lambda: listed(b, "single"), timeout=15)
        cl = NatsClient(nats)
        try:
            cl.subscribe("spate.invoke.*.single")
            cl.flush()
            t = threading.Thread(target=a.invoke, args=("single", b"sleep:1500"))
            t.start()
            assert wait_for(lambda: a.describe("single")["instances"]["busy"] == 1)
            # Routed to b (a has no room); the bare client sees it pass.
            assert a.invoke("single", b"env:GREETING") == (200, b"the-secret-answer")
            t.join()
            got = cl.next_msg(5)
            assert got, "no routed invocation seen"
            hdr, data = got
            assert b"Spate-Seal" in hdr and data == b"env:GREETING"
            inbox = "_INBOX.replayer.1"
            cl.subscribe(inbox)
            cl.sock.sendall(f"HPUB spate.invoke.{node_id(b)}.single {inbox} {len(hdr)} {len(hdr) + len(data)}"
                            "\r\n".encode() + hdr + data + b"\r\n")
            cl.flush()
            answers = []
            while True:
                m = cl.next_msg(4)
                if m is None:
                    break
                if not m[1].startswith(b"env:"):  # not the invocation itself again
                    answers.append(m)
            assert answers == [], answers
        finally:
            cl.close()
        assert "a replay" in a.log() + b.log()


def test_forged_entries_under_new_keys_do_not_flood_the_log(tmp_path_factory):
    """Each refused registry entry was logged once per key and revision, with
    no bound on how many keys: a NATS client without the key writing 300
    entries under new names wrote 300 lines into every node's log (as fast
    as it could publish, for as long as it liked). Now a few lines per 10 s,
    each saying how many went unsaid; every one is still counted."""
    from natscluster import NatsClient, spated_cluster
    key = tmp_path_factory.mktemp("key") / "cluster.key"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, b"a cluster key of more than thirty-two bytes, for the review\n")
    os.close(fd)
    with spated_cluster(tmp_path_factory, name="logflood", n=2,
                        args=["--cluster-key", str(key)]) as (nats, (a, b)):
        cl = NatsClient(nats)
        try:
            for i in range(300):
                cl.sock.sendall(f"PUB $KV.spate-registry.fn.forged{i} 2\r\n{{}}\r\n".encode())
            cl.flush()
        finally:
            cl.close()

        def refused(d):
            for line in d.request("GET", "/metrics")[2].decode().splitlines():
                if line.startswith('spate_cluster_rejected_total{kind="entry"} '):
                    return float(line.split()[-1])
            return 0

        for d in (a, b):
            assert wait_for(lambda: refused(d) >= 300, timeout=30), refused(d)
            lines = d.log().count("refused registry entry fn.forged")
            assert lines <= 45, f"{lines} log lines for 300 forged entries"


def _cluster_key(tmp_path_factory):
    key = tmp_path_factory.mktemp("key") / "cluster.key"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, b"a cluster key of more than thirty-two bytes, for the review\n")
    os.close(fd)
    return key


def _hpub(cl, subject, reply, hdr, data):
    cl.sock.sendall(f"HPUB {subject} {reply} {len(hdr)} {len(hdr) + len(data)}\r\n".encode()
                    + hdr + data + b"\r\n")
    cl.flush()


def test_a_recorded_invocation_published_again_as_it_was_does_not_run_again(tmp_path_factory,
                                                                            functions):
    """A routed invocation is fresh for 5 minutes, and its answer goes to the
    subject sealed in it: a client without the key that recorded one and
    published it again unchanged (same reply subject) made the node run the
    function again, as many times as it published it (an order placed
    twice). Each node remembers the seals it took while they are fresh."""
    import threading
    from natscluster import NatsClient, listed, node_id, ok_count, spated_cluster
    key = _cluster_key(tmp_path_factory)
    with spated_cluster(tmp_path_factory, name="invtwice", n=2,
                        args=["--cluster-key", str(key)]) as (nats, (a, b)):
        assert a.deploy("single", functions["probe"], max=1, queue=1)[0] == 201
        assert wait_for(lambda: listed(b, "single"), timeout=15)
        cl = NatsClient(nats)
        try:
            cl.subscribe(f"spate.invoke.{node_id(b)}.single")
            cl.flush()
            t = threading.Thread(target=a.invoke, args=("single", b"sleep:1500"))
            t.start()
            assert wait_for(lambda: a.describe("single")["instances"]["busy"] == 1)
            assert a.invoke("single", b"place-order-1") == (200, b"place-order-1")
            t.join()
            got = cl.next_msg(5)
            assert got and got[1] == b"place-order-1", got
            subject, reply = cl.subject, cl.reply
            assert wait_for(lambda: ok_count(b, "single") == 1), b.log()
            for _ in range(3):
                _hpub(cl, subject, reply, *got)
            # Not run again: b's count of successful calls stays at 1.
            assert not wait_for(lambda: ok_count(b, "single") > 1, timeout=4), b.log()
        finally:
            cl.close()
        assert "taken already: a replay" in b.log()


def test_an_answer_recorded_before_a_restart_does_not_answer_a_new_invocation(tmp_path_factory,
                                                                              functions):
    """An answer's seal covered its inbox (_INBOX.spate.NODE.SEQ) but not the
    invocation it answered, and SEQ starts again at 1 when spated does: an
    answer recorded from the run before, published again when the new run's
    invocation with that number was on its way, was taken as its answer (the
    caller got another call's output). An answer now carries the seal of the
    invocation it answers, under its own seal."""
    import threading
    from natscluster import NatsClient, listed, node_id, spated_cluster
    key = _cluster_key(tmp_path_factory)
    with spated_cluster(tmp_path_factory, name="oldanswer", n=2,
                        args=["--cluster-key", str(key)]) as (nats, (a, b)):
        assert a.deploy("single", functions["probe"], max=1, queue=1,
                        env="GREETING%3Dthe-old-answer")[0] == 201
        assert wait_for(lambda: listed(b, "single"), timeout=15)
        me = node_id(a)
        cl = NatsClient(nats)
        try:
            cl.subscribe(f"_INBOX.spate.{me}.*")
            cl.flush()
            t = threading.Thread(target=a.invoke, args=("single", b"sleep:1500"))
            t.start()
            assert wait_for(lambda: a.describe("single")["instances"]["busy"] == 1)
            assert a.invoke("single", b"env:GREETING") == (200, b"the-old-answer")
            t.join()
            got = cl.next_msg(5)
            assert got and got[1] == b"the-old-answer", got
            recorded = (cl.subject, *got)
            # The first routed invocation of the run: the new run's first one
            # has the same inbox.
            assert recorded[0] == f"_INBOX.spate.{me}.1", recorded[0]
        finally:
            cl.close()
        a.stop()
        a.start()
        assert node_id(a) == me
        assert wait_for(lambda: len([x for x in a.json("GET", "/v1/nodes")[1]["nodes"]
                                     if x["state"] == "up"]) == 2, timeout=15), a.log()
        assert wait_for(lambda: listed(a, "single"), timeout=15)
        cl = NatsClient(nats)
        try:
            cl.subscribe(f"spate.invoke.{node_id(b)}.single")
            cl.flush()
            hold = threading.Thread(target=a.invoke, args=("single", b"sleep:3000"))
            hold.start()
            assert wait_for(lambda: a.describe("single")["instances"]["busy"] == 1)
            result = []
            t = threading.Thread(target=lambda: result.append(a.invoke("single", b"sleep:1000")))
            t.start()
            replayed = False
            while not replayed:
                m = cl.next_msg(10)
                assert m, "no routed invocation seen"
                if f"Spate-Reply: {recorded[0]}\r\n".encode() in m[0]:
                    _hpub(cl, recorded[0], "", recorded[1], recorded[2])
                    replayed = True
            t.join()
            hold.join()
            assert result == [(200, b"slept")], (result, a.log())
        finally:
            cl.close()
        assert "an answer to another invocation" in a.log()
