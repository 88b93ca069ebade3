"""Attacks on what issue 14 added (the CANCEL frame and its counters, logs
rebuilt from files, secrets, new routes): a hostile function, a hostile API
client with a publish or invoke token, a hostile file. Each test failed on
the code before its fix.
"""

import os
import time
import urllib.parse

import pytest

from conftest import wait_for

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
