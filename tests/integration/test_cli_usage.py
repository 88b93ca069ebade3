"""What a user of the CLI meets (issue 14, item 9 and the CLI's part of 10):
help for every command, unknown options named, --timeout per invocation,
@FILE payloads, JSON errors, an exit status per kind of failure, errors in
the user's own words (flags as typed, names unescaped), artifacts refused
for the wrong runtime with the one they need, plurals, and a final newline
on a terminal only."""

import json
import os
import pty
import re
import subprocess
import time

from conftest import SPATE, wait_for, zipped


def ok(r):
    assert r.returncode == 0, (r.stdout, r.stderr)
    return r.stdout.decode()


def commands():
    """Every command as `spate --help` lists it: ["deploy", "trigger add", ...]."""
    out = subprocess.run([str(SPATE), "--help"], capture_output=True, check=True).stdout.decode()
    words = []
    for line in out.split("Commands:\n")[1].split("\n\n")[0].splitlines():
        m = re.match(r"  ([a-z]+(?: [a-z]+)?)(?= |$)", line)
        if m and m.group(1) != "help":
            words.append(m.group(1))
    return words


def test_every_command_has_help(spated):
    cmds = commands()
    assert {"deploy", "invoke", "logs", "publish", "trigger add", "topic set", "dlq redrive"} <= set(cmds)
    for cmd in cmds:
        words = cmd.split()
        r = spated.cli(*words, "--help")
        assert r.returncode == 0, (cmd, r.stderr)
        assert r.stdout.decode().startswith(f"usage: spate {cmd}"), (cmd, r.stdout)
        assert b"--json" in r.stdout and b"Exit status" in r.stdout
        assert spated.cli("help", *words).stdout == r.stdout, cmd
        assert spated.cli(*words, "-h").stdout == r.stdout, cmd
    out = ok(spated.cli("deploy", "--help"))
    assert "--runtime native|exec" in out and "--max N" in out and "--secret-file FILE" in out
    assert "(default 30000)" in out  # the default from limits.h
    assert "--max-attempts N" in ok(spated.cli("help", "trigger", "add"))
    assert "--timeout MS" in ok(spated.cli("invoke", "--help"))
    # A group lists its commands.
    out = ok(spated.cli("help", "trigger"))
    assert all(f"trigger {s}" in out for s in ("add", "set", "ls", "rm")), out
    assert ok(spated.cli("topic", "--help")).count("topic ") >= 5


def test_unknown_options_are_named(spated, functions):
    spated.deploy("worker", functions["probe"])
    r = spated.cli("invoke", "worker", "hi", "--wat", "100")
    assert r.returncode == 2 and b"unknown option '--wat'" in r.stderr, r.stderr
    assert b"see 'spate invoke --help'" in r.stderr
    r = spated.cli("trigger", "add", "t", "worker", "--max", "3")
    assert r.returncode == 2 and b"'--max' is ambiguous: --max-attempts, --max-concurrency" in r.stderr
    r = spated.cli("rm", "worker", "--force=yes")
    assert r.returncode == 2 and b"option '--force' takes no value" in r.stderr, r.stderr
    r = spated.cli("invoke", "worker", "--timeout")
    assert r.returncode == 2 and b"option '--timeout' needs a value" in r.stderr, r.stderr
    r = spated.cli("invoke", "worker", "a", "b")
    assert r.returncode == 2 and b"unexpected argument 'b'" in r.stderr, r.stderr
    r = spated.cli("trigger", "frob")
    assert r.returncode == 2 and b"unknown trigger command 'frob'" in r.stderr
    # A payload that begins with '-' goes after "--".
    r = spated.cli("invoke", "worker", "-5")
    assert r.returncode == 2 and b"after '--'" in r.stderr
    assert ok(spated.cli("invoke", "worker", "--", "-5")) == "-5"
    # Options go anywhere after the command, and take --opt=VALUE.
    assert ok(spated.cli("invoke", "--timeout=5000", "worker", "x")) == "x"


def test_timeout_per_invocation(spated, functions):
    spated.deploy("probe", functions["probe"])  # the function's timeout: 30 s
    r = spated.cli("invoke", "probe", "sleep:20000", "--timeout", "300")
    assert r.returncode == 5 and b"timed out after 300 ms" in r.stderr, r.stderr
    # The function sees the shorter deadline.
    before = time.time() * 1000
    out = ok(spated.cli("invoke", "probe", "req", "--timeout", "5000"))
    deadline = int(out.split()[3])
    assert before < deadline <= time.time() * 1000 + 5000, (before, out)
    # It may only shorten the function's own, and says so in the user's words.
    r = spated.cli("invoke", "probe", "x", "--timeout", "60000")
    assert r.returncode == 2, r.stderr
    assert b"option '--timeout' (60000 ms) is longer than the function's timeout (30000 ms)" \
        in r.stderr, r.stderr
    status, _, body = spated.request("POST", "/v1/functions/probe/invoke?timeout=0", b"x")
    assert status == 400 and b"'timeout' must be an integer" in body
    status, _, body = spated.request("POST", "/v1/functions/probe/invoke?wat=1", b"x")
    assert status == 400 and b"unknown parameter 'wat'" in body
    assert spated.request("POST", "/v1/functions/probe/invoke?timeout=1000", b"fine")[0] == 200


def test_payloads_from_files(spated, functions, tmp_path):
    spated.deploy("probe", functions["probe"])
    trade = tmp_path / "trade.json"
    trade.write_bytes(b'{"id": 7, "qty": 100}\n' + bytes(range(256)))
    r = spated.cli("invoke", "probe", f"@{trade}")
    assert (r.returncode, r.stdout) == (0, trade.read_bytes())
    assert ok(spated.cli("invoke", "probe", "@@literal")) == "@literal"
    r = spated.cli("invoke", "probe", f"@{tmp_path}/missing.json")
    assert r.returncode == 1 and b"cannot open" in r.stderr and b"missing.json" in r.stderr

    batch = tmp_path / "batch.ndjson"
    batch.write_text('{"n": 1}\n{"n": 2}\n{"n": 3}\n')
    assert ok(spated.cli("publish", "orders", f"@{batch}", "--lines")).startswith(
        "published 3 messages to orders")
    assert ok(spated.cli("publish", "whole", f"@{batch}")).startswith("published 1 message to whole")
    status, doc = spated.json("GET", "/v1/topics/orders/messages")
    assert [m["payload"] for m in doc["messages"]] == ['{"n": 1}', '{"n": 2}', '{"n": 3}']
    status, doc = spated.json("GET", "/v1/topics/whole/messages")
    assert [m["payload"] for m in doc["messages"]] == [batch.read_text()]
    r = spated.cli("publish", "orders", "text", "--lines")
    assert r.returncode == 2 and b"--lines reads standard input or @FILE" in r.stderr


def test_json_errors_and_exit_statuses(spated, functions, tmp_path):
    spated.deploy("probe", functions["probe"], timeout=300)

    def err(*args, env=None):
        r = spated.cli("--json", *args, env=env)
        assert r.stdout == b"", r.stdout
        doc = json.loads(r.stderr)
        assert doc["exit"] == r.returncode, (doc, r.returncode)
        return doc

    assert err("invoke", "nosuch") == {
        "error": "function 'nosuch' does not exist", "code": "not_found", "status": 404, "exit": 3}
    doc = err("invoke", "probe", "fail")
    assert (doc["exit"], doc["status"], doc["code"]) == (5, 502, "function_error")
    assert doc["error"] == "probe was asked to fail" and doc["request_id"]
    doc = err("invoke", "probe", "hang")
    assert (doc["exit"], doc["status"], doc["code"]) == (5, 504, "function_timeout")
    doc = err("invoke", "probe", "--wat")
    assert (doc["code"], doc["status"], doc["exit"]) == ("usage", 0, 2), doc
    assert doc["error"].startswith("unknown option '--wat'"), doc
    doc = err("ls", env={"SPATE_URL": "http://127.0.0.1:1"})
    assert (doc["exit"], doc["code"], doc["status"]) == (6, "unreachable", 0)
    assert "cannot reach spated at http://127.0.0.1:1" in doc["error"]
    doc = err("deploy", "x", str(tmp_path / "missing.so"))
    assert (doc["exit"], doc["code"]) == (1, "io_error")
    # --json after the command too.
    r = spated.cli("status", "nosuch", "--json")
    assert r.returncode == 3 and json.loads(r.stderr)["code"] == "not_found"

    # Each status: 0 ok, 1 other, 2 usage, 3 not found, 4 refused, 5 function, 6 unreachable.
    assert spated.cli("invoke", "probe", "x").returncode == 0
    assert spated.cli("deploy", "x", str(tmp_path / "missing.so")).returncode == 1
    assert spated.cli("invoke").returncode == 2
    assert spated.cli("topic", "stats", "nothing").returncode == 3
    ok(spated.cli("trigger", "add", "orders", "probe"))
    r = spated.cli("trigger", "add", "orders", "probe")
    assert r.returncode == 4 and b"409" in r.stderr, r.stderr
    r = spated.cli("rm", "probe")
    assert r.returncode == 4 and b"has triggers" in r.stderr, r.stderr
    assert spated.cli("invoke", "probe", "crash").returncode == 5
    assert spated.cli("ls", env={"SPATE_URL": "http://127.0.0.1:1"}).returncode == 6
    # Over capacity is refused too.
    spated.deploy("one", functions["probe"], max=1, queue=1)
    slow = []
    for state in ("busy", "waiting"):  # one running, then one waiting: the queue is full
        slow.append(subprocess.Popen([str(SPATE), "--url", spated.url, "invoke", "one", "sleep:4000"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        assert wait_for(lambda: spated.describe("one")["instances"]["busy"] == 1 if state == "busy"
                        else spated.describe("one")["waiting"] == 1, timeout=10), state
    r = spated.cli("invoke", "one", "x")
    assert r.returncode == 4 and b"429" in r.stderr and b"maximum of 1 instance and 1 invocation waits" \
        in r.stderr, r.stderr
    for p in slow:
        assert p.communicate(timeout=60)[0] == b"slept"


def test_errors_name_flags_as_typed_and_names_unescaped(spated, functions):
    spated.deploy("probe", functions["probe"])
    r = spated.cli("trigger", "add", "orders", "probe", "--max-attempts", "0")
    assert r.returncode == 2, r.stderr
    assert b"option '--max-attempts' must be an integer from 1 to" in r.stderr, r.stderr
    assert b"max_attempts" not in r.stderr
    r = spated.cli("deploy", "probe", str(functions["probe"]), "--keep-alive", "99999999999")
    assert r.returncode == 2 and b"option '--keep-alive' must be an integer" in r.stderr, r.stderr
    r = spated.cli("deploy", "probe", str(functions["probe"]), "--unset-env", "NOPE")
    assert r.returncode == 2 and b"(option '--unset-env')" in r.stderr, r.stderr
    r = spated.cli("invoke", "a b/c", "x")
    assert r.returncode == 2 and b"invalid function name 'a b/c'" in r.stderr, r.stderr
    assert b"%20" not in r.stderr and b"%2F" not in r.stderr
    r = spated.cli("topic", "stats", "to pic")
    assert b"invalid topic name 'to pic'" in r.stderr, r.stderr
    r = spated.cli("trigger", "add", "to pic", "probe")
    assert b"'to pic'" in r.stderr and b"%20" not in r.stderr, r.stderr
    # An --env entry without '=' is named, in either form.
    for args in (["--env", "JUSTANAME"], ["--env=JUSTANAME"]):
        r = spated.cli("deploy", "probe", str(functions["probe"]), *args)
        assert r.returncode == 2 and b"--env 'JUSTANAME': not KEY=VALUE" in r.stderr, r.stderr
    r = spated.cli("config", "probe", "--secret", "NOVALUE")
    # Named as typed, and what was given is not echoed: it may be the secret.
    assert r.returncode == 2 and b"--secret takes KEY=VALUE" in r.stderr, r.stderr
    assert b"NOVALUE" not in r.stderr


def test_artifacts_refused_for_the_wrong_runtime(spated, functions, tmp_path):
    z = tmp_path / "fn.zip"
    z.write_bytes(zipped({"bootstrap": b"#!/bin/sh\nexit 0\n"}))
    r = spated.cli("deploy", "zipped", str(z))
    assert r.returncode == 2 and b"the artifact is a zip archive, not a shared object" in r.stderr
    assert b"use --runtime exec" in r.stderr, r.stderr
    assert spated.json("GET", "/v1/functions/zipped")[0] == 404
    script = tmp_path / "bootstrap"
    script.write_bytes(b"#!/bin/sh\nexit 0\n")
    r = spated.cli("deploy", "script", str(script))
    assert r.returncode == 2 and b"is a script" in r.stderr and b"--runtime exec" in r.stderr
    r = spated.cli("deploy", "exe", "/bin/true")
    assert r.returncode == 2 and b"is an executable" in r.stderr and b"--runtime exec" in r.stderr
    # With --runtime exec they deploy.
    assert ok(spated.cli("deploy", "zipped", str(z), "--runtime", "exec")).startswith("deployed")
    # A shared object is not a bootstrap: refused at deploy, not at each invoke.
    r = spated.cli("deploy", "lib", str(functions["hello"]), "--runtime", "exec")
    assert r.returncode == 2 and b"the artifact is a shared object" in r.stderr, r.stderr
    assert b"use --runtime native" in r.stderr
    assert spated.json("GET", "/v1/functions/lib")[0] == 404
    # A redeploy keeps the runtime: a .so over an exec function is refused too.
    r = spated.cli("deploy", "zipped", str(functions["hello"]))
    assert r.returncode == 2 and b"use --runtime native" in r.stderr, r.stderr
    assert ok(spated.cli("deploy", "zipped", str(functions["hello"]), "--runtime", "native"))
    assert ok(spated.cli("invoke", "zipped", "again")) == "hello, again\n"


def test_plurals_and_an_unknown_drain_eta(spated, functions):
    spated.deploy("probe", functions["probe"])
    ok(spated.cli("invoke", "probe", "x"))
    out = ok(spated.cli("status", "probe"))
    assert "1 invocation, 0 errors, 0 timeouts, 0 crashes" in out, out
    out = ok(spated.cli("trigger", "add", "slow", "probe", "--max-attempts", "1"))
    assert "up to 1 attempt," in out, out
    # A fresh function with a trigger: its first message runs for a while,
    # so no handler time is known yet; the ETA is unknown, not "never".
    spated.deploy("fresh", functions["probe"])
    ok(spated.cli("trigger", "add", "work", "fresh"))
    assert ok(spated.cli("publish", "work", "sleep:6000")).startswith("published 1 message to")

    def scaling():
        out = ok(spated.cli("status", "fresh"))
        return out if "backlog        1 " in out else None

    out = wait_for(scaling, timeout=5)
    assert out, ok(spated.cli("status", "fresh"))
    assert "never" not in out, out
    # Until the running call has run 200 ms the ETA is unknown; after, the
    # autoscaler bounds the handler time from below by it (a slow machine
    # may be past that by the time the status is read).
    if "drain ETA not known until an invocation finishes" in out:
        assert "desired 1 instance," in out, out
    else:
        assert re.search(r"drain ETA [0-9.]+ s", out), out
    # Read later (the ETA may have become known meanwhile): each says the same.
    doc = spated.describe("fresh")["scaling"]
    assert doc["drain_eta_known"] == (doc["drain_eta_s"] is not None), doc
    metrics = spated.request("GET", "/metrics")[2].decode()
    assert re.search(r'spate_autoscaler_drain_eta_seconds\{function="fresh"\} (NaN|[0-9.]+)\n',
                     metrics), metrics[-2000:]


def test_output_gets_a_final_newline_on_a_terminal_only(spated, functions):
    spated.deploy("probe", functions["probe"])
    r = spated.cli("invoke", "probe", "sleep:1")
    assert r.stdout == b"slept"  # piped: exactly what the function wrote
    master, slave = pty.openpty()
    try:
        p = subprocess.run([str(SPATE), "--url", spated.url, "invoke", "probe", "sleep:1"],
                           stdout=slave, stderr=subprocess.PIPE, timeout=30)
        assert p.returncode == 0, p.stderr
        os.close(slave)
        slave = None
        seen = b""
        while True:
            try:
                chunk = os.read(master, 1024)
            except OSError:  # EIO: the terminal's other end is closed
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if slave is not None:
            os.close(slave)
        os.close(master)
    assert seen == b"slept\r\n", seen  # the terminal turns \n into \r\n
