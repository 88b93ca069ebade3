"""Attacks through input and data (issue 13, items 12 to 14): a redrive that
deleted what it could not redrive, archive symlinks that resolved outside the
root through other links, and numbers in query parameters parsed loosely."""

import io
import json
import signal
import tarfile
import zipfile

import pytest

from conftest import Spated, deploy_recorder, topic_stats, wait_for


def publish(d, topic, body):
    status, _, data = d.request("POST", f"/v1/topics/{topic}/messages", body)
    assert status == 202, data
    return json.loads(data)


def messages(d, topic, query=""):
    status, doc = d.json("GET", f"/v1/topics/{topic}/messages" + (f"?{query}" if query else ""))
    assert status == 200, doc
    return doc["messages"]




# --- Item 12: a redrive never deletes what it does not redrive --------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill9"])
def test_atk_i_redrive_of_ordinary_topic_deletes_nothing(make_spated, sig):
    d = make_spated()
    bodies = [f"order-{i}" for i in range(5)]
    for b in bodies:
        publish(d, "t2", b.encode())
    status, doc = d.json("POST", "/v1/topics/t2/redrive")
    # Not a dead-letter topic and no dead letter in it: refused, nothing changed.
    assert status == 409, doc
    assert doc["code"] == "not_dead_letters" and "'t2'" in doc["error"], doc
    assert [m["payload"] for m in messages(d, "t2")] == bodies
    assert topic_stats(d, "t2")["stored"] == 5
    # What is on disk survives a stop or a crash.
    d.stop(sig)
    d.start()
    assert [m["payload"] for m in messages(d, "t2")] == bodies
    assert topic_stats(d, "t2")["stored"] == 5
    # Refused again (also through the CLI, which falls back to the topic
    # itself when there is no t2.dlq), and still nothing lost.
    assert d.json("POST", "/v1/topics/t2/redrive?after=2")[0] == 409
    r = d.cli("dlq", "redrive", "t2")
    assert r.returncode != 0 and b"not the dead-letter topic of any trigger" in r.stderr, r
    d.stop(signal.SIGKILL)
    d.start()
    assert [m["payload"] for m in messages(d, "t2")] == bodies


def test_atk_i_redrive_moves_dead_letters_only_and_honours_after(make_spated, functions, tmp_path):
    d = make_spated()
    deploy_recorder(d, functions, tmp_path)
    status, doc = d.json("PUT", "/v1/triggers/jobs/rec?max_attempts=1")
    assert status == 201, doc
    for b in (b"fail-a", b"fail-b", b"fail-c"):
        publish(d, "jobs", b)
    assert wait_for(lambda: topic_stats(d, "jobs")["dead_lettered"] == 3, timeout=10)
    # A message published straight into the dead-letter topic has no source.
    publish(d, "jobs.dlq", b"plain")
    dead = messages(d, "jobs.dlq")
    assert sorted(m["payload"] for m in dead) == ["fail-a", "fail-b", "fail-c", "plain"]
    # Instances run concurrently: the three fail in any order, so "first" is
    # whichever was dead-lettered first.
    first = min(m["seq"] for m in dead if m["payload"] != "plain")
    [stays] = [m["payload"] for m in dead if m["seq"] == first]
    # Only the dead letters after the first one go back.
    status, doc = d.json("POST", f"/v1/topics/jobs.dlq/redrive?after={first}")
    assert status == 200 and doc == {"redriven": 2}, doc
    # They fail again (one attempt) and come back as new dead letters.
    assert wait_for(lambda: topic_stats(d, "jobs")["dead_lettered"] == 5, timeout=10)
    dead = messages(d, "jobs.dlq")
    assert sorted(m["payload"] for m in dead) == ["fail-a", "fail-b", "fail-c", "plain"]
    assert [m["seq"] for m in dead if m["payload"] == stays] == [first]
    [plain] = [m for m in dead if m["payload"] == "plain"]
    assert "source" not in plain
    # Everything else: the three dead letters move, the plain message stays.
    status, doc = d.json("POST", "/v1/topics/jobs.dlq/redrive")
    assert status == 200 and doc == {"redriven": 3}, doc
    assert wait_for(lambda: topic_stats(d, "jobs")["dead_lettered"] == 8, timeout=10)
    # A dead-letter topic with nothing redrivable after a point: 0, not refused.
    last = max(m["seq"] for m in messages(d, "jobs.dlq"))
    assert d.json("POST", f"/v1/topics/jobs.dlq/redrive?after={last}") == (200, {"redriven": 0})
    d.stop(signal.SIGKILL)
    d.start()
    assert "plain" in [m["payload"] for m in messages(d, "jobs.dlq")]
    assert topic_stats(d, "jobs.dlq")["stored"] == 4


def test_atk_i_redrive_after_trigger_removed(make_spated, functions, tmp_path):
    """Dead letters stay redrivable once no trigger names their topic; then
    the empty topic's redrive is refused."""
    d = make_spated()
    deploy_recorder(d, functions, tmp_path)
    assert d.json("PUT", "/v1/triggers/in/rec?max_attempts=1&dlq=grave")[0] == 201
    publish(d, "in", b"fail-x")
    assert wait_for(lambda: topic_stats(d, "in")["dead_lettered"] == 1, timeout=10)
    assert d.json("DELETE", "/v1/triggers/in/rec")[0] == 204
    assert d.json("POST", "/v1/topics/grave/redrive") == (200, {"redriven": 1})
    assert [m["payload"] for m in messages(d, "in")][-1:] == ["fail-x"]
    status, doc = d.json("POST", "/v1/topics/grave/redrive")
    assert status == 409 and doc["code"] == "not_dead_letters", doc


# --- Item 13: archive symlinks never resolve outside the root ----------------------------

BOOT = b"#!/bin/sh\nexit 0\n"


def tar_of(entries):
    """entries: (name, bytes) for files (0755), (name, '->', target) for links."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as t:
        for e in entries:
            info = tarfile.TarInfo(e[0])
            if len(e) == 3:
                info.type, info.linkname = tarfile.SYMTYPE, e[2]
                t.addfile(info)
            else:
                info.mode, info.size = 0o755, len(e[1])
                t.addfile(info, io.BytesIO(e[1]))
    return buf.getvalue()


def zip_of(entries):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for e in entries:
            info = zipfile.ZipInfo(e[0])
            info.create_system = 3  # Unix: the mode bits below are read
            if len(e) == 3:
                info.external_attr = 0o120777 << 16
                z.writestr(info, e[2])
            else:
                info.external_attr = 0o100755 << 16
                z.writestr(info, e[1])
    return buf.getvalue()


PACK = {"tar": tar_of, "zip": zip_of}

CHAIN = [("y", "->", ".")] + [(f"u{i}", "->", f"{'y' if i == 1 else f'u{i - 1}'}/..")
                              for i in range(1, 9)] + [("host", "->", "u8/etc/hostname")]


def deploy_exec(d, name, artifact):
    return d.json("PUT", f"/v1/functions/{name}?runtime=exec", artifact)


def assert_refused(d, artifact, *texts):
    status, doc = deploy_exec(d, "arch", artifact)
    assert status == 400, doc
    assert doc["code"] == "bad_artifact", doc
    for text in texts:
        assert text in doc["error"], doc
    assert d.json("GET", "/v1/functions/arch")[0] == 404
    left = [p for p in (d.data / "artifacts").rglob("*") if not p.is_dir()]
    assert left == [], left
    exec_dir = d.data / "exec"
    if exec_dir.exists():
        assert [p for p in exec_dir.rglob("*") if p.is_symlink() or p.is_file()] == []


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_atk_i_symlink_chain_is_refused(spated, kind):
    artifact = PACK[kind]([("bootstrap", BOOT)] + CHAIN)
    assert_refused(spated, artifact, "'u1'", "links outside the root", "y/..")
    assert spated.json("GET", "/v1/health")[0] == 200


@pytest.mark.parametrize("kind", ["tar", "zip"])
@pytest.mark.parametrize("entries,texts", [
    ([("etc", "->", "/etc")], ["'etc'", "absolute"]),
    ([("up", "->", "../x")], ["'up'", "climbs above the root"]),
    ([("a/b/up", "->", "../../../etc/passwd")], ["'a/b/up'", "climbs above the root"]),
    ([("sub/f", b"x"), ("mid", "->", "sub/../../etc")], ["'mid'", "may only begin"]),
    ([("d", "->", "."), ("d2", "->", "./d/../etc")], ["'d2'", "may only begin"]),
    ([("sub/f", b"x"), ("a", "->", "sub"), ("a/evil", b"x")], ["'a/evil'", "symlink"]),
], ids=["absolute", "dotdot", "deep-dotdot", "mid-dotdot", "dot-then-link", "through-link"])
def test_atk_i_escaping_links_are_refused(spated, kind, entries, texts):
    assert_refused(spated, PACK[kind]([("bootstrap", BOOT)] + entries), *texts)


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_atk_i_internal_links_still_work(spated, kind):
    """bootstrap -> bin/run -> ../lib/run, a link to a directory, and a
    leading ./: the ordinary links of a package unpack and run."""
    script = (b"#!/bin/sh\nset -eu\nAPI=\"http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime\"\n"
              b"while true; do\n"
              b"  H=$(mktemp)\n"
              b"  EVENT=$(curl -sS -LD \"$H\" \"$API/invocation/next\")\n"
              b"  ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id \"$H\" | tr -d '[:space:]' | cut -d: -f2)\n"
              b"  rm -f \"$H\"\n"
              b"  curl -sS -X POST \"$API/invocation/$ID/response\" -d \"linked: $EVENT\" > /dev/null\n"
              b"done\n")
    artifact = PACK[kind]([
        ("lib/run", script),
        ("bin/run", "->", "../lib/run"),
        ("bootstrap", "->", "./bin/run"),
        ("libdir", "->", "lib"),
        ("bin/deep/also", "->", "../../libdir/run"),
    ])
    status, doc = deploy_exec(spated, "linked", artifact)
    assert status == 201, doc
    assert spated.invoke("linked", b"hi") == (200, b"linked: hi")


# --- Item 14: numbers in query parameters are parsed strictly ----------------------------

BAD_NUMBERS = ["-1", "%2B1", "+1", "%201", "1%20", "1e3", "0x10", "", "1.0",
               "18446744073709551616", "99999999999999999999999"]

# (method, path, parameter): every numeric query parameter of every route.
NUMERIC_PARAMS = [
    ("GET", "/v1/topics/q1/messages", "after"),
    ("GET", "/v1/topics/q1/messages", "limit"),
    ("POST", "/v1/topics/q1/redrive", "after"),
    ("POST", "/v1/topics/q1/redrive", "limit"),
    ("GET", "/v1/functions/rec/logs", "after"),
    ("GET", "/v1/functions/rec/logs", "limit"),
    ("GET", "/v1/functions/rec/logs", "wait"),
    ("GET", "/v1/functions/rec/logs", "since"),
    ("GET", "/v1/functions/rec/logs", "instance"),
    ("PUT", "/v1/triggers/q1/rec", "max_attempts"),
    ("PUT", "/v1/triggers/q1/rec", "deadline"),
    ("PUT", "/v1/triggers/q1/rec", "max_concurrency"),
    ("PUT", "/v1/functions/other", "min"),
    ("PUT", "/v1/functions/other", "max"),
    ("PUT", "/v1/functions/other", "timeout"),
    ("PUT", "/v1/functions/other", "memory"),
    ("PUT", "/v1/functions/other", "keep_alive"),
    ("PUT", "/v1/functions/other", "queue"),
    ("PUT", "/v1/functions/other", "cpu"),
]


@pytest.fixture(scope="module")
def numbers_spated(tmp_path_factory, functions):
    d = Spated(tmp_path_factory.mktemp("numbers")).start()
    d.json("PUT", "/v1/functions/rec", functions["recorder"].read_bytes())
    publish(d, "q1", b"m")
    d.recorder = functions["recorder"].read_bytes()
    yield d
    assert d.stop() == 0


@pytest.mark.parametrize("method,path,param", NUMERIC_PARAMS,
                         ids=[f"{m}-{p.split('/')[2]}-{k}" for m, p, k in NUMERIC_PARAMS])
def test_atk_i_numeric_parameters_are_strict(numbers_spated, method, path, param):
    d = numbers_spated
    body = d.recorder if path == "/v1/functions/other" else None
    for bad in BAD_NUMBERS:
        status, _, data = d.request(method, f"{path}?{param}={bad}", body)
        doc = json.loads(data) if data else None
        assert status == 400, (bad, status, doc)
        assert doc["code"] == "bad_parameter" and f"'{param}'" in doc["error"], (bad, doc)
    assert d.json("GET", "/v1/functions/other")[0] == 404
    assert [m["payload"] for m in messages(d, "q1")] == ["m"]
