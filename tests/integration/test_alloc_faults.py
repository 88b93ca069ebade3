"""spated with allocations failing (issue 21): each publish, from the request
to the function's run and its acknowledgement, with one of its allocations
failing in turn (SPATE_FAIL_ALLOC=1, _AFTER the publish's request, _STEP=1:
the kth publish fails the kth allocation after it began). Each must answer
202 or a clear error, spated must not crash nor leak (the ASan build's leak
check at exit), and after a restart every message whose publish was
acknowledged must have run.

Needs spated built with -DSPATE_FAILPOINTS=ON (the ASan build of make
sanitize); skipped otherwise. SPATE_ALLOC_FAULTS_STEPS bounds how many
allocations are swept (default 60), SPATE_ALLOC_FAULTS_STRIDE which of them
fail at a restart (default every 3rd: each is a start of spated); the long
run is STEPS=1000 STRIDE=1."""

import json
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import BUILD, Spated, add_trigger, deploy_recorder, seen, topic_stats, wait_for


def failpoints_built():
    cache = BUILD / "CMakeCache.txt"
    return cache.exists() and re.search(r"^SPATE_FAILPOINTS:BOOL=ON$", cache.read_text(), re.M)


pytestmark = [pytest.mark.skipif(not failpoints_built(),
                                 reason="spated built without -DSPATE_FAILPOINTS=ON"),
              pytest.mark.usefixtures("no_spated_left")]


STEPS = int(os.environ.get("SPATE_ALLOC_FAULTS_STEPS", "60"))
STRIDE = int(os.environ.get("SPATE_ALLOC_FAULTS_STRIDE", "3"))  # of the restarts
TOPIC = "faults"


def failing(tmp_path, after, first=1, step=1):
    """A spated whose allocation FIRST + k*STEP after the kth request that
    starts with AFTER fails (the environment is set through env(1): the
    fixture's Spated takes none of its own)."""
    env = ["env", f"SPATE_FAIL_ALLOC={first}", f"SPATE_FAIL_ALLOC_AFTER={after}",
           f"SPATE_FAIL_ALLOC_STEP={step}"]
    d = Spated(tmp_path, prefix=env)
    d.starts = 100  # its log apart: spated-101.log
    return d


def depth(d, topic):
    """What topic's triggers have not settled; None when it cannot be read
    (the answer may be a failure's 503 too)."""
    try:
        status, doc = d.json("GET", f"/v1/topics/{topic}")
    except OSError:
        return None
    return doc["depth"] if status == 200 else None


def failures(d):
    """(allocation, file:line) of each failure spated logged."""
    return re.findall(r"failpoint: allocation (\d+) after '[^']*' failed at (\S+)", d.log())


def ended(path, payload):
    """The recorder finished a run of payload."""
    return os.path.exists(path) and any(
        line.split()[:2] == ["E", payload] for line in open(path))


def test_each_allocation_of_a_publish_failing_in_turn(functions, tmp_path):
    setup = Spated(tmp_path).start()
    rec = deploy_recorder(setup, functions, tmp_path)
    add_trigger(setup, TOPIC, "rec")
    assert setup.stop() == 0, setup.log()

    d = failing(tmp_path, f"POST /v1/topics/{TOPIC}/messages").start()
    acknowledged, refused, quiet = [], [], 0
    try:
        for k in range(STEPS):
            payload = f"p{k}"
            before = len(failures(d))
            try:
                status, _, body = d.request("POST", f"/v1/topics/{TOPIC}/messages",
                                            payload.encode(), timeout=10)
            except TimeoutError:
                pytest.fail(f"step {k}: no answer (a connection left hanging):\n{d.log()[-4000:]}")
            except OSError:
                # Refused or closed (the connection could not be taken or
                # the answer made): the client knows it has none.
                status, body = None, b""
            assert d.proc.poll() is None, f"spated died at step {k}:\n{d.log()[-4000:]}"
            if status == 202:
                acknowledged.append(payload)
                # The failure may be in the run or the acknowledgement: let
                # them happen before the next publish starts the count again.
                wait_for(lambda: ended(rec, payload), timeout=2)
                time.sleep(0.05)
            else:
                refused.append((payload, status))
                if status is not None:
                    assert status in (500, 503), (payload, status, body)
                    assert b"error" in body, body
            # The whole path is swept once allocation k is past its end.
            quiet = quiet + 1 if len(failures(d)) == before else 0
            if quiet == 3:
                break
        fired = failures(d)
        # Without a restart too: nothing stays stuck behind a failure.
        assert wait_for(lambda: set(acknowledged) <= set(seen(rec)), timeout=30), (
            "stuck", sorted(set(acknowledged) - set(seen(rec))), d.log()[-4000:])
    finally:
        rc = d.stop()
    print(f"{k + 1} publishes, {len(fired)} allocations failed, {len(acknowledged)} acknowledged, "
          f"refused: {refused}")
    # The sweep reached spated's allocations, and each failure is on record.
    assert len(fired) >= 5, d.log()[-4000:]
    assert rc == 0, f"spated exited with {rc} (a leak, under ASan?):\n{d.log()[-6000:]}"

    # After a restart without failures, every acknowledged message ran.
    d = Spated(tmp_path).start()
    t0 = time.time()
    try:
        assert wait_for(lambda: set(acknowledged) <= set(seen(rec)), timeout=30), (
            sorted(set(acknowledged) - set(seen(rec))), d.log()[-4000:])
        assert wait_for(lambda: topic_stats(d, TOPIC)["depth"] == 0, timeout=30)
    finally:
        assert d.stop() == 0, d.log()
    print(f"restart: {time.time() - t0:.1f} s")


def test_restart_with_each_allocation_failing(functions, tmp_path):
    """A restart with messages in flight and waiting, the Nth allocation of
    spated failing: it starts, or refuses with a message; never crashes, and
    the next clean start loses nothing."""
    d = Spated(tmp_path).start()
    rec = deploy_recorder(d, functions, tmp_path, sleep_us=50000)
    add_trigger(d, TOPIC, "rec")
    sent = [f"r{i}" for i in range(6)]
    for p in sent:
        assert d.request("POST", f"/v1/topics/{TOPIC}/messages", p.encode())[0] == 202
    # Killed with work in flight: what restarts finds is a crash's.
    wait_for(lambda: seen(rec), timeout=10)
    d.stop(sig=signal.SIGKILL)

    # The allocations from the queue's restore on (every STRIDE-th of them).
    for n in range(1, STEPS + 1, STRIDE):
        f = Spated(tmp_path, prefix=["env", f"SPATE_FAIL_ALLOC={n}",
                                     "SPATE_FAIL_ALLOC_AFTER=queue_open"])
        f.starts = 100 + n
        try:
            f.start()
        except RuntimeError:
            try:  # refused: its exit may take a while (ASan's leak check, on a loaded machine)
                f.proc.wait(60)
            except subprocess.TimeoutExpired:  # neither listening nor gone
                f.stop(sig=signal.SIGKILL)
                pytest.fail(f"allocation {n} failing: spated hung at start:\n{f.log()[-4000:]}")
            # It refused to start (exit 2, spated's die): it must say why,
            # and not crash (a signal) nor report an error or leak (ASan: 1, 23).
            assert f.proc.returncode == 2, f.log()
            assert re.search(r"^spated: .+", f.log(), re.M), f.log()
            continue
        # Started: what was in flight runs again, nothing stuck behind the
        # failure; then a crash again.
        ran = wait_for(lambda: depth(f, TOPIC) == 0, timeout=20)
        f.stop(sig=signal.SIGKILL)
        assert ran, (f"allocation {n} failing: messages stuck", f.log()[-4000:])
    d = Spated(tmp_path).start()
    try:
        assert wait_for(lambda: set(sent) <= set(seen(rec)), timeout=30), (
            sorted(set(sent) - set(seen(rec))), d.log()[-4000:])
    finally:
        assert d.stop() == 0, d.log()


def stored(d, topic):
    """How many messages topic stores (0 while it does not exist)."""
    status, doc = d.json("GET", f"/v1/topics/{topic}")
    return doc["stored"] if status == 200 else 0


def sweep(d, send, ok_statuses):
    """Sends requests (send(k) -> (status, body)) with spated failing the kth
    allocation after the kth: each answers one of ok_statuses or a clear 500
    or 503, or its connection is closed; spated stays up. Ends when three in a
    row failed nothing (the path is swept). Returns the failures."""
    quiet = 0
    for k in range(STEPS):
        before = len(failures(d))
        try:
            status, body = send(k)
        except TimeoutError:
            pytest.fail(f"step {k}: no answer (a connection left hanging):\n{d.log()[-4000:]}")
        except OSError:
            status, body = None, b""
        assert d.proc.poll() is None, f"spated died at step {k}:\n{d.log()[-4000:]}"
        if status is not None and status not in ok_statuses:
            # A known limit: cJSON's parse gives no reason, so a body it could
            # not allocate for is answered as malformed (400).
            by_cjson = {where.rsplit("/", 1)[-1].split(":")[0]
                        for _, where in failures(d)[before:]} == {"json_alloc.c"}
            assert status in (500, 503) or (status == 400 and by_cjson), (k, status, body)
            assert b'"error"' in body or b'"__type"' in body, body  # ours, or SQS's shape
        time.sleep(0.05)  # what the request set going (runs, commits) is in the count
        quiet = quiet + 1 if len(failures(d)) == before else 0
        if quiet == 3:
            break
    return failures(d)


def test_trigger_changes_and_redrives_with_each_allocation_failing(functions, tmp_path):
    """PUT /v1/triggers (a trigger reconfigured while its messages run) and
    POST /v1/topics/T.dlq/redrive (dead letters back to their topic, failing
    again into it), each allocation failing in turn: after a clean stop and a
    restart, the dead letters are all there, once."""
    setup = Spated(tmp_path).start()
    rec = deploy_recorder(setup, functions, tmp_path)
    status, doc = setup.json("PUT", f"/v1/triggers/{TOPIC}/rec?max_attempts=1")
    assert status == 201, doc
    dead = [f"fail{i}" for i in range(4)]
    for p in dead:
        assert setup.request("POST", f"/v1/topics/{TOPIC}/messages", p.encode())[0] == 202
    assert wait_for(lambda: stored(setup, f"{TOPIC}.dlq") == len(dead), timeout=30)
    assert setup.stop() == 0, setup.log()

    d = failing(tmp_path, "PUT /v1/triggers/").start()
    try:
        fired = sweep(d, lambda k: d.request(
            "PUT", f"/v1/triggers/{TOPIC}/rec?update=true&max_attempts=1&max_concurrency={1 + k % 2}",
            timeout=10)[::2], (200, 201))
    finally:
        rc = d.stop()
    assert len(fired) >= 5, d.log()[-4000:]
    assert rc == 0, f"spated exited with {rc} (a leak, under ASan?):\n{d.log()[-6000:]}"

    d = failing(tmp_path, f"POST /v1/topics/{TOPIC}.dlq/redrive")
    d.starts = 200
    d.start()
    try:
        fired = sweep(d, lambda k: d.request(
            "POST", f"/v1/topics/{TOPIC}.dlq/redrive", timeout=10)[::2], (200,))
    finally:
        rc = d.stop()
    assert len(fired) >= 5, d.log()[-4000:]
    assert rc == 0, f"spated exited with {rc} (a leak, under ASan?):\n{d.log()[-6000:]}"

    d = Spated(tmp_path)
    d.starts = 300
    d.start()
    try:
        # Redriven ones fail into the dead letters again: all are there, once.
        assert wait_for(lambda: stored(d, f"{TOPIC}.dlq") == len(dead)
                        and topic_stats(d, TOPIC)["depth"] == 0, timeout=30), d.log()[-4000:]
        status, doc = d.json("GET", f"/v1/topics/{TOPIC}.dlq/messages")
        assert status == 200 and sorted(m["payload"] for m in doc["messages"]) == dead, doc
    finally:
        assert d.stop() == 0, d.log()


def test_sqs_sends_and_receives_with_each_allocation_failing(tmp_path):
    """SendMessage and ReceiveMessage + DeleteMessage (POST /, the SQS JSON
    protocol), each allocation failing in turn: after a restart, every send
    that was answered 200 is received (or was deleted after its receipt)."""
    headers = lambda action: {"X-Amz-Target": "AmazonSQS." + action,  # noqa: E731
                              "Content-Type": "application/x-amz-json-1.0"}
    setup = Spated(tmp_path).start()
    status, _, body = setup.request("POST", "/", json.dumps({"QueueName": "q"}).encode(),
                                    headers("CreateQueue"))
    assert status == 200, body
    url = json.loads(body)["QueueUrl"]
    assert setup.stop() == 0, setup.log()

    sent, deleted = set(), set()

    def send(k):
        status, _, body = d.request("POST", "/", json.dumps(
            {"QueueUrl": url, "MessageBody": f"s{k}"}).encode(), headers("SendMessage"), timeout=10)
        if status == 200:
            sent.add(f"s{k}")
        if k % 2:  # every other step, a receive and a delete too
            st, _, b = d.request("POST", "/", json.dumps(
                {"QueueUrl": url, "MaxNumberOfMessages": 1}).encode(), headers("ReceiveMessage"),
                timeout=10)
            for m in json.loads(b or b"{}").get("Messages", []) if st == 200 else []:
                st2, _, _ = d.request("POST", "/", json.dumps(
                    {"QueueUrl": url, "ReceiptHandle": m["ReceiptHandle"]}).encode(),
                    headers("DeleteMessage"), timeout=10)
                if st2 == 200:
                    deleted.add(m["Body"])
        return status, body

    d = failing(tmp_path, "POST /")
    d.starts = 200
    d.start()
    try:
        fired = sweep(d, send, (200,))
    finally:
        rc = d.stop()
    assert len(fired) >= 5, d.log()[-4000:]
    assert rc == 0, f"spated exited with {rc} (a leak, under ASan?):\n{d.log()[-6000:]}"

    d = Spated(tmp_path)
    d.starts = 300
    d.start()
    try:
        got = set()

        def drain():
            st, _, b = d.request("POST", "/", json.dumps(
                {"QueueUrl": url, "MaxNumberOfMessages": 10, "VisibilityTimeout": 60}).encode(),
                headers("ReceiveMessage"))
            assert st == 200, b
            got.update(m["Body"] for m in json.loads(b or b"{}").get("Messages", []))
            return sent - deleted <= got

        # Messages received before the stop come back when their visibility ends.
        assert wait_for(drain, timeout=45, step=0.5), (sorted(sent - deleted - got), d.log()[-4000:])
    finally:
        assert d.stop() == 0, d.log()
