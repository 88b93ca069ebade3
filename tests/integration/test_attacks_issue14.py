"""Attacks on what issue 14 added (the CANCEL frame and its counters, logs
rebuilt from files, secrets, new routes): a hostile function, a hostile API
client with a publish or invoke token, a hostile file. Each test failed on
the code before its fix.
"""

import os
import subprocess
import time
import urllib.parse

import pytest

from conftest import SPATE, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the attacks are on spated as root")


def deploy(d, name, so, *env, **params):
    query = [f"{k}={v}" for k, v in params.items()]
    query += ["env=" + urllib.parse.quote(kv, safe="") for kv in env]
    return d.json("PUT", f"/v1/functions/{name}?" + "&".join(query), so.read_bytes())


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- The CANCEL frame ---------------------------------------------------------------------


def test_cancelled_answers_spated_never_asked_for_are_refused(spated, functions):
    """A native instance answered every invocation "cancelled" (the answer to
    a CANCEL) though spated had sent none: spated put the invocation back
    first in line, gave it to the same idle instance, which answered the same
    at once, for ever: the caller never had an answer (the function's timeout
    began again with each dispatch) and spated spun at a full core outside
    every cgroup. A cancelled answer is now accepted only for an invocation
    sent before a CANCEL; any other breaks the protocol and ends the instance,
    and the caller is told."""
    status, doc = deploy(spated, "canceller", functions["atk_n_frames"], "ATK_MODE=cancel_all",
                         timeout=2000)
    assert status == 201, doc
    before = cpu_seconds(spated.proc.pid)
    t0 = time.monotonic()
    try:
        status, _, body = spated.request("POST", "/v1/functions/canceller/invoke", b"x", timeout=20)
    except TimeoutError:
        status, body = None, b""
    took = time.monotonic() - t0
    used = cpu_seconds(spated.proc.pid) - before
    assert status is not None, (f"no answer in {took:.0f} s; spated used {used:.1f} s of CPU "
                                "bouncing the invocation")
    assert status in (502, 500), (status, body)
    assert wait_for(lambda: "broke the frame protocol" in spated.log(), timeout=10), spated.log()
    # The instance was ended: the next invocation starts another (which does the same).
    status, _, _ = spated.request("GET", "/v1/health")
    assert status == 200


# --- Logs rebuilt from their files -------------------------------------------------------


def test_a_function_cannot_forge_lines_of_its_log_file(make_spated, functions):
    """A native instance's init error (an INIT_FAILED frame, the function's
    own words) went into a platform line of the function's log file as it
    was: a newline in it began a line of the file's format, which spated read
    back after a restart as its own: a platform line, numbered and dated as
    the function chose, blaming a request of the function's choosing for a
    crash. Control characters of a platform line are now escaped, as in
    spated's own log."""
    d = make_spated()
    victim = "0123456789abcdef0123456789abcdef"
    status, doc = deploy(d, "forger", functions["atk_n_frames"], "ATK_MODE=init_forge",
                         f"ATK_REQ={victim}")
    assert status == 201, doc
    status, _, body = d.request("POST", "/v1/functions/forger/invoke", b"x")
    assert status >= 500, body
    assert wait_for(lambda: "FORGED" in (d.data / "logs" / "forger.log").read_text(errors="replace"),
                    timeout=10)
    assert d.stop() == 0
    d.start()
    status, doc = d.json("GET", "/v1/functions/forger/logs")
    assert status == 200, doc
    forged = [l for l in doc["lines"] if l.get("request_id") == victim]
    assert not forged, doc["lines"]
    assert all(l["seq"] < 1000000 for l in doc["lines"]), doc["lines"]
    assert any("FORGED" in l["text"] and "\\n" in l["text"] for l in doc["lines"]), doc["lines"]


# --- Secrets ------------------------------------------------------------------------------


def test_a_refused_secret_is_not_echoed(spated, functions, tmp_path):
    """`spate deploy --secret VALUE` (the key forgotten) and a --secret-file
    line without '=' (the second line of a PEM key, a value on a line of its
    own) were refused with the value quoted on standard error, which CI
    logs and terminals keep. The option and the file's line are named; the
    value is not."""
    so = str(functions["hello"])
    r = spated.cli("deploy", "f", so, "--secret", "hunter2-s3cr3t")
    assert r.returncode == 2, r
    assert b"hunter2" not in r.stderr and b"--secret" in r.stderr, r.stderr
    f = tmp_path / "secrets"
    f.write_text("KEY=-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n")
    r = spated.cli("deploy", "f", so, "--secret-file", str(f))
    assert r.returncode == 2, r
    assert b"MIIEvQ" not in r.stderr and f"{f}:2".encode() in r.stderr, r.stderr
    # --env and --env-file still quote what they refuse: nothing there is secret.
    r = spated.cli("deploy", "f", so, "--env", "plain")
    assert r.returncode == 2 and b"plain" in r.stderr, r.stderr


# --- The CLI and what it prints ----------------------------------------------------------

ESCAPES = "\x1b]0;owned\x07\x1b[2J\rspate: all is well"


def test_a_functions_words_reach_no_terminal_as_control_characters(spated, functions):
    """A function's error message (spate invoke) and its output (spate logs)
    were printed as they were: escape sequences acted on the terminal of
    whoever ran the command (set its title, cleared it, moved the cursor),
    and a carriage return or newline wrote text that read as spate's own.
    Control characters are now shown escaped (as spated's log does); --json
    carries the text as it is."""
    status, doc = deploy(spated, "words", functions["atk_n_frames"])
    assert status == 201, doc
    r = spated.cli("invoke", "words", "fail:" + ESCAPES)
    assert r.returncode == 5, r
    assert b"\x1b" not in r.stderr and b"\r" not in r.stderr and b"\x07" not in r.stderr, r.stderr
    assert b"\\x1b]0;owned" in r.stderr, r.stderr
    r = spated.cli("invoke", "words", "say:" + ESCAPES)
    assert r.returncode == 0, r
    out = wait_for(lambda: (lambda o: o if b"owned" in o else b"")(spated.cli("logs", "words").stdout))
    assert b"\x1b" not in out and b"\r" not in out and b"\x07" not in out, out
    assert b"\\x1b[2J\\rspate: all is well" in out, out
    r = spated.cli("logs", "words", "--json")
    assert "\\u001b" in r.stdout.decode(), r.stdout


def test_a_variables_file_that_never_ends_is_refused(spated, functions, tmp_path):
    """`spate deploy --env-file /dev/zero` (or any file of NUL bytes) never
    ended: each read found an empty line, skipped it, and read again, at a
    full core. A variables file is now read whole, at most 1 MiB, and a NUL
    byte in it is refused with its line."""
    so = str(functions["hello"])
    env = dict(os.environ, SPATE_URL=spated.url)
    try:
        r = subprocess.run([str(SPATE), "deploy", "f", so, "--env-file", "/dev/zero"], env=env,
                           capture_output=True, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("spate read /dev/zero as a file of variables for 20 s")
    assert r.returncode == 2 and b"larger than" in r.stderr, r
    f = tmp_path / "vars"
    f.write_bytes(b"A=1\nB=2\x00C=3\n")
    r = spated.cli("deploy", "f", so, "--secret-file", str(f))
    assert r.returncode == 2 and f"{f}:2: holds a NUL byte".encode() in r.stderr, r
    f.write_bytes(b"# comment\r\nA=1\r\n\nB=2")
    r = spated.cli("deploy", "f", so, "--env-file", str(f))
    assert r.returncode == 0, r
    assert spated.describe("f")["config"]["env"] == {"A": "1", "B": "2"}
