"""The node's window of starved functions' starts (instances.c:
node_starved_window) against what would keep it narrowed: the function
whose start it just killed, cheap cold starts of others, and a starved
spinner once the load is gone. Found by a hostile tester (brk9) against
its second form."""

import threading
import time

from conftest import wait_for, zipped
from test_ready_after_a_stall import BURNING, node_cpu_quota, publish_jobs, triggered_functions

SPINNER = b"#!/usr/bin/python3\nwhile True:\n    pass\n"

# A runtime loop in bash alone (no interpreter to load): a few ms of CPU.
CHEAP = rb"""#!/bin/bash
api=$AWS_LAMBDA_RUNTIME_API
host=${api%:*}; port=${api##*:}
while true; do
  exec 3<>/dev/tcp/$host/$port
  printf 'GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: %s\r\n\r\n' "$api" >&3
  rid=; len=0
  while IFS= read -r line <&3; do
    line=${line%$'\r'}
    [ -z "$line" ] && break
    case "${line,,}" in
      lambda-runtime-aws-request-id:*) rid=${line#*: };;
      content-length:*) len=${line#*: };;
    esac
  done
  [ "$len" -gt 0 ] && read -r -N "$len" body <&3
  exec 3<&-
  exec 3<>/dev/tcp/$host/$port
  printf 'POST /2018-06-01/runtime/invocation/%s/response HTTP/1.1\r\nHost: %s\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok' "$rid" "$api" >&3
  IFS= read -r line <&3
  exec 3<&-
done
"""


def narrowed_behind_a_spinner(d, n):
    """A spinner (min=1) starts first, then jobs0..jobs<n-1> get a message
    each: in a hundredth of a core the window narrows to one."""
    status, doc = d.deploy("hog", zipped({"bootstrap": SPINNER}), runtime="exec", min=1)
    assert status == 201, doc
    time.sleep(5)  # the hog's start first: it is killed first, at 60 s
    publish_jobs(d, n)
    assert wait_for(lambda: "at most 1 at once on the node" in d.log(), timeout=100), \
        d.log()[-3000:]


def test_a_starved_function_does_not_keep_the_window_from_those_held(make_spated, tmp_path):
    """A start killed starved freed its slot of the window in the timer pass
    that killed it, and the same pass ended with its own function's
    replacement taking it back (the woken held pool had room kept under
    --max-starting only): a function never ready in 60 s (a spinner, min=1,
    in a hundredth of a core) kept the window's one slot for ever, g1 never
    started again, and its message never ran (brk9)."""
    d = make_spated("--spare-idle", "0", "--max-starting", "16")
    # Their first starts never ready: with 0.2 s of CPU to burn, they were
    # ready before the hog's kill under make test's load (its CI, session
    # 53), and the window did not narrow. Those that start after the gate
    # opens (the window narrowed) burn 0.2 s.
    gate = tmp_path / "gate"
    burn = b"while time.process_time() < 0.3:\n    pass\n"
    assert burn in BURNING
    light = BURNING.replace(burn, b"gate = os.path.exists(%r)\n"
                            b"while not gate or time.process_time() < 0.2:\n    pass\n"
                            % str(gate).encode())
    records = triggered_functions(d, tmp_path, "g", 2, light, max_attempts=5)
    node_cpu_quota(d, 10)
    try:
        narrowed_behind_a_spinner(d, 2)
        gate.touch()
        # Alone, g0 would be ready about 20 s after the hog's next kill
        # (~120 s), g1 about 40 s after that.
        wait_for(lambda: all(r.read_text().strip() for r in records), timeout=200)
    finally:
        node_cpu_quota(d, 0)
    log = d.log()
    starts = [(l.split("fn=")[1].split()[0], l[11:19]) for l in log.splitlines()
              if "starved of CPU at its init deadline" in l]
    assert [r.read_text().split() for r in records] == [["job-0"], ["job-1"]], \
        (starts, [l[11:23] + l[30:140] for l in log.splitlines() if "on the node" in l])



def test_cheap_cold_starts_do_not_reopen_the_starved_window(make_spated, tmp_path):
    """Every start ready on the node widened the window by one: a cheap
    function's cold starts (keep_alive=0, called twice a second) reopened
    it between the starved functions' 60 s rounds, the five were begun again
    together, killed together, and a message went to the dead letters unrun
    (brk9). Only a starved function's ready start widens it."""
    d = make_spated("--spare-idle", "0", "--max-starting", "16")
    status, doc = d.deploy("cheap", zipped({"bootstrap": CHEAP}), runtime="exec",
                           keep_alive=0, timeout=30000)
    assert status == 201, doc
    status, body = d.invoke("cheap", b"x")
    assert (status, body) == (200, b"ok"), body
    F = 5
    light = BURNING.replace(b"< 0.3", b"< 0.2")
    stop = threading.Event()
    answers = []

    def tick():
        while not stop.is_set():
            answers.append(d.invoke("cheap", b"t", timeout=40)[0])
            time.sleep(0.5)

    node_cpu_quota(d, 10)
    ticker = threading.Thread(target=tick)
    try:
        records = triggered_functions(d, tmp_path, "f", F, light, max_attempts=1)
        ticker.start()
        publish_jobs(d, F)
        assert wait_for(lambda: "at most 1 at once on the node" in d.log(), timeout=100), \
            d.log()[-3000:]
        wait_for(lambda: all(r.read_text().strip() for r in records) or
                 "giving up" in d.log(), timeout=300)
    finally:
        stop.set()
        node_cpu_quota(d, 0)
        if ticker.is_alive():
            ticker.join()
    log = d.log()
    print("cheap answers:", {s: answers.count(s) for s in set(answers)})
    print("window lines:", [l[24:110] for l in log.splitlines() if "at once on the node" in l])
    assert "giving up" not in log, \
        [l for l in log.splitlines() if "giving up" in l or "on the node" in l][:20]
    assert [r.read_text().split() for r in records] == [["job-%d" % i] for i in range(F)]


def test_the_window_reopens_once_the_machine_is_idle_again(make_spated, tmp_path):
    """A spinner starved in a hundredth of a core narrows the window, then
    the load goes (the node's quota lifted): its starts are plain hangs,
    killed at 10 s, but it stayed a starved function (only a ready start
    cleared that) and kept the window's slot; three functions held, each
    ready in a fraction of a second on the idle machine, never started
    (brk9). A start killed at its deadline that was not starved ends its
    function's part in the window, and with none left the window is off."""
    d = make_spated("--spare-idle", "0", "--max-starting", "16")
    records = triggered_functions(d, tmp_path, "g", 3, BURNING, max_attempts=5)
    node_cpu_quota(d, 10)
    try:
        narrowed_behind_a_spinner(d, 3)
        assert wait_for(lambda: d.log().count("did not become ready within 6") >= 4 or
                        any(r.read_text().strip() for r in records), timeout=30)
    finally:
        node_cpu_quota(d, 0)
    wait_for(lambda: all(r.read_text().strip() for r in records), timeout=60)
    log = d.log()
    assert [r.read_text().split() for r in records] == [["job-0"], ["job-1"], ["job-2"]], \
        [l[11:23] + l[30:150] for l in log.splitlines()
         if "on the node" in l or "did not become" in l][-12:]
    assert d.invoke("g0", b"direct", timeout=40)[0] == 200
    assert d.describe("g1")["scaling"]["starting_max"] > 1
