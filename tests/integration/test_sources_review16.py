"""Issue 16 adversarial review: hostile upstreams, credentials in odd URL
places, lifecycle. Upstreams are small Python socket servers started by the
tests on loopback; nothing asserts on speed."""

import json
import socket
import threading
import time

from conftest import wait_for


class FakeBroker:
    """Accepts connections on a loopback port; handler(conn) serves each."""

    def __init__(self, handler):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.conns = []
        self.ended = 0  # connections whose handler returned (the peer closed)
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            self.handler(c)
        except OSError:
            pass
        self.ended += 1

    def close(self):
        self.stopped = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def silent(conn):
    """Reads what comes and never answers."""
    while conn.recv(65536):
        pass


def add_source(d, name, url, topic="t"):
    return d.json("PUT", f"/v1/sources/{name}", json.dumps({"url": url, "topic": topic}).encode())


def test_a_silent_broker_neither_hangs_removal_nor_shutdown(spated):
    brokers = [FakeBroker(silent) for _ in range(5)]
    try:
        urls = [f"redis://127.0.0.1:{brokers[0].port}/s?group=g",
                f"amqp://127.0.0.1:{brokers[1].port}/?queue=q",
                f"nats://127.0.0.1:{brokers[2].port}/subj",
                f"mqtt://127.0.0.1:{brokers[3].port}/a/b",
                f"kafka://127.0.0.1:{brokers[4].port}/topic?group=g"]
        for i, u in enumerate(urls):
            status, doc = add_source(spated, f"s{i}", u)
            assert status == 201, (u, doc)
        assert wait_for(lambda: all(b.conns for b in brokers), timeout=30)
        time.sleep(2)
        # The API answers while every source waits on its silent broker.
        t0 = time.time()
        assert spated.request("GET", "/v1/sources")[0] == 200
        for i in range(3):
            assert spated.request("DELETE", f"/v1/sources/s{i}", timeout=60)[0] == 204
        assert spated.request("GET", "/v1/health")[0] == 200
        print("delete took", time.time() - t0)
    finally:
        t0 = time.time()
        rc = spated.stop(timeout=60)
        print("stop took", time.time() - t0)
        for b in brokers:
            b.close()
    assert rc == 0, spated.log()


SECRET = "S3cr3tPW"


def test_a_password_is_never_shown(spated):
    b = FakeBroker(silent)
    p = b.port
    urls = {
        "r1": f"redis://user:{SECRET}@127.0.0.1:{p}/s?group=g",
        "r2": f"redis://:{SECRET}@127.0.0.1:{p}/s?group=g",
        "r3": f"redis://us%40er:{SECRET}%40x%3Ay@127.0.0.1:{p}/s?group=g",
        "r4": f"redis://user:{SECRET}@x@127.0.0.1:{p}/s?group=g",
        "r5": f"REDIS://user:{SECRET}@[::1]:{p}/s?group=g",
        "r6": f"redis://user:{SECRET}%0a@127.0.0.1:{p}/s?group=g",
        "n1": f"nats://{SECRET}@127.0.0.1:{p}/subj",
        "n2": f"NATS://{SECRET}@127.0.0.1:{p}/subj",
        "n3": f"nats://u:{SECRET}@127.0.0.1:{p}/subj",
        "n4": f"nats://2024/{SECRET}@127.0.0.1:{p}/subj",
        "n5": f"nats://u:2024/{SECRET}@127.0.0.1:{p}/subj",
        "a1": f"amqp://u:{SECRET}@127.0.0.1:{p}/?queue=q",
        "a2": f"amqps://u:{SECRET}@127.0.0.1:{p}/?queue=q",
        "m1": f"mqtt://u:{SECRET}@127.0.0.1:{p}/a",
        "m2": f"mqtts://u:{SECRET}@127.0.0.1:{p}/a",
        "k1": f"kafka://u:{SECRET}@127.0.0.1:{p}/tp?group=g&mechanism=PLAIN",
        "k2": f"kafka://u:1234?{SECRET}@127.0.0.1:{p}/tp?group=g&mechanism=PLAIN",
    }
    shown = []
    try:
        for name, u in urls.items():
            status, doc = add_source(spated, name, u)
            shown.append(f"{name} {status} {json.dumps(doc)}")
        time.sleep(3)
        for name in urls:
            shown.append(json.dumps(spated.json("GET", f"/v1/sources/{name}")[1]))
        shown.append(json.dumps(spated.json("GET", "/v1/sources")[1]))
        shown.append(spated.request("GET", "/metrics")[2].decode())
        cli = spated.cli("source", "ls")
        shown.append((cli.stdout + cli.stderr).decode(errors="replace"))
        for name in urls:
            cli = spated.cli("source", "show", name)
            shown.append((cli.stdout + cli.stderr).decode(errors="replace"))
    finally:
        for name in urls:
            spated.request("DELETE", f"/v1/sources/{name}")
        b.close()
    text = "\n".join(shown) + spated.log()
    print("\n".join(shown[:len(urls)]))
    assert SECRET not in text, [l for l in text.split("\n") if SECRET in l]


def test_a_nul_in_a_string_is_refused_not_cut(spated):
    """cJSON ends a string at an escaped NUL: "a\\u0000b" was stored as "a"
    (a payload, a topic or a URL cut short without a word)."""
    b = FakeBroker(silent)
    try:
        status, doc = spated.json("PUT", "/v1/schedules/nul", json.dumps(
            {"expression": "@every 1h", "topic": "t", "payload": "a\u0000b"}).encode())
        assert status == 400 and doc["code"] == "bad_schedule", doc
        assert "NUL" in doc["error"]
        assert spated.request("GET", "/v1/schedules/nul")[0] == 404
        status, doc = add_source(spated, "nul", f"redis://127.0.0.1:{b.port}/s?group=g",
                                 topic="t\u0000x")
        assert status == 400 and doc["code"] == "bad_source", doc
        status, doc = add_source(spated, "nul",
                                 f"redis://127.0.0.1:{b.port}/s?group=g\u0000&consumer=c")
        assert status == 400, doc
        assert spated.request("GET", "/v1/sources/nul")[0] == 404
        # An escaped backslash before u0000 is text, not a NUL.
        status, doc = spated.json("PUT", "/v1/schedules/text", json.dumps(
            {"expression": "@every 1h", "topic": "t", "payload": "a\\u0000b"}).encode())
        assert status == 201 and doc["payload"] == "a\\u0000b", doc
    finally:
        b.close()


def resp_commands(conn):
    """Yields each RESP command (a list of bytes) the client sends."""
    data = b""
    while True:
        while True:
            cmd, rest = parse_resp(data)
            if cmd is None:
                break
            data = rest
            yield cmd
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk


def parse_resp(data):
    if not data.startswith(b"*") or b"\r\n" not in data:
        return None, data
    head, rest = data.split(b"\r\n", 1)
    args = []
    for _ in range(int(head[1:])):
        if b"\r\n" not in rest:
            return None, data
        h, rest = rest.split(b"\r\n", 1)
        n = int(h[1:])
        if len(rest) < n + 2:
            return None, data
        args.append(rest[:n])
        rest = rest[n + 2:]
    return args, rest


def dribbler(conn):
    """A Redis that creates the group, then answers XREADGROUP with an entry
    whose value never ends: a byte every half second."""
    for cmd in resp_commands(conn):
        verb = cmd[0].upper()
        if verb == b"XREADGROUP":
            conn.sendall(b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nv\r\n"
                         b"$100000000\r\n")
            while True:
                conn.sendall(b"x")
                time.sleep(0.5)
        elif verb == b"XGROUP":
            conn.sendall(b"+OK\r\n")
        else:
            conn.sendall(b"-ERR unknown\r\n")


def test_a_dribbling_broker_does_not_hold_removal_or_shutdown(spated):
    """hiredis times out each read, not a reply: a broker that sends a byte
    now and then held a removed source's thread and connection for ever, and
    spated's shutdown until the grace was over and it killed itself (exit 1).
    A stopped source still blocked after the I/O timeout has its connection
    cut."""
    b = FakeBroker(dribbler)
    try:
        status, doc = add_source(spated, "drib", f"redis://127.0.0.1:{b.port}/s?group=g")
        assert status == 201, doc
        assert wait_for(lambda: b.conns, timeout=30)
        time.sleep(1)
        assert spated.request("DELETE", "/v1/sources/drib")[0] == 204
        # The removed source lets go of its connection (bounded generously).
        assert wait_for(lambda: b.ended == 1, timeout=60), spated.log()
        assert "drib: still blocked upstream" in spated.log()
        status, doc = add_source(spated, "drib2", f"redis://127.0.0.1:{b.port}/s?group=g")
        assert status == 201, doc
        assert wait_for(lambda: len(b.conns) >= 2, timeout=30)
        time.sleep(1)
        # Stops cleanly, within its grace (30 s): not cut by it.
        rc = spated.stop(timeout=120)
        assert rc == 0, spated.log()
        assert "grace of" not in spated.log()
    finally:
        b.close()
