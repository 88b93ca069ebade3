"""Schedules (spate schedule, /v1/schedules): runs published into a topic or
run by a function through a trigger, missed runs caught up after a restart,
bad expressions refused with the field named, the CLI round trip and the
admin scope. Waits are bounded generously; nothing asserts how fast a run
comes, only that runs come, and never more than their schedule allows."""

import json
import time

import pytest

from conftest import Spated, deploy_recorder, wait_for

ADMIN = "admin-token-0123456789abcdef"
INVOKE = "invoke-token-0123456789abcdef"


def put(d, name, **body):
    return d.json("PUT", f"/v1/schedules/{name}", json.dumps(body).encode())


def status(d, name):
    code, doc = d.json("GET", f"/v1/schedules/{name}")
    assert code == 200, doc
    return doc


def messages(d, topic):
    code, doc = d.json("GET", f"/v1/topics/{topic}/messages?limit=1000")
    assert code == 200, doc
    return [json.loads(m["payload"]) for m in doc["messages"]]


def published(d, topic):
    code, doc = d.json("GET", f"/v1/topics/{topic}")
    return doc["published"] if code == 200 else 0


def test_every_second_publishes_into_a_topic(spated):
    code, doc = put(spated, "tick", expression="@every 1s", topic="ticks")
    assert code == 201, doc
    assert doc["next_fire"] and doc["last_fire"] is None and doc["function"] is None
    start = time.monotonic()
    assert wait_for(lambda: published(spated, "ticks") >= 3, timeout=30)
    elapsed = time.monotonic() - start
    runs = messages(spated, "ticks")
    # Never more runs than seconds went by (no burst, no double fire).
    assert 3 <= len(runs) <= elapsed + 2, (len(runs), elapsed)
    assert all(r["schedule"] == "tick" for r in runs)
    times = [r["time"] for r in runs]
    assert times == sorted(times) and len(set(times)) == len(times), times
    st = status(spated, "tick")
    assert st["fired"] >= 3 and st["failed"] == 0 and st["last_fire"] is not None
    assert st["caught_up"] == 0 and st["skipped"] == 0
    assert st["next_fire"] > st["last_fire"]
    # Removed: no more runs.
    code, _, _ = spated.request("DELETE", "/v1/schedules/tick")
    assert code == 204
    time.sleep(0.5)
    n = published(spated, "ticks")
    time.sleep(2.5)
    assert published(spated, "ticks") == n
    assert spated.json("GET", "/v1/schedules/tick")[0] == 404


def test_payload_and_cron_next_fire(spated):
    code, doc = put(spated, "report", expression="30 8 * * mon-fri", topic="reports",
                    payload='{"kind":"daily"}', tz="+02:00")
    assert code == 201, doc
    assert doc["payload"] == '{"kind":"daily"}' and doc["tz"] == "+02:00"
    # 08:30 at +02:00 is 06:30 UTC, on a weekday.
    assert doc["next_fire"].endswith("T06:30:00Z"), doc
    # A second PUT replaces it (200).
    code, doc = put(spated, "report", expression="0 0 1 1 *", topic="reports")
    assert code == 200 and doc["next_fire"].endswith("-01-01T00:00:00Z"), doc


def test_named_zone_follows_its_daylight_saving(spated):
    """09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer; the
    next run is computed with the offset of its own day, not today's."""
    import datetime
    code, doc = put(spated, "paris", expression="0 9 * * *", topic="t", tz="Europe/Paris")
    assert code == 201, doc
    assert doc["tz"] == "Europe/Paris"
    nxt = datetime.datetime.fromisoformat(doc["next_fire"].replace("Z", "+00:00"))
    # Paris is on summer time from the last Sunday of March to the last of October.
    def last_sunday(year, month):
        d = datetime.date(year, month, 31)
        return d - datetime.timedelta(days=(d.weekday() + 1) % 7)
    summer = last_sunday(nxt.year, 3) <= nxt.date() < last_sunday(nxt.year, 10)
    assert (nxt.hour, nxt.minute) == ((7, 0) if summer else (8, 0)), doc
    r = spated.cli("schedule", "add", "ny", "0 9 * * *", "--to", "t", "--tz", "America/New_York")
    assert r.returncode == 0, r.stderr
    r = spated.cli("schedule", "add", "bad", "0 9 * * *", "--to", "t", "--tz", "Europe/Nowhere")
    assert r.returncode != 0 and b"unknown zone 'Europe/Nowhere'" in r.stderr, r


def test_function_schedule_runs_through_a_trigger(spated, functions, tmp_path):
    rec = deploy_recorder(spated, functions, tmp_path)
    r = spated.cli("schedule", "add", "job", "@every 1s", "--function", "rec", "--payload", "tick")
    assert r.returncode == 0, r.stderr
    assert b"added schedule job" in r.stdout
    code, doc = spated.json("GET", "/v1/triggers/schedule.job/rec")
    assert code == 200, doc
    assert doc["dlq"] == "schedule.job.dlq"

    def runs():
        if not rec.exists():
            return 0
        return sum(1 for line in rec.read_text().splitlines() if line.startswith("S tick "))

    assert wait_for(lambda: runs() >= 2, timeout=30)
    assert status(spated, "job")["function"] == "rec"
    # Removing the schedule takes its trigger away.
    r = spated.cli("schedule", "rm", "job")
    assert r.returncode == 0, r.stderr
    assert wait_for(lambda: spated.json("GET", "/v1/triggers/schedule.job/rec")[0] == 404,
                    timeout=10)
    # So does replacing it by one that publishes to a topic.
    assert put(spated, "job2", expression="@daily", function="rec")[0] == 201
    assert spated.json("GET", "/v1/triggers/schedule.job2/rec")[0] == 200
    assert put(spated, "job2", expression="@daily", topic="elsewhere")[0] == 200
    assert wait_for(lambda: spated.json("GET", "/v1/triggers/schedule.job2/rec")[0] == 404,
                    timeout=10)
    # A function that does not exist: 404, nothing made.
    code, doc = put(spated, "ghost", expression="@every 1s", function="nope")
    assert code == 404 and "nope" in doc["error"]
    assert spated.json("GET", "/v1/schedules/ghost")[0] == 404


def test_missed_runs_are_caught_up_after_a_restart(tmp_path):
    d = Spated(tmp_path).start()
    try:
        code, doc = put(d, "beat", expression="@every 1s", topic="beats")
        assert code == 201, doc
        assert wait_for(lambda: status(d, "beat")["last_fire"] is not None, timeout=30)
        assert d.stop() == 0
        time.sleep(3.5)  # at least three runs fall due while it is down
        d.start()
        st = status(d, "beat")
        # One caught up (the default --catch-up 1), the rest skipped and counted.
        assert st["caught_up"] == 1 and st["skipped"] >= 2, st
        assert "1 caught up" in d.log()
        late = [m for m in messages(d, "beats") if m.get("caught_up")]
        assert len(late) == 1, late
        assert d.stop() == 0

        # --catch-up 3 publishes the three latest; --catch-up 0 skips them all.
        time.sleep(4.5)
        d.args = ["--catch-up", "3"]
        d.start()
        st = status(d, "beat")
        assert st["caught_up"] == 3 and st["skipped"] >= 1, st
        assert d.stop() == 0
        time.sleep(2.5)
        d.args = ["--catch-up", "0"]
        d.start()
        st = status(d, "beat")
        assert st["caught_up"] == 0 and st["skipped"] >= 2, st
    finally:
        assert d.stop() == 0, d.log()


@pytest.mark.parametrize("expr,field", [
    ("60 * * * *", "minute: 60 is out of range 0-59"),
    ("* 25 * * *", "hour: 25 is out of range"),
    ("* * 32 * *", "day-of-month: 32 is out of range"),
    ("* * * 13 *", "month: 13 is out of range"),
    ("* * * xyz *", "month: 'xyz' is not a number or a name"),
    ("* * * * 8", "day-of-week: 8 is out of range"),
    ("*/0 * * * *", "minute: step 0"),
    ("5-1 * * * *", "minute: range 5-1 goes backwards"),
    ("* * * *", "five fields"),
    ("@every 500ms", "shorter than the minimum, 1s"),
    ("@every soon", "not a duration"),
    ("@sometimes", "unknown shorthand"),
    ("0 0 30 2 *", "never fires"),
])
def test_bad_expressions_are_refused(spated, expr, field):
    code, doc = put(spated, "bad", expression=expr, topic="t")
    assert code == 400 and field in doc["error"], doc
    assert spated.json("GET", "/v1/schedules/bad")[0] == 404


def test_bad_requests_are_refused(spated):
    assert put(spated, "x", expression="* * * * *")[0] == 400  # no target
    assert put(spated, "x", expression="* * * * *", topic="a", function="b")[0] == 400
    code, doc = put(spated, "x", expression="* * * * *", topic="a", tz="Europe/Pariss")
    assert code == 400 and "unknown zone 'Europe/Pariss'" in doc["error"], doc
    code, doc = put(spated, "x", expression="* * * * *", topic="a", tz="+25:00")
    assert code == 400 and "not a fixed offset" in doc["error"], doc
    code, doc = put(spated, "x", expression="* * * * *", topic="a b")
    assert code == 400 and "topic" in doc["error"]
    code, doc = put(spated, "x", expression="* * * * *", topic="a", payload="p" * 40000)
    assert code == 400 and "payload" in doc["error"]
    code, doc = spated.json("PUT", "/v1/schedules/x", b"not json")
    assert code == 400
    code, doc = put(spated, "a.b", expression="* * * * *", topic="a")
    assert code == 400 and doc["code"] == "bad_name"
    r = spated.cli("schedule", "add", "x", "61 * * * *", "--to", "t")
    assert r.returncode == 2 and b"minute: 61 is out of range" in r.stderr
    r = spated.cli("schedule", "add", "x", "* * * * *")
    assert r.returncode == 2 and b"--to" in r.stderr


def test_cli_round_trip(spated):
    r = spated.cli("schedule", "add", "nightly", "0 3 * * *", "--to", "jobs")
    assert r.returncode == 0 and b"next run" in r.stdout, r.stderr
    r = spated.cli("schedule", "ls")
    assert r.returncode == 0 and b"nightly" in r.stdout and b"topic jobs" in r.stdout
    r = spated.cli("--json", "schedule", "ls")
    [s] = json.loads(r.stdout)["schedules"]
    assert s["name"] == "nightly" and s["next_fire"].endswith("T03:00:00Z")
    r = spated.cli("schedule", "status", "nightly")
    assert r.returncode == 0 and b"0 caught up, 0 skipped" in r.stdout
    r = spated.cli("schedule", "rm", "nightly")
    assert r.returncode == 0 and b"removed schedule nightly" in r.stdout
    r = spated.cli("schedule", "rm", "nightly")
    assert r.returncode == 3
    assert b"nightly" not in spated.cli("schedule", "ls").stdout


def test_changing_schedules_needs_the_admin_scope(make_spated, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"admin {ADMIN}\ninvoke {INVOKE}\n")
    d = make_spated("--token-file", str(tokens))
    body = json.dumps({"expression": "@daily", "topic": "t", "payload": "private"}).encode()
    code, _, _ = d.request("PUT", "/v1/schedules/s", body, {"Authorization": f"Bearer {INVOKE}"})
    assert code == 403
    code, _, _ = d.request("PUT", "/v1/schedules/s", body, {"Authorization": f"Bearer {ADMIN}"})
    assert code == 201
    code, _, data = d.request("GET", "/v1/schedules", None, {"Authorization": f"Bearer {INVOKE}"})
    assert code == 200
    # The payload is for admin eyes, as messages' payloads are.
    [s] = json.loads(data)["schedules"]
    assert s["payload"] is None and s["payload_hidden"] is True
    code, _, data = d.request("GET", "/v1/schedules/s", None, {"Authorization": f"Bearer {ADMIN}"})
    assert code == 200 and json.loads(data)["payload"] == "private"
    code, _, _ = d.request("DELETE", "/v1/schedules/s", None,
                           {"Authorization": f"Bearer {INVOKE}"})
    assert code == 403
