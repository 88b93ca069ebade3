"""Confinement attacks (issue 13, items 3, 7, 9 and 10): what a function can
see and leave behind of the machine's files and of the instance slots it
shares with other functions.

Each instance has a mount namespace of its own: the host's filesystem
read-only but for spated's --writable paths, its code read-only at
/var/task, a private tmpfs /tmp (deploy tmp= MB) and /dev/shm. Exec code lives
in DATA/exec, which only root can enter. A kept instance slot is root's from
the end of one instance to the start of the next. Hostile native code is
tests/integration/functions/atk_c_confine.c; exec code is bootstrap.c.
"""

import glob
import io
import os
import pathlib
import subprocess
import threading
import time
import zipfile

import pytest

from conftest import ROOT, wait_for


@pytest.fixture(scope="session")
def c_bootstrap(tmp_path_factory):
    out = tmp_path_factory.mktemp("cboot") / "bootstrap"
    subprocess.run(["cc", "-O2", "-o", str(out), str(ROOT / "tests/integration/functions/bootstrap.c")],
                   check=True)
    return out.read_bytes()


def zipped(files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o755 << 16
            z.writestr(info, data)
    return buf.getvalue()


def deploy_exec(d, name, artifact, **params):
    query = "&".join(["runtime=exec"] + [f"{k}={v}" for k, v in params.items()])
    return d.json("PUT", f"/v1/functions/{name}?{query}", artifact)


def call(d, fn, payload):
    status, body = d.invoke(fn, payload.encode() if isinstance(payload, str) else payload)
    assert status == 200, (fn, payload, status, body)
    return body.decode(errors="replace")


def uid_of(pid):
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def alive(pid):
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def slot_procs(d):
    """{slot cgroup directory: [pids]} of this spated's memory and pids cgroups."""
    out = {}
    for ctl in ("memory", "pids"):
        for f in glob.glob(f"/sys/fs/cgroup/{ctl}/spate/{d.proc.pid}/*/cgroup.procs"):
            out[os.path.dirname(f)] = [int(x) for x in pathlib.Path(f).read_text().split()]
    return out


# --- /var/task ---------------------------------------------------------------------------------


def test_var_task_is_read_only_and_holds_the_code(spated, functions, c_bootstrap):
    assert spated.deploy("nat", functions["atk_c_confine"])[0] == 201
    # The shared object, as deployed, and nothing can be written there.
    so = functions["atk_c_confine"].read_bytes()
    assert call(spated, "nat", "read:/var/task/function.so").encode(errors="replace")[:4] == so[:4]
    assert call(spated, "nat", "write:/var/task/x") == "error: Read-only file system"
    assert call(spated, "nat", "write:/var/task/function.so") == "error: Read-only file system"
    # The namespaces cannot be undone or made again from inside.
    assert call(spated, "nat", "mount").startswith("error: ")
    assert call(spated, "nat", "unshare").startswith("error: ")
    assert call(spated, "nat", "caps") == "CapEff:\t0000000000000000"

    status, doc = deploy_exec(spated, "ex", zipped({"bootstrap": c_bootstrap, "config.ini": b"k=v\n"}))
    assert status == 201, doc
    assert call(spated, "ex", "env:LAMBDA_TASK_ROOT") == "/var/task"
    assert call(spated, "ex", "cwd") == "/var/task"
    assert call(spated, "ex", "read:/var/task/config.ini") == "k=v\n"
    assert call(spated, "ex", "write:/var/task/x") == "error: Read-only file system"
    assert call(spated, "ex", "write:/var/task/config.ini") == "error: Read-only file system"
    # Its command line names /var/task, not where spated keeps the code.
    pid = int(call(spated, "ex", "pid"))
    cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert cmdline[0] == b"/var/task/bootstrap", cmdline
    assert str(spated.data).encode() not in b" ".join(cmdline)


# --- the host's filesystem -------------------------------------------------------------------

# Directories of the host that any uid may write (mode 1777): the disk a
# function could fill, the place two functions could pass files through.
WORLD_WRITABLE = [p for p in ("/var/tmp", "/run/lock", "/dev/mqueue")
                  if os.path.isdir(p) and os.stat(p).st_mode & 0o1777 == 0o1777]


def test_the_host_is_read_only_but_for_writable_paths(make_spated, tmp_path, functions,
                                                       c_bootstrap):
    parent = tmp_path / "parent"
    allowed = parent / "allowed"
    allowed.mkdir(parents=True)
    parent.chmod(0o1777)  # its user may write both, as far as permissions go
    allowed.chmod(0o1777)
    d = make_spated("--writable", str(allowed), writable=())  # not pytest's whole tree
    assert d.deploy("nat", functions["atk_c_confine"])[0] == 201
    status, doc = deploy_exec(d, "ex", zipped({"bootstrap": c_bootstrap}))
    assert status == 201, doc
    assert WORLD_WRITABLE
    for fn, code in (("nat", "/var/task/function.so"), ("ex", "/var/task/bootstrap")):
        for where in WORLD_WRITABLE + [str(parent), "/var/task"]:
            leaked = f"{where}/spate-{fn}-{os.getpid()}"
            assert call(d, fn, f"write:{leaked}") == "error: Read-only file system", (fn, where)
            assert not os.path.exists(leaked)
        # What stays writable: the operator's path, its own /tmp and
        # /dev/shm, and device nodes; its code is still there to read.
        assert call(d, fn, f"write:{allowed}/{fn}") == "ok"
        assert (allowed / fn).read_text() == "x"
        for path in ("/tmp/x", "/dev/shm/x", "/dev/null"):
            assert call(d, fn, f"write:{path}") == "ok", (fn, path)
        assert call(d, fn, f"read:{code}").startswith("\x7fELF"), fn
    # What one function leaves in the writable path, another may read: the
    # operator asked for that; nothing else of the host carries it.
    assert call(d, "ex", f"read:{allowed}/nat") == "x"


# --- /tmp ------------------------------------------------------------------------------------


def test_a_full_tmp_hurts_only_its_instance(spated, functions, c_bootstrap):
    assert spated.deploy("filler", functions["atk_c_confine"], tmp=8)[0] == 201
    assert spated.describe("filler")["config"]["tmp_mb"] == 8
    assert spated.deploy("neighbour", functions["atk_c_confine"], tmp=16)[0] == 201
    assert call(spated, "neighbour", "write:/tmp/before") == "ok"
    got = call(spated, "filler", "fill:/tmp/big")
    assert got.startswith(("filled 7 MB", "filled 8 MB")) and got.endswith("No space left on device"), got
    assert not os.path.exists("/tmp/big")  # not the host's /tmp
    # The neighbour still has the whole of its own.
    got = call(spated, "neighbour", "fill:/tmp/mine")
    assert got.startswith(("filled 15 MB", "filled 16 MB")), got
    assert call(spated, "neighbour", "read:/tmp/before") == "x"
    # The filler's instance keeps serving; its /dev/shm is its own too.
    assert call(spated, "filler", "write:/dev/shm/y") == "ok"
    assert not os.path.exists("/dev/shm/y")
    # Exec instances get the same, through the runner.
    status, doc = deploy_exec(spated, "exfill", zipped({"bootstrap": c_bootstrap}), tmp=8)
    assert status == 201, doc
    assert call(spated, "exfill", "env:TMPDIR") == "/tmp"
    assert call(spated, "exfill", "fill:/tmp/big").endswith("No space left on device")
    assert call(spated, "neighbour", "read:/tmp/before") == "x"


def test_tmp_is_bounded_when_deployed(spated, functions):
    status, doc = spated.deploy("t", functions["atk_c_confine"], tmp=0)
    assert status == 400 and "tmp" in doc["error"], doc
    status, doc = spated.deploy("t", functions["atk_c_confine"], tmp=99999999)
    assert status == 400 and "tmp" in doc["error"], doc
    assert spated.deploy("t", functions["atk_c_confine"])[0] == 201
    assert spated.describe("t")["config"]["tmp_mb"] == 512
    r = spated.cli("deploy", "t2", str(functions["atk_c_confine"]), "--tmp", "4")
    assert r.returncode == 0, r.stderr
    assert spated.describe("t2")["config"]["tmp_mb"] == 4


# --- exec code ---------------------------------------------------------------------------------


def test_exec_deploy_with_data_under_a_0700_directory(make_spated, tmp_path, c_bootstrap):
    secret = tmp_path / "secret-dir"
    secret.mkdir()
    secret.chmod(0o700)
    d = make_spated(data=secret / "data")
    status, doc = deploy_exec(d, "hidden", zipped({"bootstrap": c_bootstrap}))
    assert status == 201, doc
    assert d.invoke("hidden", b"still here") == (200, b"still here")


def test_exec_code_is_unreadable_to_another_function(spated, functions, c_bootstrap):
    status, doc = deploy_exec(spated, "owner",
                              zipped({"bootstrap": c_bootstrap, "config.ini": b"password=hunter2\n"}))
    assert status == 201, doc
    pid = int(call(spated, "owner", "pid"))
    unpacked = glob.glob(str(spated.data / "exec" / "*" / "config.ini"))
    assert len(unpacked) == 1, unpacked
    assert spated.deploy("thief", functions["atk_c_confine"])[0] == 201
    for path in (unpacked[0], os.path.dirname(unpacked[0]) + "/bootstrap",
                 f"/proc/{pid}/root/var/task/config.ini", f"/proc/{pid}/cwd/config.ini"):
        got = call(spated, "thief", f"read:{path}")
        assert got.startswith("error: ") and "hunter2" not in got, (path, got)
    assert os.stat(spated.data / "exec").st_mode & 0o777 == 0o700
    # Its owner still reads it.
    assert call(spated, "owner", "read:/var/task/config.ini") == "password=hunter2\n"


# --- kept instance slots --------------------------------------------------------------------


def test_a_reused_slot_holds_nothing_of_its_previous_owner(spated, functions):
    assert spated.deploy("a", functions["atk_c_confine"], max=2, keep_alive=400, memory=128)[0] == 201
    uid_a = int(call(spated, "a", "uid"))
    # What A leaves in its /tmp and /dev/shm: a file and 50 MB.
    assert call(spated, "a", "write:/tmp/planted") == "ok"
    assert call(spated, "a", "keep:/dev/shm/leftover:50") == "ok"
    # Slow calls first (so that a second one waiting starts a second
    # instance), then one instance busy for 1.2 s while a second one starts
    # the helper and goes idle at once: that one's slot is kept first, while
    # the helper still has the other instance's cgroups to hide in.
    assert call(spated, "a", "sleep:300") == "slept"
    busy = threading.Thread(target=lambda: spated.invoke("a", b"sleep:1200"))
    busy.start()
    time.sleep(0.1)
    helper = int(call(spated, "a", "helper"))
    assert alive(helper)
    busy.join(30)
    # Wait until A's instances are gone (keep-alive), then delete A.
    assert wait_for(lambda: spated.describe("a")["instances"]["idle"] == 0
                    and spated.describe("a")["instances"]["busy"] == 0, timeout=15), spated.describe("a")
    assert spated.json("DELETE", "/v1/functions/a")[0] == 204
    # Nothing of A's is left alive: the helper died with its slot.
    assert wait_for(lambda: not alive(helper), timeout=10), \
        f"helper {helper} of A outlived it in {open(f'/proc/{helper}/cgroup').read()}"

    # B takes the kept slots (two at once, to take both).
    assert spated.deploy("b", functions["atk_c_confine"], max=2, memory=64)[0] == 201
    b_pids = []
    ts = [threading.Thread(target=lambda: b_pids.append(spated.invoke("b", b"pid"))) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    for dir_, pids in slot_procs(spated).items():
        uids = {uid_of(p) for p in pids} - {None}
        assert uid_a not in uids, (dir_, pids)
    # Nothing planted is visible, and A's 50 MB do not count against B's 64.
    assert call(spated, "b", "read:/tmp/planted").startswith("error: No such file")
    assert call(spated, "b", "read:/dev/shm/leftover").startswith("error: No such file")
    assert call(spated, "b", "mem:40") == "ok"
    # B's secret in its /tmp: A (deployed again, the same uid) cannot read it.
    assert call(spated, "b", "write:/tmp/secret") == "ok"
    assert spated.deploy("a", functions["atk_c_confine"])[0] == 201
    assert int(call(spated, "a", "uid")) == uid_a
    assert call(spated, "a", "read:/tmp/secret").startswith("error: No such file")


def test_a_kept_slot_is_roots_until_handed_over(spated, functions):
    assert spated.deploy("k", functions["atk_c_confine"], keep_alive=200)[0] == 201
    uid = int(call(spated, "k", "uid"))
    # Gone, not only stopping: its slot is handed back when its process has exited.
    assert wait_for(lambda: not any(n for state, n in spated.describe("k")["instances"].items()
                                    if state != "spare"), timeout=10)
    # The slot is kept (empty); none of its cgroups can be joined by k's user.
    # (The spare instance's slot, in use, is its user's, as any live one's; a
    # slot being handed to a new spare is its user's a moment before its
    # process joins, so an empty slot of k's user must soon hold a process.)
    def owner(dir_):
        try:
            return os.stat(os.path.join(dir_, "cgroup.procs")).st_uid
        except FileNotFoundError:  # freed since listed
            return 0

    def users_empty_slots():
        return [(dir_, owner(dir_)) for dir_, pids in slot_procs(spated).items()
                if not pids and owner(dir_) != 0]
    assert [dir_ for dir_, pids in slot_procs(spated).items() if not pids]
    assert wait_for(lambda: not users_empty_slots(), timeout=10), (users_empty_slots(), uid)
