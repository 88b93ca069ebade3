"""bench/sourcebench.py - what every bench/sources-SCHEME shares: a scratch
directory functions can reach, compiling the no-op function and C peers,
a spated, and the one measurement: N entries waiting upstream, then a
source added, until a no-op trigger has acknowledged all N."""

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
BUILD = pathlib.Path(os.environ.get("SPATE_BUILD", ROOT / "build"))
BENCH = ROOT / "bench"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def scratch(prefix):
    """A directory under /var/tmp (not /tmp, which instances have of their
    own) that nobody-run functions can pass through."""
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    tmp.chmod(0o711)
    return tmp


def pkg_libs(*packages):
    return subprocess.run(["pkg-config", "--cflags", "--libs", *packages], capture_output=True,
                          text=True, check=True).stdout.split()


def cc(out, *sources, libs=(), shared=False):
    args = ["cc", "-O2", "-I", str(ROOT / "include")]
    if shared:
        args += ["-shared", "-fPIC"]
    subprocess.run([*args, "-o", str(out), *map(str, sources), *libs], check=True)
    return out


def noop(tmp):
    return cc(tmp / "noop.so", BENCH / "noop.c", shared=True)


class Spated:
    def __init__(self, tmp, name="spated"):
        self.port = free_port()
        self.log = tmp / f"{name}.log"
        self.proc = subprocess.Popen(
            [str(BUILD / "spated"), "--data", str(tmp / name), "--listen",
             f"127.0.0.1:{self.port}", "--log-level", "warn"],
            stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)
        for _ in range(200):
            try:
                self.call("GET", "/v1/health")
                return
            except OSError:
                time.sleep(0.05)
        sys.exit("spated did not start:\n" + self.log.read_text())

    def call(self, method, path, body=None):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=body,
                                     method=method)
        with urllib.request.urlopen(req, timeout=60) as r:
            data = r.read()
            return json.loads(data) if data else None

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


def spate_drain(tmp, url, n, so, timeout=600):
    """Seconds from adding the source until a no-op function behind its
    topic has acknowledged n messages (every entry is waiting upstream
    before the clock starts, as it is for the peer)."""
    d = Spated(tmp)
    try:
        d.call("PUT", "/v1/functions/noop", so.read_bytes())
        d.call("PUT", "/v1/triggers/bench/noop")
        t0 = time.monotonic()
        d.call("PUT", "/v1/sources/bench", json.dumps({"url": url, "topic": "bench"}).encode())
        end = t0 + timeout
        while time.monotonic() < end:
            if d.call("GET", "/v1/topics/bench")["acknowledged"] >= n:
                return time.monotonic() - t0
            time.sleep(0.01)
        sys.exit(f"spate did not drain {n} entries in {timeout} s:\n" + d.log.read_text()[-3000:])
    finally:
        d.stop()


def source_only(tmp, url, n, timeout=600):
    """Seconds until a source without any trigger behind its topic has
    committed n messages (its own durable consumer of the same stream): the
    connector and the topic's commits alone, without the functions."""
    d = Spated(tmp, "spated-alone")
    try:
        t0 = time.monotonic()
        d.call("PUT", "/v1/sources/alone", json.dumps({"url": url, "topic": "alone"}).encode())
        while time.monotonic() < t0 + timeout:
            if d.call("GET", "/v1/sources/alone")["committed"] >= n:
                return time.monotonic() - t0
            time.sleep(0.01)
        sys.exit(f"the source did not commit {n} messages in {timeout} s")
    finally:
        d.stop()


def report(scheme, n, spate_s, peer_s, peer_name, target):
    ours, theirs = n / spate_s, n / peer_s
    ratio = ours / theirs
    print(f"\nspate source benchmark: {scheme}  ({os.cpu_count()} cores, one run, {n:,} entries "
          f"waiting upstream)\n")
    print(f"{'':44}{'messages/s':>14}")
    print(f"{'spate: source -> topic -> no-op function':44}{ours:>14,.0f}")
    print(f"{'peer: ' + peer_name:44}{theirs:>14,.0f}")
    print(f"{'ratio':44}{ratio:>14.2f}")
    print(f"\ntarget >= {target} x the bare consumer: {'reached' if ratio >= target else 'MISSED'}")


def cleanup(tmp):
    shutil.rmtree(tmp, ignore_errors=True)
