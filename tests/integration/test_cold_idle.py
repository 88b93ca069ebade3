"""Cold starts from idle: spated holds a cgroup hierarchy mounted with
favordynmods while it runs (src/runtime/isolate/favor.c), so that an
instance's first cgroup migration after a pause does not wait an RCU grace
period. These tests check the mechanism, never its speed (bench/invoke
measures that)."""

import os
import signal
import stat
import subprocess
import time

import pytest

from conftest import Spated, wait_for


def favor_mounts():
    """{mount point: super options} of the cgroup mounts under /run/spate."""
    found = {}
    for line in open("/proc/self/mountinfo"):
        fields = line.split()
        point = fields[4]
        rest = line.split(" - ", 1)[1].split()
        if point.startswith("/run/spate/") and rest[0] == "cgroup":
            found[point] = rest[2]
    return found


def point_of(d):
    return f"/run/spate/favor.{d.proc.pid}"


def start(tmp_path, name="a"):
    if os.geteuid() != 0:
        pytest.skip("needs root (cgroups)")
    (tmp_path / name).mkdir()
    d = Spated(tmp_path / name).start()
    if "cannot mount a cgroup hierarchy with favordynmods" in d.log():
        d.stop()
        pytest.skip("this kernel refuses favordynmods (before Linux 6.0)")
    return d


def test_mounted_while_running_and_gone_after(tmp_path, functions):
    d = start(tmp_path)
    try:
        mounts = favor_mounts()
        point = point_of(d)
        assert point in mounts, (mounts, d.log())
        opts = mounts[point].split(",")
        assert "favordynmods" in opts and "name=spate" in opts, opts
        # No controller: nothing is limited or accounted through it.
        assert not {"memory", "pids", "cpu"} & set(opts), opts
        # Only root reaches it: functions' users cannot even look.
        base = os.stat("/run/spate")
        assert base.st_uid == 0 and stat.S_IMODE(base.st_mode) & 0o077 == 0
        assert "favordynmods, held at " + point in d.log()

        # Cold starts after pauses still join their cgroups and run.
        status, doc = d.deploy("hello", functions["hello"], keep_alive=0)
        assert status in (200, 201), doc
        for i in range(3):
            time.sleep(0.3)
            status, out = d.invoke("hello", b"x%d" % i)
            assert status == 200, out
        assert d.describe("hello")["stats"]["cold_starts"] >= 3
    finally:
        assert d.stop() == 0
    assert point not in favor_mounts()
    assert not os.path.exists(point)


def test_a_killed_spated_mount_is_removed_by_the_next(tmp_path):
    first = start(tmp_path, "first")
    point = point_of(first)
    assert point in favor_mounts(), first.log()
    first.stop(signal.SIGKILL)
    assert point in favor_mounts()  # nobody cleaned up
    second = start(tmp_path, "second")
    try:
        assert point not in favor_mounts()
        assert not os.path.exists(point)
        assert point_of(second) in favor_mounts(), second.log()
    finally:
        second.stop()


def test_two_spated_hold_it_each(tmp_path):
    a = start(tmp_path, "a")
    b = start(tmp_path, "b")
    try:
        assert {point_of(a), point_of(b)} <= set(favor_mounts())
        a.stop()
        # The other still holds it.
        assert point_of(b) in favor_mounts()
        assert wait_for(lambda: point_of(a) not in favor_mounts(), timeout=5)
    finally:
        a.stop()
        b.stop()


def test_a_hierarchy_of_that_name_without_the_option_is_said_and_let_go(tmp_path):
    """The kernel reuses a named hierarchy mounted before, ignoring new
    options: spated must not believe it holds favordynmods then."""
    if os.geteuid() != 0:
        pytest.skip("needs root (cgroups)")
    if any(p.startswith("/run/spate/favor.") for p in favor_mounts()):
        pytest.skip("another spated holds the hierarchy now")
    other = tmp_path / "other"
    other.mkdir()
    if subprocess.run(["mount", "-t", "cgroup", "-o", "none,name=spate", "none", str(other)]
                      ).returncode != 0:
        pytest.skip("cannot mount a named cgroup hierarchy")
    try:
        for line in open("/proc/self/mountinfo"):
            if line.split()[4] == str(other) and "favordynmods" in line:
                pytest.skip("the hierarchy lives on with favordynmods (a namespace holds it)")
        (tmp_path / "d").mkdir()
        d = Spated(tmp_path / "d").start()
        try:
            assert "was mounted before without favordynmods" in d.log(), d.log()
            assert point_of(d) not in favor_mounts()
            assert not os.path.exists(point_of(d))
        finally:
            d.stop()
    finally:
        subprocess.run(["umount", str(other)])


def test_a_spated_that_cannot_start_leaves_no_mount(tmp_path):
    # One that exits on an error after mounting (here: its port is taken)
    # left the mount until another spated started on the host.
    a = start(tmp_path, "a")
    try:
        (tmp_path / "b").mkdir()
        b = Spated(tmp_path / "b")
        with pytest.raises(RuntimeError):
            b.start(listen=f"127.0.0.1:{a.port}")
        assert b.proc.wait(10) != 0
        assert "favordynmods, held at " + point_of(b) in b.log(), b.log()
        assert point_of(b) not in favor_mounts(), b.log()
        assert not os.path.exists(point_of(b))
    finally:
        a.stop()
