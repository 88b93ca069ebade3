"""Observability: /metrics checked by promtool and scraped by a real
Prometheus, spated's own log as text and JSON, functions' output tagged with
request ids in the ring and the size-capped file, and the dashboard loaded in
headless Chromium while a function is under load."""

import json
import os
import re
import select
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest

from cdp import Browser
from conftest import BUILD, wait_for


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(d, headers=None):
    status, hdrs, body = d.request("GET", "/metrics", headers=headers)
    assert status == 200, body
    return hdrs, body.decode()


def sample(text, name, **labels):
    """The value of the series of name with exactly these labels, or None."""
    for line in text.splitlines():
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if have == {k: str(v) for k, v in labels.items()}:
            return float(m.group(3))
    return None


@pytest.fixture
def busy_node(spated, functions):
    """A node with a function that ran, failed, and was fed by a topic."""
    d = spated
    assert d.deploy("probe", functions["probe"], timeout=5000)[0] == 201
    for _ in range(5):
        assert d.invoke("probe", b"echo")[0] == 200
    assert d.invoke("probe", b"fail")[0] == 502
    assert d.cli("trigger", "add", "orders", "probe", "--deadline", "60000").returncode == 0
    r = d.cli("publish", "orders", "--lines", input=b"a\nb\nc\n")
    assert r.returncode == 0, r.stderr
    deadline = time.time() + 10
    while time.time() < deadline:
        if sample(scrape(d)[1], "spate_trigger_acknowledged_total", topic="orders",
                  function="probe") == 3:
            break
        time.sleep(0.05)
    return d


def test_metrics_are_valid_and_count_what_happened(busy_node):
    d = busy_node
    hdrs, text = scrape(d)
    assert hdrs["Content-Type"].startswith("text/plain; version=0.0.4")
    # promtool (from Debian's prometheus package) lints the exposition.
    check = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr

    fn = {"function": "probe"}
    assert sample(text, "spate_invocations_total", outcome="ok", **fn) == 8  # 5 + 3 from the topic
    assert sample(text, "spate_invocations_total", outcome="error", **fn) == 1
    assert sample(text, "spate_invocation_duration_seconds_count", **fn) == 9
    assert sample(text, 'spate_invocation_duration_seconds_bucket', le="+Inf", **fn) == 9
    assert sample(text, "spate_invocation_queue_wait_seconds_count", **fn) == 9
    assert sample(text, "spate_cold_starts_total", **fn) >= 1
    assert sample(text, "spate_cold_start_duration_seconds_count", **fn) >= 1
    live = sum(sample(text, "spate_instances", state=s, **fn)
               for s in ("starting", "idle", "busy", "stopping"))
    assert live >= 1
    assert sample(text, "spate_topic_messages_published_total", topic="orders") == 3
    assert sample(text, "spate_topic_depth", topic="orders") == 0
    assert sample(text, "spate_topic_dead_lettered_total", topic="orders") == 0
    assert sample(text, "spate_event_end_to_end_seconds_count", topic="orders",
                  function="probe") == 3
    assert sample(text, "spate_autoscaler_deadline_seconds", **fn) == 60
    assert sample(text, "spate_autoscaler_deadline_at_risk", **fn) == 0
    assert sample(text, "spate_autoscaler_desired_instances", **fn) is not None
    assert sample(text, "process_resident_memory_bytes") > 1e6
    assert sample(text, "process_open_fds") > 3
    assert sample(text, "process_cpu_seconds_total") is not None
    # Buckets are cumulative.
    counts = [float(m) for m in re.findall(
        r'spate_invocation_duration_seconds_bucket\{function="probe",le="[^"]+"\} (\S+)', text)]
    assert counts == sorted(counts) and counts[-1] == 9


def test_backlog_and_dead_letters_show(spated, functions):
    d = spated
    assert d.deploy("probe", functions["probe"])[0] == 201
    assert d.cli("trigger", "add", "jobs", "probe", "--max-attempts", "1").returncode == 0
    assert d.cli("publish", "jobs", "fail").returncode == 0
    deadline = time.time() + 10
    while time.time() < deadline:
        text = scrape(d)[1]
        if sample(text, "spate_topic_dead_lettered_total", topic="jobs") == 1:
            break
        time.sleep(0.05)
    assert sample(text, "spate_topic_dead_lettered_total", topic="jobs") == 1
    assert sample(text, "spate_trigger_dead_lettered_total", topic="jobs", function="probe") == 1
    assert sample(text, "spate_topic_depth", topic="jobs.dlq") == 1


def test_metrics_need_a_token_when_tokens_are_on(make_spated, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("admin adm1n-token-0123456789\npublish pub-token-0123456789\n")
    d = make_spated("--token-file", str(tokens))
    status, _, _ = d.request("GET", "/metrics")
    assert status == 401
    hdrs, text = scrape(d, {"Authorization": "Bearer pub-token-0123456789"})
    assert "spate_build_info" in text
    # The dashboard's files hold no data: no token needed.
    assert d.request("GET", "/ui/")[0] == 200


def test_prometheus_scrapes_spated(spated, functions, tmp_path):
    d = spated
    assert d.deploy("hello", functions["hello"])[0] == 201
    for _ in range(3):
        assert d.invoke("hello", b"x")[0] == 200
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: spate
    static_configs:
      - targets: ['127.0.0.1:{d.port}']
""")
    log = open(tmp_path / "prometheus.log", "wb")
    prom = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        query = urllib.parse.quote('spate_invocations_total{function="hello",outcome="ok"}')
        url = f"http://127.0.0.1:{port}/api/v1/query?query={query}"
        result, deadline = None, time.time() + 60
        while time.time() < deadline:
            assert prom.poll() is None, (tmp_path / "prometheus.log").read_text()
            try:
                doc = json.load(urllib.request.urlopen(url, timeout=5))
                if doc["status"] == "success" and doc["data"]["result"]:
                    result = doc["data"]["result"]
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert result, (tmp_path / "prometheus.log").read_text()[-2000:]
        assert result[0]["metric"]["job"] == "spate"
        assert float(result[0]["value"][1]) == 3
        # Its own view of the target: up.
        up = json.load(urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/v1/query?query=up", timeout=5))
        assert up["data"]["result"][0]["value"][1] == "1"
    finally:
        prom.terminate()
        prom.wait(30)


def test_log_lines_as_json(make_spated, functions):
    d = make_spated("--log-format", "json")
    assert d.deploy("hello", functions["hello"])[0] == 201
    assert d.deploy("bad", b"not an elf")[0] == 400
    d.stop()
    lines = [json.loads(line) for line in d.log().splitlines() if line.strip()]
    assert lines and all({"time", "level", "msg"} <= set(x) for x in lines)
    deployed = [x for x in lines if x["msg"] == "deployed"]
    assert deployed and deployed[0]["fn"] == "hello" and deployed[0]["level"] == "info"
    assert any(x["level"] == "warn" and x.get("fn") == "bad" for x in lines), lines
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", lines[0]["time"])


def test_log_lines_as_text(spated, functions):
    assert spated.deploy("hello", functions["hello"])[0] == 201
    assert re.search(r"^\S+Z info  spated: deployed fn=hello version=1 ", spated.log(), re.M)


def test_bad_log_format_is_refused(tmp_path):
    r = subprocess.run([str(BUILD / "spated"), "--data", str(tmp_path / "d"), "--log-format",
                        "xml"], capture_output=True, timeout=10)
    assert r.returncode != 0 and b"option '--log-format': 'xml' is not one of text, json" in r.stderr


def test_output_is_tagged_with_request_ids(spated, functions):
    d = spated
    assert d.deploy("probe", functions["probe"])[0] == 201
    ids = []
    for _ in range(3):
        status, hdrs, body = d.request("POST", "/v1/functions/probe/invoke", b"print:2")
        assert status == 200
        assert hdrs["Spate-Request-Id"] == body.decode()
        ids.append(body.decode())
    status, doc = d.json("GET", "/v1/functions/probe/logs?limit=100")
    assert status == 200
    lines = doc["lines"]
    assert len(lines) == 9
    for line in lines:
        # Each line carries the request it was written in, stderr's too.
        assert line["request_id"] in line["text"], line
        assert line["instance"] >= 1
    assert [x["request_id"] for x in lines] == [i for i in ids for _ in range(3)]
    # The CLI shows them.
    r = d.cli("logs", "probe")
    assert r.returncode == 0
    assert f"req {ids[0]} stderr: stderr of {ids[0]}" in r.stdout.decode()
    # And so does the file.
    text = (d.data / "logs" / "probe.log").read_text()
    assert re.search(rf"Z seq=\d+ version=1 instance=\d+ stream=stdout req={ids[2]} line 1 of {ids[2]}",
                     text)


def test_logs_long_poll_and_follow(spated, functions):
    d = spated
    assert d.deploy("probe", functions["probe"])[0] == 201
    assert d.invoke("probe", b"print:1")[0] == 200
    last = d.json("GET", "/v1/functions/probe/logs")[1]["lines"][-1]["seq"]
    # Nothing new: the answer waits, then comes back empty.
    t = time.time()
    status, doc = d.json("GET", f"/v1/functions/probe/logs?after={last}&wait=300")
    assert status == 200 and doc["lines"] == [] and time.time() - t >= 0.25
    # New lines end the wait.
    got = {}

    def poll():
        got["doc"] = d.json("GET", f"/v1/functions/probe/logs?after={last}&wait=20000")[1]
        got["at"] = time.time()

    th = threading.Thread(target=poll)
    th.start()
    time.sleep(0.3)
    sent = time.time()
    status, hdrs, body = d.request("POST", "/v1/functions/probe/invoke", b"print:2")
    th.join(30)
    lines = got["doc"]["lines"]
    assert lines and got["at"] - sent < 15  # woken by the lines, not by the 20 s wait
    # The rest of that invocation's lines (they may arrive in more than one read).
    assert wait_for(lambda: lines.extend(d.json(
        "GET", f"/v1/functions/probe/logs?after={lines[-1]['seq']}")[1]["lines"]) or len(lines) >= 3)
    assert [x["request_id"] for x in lines] == [body.decode()] * 3
    status, doc = d.json("GET", "/v1/functions/probe/logs?wait=999999")
    assert status == 400 and "wait" in doc["error"]
    # spate logs --follow prints lines as they come: from the end of the log
    # when its first request is answered, which on a loaded machine may come
    # after an invocation made half a second after its start (its lines are
    # then before the end, not shown: invoked again). Read without blocking:
    # a readline with nothing to read hung make sanitize for 27 minutes.
    follow = subprocess.Popen([str(BUILD / "spate"), "logs", "probe", "--follow"],
                              env=dict(os.environ, SPATE_URL=d.url), stdout=subprocess.PIPE)
    try:
        time.sleep(0.5)
        deadline, seen, rids = time.time() + 30, b"", []
        while time.time() < deadline and not any(b"stderr of " + r in seen for r in rids):
            if not rids or time.time() > invoked + 3:
                status, _, body = d.request("POST", "/v1/functions/probe/invoke", b"print:1")
                assert status == 200, body
                rids.append(body)
                invoked = time.time()
            if select.select([follow.stdout], [], [], 0.2)[0]:
                chunk = os.read(follow.stdout.fileno(), 65536)
                assert chunk, "spate logs --follow ended"
                seen += chunk
        assert any(b"stderr of " + r in seen for r in rids), (rids, seen[-2000:])
    finally:
        follow.kill()
        follow.wait()


def test_output_file_is_size_capped(make_spated, functions):
    d = make_spated("--function-log-max", "65536")
    assert d.deploy("probe", functions["probe"])[0] == 201
    for _ in range(4):
        assert d.invoke("probe", b"print:500")[0] == 200  # ~50 KB each
    logs = d.data / "logs"
    deadline = time.time() + 20
    while time.time() < deadline and not (logs / "probe.log.1").exists():
        time.sleep(0.1)
    assert (logs / "probe.log.1").exists()
    assert (logs / "probe.log").stat().st_size <= 65536
    assert (logs / "probe.log.1").stat().st_size <= 65536
    assert oct((logs / "probe.log").stat().st_mode & 0o777) == "0o600"


def test_ui_routes(spated):
    d = spated
    status, hdrs, _ = d.request("GET", "/ui")
    assert status == 301 and hdrs["Location"] == "/ui/"
    status, hdrs, body = d.request("GET", "/ui/")
    assert status == 200 and hdrs["Content-Type"].startswith("text/html")
    assert b'<script src="app.js">' in body
    status, hdrs, body = d.request("GET", "/ui/app.js")
    assert status == 200 and hdrs["Content-Type"].startswith("text/javascript")
    assert b"/metrics" in body
    assert d.request("GET", "/ui/style.css")[1]["Content-Type"].startswith("text/css")
    status, _, body = d.request("GET", "/ui/../spate.db")
    assert status == 404
    assert d.request("POST", "/ui/")[0] == 405


class Load:
    """Invokes a slow function from several threads until stopped."""

    def __init__(self, d, name, payload, threads=4):
        self.d, self.name, self.payload = d, name, payload
        self.stop = threading.Event()
        self.ok = 0
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def run(self):
        while not self.stop.is_set():
            if self.d.invoke(self.name, self.payload)[0] == 200:
                self.ok += 1

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)


def dashboard_dom(url, tmp_path, ready="Number(document.body.dataset.scrapes) >= 3",
                  screenshot=None):
    """The dashboard's DOM (url: spated's) in headless Chromium (cdp.py)
    once ready (a JS expression) holds; a screenshot of it too when asked."""
    with Browser(tmp_path / "chromium-profile", height=1400) as b:
        b.open(f"{url}/ui/")
        b.wait(ready, timeout=60)
        if screenshot:
            b.screenshot(screenshot)
        return b.dom()


def polyline_values(card, chart, series):
    """The y coordinates of one series of one chart (smaller is higher)."""
    m = re.search(rf'<svg data-chart="{chart}"(.*?)</svg>', card, re.S)
    assert m, f"no {chart} chart"
    ys = []
    for pts in re.findall(rf'<polyline points="([^"]*)" stroke="[^"]*" data-series="{series}"',
                          m.group(1)):
        ys += [float(p.split(",")[1]) for p in pts.split()]
    return ys


def test_dashboard_in_chromium(spated, functions, tmp_path):
    d = spated
    assert d.deploy("slow", functions["probe"], timeout=5000)[0] == 201
    assert d.cli("trigger", "add", "trades", "slow", "--deadline", "30000").returncode == 0
    with Load(d, "slow", b"sleep:30") as load:
        r = d.cli("publish", "trades", "--lines", input=b"sleep:20\n" * 200)
        assert r.returncode == 0, r.stderr
        time.sleep(0.5)
        artifacts = BUILD / "test-artifacts"
        artifacts.mkdir(exist_ok=True)
        shot = artifacts / "dashboard.png"
        shot.unlink(missing_ok=True)
        # Three scrapes at least, and the busy instances drawn from three points.
        html = dashboard_dom(d.url, tmp_path, "Number(document.body.dataset.scrapes) >= 3 && "
                             "Number(document.querySelector('#fn-slow svg[data-chart=instances]')"
                             "?.dataset.points) >= 3", screenshot=shot)
    assert load.ok > 0
    scrapes = int(re.search(r'<body[^>]* data-scrapes="(\d+)"', html).group(1))
    assert scrapes >= 3, html[:2000]
    assert 'class="status">live' in html
    card = re.search(r'<div class="fn" id="fn-slow".*?(?=<div class="fn" |</div></div></section>|$)',
                     html, re.S).group(0)
    # Instances were busy at some point of the charts (y below the axis at 96).
    busy = polyline_values(card, "instances", "busy")
    assert len(busy) >= 3 and min(busy) < 95, busy
    # Completions per second and durations have data.
    assert min(polyline_values(card, "rate", "completions")) < 95
    assert polyline_values(card, "duration", "p99")
    assert polyline_values(card, "backlog", "messages")
    assert 'data-topic="trades"' in html
    # The screenshot is kept as an artifact of the run.
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10000
    print(f"\ndashboard screenshot: {shot}")
