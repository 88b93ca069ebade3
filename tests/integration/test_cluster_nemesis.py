"""The cluster's nemesis (tests/integration/cluster_nemesis.py, issue 21
item 3) for about 10 faults: kill -9 and SIGSTOP of spated nodes and of
nats-servers (one at a time) and a network partition of one node hit a
cluster of three spated nodes and three nats-servers (JetStream, R3) while
keyed publishes to an ordered trigger, ndjson batches, direct invokes and
SQS senders and receivers are spread over the nodes; then nothing
acknowledged may be lost, every duplicate must have a fault that can lose a
settlement between its runs, an ordered key never runs two at once or out
of order (but for such replays), dead letters are exactly the deliberate
failures. bench/cluster-nemesis runs it longer."""

import os
import random
import shutil

import pytest

from conftest import BUILD
import cluster_nemesis

ASAN = "SPATE_ASAN:BOOL=ON" in ((BUILD / "CMakeCache.txt").read_text()
                               if (BUILD / "CMakeCache.txt").exists() else "")


def test_cluster_nemesis_loses_nothing_acknowledged(tmp_path, functions):
    if not shutil.which("nats-server"):
        pytest.fail("nats-server is not installed (scripts/install-deps.sh installs it)")
    seed = int(os.environ.get("SPATE_NEMESIS_SEED", random.randrange(1 << 30)))
    fig, problems, text = cluster_nemesis.run(tmp_path, functions, seed, faults=10,
                                              scale=3.0 if ASAN else 1.0)
    print(text)
    assert not problems, f"seed {seed} (SPATE_NEMESIS_SEED={seed} repeats the faults):\n{text}"
    assert fig["ord"]["acked"] and fig["bat"]["acked"] and fig["inv"]["acked"], text
    assert fig["sqs"]["acked"] and fig["ordered"]["keys"] == cluster_nemesis.nemesis.ORD_KEYS, text
    assert sum(fig["faults"].values()) == 10, text
