"""Attacks of a second pass over the sandbox and its boundaries (after issue 13):
what a hostile function could still do to spated, to the host or to other
functions. Each test failed on the code before its fix.
"""

import os
import subprocess
import time

import pytest

from conftest import ROOT, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the attacks are on spated as root")


@pytest.fixture(scope="session")
def hostile_runtime(tmp_path_factory):
    """The hostile exec bootstrap (functions/atk_m_runtime.c), a program."""
    out = tmp_path_factory.mktemp("atkrt") / "bootstrap"
    subprocess.run(["cc", "-O2", "-o", str(out), str(ROOT / "tests/integration/functions/atk_m_runtime.c")],
                   check=True)
    return out.read_bytes()


def deploy_runtime(d, bootstrap, tmp_path, name, mode, **params):
    out = tmp_path / name
    out.mkdir(mode=0o777)
    out.chmod(0o1777)
    env = [f"ATK_MODE%3D{mode}", f"OUT%3D{out}"] + [f"{k}%3D{v}" for k, v in params.pop("env", {}).items()]
    query = "&".join(["runtime=exec"] + [f"env={e}" for e in env] + [f"{k}={v}" for k, v in params.items()])
    status, doc = d.json("PUT", f"/v1/functions/{name}?{query}", bootstrap)
    assert status == 201, doc
    return out


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# --- The Runtime API: what checking a client costs -----------------------------------------


def test_checking_runtime_api_clients_cannot_stall_spated(spated, hostile_runtime, tmp_path):
    """Each Runtime API connection made spated look through the descriptors of
    every process of the instance for the client's socket, on its event loop.
    A bootstrap with 100 processes holding 20,000 descriptors each, connecting
    8 at a time from a helper that is not of the instance, made each of those
    connections cost spated seconds: the operator's requests and every other
    function waited (here: a health check took over 50 s). The checks are now
    bounded per connection and per function."""
    out = deploy_runtime(spated, hostile_runtime, tmp_path, "scanner", "scan", min=1, memory=512,
                         env={"ATK_PROCS": 100})
    assert wait_for(lambda: (out / "ready").exists(), timeout=60), spated.log()
    assert wait_for(lambda: "refused a Runtime API connection" in spated.log(), timeout=60), spated.log()
    for _ in range(5):
        t0 = time.monotonic()
        status, _, _ = spated.request("GET", "/v1/health", timeout=120)
        took = time.monotonic() - t0
        assert status == 200
        # Generous: a loaded machine answers in milliseconds; the attack made it 50 s.
        assert took < 20, f"a health check waited {took:.1f} s behind the Runtime API checks"
        time.sleep(0.5)
    log = spated.log()
    assert ("budget for checking Runtime API clients is spent" in log
            or "among the descriptors it may look at" in log), log


def test_runtime_api_bodies_are_bounded_per_instance(spated, hostile_runtime, tmp_path):
    """An instance could open 16 connections to its Runtime API and send a
    6 MiB body on each, but its last byte: spated (root, in no cgroup) held
    ~100 MB per instance, whatever the function's --memory; 8 such instances
    made it hold 760 MB. Now the bodies of one endpoint hold at most one
    response's worth; the others are answered 503 at once."""
    pid = spated.proc.pid
    before = rss_kb(pid)
    deploy_runtime(spated, hostile_runtime, tmp_path, "hoarder", "bodies", min=4,
                   env={"ATK_CONNS": 12})
    assert wait_for(lambda: spated.describe("hoarder")["instances"]["idle"] == 4, timeout=60), spated.log()
    status, body = spated.invoke("hoarder")
    assert status == 200, body
    held = int(body.split()[1])
    assert held <= 1, f"spated kept reading {held} response bodies of 6 MiB for one instance"
    grown = rss_kb(pid) - before
    assert grown < 200 * 1024, f"spated grew by {grown // 1024} MB for 4 instances"


# --- System V IPC: the host's namespace -----------------------------------------------------


def sysv_objects(kind, uid):
    """Ids of the host's System V objects of kind (shm, msg) owned by uid."""
    with open(f"/proc/sysvipc/{kind}") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    col = {"shm": 7, "msg": 7}[kind]
    return [int(r[1]) for r in rows if len(r) > col and int(r[col]) == uid]


def function_uid(d, name):
    pid = d.describe(name)["zygote_pid"]
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Uid:"))


def test_system_v_ipc_dies_with_its_instance(spated, functions):
    """Shared memory made by a function lived on in the host's IPC namespace
    after its instance, its version and its deletion: each instance could
    leave its --memory worth there (charged to a cgroup that then went away,
    or to the slot the next function got), with no bound but the host's.
    Message queues alike. Each instance has an IPC namespace of its own now."""
    status, doc = spated.deploy("hoard", functions["atk_m_ipc"], memory=128)
    assert status == 201, doc
    uid = function_uid(spated, "hoard")
    made = []
    for _ in range(3):
        status, out = spated.invoke("hoard", b"shm:30:0")
        assert status == 200 and not out.startswith(b"error"), out
        made.append(out)
        status, out = spated.invoke("hoard", b"msg:4242")
        assert status == 200 and not out.startswith(b"error"), out
    assert spated.json("DELETE", "/v1/functions/hoard")[0] == 204
    left = wait_for(lambda: not sysv_objects("shm", uid) and not sysv_objects("msg", uid), timeout=10)
    assert left, (f"the function's shared memory {sysv_objects('shm', uid)} and queues "
                  f"{sysv_objects('msg', uid)} outlived it")


def test_functions_share_no_system_v_ipc(spated, functions):
    """A segment under a well-known key with mode 0666 was readable by every
    other function (and every user of the host): a channel past the uids."""
    for name in ("writer", "reader"):
        status, doc = spated.deploy(name, functions["atk_m_ipc"])
        assert status == 201, doc
    status, out = spated.invoke("writer", b"shm:1:770077")
    assert status == 200 and not out.startswith(b"error"), out
    status, out = spated.invoke("reader", b"peek:770077")
    assert status == 200, out
    assert b"secret" not in out, out


# --- seccomp: io_uring ----------------------------------------------------------------------


def test_io_uring_cannot_make_what_seccomp_refuses(spated, functions):
    """io_uring performs socket, open, connect, ... without the system call
    that seccomp filters: a function without network got an AF_INET socket
    through IORING_OP_SOCKET. io_uring is refused now (and with it a large
    part of the kernel no function needs)."""
    status, doc = spated.deploy("ringer", functions["atk_m_uring"], network="false")
    assert status == 201, doc
    status, out = spated.invoke("ringer")
    assert status == 200, out
    assert out.startswith(b"setup refused: Operation not permitted"), out


def test_a_function_cannot_take_descriptors_of_its_processes(spated, functions):
    """pidfd_getfd copies a descriptor out of any process the caller may
    trace: an exec bootstrap is dumpable, so another instance of the same
    function took its Runtime API connection (and its invocations) that way."""
    status, doc = spated.deploy("taker", functions["atk_m_uring"])
    assert status == 201, doc
    status, out = spated.invoke("taker", b"getfd")
    assert status == 200, out
    assert out.startswith(b"getfd refused: Operation not permitted"), out


# --- spated's log ---------------------------------------------------------------------------

FORGING_BOOTSTRAP = rb"""#!/bin/sh
curl -s -X POST "http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/init/error" \
  -d '{"errorType":"Boom","errorMessage":"x\n2030-01-01T00:00:00.000Z info  spated: function deleted fn=victim\r\u001b[2Kcleared\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007\u0007"}'
sleep 10
"""


def test_a_function_cannot_write_lines_into_spateds_log(spated):
    """The reason an instance gives for failing to start (a Runtime API init
    error, a native INIT_FAILED frame) went into spated's log as it was: a
    newline in it began a line of the function's making, dated and tagged
    as spated's own, and terminal escapes reached whoever read the log."""
    status, doc = spated.json("PUT", "/v1/functions/forger?runtime=exec", FORGING_BOOTSTRAP)
    assert status == 201, doc
    status, body = spated.invoke("forger")
    assert status == 502 and b"Boom" in body, body
    assert wait_for(lambda: "instance could not start" in spated.log(), timeout=10), spated.log()
    log = spated.log()
    forged = [line for line in log.splitlines() if line.startswith("2030-")]
    assert not forged, forged
    assert "\x1b" not in log and "\r" not in log, repr(log[-400:])
    # However long and escaped the quote, the line still says whose it is.
    lines = [line for line in log.splitlines() if "instance could not start" in line]
    assert lines and all(line.endswith("fn=forger version=1 instance=1") for line in lines), lines


# --- The cluster's NATS -----------------------------------------------------------------------


@pytest.fixture
def nats_server(tmp_path):
    """One nats-server with JetStream and a user, on a loopback port."""
    from natscluster import free_port
    port = free_port()
    log = open(tmp_path / "nats.log", "wb")
    proc = subprocess.Popen(["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port), "-sd",
                             str(tmp_path / "js"), "--user", "spate", "--pass", "s3cret-nats-pw"],
                            stdout=log, stderr=subprocess.STDOUT)
    log.close()
    assert wait_for(lambda: "Server is ready" in (tmp_path / "nats.log").read_text(), timeout=20)
    yield port
    proc.terminate()
    proc.wait(10)


def test_nats_credentials_stay_out_of_the_log(make_spated, nats_server, tmp_path, functions):
    """In a cluster, NATS holds every function's environment and code: a
    function (it has the host's network) read DB_PASSWORD from the registry
    bucket of a nats-server without users. With users, the URL carries the
    password, which spated then wrote into its log ("joined nats://..."). It
    shows "***" now, and warns when NATS has no credentials."""
    conf = tmp_path / "spated.conf"
    conf.write_text(f"cluster = nats://spate:s3cret-nats-pw@127.0.0.1:{nats_server}\n")
    conf.chmod(0o600)
    d = make_spated("--config", str(conf))
    assert wait_for(lambda: "cluster: joined" in d.log(), timeout=20), d.log()
    status, doc = d.deploy("hello", functions["hello"])
    assert status == 201, doc
    assert d.invoke("hello", b"x")[0] == 200
    assert "s3cret-nats-pw" not in d.log(), d.log()
    assert "nats://***@127.0.0.1" in d.log(), d.log()
    assert "without credentials" not in d.log()


def test_nats_without_credentials_is_warned_of(make_spated, tmp_path):
    from natscluster import free_port
    port = free_port()
    log = open(tmp_path / "nats.log", "wb")
    proc = subprocess.Popen(["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port), "-sd",
                             str(tmp_path / "js")], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        assert wait_for(lambda: "Server is ready" in (tmp_path / "nats.log").read_text(), timeout=20)
        d = make_spated("--cluster", f"nats://127.0.0.1:{port}")
        assert wait_for(lambda: "cluster: joined" in d.log(), timeout=20), d.log()
        assert "NATS without credentials" in d.log(), d.log()
        d.stop()
    finally:
        proc.terminate()
        proc.wait(10)
