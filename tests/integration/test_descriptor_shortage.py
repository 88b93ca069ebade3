"""A node short of descriptors (issue 20, item 2; found by session 41's
adversarial pass): every start that needs one must get 503 with the limit's
code, and never run without its sandbox's limits."""

import os
import socket
import time


from conftest import Spated
from test_isolation import deploy_hostile


def test_fork_bomb_still_named_when_descriptors_run_short(tmp_path, functions):
    """Found in session 41 (fixed: slots.c makes no slot whose limits could not be
    written for want of descriptors): near RLIMIT_NOFILE, a fork bomb ran to its timeout
    (504 function_timeout) instead of being stopped at its process limit
    (502 'went past its limit of 64 processes'); the next starts then got 503
    processes_exhausted. A slot whose pids.events open() failed (EMFILE) keeps
    pids_events_fd -1 and the fallback read needs a descriptor too."""
    lim = 80
    tmp_path.chmod(0o1777)
    d = Spated(tmp_path, args=["--spare-idle", "0", "--pids-max", "64"],
               prefix=["prlimit", f"--nofile={lim}:{lim}", "--"]).start()
    try:
        name, status, doc = deploy_hostile(d, functions, "fork_bomb", timeout=15000, memory=1024,
                                           keep_alive=0)
        assert status == 201, doc
        pid = d.proc.pid
        seen = []
        for k in range(0, 12):
            socks = []
            while len(os.listdir(f"/proc/{pid}/fd")) < lim - k - 1:
                socks.append(socket.create_connection((d.host, d.port)))
                time.sleep(0.01)
            time.sleep(0.1)
            status, body = d.invoke(name, b"go", timeout=30)
            seen.append((k, status, body[:160]))
            for s in socks:
                s.close()
            time.sleep(1.5)
        print("\n".join(map(str, seen)))
        for k, status, body in seen:
            if status == 503:
                assert b"descriptors_exhausted" in body, (k, body)
            else:
                assert status == 502 and b"went past its limit of 64 processes" in body, seen
        # A limit that could not be written for want of descriptors kept the
        # slot from being made (said in the log), never an instance without it.
        assert any(st == 503 for _, st, _ in seen) and any(st == 502 for _, st, _ in seen), seen
    finally:
        assert d.stop() == 0, d.log()[-3000:]
