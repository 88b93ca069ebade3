"""A function's and a trigger's configuration over time, through the CLI: a
redeploy keeps what it does not change, `spate config` makes a new version
without an upload, `spate rm` does not leave triggers behind, and a trigger
is changed only on purpose (`spate trigger set`). Issue 14, items 3 and 4."""

import json
import os

from conftest import wait_for


def cli_ok(d, *args):
    r = d.cli(*args)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout.decode()


def config(d, name):
    return d.describe(name)["config"]


def trigger(d, topic, function):
    status, doc = d.json("GET", f"/v1/triggers/{topic}/{function}")
    assert status == 200, doc
    return doc


def test_redeploy_keeps_what_it_does_not_change(spated, functions):
    so = str(functions["probe"])
    cli_ok(spated, "deploy", "probe", so, "--max", "3", "--timeout", "5000", "--memory", "64",
           "--env", "A=1", "--env", "B=2")
    # The case: only --env, and max, timeout and the old env stay.
    out = cli_ok(spated, "deploy", "probe", so, "--env", "FIXED=1")
    assert out.startswith("deployed probe version 2 ")
    cfg = config(spated, "probe")
    assert (cfg["max"], cfg["timeout_ms"], cfg["memory_mb"]) == (3, 5000, 64)
    assert cfg["env"] == {"A": "1", "B": "2", "FIXED": "1"}
    for k, v in (("A", b"1"), ("B", b"2"), ("FIXED", b"1")):
        assert spated.invoke("probe", b"env:" + k.encode()) == (200, v)
    # --env overrides one key in its place, --unset-env removes one, --max changes max only.
    cli_ok(spated, "deploy", "probe", so, "--env", "A=9", "--unset-env", "B", "--max", "4")
    cfg = config(spated, "probe")
    assert (cfg["max"], cfg["timeout_ms"]) == (4, 5000)
    assert list(cfg["env"].items()) == [("A", "9"), ("FIXED", "1")]
    assert spated.invoke("probe", b"env:B") == (200, b"(unset)")
    # --clear-env starts the environment afresh, wherever it stands.
    cli_ok(spated, "deploy", "probe", so, "--env", "ONLY=1", "--clear-env")
    assert config(spated, "probe")["env"] == {"ONLY": "1"}
    # Removing a variable that is not set is a mistake, and named; nothing is deployed.
    r = spated.cli("deploy", "probe", so, "--unset-env", "GRETING")
    assert r.returncode == 2 and b"'GRETING' is not set" in r.stderr, r.stderr
    assert spated.describe("probe")["version"] == 4
    # The old versions keep what they had.
    versions = spated.describe("probe")["versions"]
    assert versions[-1]["config"]["env"] == {"A": "1", "B": "2"}
    assert versions[-1]["config"]["max"] == 3


def test_a_cpu_limit_kept_by_redeploys_can_be_lifted(spated, functions):
    """A redeploy keeps --cpu, so --cpu 0 must take it away (it was refused:
    once set, a CPU quota stayed for good)."""
    so = str(functions["probe"])
    cli_ok(spated, "deploy", "probe", so, "--cpu", "500")
    cli_ok(spated, "deploy", "probe", so, "--env", "A=1")
    assert config(spated, "probe")["cpu_millis"] == 500
    assert "cpu 500 millicores" in cli_ok(spated, "status", "probe")
    out = cli_ok(spated, "config", "probe", "--cpu", "0")
    assert "version 3" in out and "cpu" not in out, out
    assert config(spated, "probe")["cpu_millis"] == 0
    assert spated.invoke("probe", b"env:A") == (200, b"1")
    r = spated.cli("config", "probe", "--cpu", "5")
    assert r.returncode == 2 and b"option '--cpu' must be 0 (no limit) or an integer from 10" \
        in r.stderr, r.stderr


def test_config_makes_a_version_with_the_same_artifact(make_spated, functions):
    d = make_spated()
    cli_ok(d, "deploy", "probe", str(functions["probe"]), "--max", "5", "--timeout", "7000",
           "--env", "K=v", "--env", "KEEP=yes")
    before = d.describe("probe")
    status, headers, old_pid = d.request("POST", "/v1/functions/probe/invoke", b"pid")
    assert status == 200 and headers["Spate-Version"] == "1"

    out = cli_ok(d, "config", "probe", "--max", "3", "--unset-env", "K")
    assert out.startswith(f"configured probe version 2 (same artifact, sha256 "
                          f"{before['sha256'][:12]})"), out
    doc = d.describe("probe")
    assert doc["version"] == 2 and doc["sha256"] == before["sha256"]
    assert doc["size"] == before["size"]
    assert (doc["config"]["max"], doc["config"]["timeout_ms"]) == (3, 7000)
    assert doc["config"]["env"] == {"KEEP": "yes"}
    assert [v["sha256"] for v in doc["versions"]] == [before["sha256"]] * 2
    assert doc["versions"][1]["config"]["env"] == {"K": "v", "KEEP": "yes"}
    # The new version serves; the old version's instance retires.
    status, headers, body = d.request("POST", "/v1/functions/probe/invoke", b"env:K")
    assert (status, body, headers["Spate-Version"]) == (200, b"(unset)", "2")
    assert wait_for(lambda: not os.path.exists(f"/proc/{int(old_pid)}"), timeout=10), \
        "the old version's instance still runs"

    # Nothing to change: no new version, and it says so.
    out = cli_ok(d, "config", "probe", "--max", "3")
    assert out.startswith("probe unchanged: version 2 "), out
    assert d.describe("probe")["version"] == 2
    # What config cannot do.
    r = d.cli("config", "probe", "--runtime", "exec")
    assert r.returncode == 2 and b"cannot change the runtime" in r.stderr
    r = d.cli("config", "probe")
    assert r.returncode == 2
    r = d.cli("config", "ghost", "--max", "2")
    assert r.returncode == 3 and b"'ghost' does not exist" in r.stderr
    r = d.cli("config", "probe", "--min", "9")
    assert r.returncode == 2 and b"min (9) is larger than max (3)" in r.stderr
    status, doc = d.json("PATCH", "/v1/functions/probe?max=2", b"an artifact")
    assert status == 400 and doc["code"] == "bad_request"
    status, doc = d.json("PATCH", "/v1/functions/probe?runtime=exec")
    assert status == 400 and "runtime" in doc["error"]
    status, doc = d.json("PATCH", "/v1/functions/probe?max=2")
    assert status == 200 and doc["changed"] is True and doc["version"] == 3

    # After a restart: the same version, artifact and configuration.
    assert d.stop() == 0
    d.start()
    doc = d.describe("probe")
    assert (doc["version"], doc["sha256"]) == (3, before["sha256"])
    assert (doc["config"]["max"], doc["config"]["timeout_ms"]) == (2, 7000)
    assert doc["config"]["env"] == {"KEEP": "yes"}
    assert d.invoke("probe", b"env:KEEP") == (200, b"yes")


def test_rm_refuses_while_triggers_exist_and_force_removes_them(spated, functions):
    cli_ok(spated, "deploy", "probe", str(functions["probe"]))
    cli_ok(spated, "trigger", "add", "orders", "probe")
    cli_ok(spated, "trigger", "add", "refunds", "probe", "--ordered")
    cli_ok(spated, "deploy", "other", str(functions["probe"]))
    cli_ok(spated, "trigger", "add", "orders", "other")

    r = spated.cli("rm", "probe")
    assert r.returncode == 4
    err = r.stderr.decode()
    assert "has triggers from 'orders', 'refunds'" in err and "--force" in err, err
    assert spated.describe("probe")["version"] == 1
    status, doc = spated.json("DELETE", "/v1/functions/probe")
    assert status == 409 and doc["code"] == "has_triggers"
    assert doc["triggers"] == [{"topic": "orders", "function": "probe"},
                               {"topic": "refunds", "function": "probe"}]

    out = cli_ok(spated, "rm", "probe", "--force")
    assert out.splitlines() == ["removed trigger orders -> probe",
                                "removed trigger refunds -> probe", "removed probe"], out
    assert spated.json("GET", "/v1/functions/probe")[0] == 404
    triggers = spated.json("GET", "/v1/triggers")[1]["triggers"]
    assert [(t["topic"], t["function"]) for t in triggers] == [("orders", "other")]
    # Nothing piles up for the function that is gone: only 'other' consumes.
    assert spated.cli("publish", "orders", "x").returncode == 0
    assert wait_for(lambda: spated.json("GET", "/v1/topics/orders")[1]["depth"] == 0)
    assert "trigger waits" not in spated.log()

    # --force on a function: the answer (here as JSON) says what went with it.
    r = spated.cli("--json", "rm", "--force", "other")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"deleted": "other",
                                    "triggers_removed": [{"topic": "orders", "function": "other"}]}
    assert spated.json("GET", "/v1/triggers")[1]["triggers"] == []
    # A function without triggers goes as before.
    cli_ok(spated, "deploy", "lone", str(functions["probe"]))
    assert cli_ok(spated, "rm", "lone") == "removed lone\n"


def test_trigger_add_refuses_an_existing_one_and_set_changes_only_what_is_given(
        make_spated, functions):
    d = make_spated()
    cli_ok(d, "deploy", "probe", str(functions["probe"]))
    cli_ok(d, "trigger", "add", "trades", "probe", "--ordered", "--dlq", "grave",
           "--max-attempts", "5", "--deadline", "60000", "--max-concurrency", "4")
    before = trigger(d, "trades", "probe")

    # add again, even without flags: refused, and nothing changed.
    r = d.cli("trigger", "add", "trades", "probe")
    assert r.returncode == 4
    err = r.stderr.decode()
    assert "exists" in err and "trigger set" in err, err
    assert trigger(d, "trades", "probe") == before
    status, doc = d.json("PUT", "/v1/triggers/trades/probe?max_attempts=1")
    assert status == 409 and doc["code"] == "trigger_exists"

    # set: what is given changes, the rest stays.
    out = cli_ok(d, "trigger", "set", "trades", "probe", "--max-attempts", "2")
    assert out.startswith("trigger trades -> probe changed: up to 2 attempts, dead letters to "
                          "grave, ordered by key"), out
    t = trigger(d, "trades", "probe")
    assert (t["max_attempts"], t["dlq"], t["ordered"], t["deadline_ms"],
            t["max_concurrency"]) == (2, "grave", True, 60000, 4)
    cli_ok(d, "trigger", "set", "trades", "probe", "--no-ordered", "--deadline", "0")
    t = trigger(d, "trades", "probe")
    assert (t["max_attempts"], t["dlq"], t["ordered"], t["deadline_ms"],
            t["max_concurrency"]) == (2, "grave", False, 0, 4)
    status, doc = d.json("PUT", "/v1/triggers/trades/probe?update=true&ordered=true")
    assert status == 200 and doc["ordered"] is True and doc["dlq"] == "grave"

    # set on a trigger that does not exist, or with nothing to change.
    r = d.cli("trigger", "set", "nothing", "probe", "--max-attempts", "2")
    assert r.returncode == 3 and b"no trigger from 'nothing' to 'probe'" in r.stderr
    assert d.json("GET", "/v1/triggers/nothing/probe")[0] == 404
    assert d.cli("trigger", "set", "trades", "probe").returncode == 2

    # After a restart the trigger is as it was set.
    assert d.stop() == 0
    d.start()
    t = trigger(d, "trades", "probe")
    assert (t["max_attempts"], t["dlq"], t["ordered"], t["deadline_ms"],
            t["max_concurrency"]) == (2, "grave", True, 0, 4)


def test_changes_wait_for_a_deploy_in_flight(spated, functions, tmp_path):
    """While a version loads (a slow spate_preload), another deploy or
    configuration change is refused, and the one in flight completes."""
    import threading
    cli_ok(spated, "deploy", "probe", str(functions["probe"]))
    mark = tmp_path / "preloading"
    result = {}
    t = threading.Thread(target=lambda: result.update(r=spated.cli(
        "config", "probe", "--env", "PRELOAD_SLEEP_MS=3000", "--env", f"PRELOAD_MARK={mark}")))
    t.start()
    try:
        assert wait_for(mark.exists, timeout=30)
        status, doc = spated.deploy("probe", functions["probe"], max=2)
        assert status == 409 and doc["code"] == "deploy_in_progress", doc
        r = spated.cli("config", "probe", "--max", "2")
        assert r.returncode == 4 and b"in progress" in r.stderr, r.stderr
        r = spated.cli("rm", "probe")
        assert r.returncode == 4 and b"in progress" in r.stderr, r.stderr
    finally:
        t.join()
    assert result["r"].returncode == 0, result["r"].stderr
    doc = spated.describe("probe")
    assert doc["version"] == 2 and doc["config"]["max"] == 100
    assert doc["config"]["env"]["PRELOAD_SLEEP_MS"] == "3000"
