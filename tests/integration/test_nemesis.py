"""The nemesis (tests/integration/nemesis.py, issue 21) for about 20 faults:
kill -9, SIGSTOP/SIGCONT and a full disk hit one spated while keyed and
unkeyed publishes, an ordered trigger, a trigger of batches, direct invokes
and SQS senders and receivers run; then nothing acknowledged may be lost,
every duplicate must have a kill -9 between its runs, an ordered key never
runs two at once or out of order, dead letters are exactly the deliberate
failures and SQS receive counts grow with every receive. bench/nemesis runs
it longer (--faults 200)."""

import os
import random

from conftest import BUILD
import nemesis

ASAN = "SPATE_ASAN:BOOL=ON" in ((BUILD / "CMakeCache.txt").read_text()
                               if (BUILD / "CMakeCache.txt").exists() else "")


def test_nemesis_loses_nothing_acknowledged(tmp_path, functions):
    seed = int(os.environ.get("SPATE_NEMESIS_SEED", random.randrange(1 << 30)))
    fig, problems, text = nemesis.run(tmp_path, functions, seed, faults=20,
                                      scale=3.0 if ASAN else 1.0)
    print(text)
    # Exec instances started around a pause or a full disk that "did not
    # become ready" within 10 s cost their batch an attempt each (session
    # 40, issue 21; not seen since on this machine). Found and mended: after
    # a stall libuv ran the expired init deadline before it read the GET
    # /next that had come in time; a start too slow beside serving instances,
    # and a wait past the timeout, cost no attempt now
    # (test_ready_after_a_stall.py). Everything must hold; a start failure
    # left says what the bootstrap was doing.
    assert not problems, f"seed {seed} (SPATE_NEMESIS_SEED={seed} repeats the faults):\n{text}"
    assert fig["ord"]["acked"] and fig["bat"]["acked"] and fig["inv"]["acked"], text
    assert fig["sqs"]["acked"] and fig["ordered"]["keys"] == nemesis.ORD_KEYS, text
    assert fig["faults"]["kill"] and fig["faults"]["pause"], text
