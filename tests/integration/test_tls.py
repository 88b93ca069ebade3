"""TLS on spated's API: https with the CLI and curl, a wrong CA refused, plain
HTTP to the TLS port refused cleanly, mutual TLS, a client certificate's
subject as a scope, a certificate rotated on SIGHUP without dropping an
established connection, and the rule that tokens cross a network only over
TLS (or with --insecure)."""

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

from conftest import ROOT, SPATE, SPATED, wait_for
from tlsutil import TestCA

ADMIN = "admin-token-0123456789abcdef"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA with a server certificate, a second server certificate (for the
    rotation), client certificates, and a CA nobody trusts."""
    d = tmp_path_factory.mktemp("pki")
    ca = TestCA(d / "ca", "spate test CA")
    other = TestCA(d / "other", "another CA")
    p = {"ca": ca.cert, "other_ca": other.cert}
    p["cert"], p["key"] = ca.server("srv")
    p["cert2"], p["key2"] = ca.server("srv2", cn="spated-rotated")
    p["deployer"], p["deployer_key"] = ca.client("deployer", "CN=deployer,O=spate-tests")
    p["nobody"], p["nobody_key"] = ca.client("nobody", "CN=nobody,O=spate-tests")
    p["stranger"], p["stranger_key"] = other.client("stranger", "CN=deployer,O=spate-tests")
    p["wrong"], p["wrong_key"] = other.server("wrongsrv")
    for v in p.values():
        os.chmod(v, 0o644)
    return p


def tls_files(tmp_path, pki, cert="cert", key="key"):
    """Copies of a certificate and key where a rotation may overwrite them."""
    c, k = tmp_path / "server.pem", tmp_path / "server.key"
    shutil.copy(pki[cert], c)
    shutil.copy(pki[key], k)
    return c, k


def context(ca, cert=None, key=None):
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def get(d, path, ctx, headers=None, host="127.0.0.1"):
    c = http.client.HTTPSConnection(host, d.port, context=ctx, timeout=10)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def curl(*args):
    return subprocess.run(["curl", "-sS", "--max-time", "10", *args], capture_output=True,
                          text=True)


def cli(d, *args, env=None):
    e = dict(os.environ, SPATE_URL=f"https://127.0.0.1:{d.port}")
    e.pop("SPATE_CACERT", None)
    e.update(env or {})
    return subprocess.run([str(SPATE), *args], capture_output=True, text=True, env=e, timeout=60)


@pytest.fixture
def tokens(tmp_path):
    t = tmp_path / "tokens"
    t.write_text(f"admin {ADMIN}\nadmin cert:CN=deployer,O=spate-tests\n")
    return t


def test_cli_and_curl_over_https(make_spated, tmp_path, pki, tokens, functions):
    cert, key = tls_files(tmp_path, pki)
    d = make_spated("--tls-cert", str(cert), "--tls-key", str(key), "--token-file", str(tokens))
    assert "TLS: certificate CN=spated" in d.log()
    # curl, verifying against the test CA, by address and by name.
    for host in ("127.0.0.1", "localhost"):
        r = curl("--cacert", str(pki["ca"]), f"https://{host}:{d.port}/v1/health")
        assert r.returncode == 0 and json.loads(r.stdout)["status"] == "ok", r
    # The CLI: --cacert, or SPATE_CACERT.
    auth = {"SPATE_TOKEN": ADMIN}
    r = cli(d, "--cacert", str(pki["ca"]), "deploy", "hello", str(functions["hello"]), env=auth)
    assert r.returncode == 0, r.stderr
    r = cli(d, "invoke", "hello", "over-tls", env=dict(auth, SPATE_CACERT=str(pki["ca"])))
    assert r.returncode == 0, r.stderr
    # Keep-alive: several requests on one TLS connection.
    c = http.client.HTTPSConnection("127.0.0.1", d.port, context=context(pki["ca"]), timeout=10)
    for i in range(5):
        c.request("POST", "/v1/functions/hello/invoke", body=f"p{i}".encode(),
                  headers={"Authorization": f"Bearer {ADMIN}"})
        r = c.getresponse()
        assert r.status == 200, r.read()
        r.read()
    c.close()
    # Large bodies cross many TLS records: a 3 MiB payload in, the
    # dashboard's script (over one record) out.
    big = b"x" * (3 * 1024 * 1024)
    c = http.client.HTTPSConnection("127.0.0.1", d.port, context=context(pki["ca"]), timeout=30)
    c.request("POST", "/v1/functions/hello/invoke", body=big,
              headers={"Authorization": f"Bearer {ADMIN}"})
    r = c.getresponse()
    assert r.status == 200 and r.read().startswith(b"hello, xxxx")
    c.request("GET", "/ui/app.js")
    r = c.getresponse()
    assert r.status == 200
    assert r.read() == (ROOT / "web/app.js").read_bytes()
    c.close()


def test_wrong_ca_refused(make_spated, tmp_path, pki):
    cert, key = tls_files(tmp_path, pki)
    d = make_spated("--tls-cert", str(cert), "--tls-key", str(key))
    r = curl("--cacert", str(pki["other_ca"]), f"https://127.0.0.1:{d.port}/v1/health")
    assert r.returncode == 60, r  # CURLE_PEER_FAILED_VERIFICATION
    r = cli(d, "--cacert", str(pki["other_ca"]), "ls")
    assert r.returncode == 6 and "certificate" in r.stderr, r.stderr
    # Without --cacert the system's CAs do not know the test CA either.
    r = cli(d, "ls")
    assert r.returncode == 6 and "certificate" in r.stderr, r.stderr
    # A server with a certificate of the other CA is refused by a client of ours.
    d2 = make_spated("--tls-cert", str(pki["wrong"]), "--tls-key", str(pki["wrong_key"]))
    with pytest.raises(ssl.SSLCertVerificationError):
        get(d2, "/v1/health", context(pki["ca"]))
    # The server is still well.
    assert get(d, "/v1/health", context(pki["ca"]))[0] == 200


def test_plain_http_to_the_tls_port_refused_cleanly(make_spated, tmp_path, pki):
    cert, key = tls_files(tmp_path, pki)
    d = make_spated("--tls-cert", str(cert), "--tls-key", str(key), "--header-timeout", "500")
    for _ in range(3):
        c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
        c.request("POST", "/v1/functions/x/invoke", body=b"payload")
        r = c.getresponse()
        body = json.loads(r.read())
        assert r.status == 400 and body["code"] == "tls_required", body
        assert r.getheader("Connection") == "close"
        c.close()
    # Logged once (at most every 10 s), not once a connection.
    assert d.log().count("plain HTTP sent to the TLS listener") == 1, d.log()
    # A client that connects and says nothing is let go at the header deadline.
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    t0 = time.monotonic()
    assert s.recv(100) == b""
    assert time.monotonic() - t0 < 8
    s.close()
    # A handshake record of garbage: closed, no crash.
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    s.sendall(b"\x16\x03\x01\x00\x05hello" + os.urandom(2000))
    try:
        assert s.recv(100)[:1] in (b"", b"\x15")  # nothing, or a TLS alert
    except ConnectionResetError:
        pass
    s.close()
    # More handshake bytes than the limit: closed.
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    try:
        for _ in range(20):
            s.sendall(b"\x16\x03\x01\x40\x00" + b"\x01" * 16384)
    except (BrokenPipeError, ConnectionResetError):
        pass
    s.close()
    assert get(d, "/v1/health", context(pki["ca"]))[0] == 200
    assert d.proc.poll() is None


def test_mutual_tls(make_spated, tmp_path, pki):
    cert, key = tls_files(tmp_path, pki)
    d = make_spated("--tls-cert", str(cert), "--tls-key", str(key), "--tls-client-ca",
                    str(pki["ca"]))
    # Without a client certificate: refused at the handshake.
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        get(d, "/v1/health", context(pki["ca"]))
    r = curl("--cacert", str(pki["ca"]), f"https://127.0.0.1:{d.port}/v1/health")
    assert r.returncode != 0, r
    # One of another CA: refused too.
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        get(d, "/v1/health", context(pki["ca"], pki["stranger"], pki["stranger_key"]))
    # One the CA signed: in.
    assert get(d, "/v1/health", context(pki["ca"], pki["nobody"], pki["nobody_key"]))[0] == 200
    r = curl("--cacert", str(pki["ca"]), "--cert", str(pki["nobody"]), "--key",
             str(pki["nobody_key"]), f"https://127.0.0.1:{d.port}/v1/health")
    assert r.returncode == 0, r
    r = cli(d, "--cacert", str(pki["ca"]), "--cert", str(pki["nobody"]), "--cert-key",
            str(pki["nobody_key"]), "ls")
    assert r.returncode == 0, r.stderr
    assert d.proc.poll() is None


def test_client_certificate_subject_grants_a_scope(make_spated, tmp_path, pki, tokens, functions):
    cert, key = tls_files(tmp_path, pki)
    d = make_spated("--tls-cert", str(cert), "--tls-key", str(key), "--tls-client-ca",
                    str(pki["ca"]), "--token-file", str(tokens))
    deployer = context(pki["ca"], pki["deployer"], pki["deployer_key"])
    nobody = context(pki["ca"], pki["nobody"], pki["nobody_key"])
    # The deployer's certificate is admin, with no token.
    assert get(d, "/v1/functions", deployer)[0] == 200
    r = cli(d, "--cacert", str(pki["ca"]), "--cert", str(pki["deployer"]), "--cert-key",
            str(pki["deployer_key"]), "deploy", "hello", str(functions["hello"]))
    assert r.returncode == 0, r.stderr
    # Another certificate of the same CA is let through the handshake, but
    # grants nothing: it needs a token.
    status, body = get(d, "/v1/functions", nobody)
    assert status == 401, body
    assert get(d, "/v1/functions", nobody, {"Authorization": f"Bearer {ADMIN}"})[0] == 200
    # The token file's form is checked.
    bad = tmp_path / "bad-tokens"
    bad.write_text("admin cert:\n")
    r = subprocess.run([str(SPATED), "--data", str(tmp_path / "x"), "--token-file", str(bad),
                        "--check-config"], capture_output=True, text=True)
    assert r.returncode == 2 and "cert:SUBJECT" in r.stderr, r.stderr


def test_sighup_rotates_the_certificate_keeping_connections(make_spated, tmp_path, pki):
    cert, key = tls_files(tmp_path, pki)
    d = make_spated("--tls-cert", str(cert), "--tls-key", str(key))
    ctx = context(pki["ca"])
    old = http.client.HTTPSConnection("127.0.0.1", d.port, context=ctx, timeout=10)
    old.request("GET", "/v1/health")
    r = old.getresponse()
    assert r.status == 200
    r.read()
    sock = old.sock
    first = sock.getpeercert()["subject"]
    assert ((("commonName", "spated"),),) == first
    # Rotate: new files where the old ones were, then SIGHUP.
    shutil.copy(pki["cert2"], cert)
    shutil.copy(pki["key2"], key)
    d.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "reload: TLS certificate CN=spated-rotated" in d.log()), d.log()
    # The established keep-alive connection goes on, with its old session.
    old.request("GET", "/v1/health")
    r = old.getresponse()
    assert r.status == 200
    r.read()
    assert old.sock is sock
    # A new connection gets the new certificate.
    c = http.client.HTTPSConnection("127.0.0.1", d.port, context=ctx, timeout=10)
    c.request("GET", "/v1/health")
    assert c.getresponse().status == 200
    assert c.sock.getpeercert()["subject"] == ((("commonName", "spated-rotated"),),)
    c.close()
    # A bad new file keeps the one in use, and says why.
    cert.write_text("not a certificate\n")
    d.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "the TLS certificate in use stays" in d.log()), d.log()
    c = http.client.HTTPSConnection("127.0.0.1", d.port, context=ctx, timeout=10)
    c.request("GET", "/v1/health")
    assert c.getresponse().status == 200
    assert c.sock.getpeercert()["subject"] == ((("commonName", "spated-rotated"),),)
    c.close()
    old.request("GET", "/v1/health")
    assert old.getresponse().status == 200
    old.close()


def run_check(tmp_path, *args):
    return subprocess.run([str(SPATED), "--data", str(tmp_path / "d"), *args, "--check-config"],
                          capture_output=True, text=True, timeout=30)


def test_tokens_cross_a_network_only_over_tls(tmp_path, pki, tokens, make_spated):
    cert, key = tls_files(tmp_path, pki)
    # Tokens on a non-loopback address in clear: refused, saying why.
    r = run_check(tmp_path, "--listen", "0.0.0.0:0", "--token-file", str(tokens))
    assert r.returncode == 2, r
    assert "without TLS" in r.stderr and "--insecure" in r.stderr and "--tls-cert" in r.stderr
    # With TLS, or with --insecure: accepted.
    r = run_check(tmp_path, "--listen", "0.0.0.0:0", "--token-file", str(tokens),
                  "--tls-cert", str(cert), "--tls-key", str(key))
    assert r.returncode == 0, r.stderr
    r = run_check(tmp_path, "--listen", "0.0.0.0:0", "--token-file", str(tokens), "--insecure")
    assert r.returncode == 0, r.stderr
    assert "in clear" in r.stderr
    # Loopback in clear stays as it was.
    r = run_check(tmp_path, "--listen", "127.0.0.1:0", "--token-file", str(tokens))
    assert r.returncode == 0, r.stderr
    # The TLS options go together, and a file that cannot be used is named.
    r = run_check(tmp_path, "--tls-cert", str(cert))
    assert r.returncode == 2 and "--tls-key" in r.stderr, r.stderr
    r = run_check(tmp_path, "--tls-cert", str(tokens), "--tls-key", str(key))
    assert r.returncode == 2 and "cannot use TLS certificate" in r.stderr, r.stderr
    r = run_check(tmp_path, "--tls-cert", str(cert), "--tls-key", str(pki["key2"]))
    assert r.returncode == 2 and "does not match" in r.stderr and "srv2.key" in r.stderr, r.stderr
    r = run_check(tmp_path, "--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(key))
    assert r.returncode == 2 and "No such file" in r.stderr, r.stderr
    # A real listener on every address, with tokens and TLS.
    d = make_spated("--token-file", str(tokens), "--tls-cert", str(cert), "--tls-key", str(key),
                    start=False)
    d.start(listen="0.0.0.0:0")
    assert get(d, "/v1/health", context(pki["ca"]))[0] == 200


def test_pipelined_requests_over_tls(make_spated, tmp_path, pki):
    """More pipelined requests than the read buffer holds, in one burst: the
    decrypted bytes wait in OpenSSL while the parser catches up, and every
    answer comes, in order."""
    cert, key = tls_files(tmp_path, pki)
    d = make_spated("--tls-cert", str(cert), "--tls-key", str(key))
    n = 3000
    reqs = b"".join(b"GET /v1/functions/f%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(n))
    assert len(reqs) > 2 * 64 * 1024
    raw = socket.create_connection(("127.0.0.1", d.port), timeout=20)
    s = context(pki["ca"]).wrap_socket(raw, server_hostname="127.0.0.1")
    s.sendall(reqs)
    got = b""
    while got.count(b"HTTP/1.1 404") < n:
        chunk = s.recv(65536)
        assert chunk, f"closed after {got.count(b'HTTP/1.1 ')} answers"
        got += chunk
    # In order: each answer names its function.
    names = [int(x) for x in __import__("re").findall(rb"function '?f(\d+)", got)]
    assert names == list(range(n)), names[:10]
    s.close()


def test_records_split_across_reads(make_spated, tmp_path, pki):
    """The handshake and a request sent a few bytes a write: records arrive
    in pieces and are put together (OpenSSL on memory BIOs waits for the
    rest), and the answer comes."""
    cert, key = tls_files(tmp_path, pki)
    d = make_spated("--tls-cert", str(cert), "--tls-key", str(key))
    raw = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context(pki["ca"]).wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")

    def flush():
        data = outgoing.read()
        for i in range(0, len(data), 7):
            raw.sendall(data[i:i + 7])
            time.sleep(0.0005)

    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            flush()
            chunk = raw.recv(65536)
            assert chunk, "closed during the handshake"
            incoming.write(chunk)
    flush()
    tls.write(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
    flush()
    got = b""
    while b"\r\n\r\n" not in got or not got.rstrip().endswith(b"}"):
        try:
            got += tls.read(65536)
        except ssl.SSLWantReadError:
            chunk = raw.recv(65536)
            assert chunk, got
            incoming.write(chunk)
    assert got.startswith(b"HTTP/1.1 200"), got
    raw.close()


def test_reload_changes_the_client_ca(make_spated, tmp_path, pki):
    """--tls-client-ca can change on SIGHUP (through the config file): new
    handshakes are checked against the new CA."""
    cert, key = tls_files(tmp_path, pki)
    conf = tmp_path / "spated.conf"
    conf.write_text(f"tls-cert = {cert}\ntls-key = {key}\ntls-client-ca = {pki['ca']}\n")
    d = make_spated("--config", str(conf))
    ours = context(pki["ca"], pki["nobody"], pki["nobody_key"])
    theirs = context(pki["ca"], pki["stranger"], pki["stranger_key"])
    assert get(d, "/v1/health", ours)[0] == 200
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        get(d, "/v1/health", theirs)
    conf.write_text(f"tls-cert = {cert}\ntls-key = {key}\ntls-client-ca = {pki['other_ca']}\n")
    d.proc.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "client CA " + str(pki["other_ca"]) in d.log()), d.log()
    assert get(d, "/v1/health", theirs)[0] == 200
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        get(d, "/v1/health", ours)


def test_encrypted_key_and_fifo_refused_without_waiting(tmp_path, pki):
    """An encrypted key is refused with a reason, not a passphrase prompt on
    spated's terminal (which held its start, or its loop at a SIGHUP); a
    FIFO named as a TLS file is refused, not opened until written."""
    cert, key = tls_files(tmp_path, pki)
    locked = tmp_path / "locked.key"
    subprocess.run(["openssl", "pkey", "-in", str(key), "-out", str(locked), "-aes256",
                    "-passout", "pass:secret"], check=True, capture_output=True)
    r = run_check(tmp_path, "--tls-cert", str(cert), "--tls-key", str(locked))
    assert r.returncode == 2 and "cannot use TLS key" in r.stderr, r.stderr
    fifo = tmp_path / "cert.fifo"
    os.mkfifo(fifo)
    r = run_check(tmp_path, "--tls-cert", str(fifo), "--tls-key", str(key))
    assert r.returncode == 2 and "not a regular file" in r.stderr, r.stderr
    big = tmp_path / "big.pem"
    big.write_bytes(cert.read_bytes() * (2 * 1024 * 1024 // len(cert.read_bytes()) + 1))
    r = run_check(tmp_path, "--tls-cert", str(big), "--tls-key", str(key))
    assert r.returncode == 2 and "larger than 1 MiB" in r.stderr, r.stderr
