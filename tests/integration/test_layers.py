"""The include check of scripts/check-layers: the tree passes it, and an
include that points the wrong way (planted in a copy of src/) fails it with
the file, the line and why."""

import shutil
import subprocess

from conftest import ROOT

CHECK = ROOT / "scripts" / "check-layers"


def run(src):
    return subprocess.run([str(CHECK), str(src)], capture_output=True, text=True, timeout=60)


def test_the_tree_has_no_include_pointing_up():
    r = run(ROOT / "src")
    assert r.returncode == 0, r.stdout + r.stderr


def plant(tmp_path, rel, line):
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src", src)
    path = src / rel
    text = path.read_text()
    path.write_text(line + "\n" + text)
    return run(src)


def test_an_include_up_from_a_lower_layer_fails(tmp_path):
    r = plant(tmp_path, "store/store.c", '#include "sched/pool.h"')
    assert r.returncode == 1
    assert 'src/store/store.c:1: "sched/pool.h" points the wrong way' in r.stdout


def test_the_scheduler_reaching_past_the_store_interfaces_fails(tmp_path):
    r = plant(tmp_path, "sched/triggers.c", '#include "store/store.h"')
    assert r.returncode == 1
    assert "only the interfaces store/queue.h and store/registry.h" in r.stdout


def test_the_cluster_including_the_api_fails(tmp_path):
    r = plant(tmp_path, "cluster/cluster.c", '#include "api/api.h"')
    assert r.returncode == 1
    assert "api/ is not below cluster/" in r.stdout


def test_a_library_outside_its_folder_fails(tmp_path):
    for rel, header in [("sched/pool.h", "sqlite3.h"), ("api/api.c", "nats/nats.h"),
                        ("cli/main.c", "uv.h")]:
        r = plant(tmp_path, rel, "#include <%s>" % header)
        assert r.returncode == 1, rel
        assert "<%s> belongs to" % header in r.stdout
        shutil.rmtree(tmp_path / "src")
