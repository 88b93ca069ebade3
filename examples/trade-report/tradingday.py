#!/usr/bin/python3
"""tradingday - replays a compressed trading session as trades published to
spate, each at its executed-at time, keyed by account.

The intraday shape of a US equity session (09:30-16:00): heavy at the open,
a lull at midday, a steep rise into the close and the closing-auction spike.
6.5 hours are compressed into --seconds (60 by default); --trades sets the
total and --peak-rate (optional) the highest rate, trades per second.

    tradingday.py --url http://127.0.0.1:7728 [--topic trades] [--seconds 60]
                  [--trades 12000] [--peak-rate R] [--seed 1] [--log FILE]

Each trade is JSON: trade_id, account, symbol, side, quantity, price,
executed_at (epoch ms). --log writes "trade_id,executed_at_ms" per trade.
"""

import argparse
import http.client
import json
import math
import random
import sys
import time
import urllib.parse

SESSION_HOURS = 6.5
SYMBOLS = ["ACME", "BOLT", "CRUX", "DYNA", "EMBR", "FLUX", "GLYF", "HALO", "IRIS", "JADE",
           "KITE", "LUMA", "MAVN", "NOVA", "ORCA", "PYRE", "QUIN", "RIFT", "SAGE", "TIDE",
           "UMBR", "VALE", "WISP", "XENO", "YAWL", "ZEST"]


def shape(x):
    """Relative trade rate at x in [0, 1] of the session."""
    opening = 2.4 * math.exp(-x / 0.07)
    closing = 2.6 * math.exp((x - 1) / 0.06)
    auction = 7.0 if x >= 0.985 else 0.0
    lull = 0.25 - 0.12 * math.exp(-((x - 0.5) / 0.12) ** 2)
    return lull + opening + closing + auction


def rate_curve(trades, seconds, peak=None, steps=4000):
    """rate(t) in trades/s over the compressed day: a + b * shape, with the
    integral equal to trades and, if given, the maximum equal to peak."""
    xs = [(i + 0.5) / steps for i in range(steps)]
    integral = sum(shape(x) for x in xs) / steps * seconds
    smax = max(shape(x) for x in xs)
    if peak is None:
        a, b = 0.0, trades / integral
    else:
        b = (peak * seconds - trades) / (smax * seconds - integral)
        a = peak - b * smax
        if a < 0 or b <= 0:
            sys.exit(f"a peak of {peak}/s cannot go with {trades} trades in {seconds} s")
    return lambda t: a + b * shape(min(max(t / seconds, 0.0), 1.0))


class Market:
    def __init__(self, seed, accounts=200):
        self.rng = random.Random(seed)
        self.prices = {s: self.rng.uniform(20, 400) for s in SYMBOLS}
        # A few very active accounts and a long tail.
        self.accounts = [f"ACC{i:03d}" for i in range(accounts)]
        self.weights = [1.0 / (i + 1) ** 0.8 for i in range(accounts)]
        self.next_id = 1

    def trade(self, executed_at):
        sym = self.rng.choice(SYMBOLS)
        self.prices[sym] *= math.exp(self.rng.gauss(0, 0.0005))
        t = {"trade_id": f"T{self.next_id:07d}",
             "account": self.rng.choices(self.accounts, self.weights)[0],
             "symbol": sym, "side": self.rng.choice(("BUY", "SELL")),
             "quantity": 100 * self.rng.randint(1, 20), "price": round(self.prices[sym], 2),
             "executed_at": executed_at}
        self.next_id += 1
        return t


def post(conn, path, body, headers):
    """One NDJSON batch into spate's topic, retried a few times."""
    for attempt in range(5):
        try:
            conn.request("POST", path, body=body, headers=headers)
            r = conn.getresponse()
            answer = r.read()
            if r.status == 202:
                return
            raise RuntimeError(f"publish answered {r.status}: {answer[:200]!r}")
        except (OSError, http.client.HTTPException):
            conn.close()
            time.sleep(0.05)
    raise RuntimeError("cannot publish to spate")


def replay(url, topic="trades", seconds=60.0, trades=12000, peak=None, seed=1, log=None,
           tick=0.01, on_tick=None, send=None):
    """Publishes the day; returns [(trade_id, executed_at_ms)]. Each tick, the
    trades due are executed now and published as one NDJSON batch: to spate's
    topic at url, or given to send (the NDJSON text) to publish elsewhere (a
    broker's queue that a spate source drains)."""
    rate = rate_curve(trades, seconds, peak)
    market = Market(seed)
    u = urllib.parse.urlparse(url or "")
    conn = None if send else http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    path = f"/v1/topics/{topic}/messages"
    headers = {"Content-Type": "application/x-ndjson", "Spate-Key-Field": "account"}
    done = []
    due = 0.0
    start = time.monotonic()
    last = 0.0
    while True:
        now = time.monotonic() - start
        if now >= seconds:
            now = seconds
        # Trades executed between the last tick and now (rate integrated).
        steps = max(1, int((now - last) / 0.001))
        dt = (now - last) / steps
        due += sum(rate(last + (i + 0.5) * dt) for i in range(steps)) * dt
        last = now
        n = int(due)
        if len(done) + n > trades or now >= seconds:
            n = trades - len(done) if now >= seconds else min(n, trades - len(done))
        due -= n
        if n > 0:
            stamp = int(time.time() * 1000)
            batch = [market.trade(stamp) for _ in range(n)]
            body = "".join(json.dumps(t, separators=(",", ":")) + "\n" for t in batch)
            if send:
                send(body)
            else:
                post(conn, path, body.encode(), headers)
            done.extend((t["trade_id"], t["executed_at"]) for t in batch)
        if on_tick:
            on_tick(now, len(done))
        if now >= seconds:
            break
        time.sleep(max(0.0, tick - ((time.monotonic() - start) - now)))
    if conn:
        conn.close()
    if log:
        with open(log, "w") as f:
            f.write("trade_id,executed_at_ms\n")
            f.writelines(f"{i},{t}\n" for i, t in done)
    return done


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:7728")
    ap.add_argument("--topic", default="trades")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--trades", type=int, default=12000)
    ap.add_argument("--peak-rate", type=float)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--log")
    args = ap.parse_args()
    done = replay(args.url, args.topic, args.seconds, args.trades, args.peak_rate, args.seed,
                  args.log)
    print(f"published {len(done)} trades in {args.seconds:.0f} s "
          f"({SESSION_HOURS} h of trading)")


if __name__ == "__main__":
    main()
