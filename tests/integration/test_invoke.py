"""Deploy and invoke native functions: payloads, concurrency, faults."""

import concurrent.futures
import json
import os
import threading
import time

MIB = 1024 * 1024


def test_deploy_then_invoke(spated, functions):
    status, doc = spated.deploy("hello", functions["hello"])
    assert status == 201, doc
    assert doc["name"] == "hello" and doc["version"] == 1
    assert len(doc["sha256"]) == 64
    status, headers, body = spated.request("POST", "/v1/functions/hello/invoke", b"spate")
    assert status == 200
    assert body == b"hello, spate\n"
    assert headers["Spate-Version"] == "1"
    assert len(headers["Spate-Request-Id"]) > 20
    assert spated.invoke("hello", b"")[1] == b"hello, world\n"


def test_payload_sizes(spated, functions):
    assert spated.deploy("probe", functions["probe"])[0] == 201
    for size in (0, 1, MIB, 6 * MIB):
        payload = os.urandom(size)
        status, body = spated.invoke("probe", payload)
        assert status == 200, body[:200]
        assert body == payload, f"payload of {size} bytes came back changed"
    status, body = spated.invoke("probe", b"x" * (6 * MIB + 1))
    assert status == 413
    doc = json.loads(body)
    assert doc["code"] == "payload_too_large" and "6291456" in doc["error"]
    # The daemon keeps serving.
    assert spated.invoke("probe", b"still here") == (200, b"still here")


def test_output_sizes(spated, functions):
    spated.deploy("probe", functions["probe"])
    status, body = spated.invoke("probe", b"big:1048576")
    assert status == 200 and len(body) == MIB
    status, body = spated.invoke("probe", b"big:6291457")
    assert status == 502
    assert json.loads(body)["error"] == "output too large"


def test_many_parallel_clients_each_get_their_answer(spated, functions):
    spated.deploy("probe", functions["probe"], max=16)

    def client(i):
        for j in range(20):
            payload = f"client {i} call {j} ".encode() * (1 + (i * j) % 50)
            status, body = spated.invoke("probe", payload)
            assert (status, body) == (200, payload)
        return i

    with concurrent.futures.ThreadPoolExecutor(64) as pool:
        assert sorted(pool.map(client, range(64))) == list(range(64))
    doc = spated.describe("probe")
    assert doc["stats"]["invocations"] == 64 * 20
    live = sum(doc["instances"][k] for k in ("starting", "idle", "busy"))
    assert 1 <= live <= 16


def error_of(body):
    return json.loads(body)


def test_faults_are_reported_and_contained(spated, functions):
    spated.deploy("probe", functions["probe"], timeout=400)
    spated.deploy("hello", functions["hello"])
    cases = {
        b"crash": (502, "function_crashed", "signal 11"),
        b"abort": (502, "function_crashed", "signal 6"),
        b"exit": (502, "function_crashed", "exited with status 3"),
        b"fail": (502, "function_error", "probe was asked to fail"),
        b"ret": (502, "function_error", "spate_handler returned 7"),
        b"hang": (504, "function_timeout", "timed out after 400 ms"),
    }
    for payload, (status, code, text) in cases.items():
        got, body = spated.invoke("probe", payload)
        assert got == status, (payload, body)
        doc = error_of(body)
        assert doc["code"] == code and text in doc["error"], (payload, doc)
        # The function is usable right after, and others never noticed.
        assert spated.invoke("probe", b"ok") == (200, b"ok")
        assert spated.invoke("hello", b"x") == (200, b"hello, x\n")
    stats = spated.describe("probe")["stats"]
    assert stats["crashes"] == 3 and stats["timeouts"] == 1 and stats["errors"] == 2


def test_crash_does_not_touch_other_invocations(spated, functions):
    spated.deploy("probe", functions["probe"])
    results = {}

    def slow():
        results["slow"] = spated.invoke("probe", b"sleep:600")

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.15)
    assert spated.invoke("probe", b"crash")[0] == 502
    t.join()
    assert results["slow"] == (200, b"slept")


def test_instances_are_reused_and_keep_their_state(spated, functions):
    spated.deploy("counter", functions["counter"])
    spated.deploy("probe", functions["probe"])
    assert [spated.invoke("counter")[1] for _ in range(3)] == [b"1001", b"1002", b"1003"]
    pids = {spated.invoke("probe", b"pid")[1] for _ in range(5)}
    assert len(pids) == 1
    assert spated.describe("probe")["stats"]["cold_starts"] == 1


def test_request_metadata(spated, functions):
    spated.deploy("probe", functions["probe"], timeout=5000)
    before = int(time.time() * 1000)
    status, headers, body = spated.request("POST", "/v1/functions/probe/invoke", b"req")
    assert status == 200
    rid, fn, attempt, deadline, topic, key = body.decode().split(" ")
    assert rid == headers["Spate-Request-Id"]
    assert fn == "probe" and attempt == "1" and topic == "-" and key == "-"
    assert before + 4000 <= int(deadline) <= before + 6000
    other = spated.invoke("probe", b"req")[1].split(b" ")[0]
    assert other.decode() != rid


def test_init_failure_is_reported(spated, functions):
    status, doc = spated.deploy("initfail", functions["init_fail"])
    assert status == 201
    status, body = spated.invoke("initfail")
    assert status == 502
    assert "spate_init returned 42" in error_of(body)["error"]
    # Still answered, not hung, the next time too.
    assert spated.invoke("initfail")[0] == 502


def test_environment(spated, functions):
    spated.deploy("probe", functions["probe"], env="GREETING%3Dhi%20there")
    assert spated.invoke("probe", b"env:GREETING")[1] == b"hi there"
    assert spated.invoke("probe", b"env:SPATE_FUNCTION_NAME")[1] == b"probe"
    assert spated.invoke("probe", b"env:PATH")[1] == b"/usr/local/bin:/usr/bin:/bin"
    # Nothing of spated's own environment leaks into functions.
    assert spated.invoke("probe", b"env:HOME")[1] == b"(unset)"


def test_queued_invocations_survive_a_crash_ahead_of_them(spated, functions):
    # A fast function gets several invocations queued on one instance; when
    # one of them crashes the instance, those behind it never started and must
    # run elsewhere: only the crashing call fails.
    spated.deploy("probe", functions["probe"], max=4)
    for _ in range(200):
        spated.invoke("probe", b"warm")
    for round_ in range(5):
        payloads = [f"r{round_}-{i}".encode() for i in range(40)]
        payloads[3] = b"crash"
        for p, answer in zip(payloads, burst(spated, "probe", payloads)):
            if p == b"crash":
                assert answer.startswith(b"HTTP/1.1 502 ")
            else:
                assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\n" + p)
    stats = spated.describe("probe")["stats"]
    assert stats["crashes"] == 5


def burst(spated, name, payloads):
    """Sends one invoke per connection, all at once, then reads every answer."""
    import socket
    socks = []
    for p in payloads:
        s = socket.create_connection(("127.0.0.1", spated.port))
        socks.append(s)
    reqs = [b"POST /v1/functions/%s/invoke HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (name.encode(), len(p), p) for p in payloads]
    for s, r in zip(socks, reqs):
        s.sendall(r)
    answers = []
    for s in socks:
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        answers.append(data)
    return answers


def test_fast_functions_share_instances(spated, functions):
    spated.deploy("probe", functions["probe"])
    for _ in range(100):
        spated.invoke("probe", b"warm")
    for round_ in range(10):
        payloads = [b"%d-%d" % (round_, i) for i in range(32)]
        for p, answer in zip(payloads, burst(spated, "probe", payloads)):
            assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\n" + p)
    # 32 requests at once need far fewer than 32 instances of a function that
    # returns in microseconds: they queue on busy instances rather than wait
    # for new ones to start.
    assert spated.describe("probe")["stats"]["cold_starts"] < 16
