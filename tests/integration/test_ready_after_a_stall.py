"""An instance that asks for work before its init deadline is ready, even
when spated reads the request only after the deadline (issue 21).

After spated was stopped (SIGSTOP, or a loaded machine that did not run
it), libuv runs the expired timers before it accepts and reads what came in
meanwhile: the init deadline of an exec instance whose GET /next had
arrived in time fired first, the instance was stopped as "did not become
ready", and the invocation failed with it (a trigger's batch lost an
attempt: the nemesis's batches dead-lettered without having run)."""

import signal
import threading
import time

from conftest import wait_for, zipped

# Notes when it starts and when it asks for work, then serves as usual; it
# asks DELAY seconds after it started (well within the 10 s init limit).
BOOTSTRAP = b"""#!/usr/bin/python3
import os, time, urllib.request
def note(what):
    with open(os.environ["RECORD"], "a") as f:
        f.write("%s %.3f\\n" % (what, time.time()))
note("started")
time.sleep(float(os.environ["DELAY"]))
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
while True:
    note("asking")
    with urllib.request.urlopen(api + "next") as r:
        rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
        body = r.read()
    urllib.request.urlopen(urllib.request.Request(api + rid + "/response", data=b"ok:" + body,
                                                  method="POST")).read()
"""


def notes(path, what):
    return [float(line.split()[1]) for line in path.read_text().splitlines()
            if line.startswith(what + " ")]


def test_an_instance_that_asked_while_spated_was_stopped_is_ready(make_spated, tmp_path):
    # No spare (it would be ready before the invocation) and a short
    # keep-alive (the deploy's check leaves an idle instance): the
    # invocation below starts an instance of its own.
    d = make_spated("--spare-idle", "0")
    record = tmp_path / "record.log"
    record.touch()
    record.chmod(0o666)
    status, doc = d.deploy("slowinit", zipped({"bootstrap": BOOTSTRAP}), runtime="exec",
                           env=f"RECORD%3D{record}&env=DELAY%3D1", timeout=60000,
                           keep_alive=100)
    assert status == 201, doc
    assert wait_for(lambda: not any(d.describe("slowinit")["instances"].values()), timeout=20), \
        d.describe("slowinit")
    record.write_text("")

    answer = {}
    t = threading.Thread(target=lambda: answer.update(r=d.invoke("slowinit", b"x", timeout=120)))
    t.start()
    assert wait_for(lambda: notes(record, "started"), timeout=30), d.log()
    # Stopped past the instance's init limit (10 s): it asks for work
    # meanwhile, into the socket's queue, before its deadline.
    d.proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(11.5)
    finally:
        resumed = time.time()
        d.proc.send_signal(signal.SIGCONT)
    t.join(120)
    asked = notes(record, "asking")
    assert asked and asked[0] < resumed, record.read_text()  # it asked in time
    assert answer["r"] == (200, b"ok:x"), (answer, d.log())
    assert "did not become ready" not in d.log(), d.log()
    assert len(notes(record, "started")) == 1, record.read_text()  # not replaced
