"""Hostile tests (brk11) of the kept quarter of --max-starting per function
(side pools grouped with their function's pool: b6f57f3, 7700b8e, a2d9240)."""

import os
import threading
import time

from conftest import RUNTIME_LOOP, wait_for, zipped

GOOD_BOOTSTRAP = b"#!/usr/bin/python3\n" + RUNTIME_LOOP
NEVER_READY_BOOTSTRAP = b"""#!/bin/sh
exec sleep 1000
"""


def deploy_good(d, timeout=4000):
    status, doc = d.deploy("good", zipped({"bootstrap": GOOD_BOOTSTRAP}), runtime="exec",
                           keep_alive=0, timeout=timeout)
    assert status == 201, doc
    status, body = d.invoke("good", b"x")
    assert status == 200, body


def deploy_hog(d, name, versions, min_last=0, timeout=120000, tag=b"", **params):
    """versions deploys of a bootstrap that never asks for work; their numbers."""
    numbers = []
    for v in range(1, versions + 1):
        status, doc = d.deploy(name, zipped({"bootstrap": NEVER_READY_BOOTSTRAP +
                                             b"# %s %d\n" % (tag, v)}),
                               runtime="exec", timeout=timeout,
                               min=min_last if v == versions else 0, **params)
        assert status in (200, 201), doc
        numbers.append(doc["version"])
    return numbers


def call_in_background(d, target, n, timeout=60):
    threads = [threading.Thread(target=d.invoke, args=(target, b"x"), kwargs={"timeout": timeout},
                                daemon=True)
               for _ in range(n)]
    for t in threads:
        t.start()
    return threads


def descendants(pid):
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def hanging(d):
    """The NEVER_READY bootstraps this spated runs now."""
    n = 0
    for pid in descendants(d.proc.pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                n += f.read() == b"sleep\x001000\x00"
        except OSError:
            pass
    return n


def side_starting(d, name):
    doc = d.describe(name)
    return doc["instances"]["starting"] + sum(
        v["instances"]["starting"] for v in doc.get("running_versions", []))


def test_deleted_functions_old_versions_take_the_kept_quarter(make_spated):
    """One function name only, deleted and deployed again with the same code
    (what a user does to start over). Its old versions called by number
    hang; each side pool starts 4 (the rule's floor) of the twelve:
    versions 1-3 take the twelve, 4 is held (its function has starts in
    progress: b6f57f3). The function is deleted: its own pool (nothing
    running) leaves at once, its side pools drain their waiting calls (up
    to the function's timeout) and now count alone (pool__node_leave
    ungroups them): version 4 takes one of the kept quarter once the same
    code is deployed again (its artifact is back). The new function's
    version 1 takes one more, 2 and 3 are held by it; deleted and deployed
    again, they take one each: 16 of 16. Another function's cold start
    waits for the hog's next round (504)."""
    d = make_spated("--spare-idle", "0", "--max-starting", "16")
    deploy_good(d)
    # prewarm: a side pool's zygote loads when the pool is created, so that
    # one held has its zygote when its function is deleted.
    v = deploy_hog(d, "hog", 5, tag=b"a", prewarm="true")
    for n in v[:3]:
        call_in_background(d, f"hog:{n}", 4)
    assert wait_for(lambda: side_starting(d, "hog") == 12, timeout=8), d.log()[-3000:]
    call_in_background(d, f"hog:{v[3]}", 2)
    assert wait_for(lambda: "starting fn=hog version=%d (" % v[3] in d.log(), timeout=5)
    time.sleep(0.2)
    assert side_starting(d, "hog") == 12  # its function has starts: held
    # Their bootstraps run (sleep) before the delete takes their files: on a
    # loaded machine a start not yet past its shell failed on the delete
    # (exit 2), and the scenario never formed (CI of 5ee9761).
    assert wait_for(lambda: hanging(d) == 12, timeout=8), hanging(d)

    status, _, body = d.request("DELETE", "/v1/functions/hog")
    assert status in (200, 204), body
    v = deploy_hog(d, "hog", 5, tag=b"a", prewarm="true")
    call_in_background(d, f"hog:{v[0]}", 2)
    assert wait_for(lambda: side_starting(d, "hog") == 1, timeout=5), d.log()[-3000:]
    for n in v[1:3]:
        call_in_background(d, f"hog:{n}", 2)
    assert wait_for(lambda: all(d.log().count("starting fn=hog version=%d (" % n) == 2
                                for n in v[1:3]), timeout=5)
    time.sleep(0.2)
    assert side_starting(d, "hog") == 1  # held: its function has one
    assert wait_for(lambda: hanging(d) >= 13, timeout=8), hanging(d)  # 14 before the mend

    status, _, body = d.request("DELETE", "/v1/functions/hog")
    assert status in (200, 204), body
    deploy_hog(d, "hog", 5, tag=b"a", prewarm="true")
    # The deleted function's old versions drain their calls within the
    # twelve: 12 + the new function's one of the quarter (before the mend:
    # 16 of 16, every start of the node a hanging one of that one name's).
    # Sampled, not waited for: on a loaded machine the first round's starts
    # may reach their 10 s deadline meanwhile, and be begun again.
    seen = []
    for _ in range(30):
        seen.append(hanging(d))
        time.sleep(0.1)
    assert max(seen) <= 13, seen

    t0 = time.monotonic()
    status, body = d.invoke("good", b"x", timeout=30)
    took = time.monotonic() - t0
    assert status == 200, (status, body, took, d.log()[-4000:])


def metric_starting(d):
    _, _, text = d.request("GET", "/metrics")
    total = 0
    for line in text.decode().splitlines():
        if line.startswith("spate_instances{") and 'state="starting"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_churn_of_versions_leaves_no_count_behind(make_spated):
    """Deploys, calls of old versions by number (hanging ones and good
    ones), rollbacks, deletes and the same name again, while side pools
    start and hang. Afterwards: no start left counted (a function's old
    version still gets the kept quarter's start beside a hog, its own
    function having none), nothing starting in the metrics, and a clean
    stop (ASan build: no report)."""
    d = make_spated("--spare-idle", "0", "--max-starting", "4")
    threads = []
    for rnd in range(3):
        for name in ("c0", "c1"):
            nums = []
            for v in range(4):
                body = (NEVER_READY_BOOTSTRAP + b"# %d %d\n" % (rnd, v)) if v % 2 == 0 else \
                    zipped({"bootstrap": GOOD_BOOTSTRAP + b"\n# %d %d\n" % (rnd, v)})
                if v % 2 == 0:
                    body = zipped({"bootstrap": body})
                status, doc = d.deploy(name, body, runtime="exec", timeout=3000, keep_alive=500)
                assert status in (200, 201), doc
                nums.append(doc["version"])
            for n in nums[:3]:
                threads += call_in_background(d, f"{name}:{n}", 2, timeout=20)
            threads += call_in_background(d, name, 1, timeout=20)
            time.sleep(0.3)
            status, doc = d.json("POST", f"/v1/functions/{name}/rollback", b'{"version": %d}' % nums[0])
            assert status in (200, 409), doc
            threads += call_in_background(d, f"{name}:{nums[3]}", 1, timeout=20)
        time.sleep(0.5)
        status, _, body = d.request("DELETE", "/v1/functions/c0")
        assert status in (200, 204), body
    for t in threads:
        t.join(30)
    # Settled: the deleted ones gone, the others' starts over.
    assert wait_for(lambda: metric_starting(d) == 0, timeout=30), metric_starting(d)
    # The kept quarter (one of 4) for a function with none starting: c1's
    # old good version gets it beside a hog holding the other three.
    status, doc = d.deploy("hog", zipped({"bootstrap": NEVER_READY_BOOTSTRAP}), runtime="exec",
                           min=8)
    assert status == 201, doc
    assert wait_for(lambda: d.describe("hog")["instances"]["starting"] == 3, timeout=10)
    doc = d.describe("c1")
    old = [v["version"] for v in doc["versions"] if v["version"] != doc["version"]]
    status, body = d.invoke(f"c1:{old[-1]}", b"x", timeout=30)
    assert status in (200, 504), body
    assert b"waited for room" not in body, body
    status, body = d.invoke("c1:1", b"x", timeout=30)
    assert b"waited for room" not in body, body
    assert d.stop() == 0, d.log()[-3000:]
    assert "AddressSanitizer" not in d.log() and "runtime error" not in d.log(), d.log()[-5000:]


def test_deleted_exec_function_with_waiting_calls_does_not_spin(make_spated):
    """An exec function deleted while a call waits for a start (its start
    hangs; the delete drains): the waiting call stays, and each start after
    the delete fails at once -- its artifact directory (the bootstrap's
    working directory) was removed with the function -- and is tried again
    every 100 ms (SPATE_SPAWN_RETRY_MS), a warning each time, until the
    call's timeout (up to 15 minutes). Expected: the waiting call is
    answered once no start can serve it, or at least not a log line per
    100 ms."""
    d = make_spated("--spare-idle", "0")
    status, doc = d.deploy("gone", zipped({"bootstrap": NEVER_READY_BOOTSTRAP}), runtime="exec",
                           timeout=60000, max=1)
    assert status == 201, doc
    answer = []
    for _ in range(3):  # the start killed at its deadline fails one
        threading.Thread(target=lambda: answer.append(d.invoke("gone", b"x", timeout=90)),
                         daemon=True).start()
    assert wait_for(lambda: hanging(d) == 1, timeout=10)
    status, _, body = d.request("DELETE", "/v1/functions/gone")
    assert status in (200, 204), body
    t0 = time.monotonic()
    # The hanging start is killed at its 10 s deadline; then 5 s more.
    time.sleep(16)
    spins = d.log().count("cannot start '")
    assert spins < 10, (spins, answer, time.monotonic() - t0, d.log()[-2000:])
    # The calls left waiting are told why, at once.
    told = [a for a in answer if a[0] == 503 and b"while the function was closing" in a[1]]
    assert told, answer


def test_stopping_many_functions_with_old_versions_running(make_spated, functions):
    """Many functions, each with two old versions called by number (side
    pools with an idle instance) and its active version never called: at
    SIGTERM each function's own pool leaves before its side pools (their
    instances take a moment to exit) and lets them go (pool__node_leave:
    its list of them; it walked every pool of the node). spated stops."""
    n = int(os.environ.get("BRK11_FUNCTIONS", "150"))
    d = make_spated("--spare-idle", "0", "--max-zygotes", "2000", "--max-instances", "2000")
    for i in range(n):
        for v in range(3):
            status, doc = d.deploy(f"f{i}", functions["hello"], env=f"V%3D{v}",
                                   keep_alive=600000)
            assert status in (200, 201), doc
        for v in (1, 2):
            status, body = d.invoke(f"f{i}:{v}", b"x")
            assert status == 200, body
    assert d.stop(timeout=120) == 0, d.log()[-3000:]
    assert "AddressSanitizer" not in d.log() and "runtime error" not in d.log(), d.log()[-5000:]


def test_one_functions_versions_starved_together_start_fewer_at_once(make_spated):
    """test_ready_after_a_stall's five functions starved together in a
    hundredth of a core, as one function's five versions: four old ones
    called by number and the active one, one call each, each start needing
    0.2 s of CPU (20 s alone, 100 s five at once). Each pool's own window is
    one already. A start killed starved beside only its own function's
    other versions' starts narrows nothing since 7700b8e ("fewer at once
    would not help"): but they are five pools, each starting one, and
    nothing else makes them fewer. Killed together at 60 s, begun again
    together, and at the second kill (the 60 s excuse over, not "beside
    others") each fails its call. Expected: as for five functions, every
    call answered."""
    from test_ready_after_a_stall import BURNING, node_cpu_quota
    d = make_spated("--spare-idle", "0", "--max-starting", "16")
    light = BURNING.replace(b"< 0.3", b"< 0.2")
    nums = []
    for v in range(5):
        status, doc = d.deploy("many", zipped({"bootstrap": light + b"\n# %d\n" % v}),
                               runtime="exec", timeout=400000)
        assert status in (200, 201), doc
        nums.append(doc["version"])
    answers = {}

    def call(q):
        answers[q] = d.invoke(q, b"x", timeout=420)

    node_cpu_quota(d, 10)
    try:
        threads = [threading.Thread(target=call, args=(q,), daemon=True)
                   for q in [f"many:{n}" for n in nums[:4]] + ["many"]]
        for t in threads:
            t.start()
        for t in threads:
            t.join(420)
    finally:
        node_cpu_quota(d, 0)
    log = d.log()
    assert all(a[0] == 200 for a in answers.values()), (
        answers, [l[11:23] + l[30:170] for l in log.splitlines()
                  if "starved" in l or "on the node" in l or "could not start" in l][:30])


def test_a_call_held_by_the_starved_window_is_not_told_max_starting(make_spated):
    """Five functions starved together in a hundredth of a core (as in
    test_ready_after_a_stall): killed at 60 s beside each other, the node's
    window of starved functions' starts narrows to one, and four wait for
    it. Their calls' 90 s run out while one start of the node's 16 is in
    progress: the 504 says the start "waited for room under the node's
    --max-starting (other functions' instances were starting)" (timer.c,
    a2d9240) -- there was room for 15; what held it was the starved
    window."""
    from test_ready_after_a_stall import BURNING, node_cpu_quota
    d = make_spated("--spare-idle", "0", "--max-starting", "16")
    light = BURNING.replace(b"< 0.3", b"< 0.2")
    for i in range(5):
        status, doc = d.deploy(f"s{i}", zipped({"bootstrap": light}), runtime="exec",
                               timeout=90000)
        assert status == 201, doc
    answers = {}

    def call(name):
        answers[name] = d.invoke(name, b"x", timeout=150)

    node_cpu_quota(d, 10)
    try:
        threads = [threading.Thread(target=call, args=(f"s{i}",), daemon=True) for i in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(150)
    finally:
        node_cpu_quota(d, 0)
    assert "at most 1 at once on the node" in d.log(), d.log()[-3000:]
    held = [a for a in answers.values() if b"--max-starting" in a[1]]
    assert not held, (held, answers)


def test_sigterm_while_old_versions_hang_with_calls_waiting(make_spated):
    """SIGTERM while a function's old versions' starts hang with calls
    waiting (their pools drain past their function's own pool, which leaves
    first and ungroups them): spated stops within its grace, cleanly (the
    ASan build: no report)."""
    d = make_spated("--spare-idle", "0", "--max-starting", "16", "--shutdown-grace", "3000")
    v = deploy_hog(d, "hog", 5, timeout=60000)
    for n in v[:4]:
        call_in_background(d, f"hog:{n}", 3)
    call_in_background(d, "hog", 1)
    assert wait_for(lambda: side_starting(d, "hog") >= 12, timeout=10), side_starting(d, "hog")
    assert d.stop(timeout=60) == 0, d.log()[-3000:]
    assert "AddressSanitizer" not in d.log() and "runtime error" not in d.log(), d.log()[-5000:]
