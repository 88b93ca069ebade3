"""The trading day of examples/trade-report, short (about 20 s of trading per
mode): every trade reaches the facility exactly once, the serverless mode
reports nothing late, and the single consumer's backlog passes the deadline."""

import json
import os
import pathlib
import subprocess

from conftest import BUILD, ROOT


def test_trading_day(tmp_path):
    summary = tmp_path / "summary.json"
    out = tmp_path / "out"
    r = subprocess.run(["/usr/bin/python3", str(ROOT / "examples/trade-report/demo.py"),
                        "--seconds", "20", "--trades", "4000", "--build", str(BUILD),
                        "--out", str(out), "--summary", str(summary)],
                       capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(summary.read_text())
    deadline = doc["deadline_s"]
    results = {x["mode"]: x for x in doc["results"]}
    for mode, x in results.items():
        # Exactly once: every trade reported, none twice.
        assert x["reported"] == x["trades"] == 4000, (mode, x)
        assert x["duplicates"] == 0, (mode, x)
    serverless, classic = results["serverless"], results["classic"]
    assert serverless["late"] == 0 and serverless["max_s"] <= deadline
    assert classic["max_s"] > deadline and classic["late"] > 0
    assert classic["peak_instances"] == 1 and serverless["peak_instances"] > 1
    for name in ("trading-day.svg", "trading-day.png"):
        assert (out / name).stat().st_size > 10000
    assert "serverless" in r.stdout and "classic" in r.stdout
