"""Starts the machine starves (issue 21): functions whose starts are starved
do not hold another's cold start, a function that cannot start even alone
still spends its messages' attempts, what is starved and what only looks so
(orphans' CPU, work on a thread). Found by hostile testers (brk8, brk9)
against the node's starved window (instances.c: node_starved_window)."""

import pytest

from conftest import RUNTIME_LOOP, wait_for, zipped
from test_ready_after_a_stall import node_cpu_quota

GOOD_BOOTSTRAP = b"#!/usr/bin/python3\n" + RUNTIME_LOOP

# Never ready, and burns its cpu= quota in a chain of short-lived processes,
# each of which forks the next and exits: their CPU is in no /proc stat of
# the instance's processes (nobody in it waited for them), so by those the
# instance looked runnable and starved while it had all of its quota.
ORPHAN_BURNER = b"""#!/usr/bin/python3
import os, signal, time
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
if os.fork() == 0:
    while True:
        t = time.process_time()
        while time.process_time() - t < 0.02:
            pass
        if os.fork() != 0:
            os._exit(0)
while True:
    time.sleep(1000)
"""


# Its init's CPU on its first thread, or on another that the first joins.
WORK = b"""
def work():
    while time.process_time() < 0.3:
        pass
"""

ON_MAIN = b"#!/usr/bin/python3\nimport time\n" + WORK + b"work()\n" + RUNTIME_LOOP
ON_THREAD = (b"#!/usr/bin/python3\nimport threading, time\n" + WORK +
             b"t = threading.Thread(target=work)\nt.start()\nt.join()\n" + RUNTIME_LOOP)


def dead_letters(d, topic):
    status, doc = d.json("GET", f"/v1/topics/{topic}.dlq")
    return 0 if status == 404 else doc.get("depth", 0)


# Needs 30 s of CPU before it asks for work: in a fifth of a core shared
# with three others, starved, and never ready in its 60 s.
STARVED_HOG = b"#!/usr/bin/python3\nimport time\nwhile time.process_time() < 30:\n    pass\n" \
    + RUNTIME_LOOP


def test_functions_whose_starts_are_starved_hold_no_other_cold_start(make_spated):
    """Four functions whose starts are starved, each killed at 60 s beside
    the others, narrow the node's starts: while that held every function, a
    good function's cold start waited 60-180 s behind them (504 at its 8 s
    timeout; brk8, with starts that only looked starved). It holds the
    starved functions only."""
    d = make_spated("--spare-idle", "0", "--max-starting", "16")
    node_cpu_quota(d, 200)
    try:
        status, doc = d.deploy("good", zipped({"bootstrap": GOOD_BOOTSTRAP}), runtime="exec",
                               keep_alive=0, timeout=30000)
        assert status == 201, doc
        for i in range(4):
            status, doc = d.deploy(f"hog{i}", zipped({"bootstrap": STARVED_HOG}),
                                   runtime="exec", min=1)
            assert status == 201, doc
        assert wait_for(lambda: "at most 1 at once on the node" in d.log(), timeout=100), \
            d.log()[-3000:]
        assert d.describe("hog0")["scaling"]["starting_max"] == 1
        answers = []
        for i in range(3):  # each a cold start (keep_alive=0)
            assert wait_for(lambda: d.describe("good")["instances"]["idle"] == 0, timeout=10)
            status, body = d.invoke("good", b"x%d" % i, timeout=60)
            answers.append((status, body[:120]))
        assert answers == [(200, b"ok")] * 3, (answers, d.log()[-3000:])
        assert d.describe("good")["scaling"]["starting_max"] > 1
    finally:
        node_cpu_quota(d, 0)


def test_a_start_starved_alone_still_spends_an_attempt(make_spated):
    """A bootstrap that needs 2 s of CPU in a hundredth of a core is never
    ready in its 60 s. Alone on the node, its own replacement (begun in the
    pass that killed it) was counted as another start beside it, and every
    kill was excused: its message neither ran nor went to the dead letters.
    Excused for its first 60 s, it then fails the message (max_attempts 1)."""
    d = make_spated("--spare-idle", "0", "--max-starting", "16")
    heavy = b"#!/usr/bin/python3\nimport time\nwhile time.process_time() < 2:\n    pass\n" \
        + RUNTIME_LOOP
    status, doc = d.deploy("heavy", zipped({"bootstrap": heavy}), runtime="exec", timeout=15000)
    assert status == 201, doc
    status, doc = d.json("PUT", "/v1/triggers/jobs/heavy?max_attempts=1")
    assert status == 201, doc
    node_cpu_quota(d, 10)
    try:
        status, _, data = d.request("POST", "/v1/topics/jobs/messages", b"job")
        assert status == 202, data
        assert wait_for(lambda: dead_letters(d, "jobs") == 1, timeout=240), d.log()[-3000:]
    finally:
        node_cpu_quota(d, 0)
    assert "starved of CPU: not the function's failure" in d.log(), d.log()[-3000:]
    assert "at most 1 at once on the node" not in d.log(), d.log()[-3000:]


def test_a_start_that_burns_its_quota_in_orphans_is_not_starved(make_spated):
    """A bootstrap whose orphaned children burn all of its cpu= quota had
    its CPU, but the sum over its live processes misses theirs: it was
    judged starved and given 60 s, its kills excused (brk8). Its own cpu
    cgroup, throttled in nearly every period, now says it had its quota:
    it is stopped at its 10 s init deadline like any start that hangs."""
    d = make_spated("--spare-idle", "0")
    node_cpu_quota(d, 200)
    try:
        status, doc = d.deploy("hog", zipped({"bootstrap": ORPHAN_BURNER}), runtime="exec",
                               min=1, cpu=25)
        assert status == 201, doc
        assert wait_for(lambda: "did not become ready within" in d.log(), timeout=40), \
            d.log()[-3000:]
    finally:
        node_cpu_quota(d, 0)
    assert "starved of CPU" not in d.log(), d.log()[-3000:]


@pytest.mark.parametrize("where", ["main_thread", "worker_thread"])
def test_a_starved_start_working_on_a_thread_is_given_its_60_s(make_spated, tmp_path, where):
    """Runnable was the state of a process's first thread: a bootstrap whose
    init runs on a thread it joins (a Go runtime, a JVM, a Python thread)
    showed S however starved, was killed at 10 s as a hang and its message
    dead-lettered (brk9). Any of its threads runnable counts."""
    d = make_spated("--spare-idle", "0", "--max-starting", "16")
    record = tmp_path / "record.log"
    record.touch()
    record.chmod(0o666)
    boot = ON_MAIN if where == "main_thread" else ON_THREAD
    status, doc = d.deploy("threaded", zipped({"bootstrap": boot}), runtime="exec",
                           env=f"RECORD%3D{record}", timeout=15000, keep_alive=100)
    assert status == 201, doc
    assert wait_for(lambda: not any(d.describe("threaded")["instances"].values()), timeout=20)
    status, doc = d.json("PUT", "/v1/triggers/jobs/threaded?max_attempts=1")
    assert status == 201, doc
    node_cpu_quota(d, 15)
    try:
        status, _, data = d.request("POST", "/v1/topics/jobs/messages", b"job-1")
        assert status == 202, data
        assert wait_for(lambda: record.read_text().strip() or dead_letters(d, "jobs"),
                        timeout=90), d.log()[-3000:]
    finally:
        node_cpu_quota(d, 0)
    log = d.log()
    assert dead_letters(d, "jobs") == 0, log[-3000:]
    assert record.read_text().split() == ["job-1"], log[-3000:]
    assert "starved of CPU at its init deadline" in log, log[-3000:]
