#!/usr/bin/python3
"""The trading day, twice: a single consumer against spate's autoscaling.

A broker reports every executed trade to the trade reporting facility (TRF)
within a deadline (15 minutes). Trades arrive on topic `trades`, keyed by
account; the trade-report function looks each instrument up and submits the
report, which the TRF answers after a few milliseconds. The day (6.5 hours)
is compressed into --seconds, the deadline with it.

  classic     the function pinned to one instance: the single-threaded
              consumer that falls behind at the open and is buried by the close
  serverless  autoscaled, the trigger carrying the reporting deadline
  cluster     the same on three spated nodes sharing the topic through a
              three-server NATS JetStream cluster (make demo-cluster)

Every figure is measured: spated, the function and the TRF really run.

--source amqp (make demo SOURCE=amqp): the trades are not published to spate
but into a RabbitMQ queue, the broker's existing one (a private
rabbitmq-server started here, tests/tools/rabbit.py), and a spate source
drains it into the topic. In classic mode its single consumer is the
function pinned to one instance behind that same queue.

    demo.py [--seconds 60] [--trades 12000] [--latency-ms 5] [--out demo-out]
            [--summary FILE] [--modes classic,serverless] [--port 7728]
            [--source amqp]

Watch it live: each mode's spated listens on --port (7728 unless it is
taken), so http://127.0.0.1:7728/ui/ shows the backlog, the instances and the
deadline risk as the day goes by; the page reconnects when the next mode's
spated starts.
"""

import argparse
import csv
import io
import json
import os
import pathlib
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
import tradingday  # noqa: E402

sys.path.insert(0, str(ROOT / "tests/tools"))
import rabbit  # noqa: E402

DEADLINE_REAL_S = 15 * 60
SESSION_S = tradingday.SESSION_HOURS * 3600


def free_port():
    """A free port below the kernel's ephemeral range, so that it cannot
    become the source port of an outgoing connection (nats-servers' routes
    connect while the next server starts) before its server listens."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    while True:
        port = random.randrange(max(1024, low - 12000), low)
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port


_given = set()


def port_or_free(port):
    """port if nothing listens there, else a free one."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            return free_port()


def wait_port(port, proc, what, log):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None:
                sys.exit(f"{what} exited:\n{pathlib.Path(log).read_text()}")
            time.sleep(0.05)
    sys.exit(f"{what} did not start")


def call(port, method, path, body=None, timeout=30):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        data = r.read()
    return data


def jcall(port, method, path, body=None):
    data = call(port, method, path, body)
    return json.loads(data) if data else None


def make_refdata(path):
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE instruments (symbol TEXT PRIMARY KEY, isin TEXT NOT NULL,"
               " name TEXT NOT NULL, venue TEXT NOT NULL, asset_class TEXT NOT NULL)")
    venues = ["XNYS", "XNAS", "ARCX", "BATS"]
    for i, sym in enumerate(tradingday.SYMBOLS):
        db.execute("INSERT INTO instruments VALUES (?, ?, ?, ?, ?)",
                   (sym, f"US{i:09d}{i % 10}", f"{sym.title()} Holdings Inc.", venues[i % 4],
                    "EQUITY"))
    db.commit()
    db.close()


class Nats:
    """Three nats-servers with JetStream, clustered on loopback."""

    def __init__(self, tmp, n=3):
        self.client = [free_port() for _ in range(n)]
        route = [free_port() for _ in range(n)]
        routes = ",".join(f"nats://127.0.0.1:{p}" for p in route)
        self.procs = []
        for i in range(n):
            log = tmp / f"nats{i}.log"
            self.procs.append(subprocess.Popen(
                ["nats-server", "-js", "-sd", str(tmp / f"js{i}"), "-a", "127.0.0.1", "-p",
                 str(self.client[i]), "-n", f"n{i}", "--cluster_name", "demo", "-cluster",
                 f"nats://127.0.0.1:{route[i]}", "-routes", routes],
                stdout=open(log, "wb"), stderr=subprocess.STDOUT))
            wait_port(self.client[i], self.procs[-1], "nats-server", log)
        self.urls = ",".join(f"nats://127.0.0.1:{p}" for p in self.client)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            p.wait(30)


class Run:
    """One mode: its own spated (fresh store) and TRF; in cluster mode three
    spated nodes and the NATS cluster they share."""

    def __init__(self, mode, args, tmp, build, report_so, refdata, deadline_s, broker=None):
        self.mode, self.args, self.tmp = mode, args, tmp / mode
        self.broker, self.queue = broker, f"trades-{mode}"
        self.tmp.mkdir()
        self.deadline_s = deadline_s
        self.samples = []  # (t, published, depth, live instances, desired)
        self.trf_port, self.port = free_port(), port_or_free(args.port)
        self.trf, self.nats, self.nodes = None, None, []
        try:
            self.start(build, report_so, refdata, broker)
        except BaseException:
            self.stop()  # a mode that cannot start leaves nothing running
            raise

    def start(self, build, report_so, refdata, broker):
        args, mode, deadline_s = self.args, self.mode, self.deadline_s
        self.trf = subprocess.Popen([str(build / "trf"), "--listen", f"127.0.0.1:{self.trf_port}",
                                     "--latency-ms", str(args.latency_ms)],
                                    stdout=open(self.tmp / "trf.log", "wb"),
                                    stderr=subprocess.STDOUT)
        wait_port(self.trf_port, self.trf, "the TRF", self.tmp / "trf.log")
        self.nats = Nats(self.tmp) if mode == "cluster" else None
        nodes = 3 if self.nats else 1
        self.ports = [self.port] + [free_port() for _ in range(nodes - 1)]
        for i, port in enumerate(self.ports):
            extra = ["--cluster", self.nats.urls] if self.nats else []
            log = self.tmp / f"spated{i}.log"
            self.nodes.append(subprocess.Popen(
                [str(build / "spated"), "--data", str(self.tmp / f"data{i}"), "--listen",
                 f"127.0.0.1:{port}", *extra], stdout=open(log, "wb"), stderr=subprocess.STDOUT))
            wait_port(port, self.nodes[-1], "spated", log)
        self.spated = self.nodes[0]
        env = f"env=REFDATA%3D{refdata}&env=TRF%3D127.0.0.1%3A{self.trf_port}"
        if mode == "classic":
            params = "min=1&max=1"
        else:
            # Instances idle for 1 s (2.5 minutes of the real day) go away.
            params = f"max={args.max_instances}&keep_alive=1000"
        jcall(self.port, "PUT", f"/v1/functions/trade-report?{env}&{params}",
              report_so.read_bytes())
        trigger = "ordered=true"
        if mode != "classic":
            trigger += f"&deadline={int(deadline_s * 1000)}"
        jcall(self.port, "PUT", f"/v1/triggers/trades/trade-report?{trigger}")
        if broker:
            # The existing queue (durable, as a broker's would be), drained
            # into the topic, keyed by account as the HTTP replay keys it.
            broker.declare(self.queue)
            url = (f"amqp://{broker.user}:{broker.password}@127.0.0.1:{broker.port}/%2F"
                   f"?queue={self.queue}")
            jcall(self.port, "PUT", "/v1/sources/trades-in",
                  json.dumps({"url": url, "topic": "trades", "key_field": "account"}).encode())
        # Every node has the function and the trigger (the cluster's registry).
        for port in self.ports[1:]:
            for _ in range(200):
                if jcall(port, "GET", "/v1/triggers")["triggers"]:
                    break
                time.sleep(0.05)

    def sample(self, t0, stop):
        while not stop.is_set():
            try:
                fn = jcall(self.port, "GET", "/v1/functions/trade-report")
                tp = jcall(self.port, "GET", "/v1/topics/trades")
            except OSError:
                time.sleep(0.05)
                continue
            per_node = []
            for port in self.ports:
                try:
                    f = fn if port == self.port else jcall(port, "GET",
                                                           "/v1/functions/trade-report")
                    # Its spare instance (started ahead) costs as any other.
                    per_node.append(sum(f["instances"].get(k, 0)
                                        for k in ("starting", "idle", "busy", "spare")))
                except OSError:
                    per_node.append(0)
            self.samples.append((time.monotonic() - t0, tp["published"], tp["depth"],
                                 sum(per_node), fn["scaling"].get("desired_instances", 0),
                                 per_node))
            time.sleep(0.1)

    def run(self):
        args = self.args
        stop = threading.Event()
        t0 = time.monotonic()
        sampler = threading.Thread(target=self.sample, args=(t0, stop))
        sampler.start()
        if self.broker:
            self.trades = self.replay_into_queue()
        else:
            self.trades = tradingday.replay(f"http://127.0.0.1:{self.port}", "trades",
                                            args.seconds, args.trades, None, args.seed)
        self.day_end = time.monotonic() - t0
        # After the close: let the backlog drain, within a limit (with a
        # source, first the queue upstream, then the topic).
        limit = time.monotonic() + args.drain_limit
        while time.monotonic() < limit:
            if self.drained_now():
                break
            time.sleep(0.1)
        self.drained = self.drained_now()
        time.sleep(0.3)
        stop.set()
        sampler.join()
        self.end = time.monotonic() - t0
        self.stats = json.loads(call(self.trf_port, "GET", "/stats"))
        self.receipts = {row["trade_id"]: (int(row["executed_at_ms"]), int(row["received_ms"]))
                         for row in csv.DictReader(io.StringIO(call(self.trf_port, "GET",
                                                                    "/receipts").decode()))}
        self.t0_wall_ms = min(t for _, t in self.trades)

    def replay_into_queue(self):
        """The day published into the broker's queue by amqp_tool (one
        message a line, persistent, confirmed), as the day goes."""
        b = self.broker
        pub = subprocess.Popen([str(b.tool), str(b.port), "publish", self.queue, "--persistent",
                                "--lines"], stdin=subprocess.PIPE,
                               env=dict(os.environ, AMQP_USER=b.user, AMQP_PASS=b.password))

        def send(body):
            pub.stdin.write(body.encode())
            pub.stdin.flush()

        try:
            trades = tradingday.replay(None, seconds=self.args.seconds, trades=self.args.trades,
                                       seed=self.args.seed, send=send)
        finally:
            pub.stdin.close()
            if pub.wait(120) != 0:
                sys.exit("publishing into RabbitMQ failed")
        return trades

    def drained_now(self):
        if self.broker:
            src = jcall(self.port, "GET", "/v1/sources/trades-in")
            if src["committed"] < len(self.trades):
                return False
        return jcall(self.port, "GET", "/v1/topics/trades")["depth"] == 0

    def stop(self):
        procs = self.nodes + ([self.trf] if self.trf else [])
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        if self.nats:
            self.nats.stop()
        return max((abs(p.returncode or 0) for p in self.nodes), default=0)

    def summary(self):
        lat = sorted((rcv - ex) / 1000.0 for ex, rcv in self.receipts.values())
        n = len(lat)
        deadline = self.deadline_s
        unreported = len(self.trades) - n
        late = sum(1 for x in lat if x > deadline) + unreported
        inst_s = 0.0
        for s1, s2 in zip(self.samples, self.samples[1:]):
            inst_s += s1[3] * (s2[0] - s1[0])
        peak_inst = max((s[3] for s in self.samples), default=0)
        peak_per_node = [max((s[5][i] for s in self.samples), default=0)
                         for i in range(len(self.ports))]
        return {
            "mode": self.mode,
            "trades": len(self.trades),
            "reported": n,
            "duplicates": self.stats["duplicates"],
            "unreported": unreported,
            "late": late,
            "p50_s": lat[n // 2] if n else None,
            "p99_s": lat[min(n - 1, n * 99 // 100)] if n else None,
            "max_s": lat[-1] if n else None,
            "peak_backlog": max((s[2] for s in self.samples), default=0),
            "peak_instances": peak_inst,
            "peak_instances_per_node": peak_per_node,
            "instance_seconds": inst_s,
            "seconds": self.end,
            "day_seconds": self.day_end,
            "drained": self.drained,
        }


def write_plot(out, runs, deadline_s, seconds):
    """Data files and a gnuplot script -> demo-out/trading-day.svg and .png."""
    out.mkdir(parents=True, exist_ok=True)
    scale = SESSION_S / seconds / 3600.0  # compressed seconds -> hours of the session
    for r in runs:
        with open(out / f"{r.mode}-samples.dat", "w") as f:
            f.write("# hour published/s backlog instances\n")
            prev = None
            for s in r.samples:
                t, pub, depth, live = s[0], s[1], s[2], s[3]
                rate = 0.0 if prev is None or t <= prev[0] else (pub - prev[1]) / (t - prev[0])
                f.write(f"{9.5 + t * scale:.4f} {rate:.1f} {depth} {live}\n")
                prev = (t, pub)
        if len(r.ports) > 1:
            with open(out / f"{r.mode}-nodes.dat", "w") as f:
                f.write("# hour, then the live instances of each node\n")
                for s in r.samples:
                    f.write(f"{9.5 + s[0] * scale:.4f} " + " ".join(map(str, s[5])) + "\n")
        with open(out / f"{r.mode}-latency.dat", "w") as f:
            f.write("# executed-at hour, reporting latency (minutes of the real day)\n")
            for ex, rcv in sorted(r.receipts.values()):
                hour = 9.5 + (ex - r.t0_wall_ms) / 1000.0 * scale
                f.write(f"{hour:.4f} {(rcv - ex) / 1000.0 * scale * 60:.3f}\n")
    deadline_min = deadline_s * scale * 60
    modes = [r.mode for r in runs]
    color = {"classic": "#c0392b", "serverless": "#1f77b4", "cluster": "#2ca02c"}
    node_lines = "".join(
        f", '{out}/{r.mode}-nodes.dat' using 1:{i + 2} with lines lw 1 dt 2 "
        f"lc rgb '{color[r.mode]}' title '{r.mode} node {i + 1}'"
        for r in runs if len(r.ports) > 1 for i in range(len(r.ports)))

    def plots(column, kind):
        return ", ".join(f"'{out}/{m}-{kind}.dat' using 1:{column} with lines lw 2 "
                         f"lc rgb '{color[m]}' title '{m}'" for m in modes)

    last = max(s[0] for r in runs for s in r.samples) * scale + 9.5
    script = f"""
set multiplot layout 4,1 title "A trading day (09:30-16:00, replayed in {seconds:.0f} s): one consumer vs spate"
set xrange [9.5:{max(16.25, last + 0.1):.2f}]
set grid
set key top center horizontal
set lmargin 12
set ylabel "trades/s"
plot '{out}/{modes[0]}-samples.dat' using 1:2 with lines lw 1.5 lc rgb '#555555' title 'arrivals'
set ylabel "backlog"
plot {plots(3, 'samples')}
set ylabel "instances"
plot {plots(4, 'samples')}{node_lines}
set ylabel "report latency (min)"
set xlabel "time of day (h)"
set logscale y
plot {", ".join(f"'{out}/{m}-latency.dat' using 1:($2>0.01?$2:0.01) with points pt 7 ps 0.2 lc rgb '{color[m]}' title '{m}'" for m in modes)}, {deadline_min:.3f} with lines dt 2 lw 2 lc rgb '#000000' title 'deadline (15 min)'
unset multiplot
"""
    for term, name in (("svg size 1000,1100 dynamic font 'sans,11'", "trading-day.svg"),
                       ("pngcairo size 1000,1100", "trading-day.png")):
        full = f"set terminal {term}\nset output '{out}/{name}'\n" + script
        r = subprocess.run(["gnuplot"], input=full, text=True, capture_output=True)
        if r.returncode != 0:
            if "pngcairo" in term and "unknown or ambiguous terminal" in r.stderr:
                continue
            sys.exit("gnuplot failed: " + r.stderr)
    (out / "plot.gp").write_text(script)


def table(results, deadline_s, seconds):
    scale = SESSION_S / seconds
    print(f"\nA trading day of {results[0]['trades']:,} trades, 6.5 hours replayed in {seconds:.0f} s;"
          f" reporting deadline 15 minutes ({deadline_s:.2f} s in the replay).\n")
    cols = ["mode", "trades", "reported", "late", "p50", "p99", "max", "peak backlog",
            "peak inst.", "inst.-seconds", "fixed fleet"]
    print("  ".join(f"{c:>13}" for c in cols))
    for r in results:
        fleet = (1 if r["mode"] == "classic" else r["peak_instances"]) * r["day_seconds"]

        def real(s):
            return "-" if s is None else f"{s * scale / 60:.1f} min"

        per = r["peak_instances_per_node"]
        peak = f"{r['peak_instances']}" + (f" ({'+'.join(map(str, per))})" if len(per) > 1 else "")
        row = [r["mode"], f"{r['trades']:,}", f"{r['reported']:,}", f"{r['late']:,}", real(r["p50_s"]),
               real(r["p99_s"]), real(r["max_s"]), f"{r['peak_backlog']:,}", peak,
               f"{r['instance_seconds']:.0f}", f"{fleet:.0f}"]
        print("  ".join(f"{c:>13}" for c in row))
        r["fixed_fleet_instance_seconds"] = fleet
    print("\n  latency: TRF receipt - executed-at, in minutes of the real day;"
          " inst.-seconds: instances (spares too) x seconds of the replay (the cost),"
          "\n  beside a fixed fleet sized for the peak all day long.")
    for r in results:
        if r["unreported"]:
            print(f"  {r['mode']}: {r['unreported']:,} trades were still unreported "
                  f"{r['seconds'] - r['day_seconds']:.0f} s after the close (counted late).")


def dashboard_picture(port, path):
    """Opens the dashboard at the end of the day, as a person arriving late
    would, and keeps a screenshot: it draws the whole day at once from
    spated's history (GET /v1/history). Returns the seconds it drew, or None
    without chromium."""
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        return None
    sys.path.insert(0, str(ROOT / "tests/integration"))
    from cdp import Browser
    with tempfile.TemporaryDirectory() as profile, Browser(pathlib.Path(profile) / "p") as b:
        b.open(f"http://127.0.0.1:{port}/ui/")
        seconds = b.wait("Number(document.documentElement.dataset.historySamples || 0)")
        time.sleep(1)  # the charts are drawn with the scrape after
        b.screenshot(path)
    return seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--trades", type=int, default=12000)
    ap.add_argument("--latency-ms", type=int, default=5)
    ap.add_argument("--max-instances", type=int, default=100)
    ap.add_argument("--drain-limit", type=float, default=60)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--modes", default="classic,serverless")
    ap.add_argument("--out", default=str(ROOT / "demo-out"))
    ap.add_argument("--build", default=str(ROOT / "build"))
    ap.add_argument("--summary", help="write the figures as JSON here")
    ap.add_argument("--port", type=int, default=7728,
                    help="spated's port, for the live dashboard at /ui/ (a free one if taken)")
    ap.add_argument("--source", choices=["", "amqp"], default="",
                    help="replay the day into this broker's queue, drained by a spate source")
    args = ap.parse_args()
    build = pathlib.Path(args.build)
    deadline_s = DEADLINE_REAL_S * args.seconds / SESSION_S
    # Not under /tmp: each instance has a /tmp of its own (docs/functions.md),
    # and the report function reads refdata.db here, as its own uid.
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="spate-demo-", dir="/var/tmp"))
    tmp.chmod(0o755)
    runs, failed, broker = [], False, None
    try:
        if args.source == "amqp":
            if not rabbit.available():
                sys.exit("--source amqp needs rabbitmq-server (make deps)")
            print("[amqp] starting a private rabbitmq-server ...", flush=True)
            broker = rabbit.Rabbit(tmp / "rabbit", rabbit.build_tool(tmp / "amqp_tool"), "demo",
                                   "demo")
            broker.start()
        report_so = tmp / "report.so"
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-I", str(ROOT / "include"), "-o",
                        str(report_so), str(HERE / "report.c"), "-lsqlite3", "-lcjson"], check=True)
        refdata = tmp / "refdata.db"
        make_refdata(refdata)
        for mode in args.modes.split(","):
            print(f"[{mode}] replaying the day ...", flush=True)
            r = Run(mode, args, tmp, build, report_so, refdata, deadline_s, broker)
            runs.append(r)
            print(f"[{mode}] watch it live: http://127.0.0.1:{r.port}/ui/", flush=True)
            try:
                r.run()
                shot = pathlib.Path(args.out) / f"dashboard-{mode}.png"
                shot.parent.mkdir(parents=True, exist_ok=True)
                seconds = dashboard_picture(r.port, shot)
                if seconds:
                    print(f"[{mode}] the dashboard opened at the end drew {seconds} s of the day:"
                          f" {shot}", flush=True)
            finally:
                rc = r.stop()
                if rc != 0:
                    print(f"[{mode}] spated exited with {rc}", file=sys.stderr)
                    failed = True
        results = [r.summary() for r in runs]
        table(results, deadline_s, args.seconds)
        if broker:
            print("\n  the trades were published into a RabbitMQ queue and drained by a spate"
                  " source (amqp://...?queue=trades-MODE).")
        write_plot(pathlib.Path(args.out), runs, deadline_s, args.seconds)
        print(f"\n  picture: {args.out}/trading-day.svg (and .png)")
        if args.summary:
            pathlib.Path(args.summary).write_text(json.dumps(
                {"deadline_s": deadline_s, "results": results}, indent=1))
        for r in results:
            if r["mode"] != "classic" and (r["unreported"] or r["late"]):
                failed = True
            if r["duplicates"]:
                failed = True
    finally:
        for r in runs:
            r.stop()
        if broker:
            broker.close()
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
