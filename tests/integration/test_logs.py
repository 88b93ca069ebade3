"""A function's log as its developer meets it, through `spate logs`: what the
function wrote (each line with its version, instance, request and stream),
what happened to its instances (crashes, timeouts, out of memory, failed
starts) under the request they hit, filters, --follow, and the log's life
across a restart of spated and after `spate rm`."""

import datetime
import os
import re
import subprocess
import threading
import time

from conftest import BUILD, invoke_event, wait_for


def logs(d, name, *args):
    r = d.cli("logs", name, *args)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode()


def logged(d, name, text, *args):
    """Waits until `spate logs NAME ARGS` shows text; returns the output."""
    out = wait_for(lambda: (lambda o: o if text in o else "")(logs(d, name, *args)), timeout=15)
    assert text in out, f"{text!r} not in:\n{logs(d, name, *args)}"
    return out


def test_lines_carry_version_instance_request_and_stream(spated, functions):
    d = spated
    assert d.deploy("probe", functions["probe"])[0] == 201
    assert d.deploy("probe", functions["probe"])[0] == 200  # version 2
    status, rid, _ = invoke_event(d, "probe", b"print:2")
    assert status == 200
    out = logged(d, "probe", f"stderr of {rid}")
    assert re.search(rf"Z v2 instance \d+ req {rid} stdout: line 0 of {rid}", out), out
    assert re.search(rf"Z v2 instance \d+ req {rid} stderr: stderr of {rid}", out), out
    doc = d.json("GET", "/v1/functions/probe/logs")[1]
    streams = {x["text"].split(" ")[0]: x["stream"] for x in doc["lines"]}
    assert streams == {"line": "stdout", "stderr": "stderr"}, doc
    assert {x["version"] for x in doc["lines"]} == {2}


def test_a_crash_is_in_the_functions_own_log(spated, functions):
    d = spated
    assert d.deploy("probe", functions["probe"])[0] == 201
    status, rid, body = invoke_event(d, "probe", b"abort")
    assert status == 502 and rid, body
    out = logged(d, "probe", "killed by signal 6")
    assert f"req {rid} platform: instance ended during the invocation: killed by signal 6" in out
    status, rid, body = invoke_event(d, "probe", b"crash")
    assert status == 502
    logged(d, "probe", f"req {rid} platform: instance ended during the invocation: "
                       "killed by signal 11")


def test_a_timeout_is_in_the_functions_own_log(spated, functions):
    d = spated
    assert d.deploy("probe", functions["probe"], timeout=300)[0] == 201
    status, rid, body = invoke_event(d, "probe", b"hang")
    assert status == 504 and rid, body
    logged(d, "probe", f"req {rid} platform: invocation timed out after 300 ms: instance stopped")


def test_out_of_memory_is_in_the_functions_own_log(spated, functions):
    d = spated
    status, doc = d.deploy("hog", functions["hostile"], env="ATTACK%3Dmemory_hog", memory=32)
    assert status == 201, doc
    status, rid, body = invoke_event(d, "hog", b"")
    assert status == 502 and b"out of memory" in body, body
    logged(d, "hog", f"req {rid} platform: instance ended during the invocation: out of memory: "
                     "the instance used more than its 32 MB")


def test_a_failed_start_is_in_the_functions_own_log(spated, functions):
    d = spated
    assert d.deploy("initfail", functions["init_fail"])[0] == 201
    status, rid, body = invoke_event(d, "initfail", b"")
    assert status == 502 and rid, body
    logged(d, "initfail", f"req {rid} platform: instance could not start: spate_init returned 42")


def test_filters(spated, functions):
    d = spated
    assert d.deploy("probe", functions["probe"])[0] == 201
    _, first, _ = invoke_event(d, "probe", b"print:1")
    logged(d, "probe", f"stderr of {first}")
    assert invoke_event(d, "probe", b"abort")[0] == 502  # the next lines come from another instance
    time.sleep(0.05)
    since = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    time.sleep(0.05)
    _, second, _ = invoke_event(d, "probe", b"print:1")
    logged(d, "probe", f"stderr of {second}")

    out = logs(d, "probe", "--request", second)
    assert f"stderr of {second}" in out and first not in out, out
    out = logs(d, "probe", "--since", since)
    assert f"stderr of {second}" in out and first not in out and "signal 6" not in out, out
    assert f"stderr of {first}" in logs(d, "probe", "--since", "1h")
    lines = d.json("GET", "/v1/functions/probe/logs")[1]["lines"]
    inst = {x["request_id"]: x["instance"] for x in lines if x.get("request_id")}
    assert inst[first] != inst[second]
    out = logs(d, "probe", "--instance", str(inst[first]))
    assert f"stderr of {first}" in out and "signal 6" in out and second not in out, out

    r = d.cli("logs", "probe", "--since", "yesterday")
    assert r.returncode == 2 and b"--since takes a duration" in r.stderr
    r = d.cli("logs", "probe", "--instance", "two")
    assert r.returncode == 2 and b"--instance takes an instance number" in r.stderr


class Follower:
    """`spate logs NAME --follow ARGS`, its lines collected as they come."""

    def __init__(self, d, name, *args):
        self.proc = subprocess.Popen([str(BUILD / "spate"), "logs", name, "--follow", *args],
                                     env=dict(os.environ, SPATE_URL=d.url),
                                     stdout=subprocess.PIPE, text=True)
        self.lines = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def text(self):
        return "".join(self.lines)

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.thread.join(5)


def test_follow_alone_shows_only_new_lines(spated, functions):
    d = spated
    assert d.deploy("probe", functions["probe"])[0] == 201
    _, old, _ = invoke_event(d, "probe", b"print:1")
    logged(d, "probe", f"stderr of {old}")
    f = Follower(d, "probe")
    try:
        time.sleep(1.0)  # it has asked where the log ends by now
        _, new, _ = invoke_event(d, "probe", b"print:1")
        assert wait_for(lambda: f"stderr of {new}" in f.text(), timeout=20), f.text()
        assert old not in f.text(), f.text()
    finally:
        f.stop()
    # With a filter, what is kept first, then new lines.
    f = Follower(d, "probe", "--request", old)
    try:
        assert wait_for(lambda: f"stderr of {old}" in f.text(), timeout=20), f.text()
        assert new not in f.text()
    finally:
        f.stop()


def test_the_log_survives_a_restart(spated, functions):
    d = spated
    assert d.deploy("probe", functions["probe"])[0] == 201
    _, before, _ = invoke_event(d, "probe", b"print:1")
    assert invoke_event(d, "probe", b"abort")[0] == 502
    logged(d, "probe", "killed by signal 6")
    last = d.json("GET", "/v1/functions/probe/logs")[1]["lines"][-1]["seq"]
    assert d.stop() == 0
    d.start()
    out = logs(d, "probe")
    assert f"req {before} stderr: stderr of {before}" in out, out
    assert "platform: instance ended during the invocation: killed by signal 6" in out
    # Numbers go on from where they were: a follower's place stays good.
    _, after, _ = invoke_event(d, "probe", b"print:1")
    logged(d, "probe", f"stderr of {after}")
    lines = d.json("GET", f"/v1/functions/probe/logs?after={last}")[1]["lines"]
    assert [x["request_id"] for x in lines] == [after, after], lines


def test_log_files_of_older_formats_and_damage(tmp_path, make_spated, functions):
    """A file written by an older spated, with a line that is not a log line,
    one far too long and one cut short by a crash, is read back as far as it
    makes sense."""
    data = tmp_path / "data"
    (data / "logs").mkdir(parents=True)
    huge = "x" * 100000
    (data / "logs" / "probe.log").write_text(
        "2026-01-02T03:04:05.006Z zygote preloading\n"
        "2026-01-02T03:04:05.007Z instance=3 req=abc old line one\n"
        "not a log line at all\n"
        "2026-01-02T03:04:05.008Z instance=3 req=- old line between requests\n"
        f"2026-01-02T03:04:05.009Z seq=90 version=1 instance=4 stream=stdout req=- {huge}\n"
        "2026-01-02T03:04:05.010Z seq=91 version=1 instance=4 stream=stderr req=def cut sho")
    d = make_spated(data=data)
    status, doc = d.json("GET", "/v1/functions/probe/logs")
    assert status == 200 and doc["removed"] is True, doc
    lines = doc["lines"]
    assert [x["text"][:20] for x in lines] == [
        "preloading", "old line one", "old line between req", "x" * 20, "cut sho"], lines
    assert lines[1]["request_id"] == "abc" and lines[1]["instance"] == 3
    assert lines[1]["stream"] == "unknown" and "request_id" not in lines[2]
    assert len(lines[3]["text"]) == 4096 and lines[3]["seq"] == 90
    assert lines[4]["stream"] == "stderr" and lines[4]["seq"] == 91
    assert "left out 1 unreadable line of" in d.log()
    # Written on: the cut line is ended first, and the numbers go on.
    assert d.deploy("probe", functions["probe"])[0] == 201
    _, rid, _ = invoke_event(d, "probe", b"print:1")
    logged(d, "probe", f"stderr of {rid}")
    assert d.stop() == 0
    text = (data / "logs" / "probe.log").read_text()
    assert "cut sho\n2026" in text
    d.start()
    lines = d.json("GET", "/v1/functions/probe/logs")[1]["lines"]
    assert lines[4]["text"] == "cut sho" and lines[-1]["text"] == f"stderr of {rid}"
    assert lines[-1]["seq"] == 93


def test_logs_of_a_removed_function(spated, functions):
    d = spated
    assert d.deploy("probe", functions["probe"])[0] == 201
    _, rid, _ = invoke_event(d, "probe", b"print:1")
    logged(d, "probe", f"stderr of {rid}")
    r = d.cli("rm", "probe")
    assert r.returncode == 0, r.stderr
    r = d.cli("logs", "probe")
    assert r.returncode == 0 and f"stderr of {rid}" in r.stdout.decode()
    assert b"function 'probe' was removed" in r.stderr
    # Still after a restart: the file is what keeps it.
    assert d.stop() == 0
    d.start()
    assert f"stderr of {rid}" in logs(d, "probe")
    # Deployed again under the same name: the log goes on.
    assert d.deploy("probe", functions["probe"])[0] == 201
    _, again, _ = invoke_event(d, "probe", b"print:1")
    out = logged(d, "probe", f"stderr of {again}")
    assert f"stderr of {rid}" in out
    # Its files gone, so is its log.
    assert d.cli("rm", "probe").returncode == 0
    for f in (d.data / "logs").glob("probe.log*"):
        f.unlink()
    # (once the pool, which drains first, has let go of the log)
    assert wait_for(lambda: d.cli("logs", "probe").returncode == 3)
    assert b"does not exist" in d.cli("logs", "probe").stderr
