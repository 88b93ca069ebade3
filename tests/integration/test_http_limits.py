"""The HTTP front of spated: keep-alive, pipelining, and every limit answered
with its status and a JSON body, while the daemon keeps serving."""

import json
import socket
import time

import pytest


def connect(d):
    s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_until_closed(s, limit=1 << 20):
    data = b""
    try:
        while len(data) < limit:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pass
    return data


def invoke_request(name, payload, close=False):
    head = f"POST /v1/functions/{name}/invoke HTTP/1.1\r\nHost: t\r\nContent-Length: {len(payload)}\r\n"
    if close:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + payload


def test_pipelined_invokes_are_answered_in_order(spated, functions):
    spated.deploy("probe", functions["probe"], max=4)
    s = connect(spated)
    payloads = [b"sleep:150", b"first-fast", b"sleep:50", b"last"]
    s.sendall(b"".join(invoke_request("probe", p, close=(i == 3)) for i, p in enumerate(payloads)))
    data = read_until_closed(s)
    assert data.count(b"HTTP/1.1 200 OK") == 4
    positions = [data.index(b"\r\n\r\n" + expect) for expect in (b"slept", b"first-fast")]
    assert positions[0] < positions[1] < data.index(b"\r\n\r\nlast")


def test_keep_alive_reuses_one_connection(spated, functions):
    import http.client
    spated.deploy("hello", functions["hello"])
    conn = http.client.HTTPConnection("127.0.0.1", spated.port)
    for i in range(50):
        conn.request("POST", "/v1/functions/hello/invoke", body=str(i).encode())
        r = conn.getresponse()
        assert (r.status, r.read()) == (200, f"hello, {i}\n".encode())
    conn.close()


def test_connection_limit_answers_503(make_spated):
    d = make_spated("--max-connections", "4")
    # Busy connections (a body on its way) are not closed for a newcomer.
    partial = b"POST /v1/functions/x/invoke HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc"
    held = [connect(d) for _ in range(4)]
    for s in held:
        s.sendall(partial)
    time.sleep(0.1)
    extra = connect(d)
    data = read_until_closed(extra)
    assert data.startswith(b"HTTP/1.1 503 ")
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["code"] == "too_many_connections"
    held[0].sendall(b"defghij")
    assert b"404 Not Found" in held[0].recv(4096)
    for s in held:
        s.close()
    time.sleep(0.1)
    assert d.json("GET", "/v1/health")[0] == 200


def test_idle_connections_make_room_for_new_ones(make_spated):
    # Connections that only wait (for their first request, or between
    # requests) are closed, oldest first, when a new one needs their place.
    d = make_spated("--max-connections", "4")
    held = [connect(d) for _ in range(4)]
    held[3].sendall(b"GET /v1/health HTTP/1.1\r\nHost: t\r\n\r\n")
    assert b"200 OK" in held[3].recv(4096)
    time.sleep(0.1)
    assert d.json("GET", "/v1/health")[0] == 200
    assert held[0].recv(100) == b""  # the oldest was closed for it
    assert d.json("GET", "/v1/health")[0] == 200
    for s in held:
        s.close()


def test_idle_connections_are_closed(make_spated):
    d = make_spated("--idle-timeout", "200")
    s = connect(d)
    start = time.time()
    assert s.recv(100) == b""
    assert time.time() - start < 3


def test_slow_requests_get_408(make_spated):
    d = make_spated("--request-timeout", "300")
    s = connect(d)
    s.sendall(b"POST /v1/functions/x/invoke HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
    data = read_until_closed(s)
    assert data.startswith(b"HTTP/1.1 408 ")
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["code"] == "request_timeout"


@pytest.mark.parametrize("partial", [b"GET /v1/hea", b"POST /v1/functions/x/invoke HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"])
def test_a_request_cut_short_gets_400_at_once(spated, partial):
    # The client half-closes mid-request (found by fuzz_http): answered now,
    # not after the request timeout.
    s = connect(spated)
    s.sendall(partial)
    s.shutdown(socket.SHUT_WR)
    t = time.time()
    data = read_until_closed(s)
    assert data.startswith(b"HTTP/1.1 400 ") and b"ended before it was complete" in data, data
    assert time.time() - t < 10  # well below the 30 s request timeout


def test_malformed_requests_get_400_and_the_daemon_goes_on(spated):
    for junk, status in ((b"NOT HTTP\r\n\r\n", 400), (b"GET / HTTP/9.9\r\n\r\n", 505),
                         (b"\x00\x01\x02\r\n\r\n", 400),
                         (b"GET /v1/health HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400)):
        s = connect(spated)
        s.sendall(junk)
        data = read_until_closed(s)
        assert data.startswith(b"HTTP/1.1 %d " % status), (junk, data)
        assert b'"code":' in data
        s.close()
    assert spated.json("GET", "/v1/health") == (200, {"status": "ok"})


def test_payload_limit_is_configurable(make_spated, functions):
    d = make_spated("--payload-max", "1000")
    d.deploy("probe", functions["probe"])
    assert d.invoke("probe", b"x" * 1000) == (200, b"x" * 1000)
    status, body = d.invoke("probe", b"x" * 1001)
    assert status == 413 and b"1000 bytes" in body
